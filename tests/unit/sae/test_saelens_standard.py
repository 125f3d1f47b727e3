"""SAELens format, standard (ReLU) architecture: encode and top-k against the formula computed here in float64."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sae import load_dictionary
from sae.testing import random_weights, write_saelens_dictionary
from tests.unit.sae.helpers import assert_same_topk


def formula(x, w, apply_b_dec=True):
    x64 = x.astype(np.float64)
    if apply_b_dec:
        x64 = x64 - w["b_dec"]
    return np.maximum(x64 @ w["W_enc"].astype(np.float64) + w["b_enc"], 0.0)


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_encode_matches_formula(tmp_path, weights, acts, apply_b_dec):
    write_saelens_dictionary(tmp_path, weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"],
                             {"apply_b_dec_to_input": apply_b_dec, "metadata": {"hook_name": "encoder.layer.3"}})
    d = load_dictionary(tmp_path)
    assert (d.format, d.architecture, d.d_in, d.d_sae) == ("saelens", "standard", 48, 640)
    assert d.hook_name == "encoder.layer.3" and d.activation_convention == "hf_raw"
    dense = d.encode(acts)
    assert dense.dtype == np.float32 and dense.shape == (97, 640)
    np.testing.assert_allclose(dense, formula(acts, weights, apply_b_dec), atol=2e-5)
    if apply_b_dec:  # b_dec really matters: without subtracting it the answer differs
        assert np.abs(dense - formula(acts, weights, False)).max() > 1e-2


@pytest.mark.parametrize("k,tile_rows", [(1, 256), (16, 7), (64, 32), (100, 1000)])
def test_topk_matches_sorted_formula(tmp_path, weights, acts, k, tile_rows):
    write_saelens_dictionary(tmp_path, weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"])
    d = load_dictionary(tmp_path)
    indices, values = d.topk(acts, k, tile_rows=tile_rows)
    assert indices.shape == values.shape == (97, k)
    assert indices.dtype == np.int64 and values.dtype == np.float32
    assert_same_topk(indices, values, formula(acts, weights), k)


def test_topk_pads_inactive_with_zero(tmp_path):
    w = random_weights(16, 64, seed=1)
    w["b_enc"][:] = -50.0  # almost nothing fires
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
    d = load_dictionary(tmp_path)
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    idx, val = d.topk(x, 8)
    assert (val == 0).all() and ((idx >= 0) & (idx < 64)).all()


def test_decoder_and_metadata_exposed(tmp_path, weights):
    write_saelens_dictionary(tmp_path, weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"],
                             {"metadata": {"hook_name": "blocks.6.hook_resid_pre"}})
    d = load_dictionary(tmp_path)
    assert d.W_dec.shape == (640, 48) and d.W_dec.dtype == np.float32
    np.testing.assert_array_equal(d.W_dec, weights["W_dec"])
    np.testing.assert_array_equal(d.b_dec, weights["b_dec"])
    assert d.activation_convention == "transformer_lens"
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"center_writing_weights": False}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert load_dictionary(tmp_path).activation_convention == "hf_raw"


def test_pre_6_flat_cfg(tmp_path, weights, acts):
    """SAELens < 6 wrote flat cfgs with `hook_point`; they load the same way."""
    write_saelens_dictionary(tmp_path, weights["W_enc"], weights["b_enc"], weights["W_dec"], weights["b_dec"])
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 48, "d_sae": 640, "hook_point": "blocks.2.hook_resid_post",
                                                   "apply_b_dec_to_input": True}))
    d = load_dictionary(tmp_path)
    assert d.hook_name == "blocks.2.hook_resid_post"
    np.testing.assert_allclose(d.encode(acts), formula(acts, weights), atol=2e-5)


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(1, 40), d_in=st.integers(1, 24), d_sae=st.integers(1, 300), k=st.integers(1, 80),
    tile=st.integers(1, 50), seed=st.integers(0, 2**16),
)
def test_topk_property(tmp_path_factory, t, d_in, d_sae, k, tile, seed):
    """For any shape, k and tile size: indices valid, rows sorted, values = the dense encode's top-k."""
    w = random_weights(d_in, d_sae, seed=seed)
    folder = write_saelens_dictionary(tmp_path_factory.mktemp("d"), w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
    d = load_dictionary(folder)
    x = np.random.default_rng(seed).standard_normal((t, d_in)).astype(np.float32)
    idx, val = d.topk(x, k, tile_rows=tile)
    assert idx.shape == (t, k) and ((idx >= 0) & (idx < d_sae)).all()
    dense = d.encode(x)
    kk = min(k, d_sae)
    assert_same_topk(idx[:, :kk], val[:, :kk], dense, kk)
    assert (val[:, kk:] == 0).all()
