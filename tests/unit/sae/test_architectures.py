"""Every architecture and format against its source library's formula, computed here in float64."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from sae import load_dictionary
from sae.testing import (
    random_weights,
    write_gemmascope_dictionary,
    write_saelens_dictionary,
    write_sparsify_dictionary,
)
from tests.unit.sae.helpers import assert_same_topk

D_IN, D_SAE = 40, 520


@pytest.fixture
def w():
    return {k: v.astype(np.float64) for k, v in random_weights(D_IN, D_SAE, seed=11).items()}


@pytest.fixture
def x():
    return (np.random.default_rng(5).standard_normal((83, D_IN)) * 2).astype(np.float32)


def relu(a):
    return np.maximum(a, 0.0)


def topk_dense(pre, k):
    """SAELens TopK: top k of the pre-activations, ReLU on them, zeros elsewhere."""
    out = np.zeros_like(pre)
    idx = np.argsort(-pre, axis=1)[:, :k]
    np.put_along_axis(out, idx, relu(np.take_along_axis(pre, idx, axis=1)), axis=1)
    return out


def check(d, x, expected, ks=(1, 8, 64)):
    np.testing.assert_allclose(d.encode(x), expected, atol=5e-5, rtol=1e-5)
    for k in ks:
        idx, val = d.topk(x, k, tile_rows=29)
        assert_same_topk(idx, val, expected, k)


def test_topk_architecture(tmp_path, w, x):
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"],
                             {"architecture": "topk", "k": 12})
    d = load_dictionary(tmp_path)
    assert d.architecture == "topk" and d.k == 12
    expected = topk_dense((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 12)
    assert ((expected > 0).sum(1) <= 12).all()
    check(d, x, expected)
    _, val = d.topk(x, 64)
    assert (val[:, 12:] == 0).all()


def test_topk_rescale_acts_by_decoder_norm(tmp_path, w, x):
    W_dec = w["W_dec"] * np.random.default_rng(0).uniform(0.2, 3.0, (D_SAE, 1))
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], W_dec, w["b_dec"],
                             {"architecture": "topk", "k": 16, "rescale_acts_by_decoder_norm": True})
    pre = ((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * np.linalg.norm(W_dec, axis=1)
    check(load_dictionary(tmp_path), x, topk_dense(pre, 16))


def test_legacy_topk_cfg(tmp_path, w, x):
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": D_IN, "d_sae": D_SAE, "activation_fn_str": "topk",
                                                   "activation_fn_kwargs": {"k": 9}}))
    d = load_dictionary(tmp_path)
    assert (d.architecture, d.k) == ("topk", 9)
    check(d, x, topk_dense((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"], 9))


def test_jumprelu_architecture(tmp_path, w, x):
    thr = np.abs(np.random.default_rng(1).normal(0.5, 0.3, D_SAE))
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], {"architecture": "jumprelu"},
                             extra_tensors={"threshold": thr})
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = relu(pre) * (pre > thr)
    assert ((relu(pre) > 0) & ~(pre > thr)).any()  # the threshold really removes something
    check(load_dictionary(tmp_path), x, expected)


def test_gated_architecture(tmp_path, w, x):
    rng = np.random.default_rng(2)
    extra = {"b_gate": rng.normal(-0.2, 0.3, D_SAE), "r_mag": rng.normal(0, 0.3, D_SAE),
             "b_mag": rng.normal(0.1, 0.3, D_SAE)}
    write_saelens_dictionary(tmp_path, w["W_enc"], None, w["W_dec"], w["b_dec"], {"architecture": "gated"},
                             extra_tensors=extra)
    sae_in = x - w["b_dec"]
    gate = (sae_in @ w["W_enc"] + extra["b_gate"]) > 0
    mag = relu(sae_in @ (w["W_enc"] * np.exp(extra["r_mag"])) + extra["b_mag"])
    d = load_dictionary(tmp_path)
    assert d.architecture == "gated"
    check(d, x, gate * mag)


def test_layer_norm_normalization(tmp_path, w, x):
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"],
                             {"normalize_activations": "layer_norm"})
    x64 = x.astype(np.float64) + 3.0
    centred = x64 - x64.mean(1, keepdims=True)
    normed = centred / (centred.std(1, ddof=1, keepdims=True) + 1e-5)  # unbiased std, eps on the std
    expected = relu((normed - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    check(load_dictionary(tmp_path), (x + 3.0).astype(np.float32), expected)
    biased = centred / (centred.std(1, ddof=0, keepdims=True) + 1e-5)
    assert np.abs(expected - relu((biased - w["b_dec"]) @ w["W_enc"] + w["b_enc"])).max() > 1e-3


def test_expected_average_only_in(tmp_path, w, x, caplog):
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"],
                             {"normalize_activations": "expected_average_only_in"})
    with caplog.at_level(logging.INFO):
        d = load_dictionary(tmp_path)
    assert "unchanged" in caplog.text
    check(d, x, relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]), ks=(8,))
    # with a known scaling factor SAELens folds it: W_enc*s, W_dec/s, b_dec/s
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["norm_scaling_factor"] = 2.5
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.INFO):
        d = load_dictionary(tmp_path)
    assert "folded" in caplog.text
    expected = relu((x - w["b_dec"] / 2.5) @ (w["W_enc"] * 2.5) + w["b_enc"])
    check(d, x, expected, ks=(8,))
    np.testing.assert_allclose(d.W_dec, w["W_dec"] / 2.5, rtol=1e-6)


@pytest.mark.parametrize("transcode", [False, True])
def test_sparsify_format(tmp_path, w, x, transcode):
    """sparsify: relu(F.linear(x - b_dec, encoder.weight, encoder.bias)) then top-k (no b_dec for transcoders)."""
    enc = w["W_enc"].T  # nn.Linear weight [d_sae, d_in]
    write_sparsify_dictionary(tmp_path, enc, w["b_enc"], w["W_dec"], w["b_dec"], k=20,
                              cfg_overrides={"transcode": transcode})
    d = load_dictionary(tmp_path)
    assert (d.format, d.architecture, d.k, d.d_in, d.d_sae) == ("sparsify", "topk", 20, D_IN, D_SAE)
    sae_in = x if transcode else x - w["b_dec"]
    post = relu(sae_in @ enc.T + w["b_enc"])
    expected = np.zeros_like(post)
    idx = np.argsort(-post, axis=1)[:, :20]
    np.put_along_axis(expected, idx, np.take_along_axis(post, idx, 1), 1)
    check(d, x, expected)
    np.testing.assert_array_equal(d.W_dec, w["W_dec"].astype(np.float32))  # [d_sae, d_in], not transposed


@pytest.mark.parametrize("layout", ["npz", "safetensors", "safetensors_transposed"])
def test_gemmascope_formats(tmp_path, w, x, layout):
    """Gemma Scope: (pre > threshold) * relu(pre), pre = x @ W_enc + b_enc (no b_dec subtraction)."""
    thr = np.abs(np.random.default_rng(3).normal(0.4, 0.2, D_SAE))
    write_gemmascope_dictionary(tmp_path, w["W_enc"], w["W_dec"], w["b_enc"], w["b_dec"], thr,
                                safetensors=layout != "npz", transpose_enc=layout.endswith("transposed"))
    d = load_dictionary(tmp_path)
    assert (d.format, d.architecture) == ("gemmascope", "jumprelu")
    assert d.activation_convention == "hf_raw"
    pre = x @ w["W_enc"] + w["b_enc"]
    check(d, x, relu(pre) * (pre > thr))


def test_gemmascope_optional_cfg_names_hook(tmp_path, w):
    write_gemmascope_dictionary(tmp_path, w["W_enc"], w["W_dec"], w["b_enc"], w["b_dec"], np.zeros(D_SAE))
    (tmp_path / "cfg.json").write_text(json.dumps({"hook_name": "blocks.12.hook_resid_post",
                                                   "activation_convention": "transformer_lens"}))
    d = load_dictionary(tmp_path)
    assert (d.hook_name, d.activation_convention) == ("blocks.12.hook_resid_post", "transformer_lens")


def test_half_precision_weights_are_widened(tmp_path, w, x):
    from safetensors.numpy import save_file

    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"])
    save_file({k: v.astype(np.float16) for k, v in w.items()}, str(tmp_path / "sae_weights.safetensors"))
    d = load_dictionary(tmp_path)
    assert d.W_dec.dtype == np.float32
    h = {k: v.astype(np.float16).astype(np.float64) for k, v in w.items()}
    check(d, x, relu((x - h["b_dec"]) @ h["W_enc"] + h["b_enc"]), ks=(8,))
