"""Every bad dictionary raises DictionaryError with a message naming the format, file and tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from sae import DictionaryError, load_dictionary
from sae.testing import random_weights, write_gemmascope_dictionary, write_saelens_dictionary


@pytest.fixture
def w():
    return random_weights(8, 32, seed=0)


def write(tmp_path, w, **kw):
    return write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], **kw)


def expect(folder, *fragments):
    with pytest.raises(DictionaryError) as info:
        load_dictionary(folder)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_missing_folder(tmp_path):
    expect(tmp_path / "layer_9", "layer_9", "folder is missing")


def test_unknown_layout(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    expect(tmp_path, "no known dictionary format", "sae_weights.safetensors", "weights.bin")


def test_missing_cfg(tmp_path, w):
    write(tmp_path, w)
    (tmp_path / "cfg.json").unlink()
    expect(tmp_path, "saelens", "cfg.json", "missing")


def test_bad_json(tmp_path, w):
    write(tmp_path, w)
    (tmp_path / "cfg.json").write_text("{not json")
    expect(tmp_path, "saelens", "cfg.json", "not valid JSON")


def test_missing_tensor(tmp_path, w):
    write(tmp_path, w)
    save_file({"W_enc": w["W_enc"], "W_dec": w["W_dec"]}, str(tmp_path / "sae_weights.safetensors"))
    err = expect(tmp_path, "saelens", "sae_weights.safetensors", "'b_dec'", "missing")
    assert err.tensor == "b_dec" and err.format == "saelens"


def test_wrong_shape(tmp_path, w):
    write(tmp_path, w)
    save_file({**w, "W_enc": np.zeros((8, 31), np.float32)}, str(tmp_path / "sae_weights.safetensors"))
    expect(tmp_path, "saelens", "sae_weights.safetensors", "'W_enc'", "[8, 31]", "expected [8, 32]")


def test_non_finite(tmp_path, w):
    W_dec = w["W_dec"].copy()
    W_dec[3, 2] = np.nan
    write(tmp_path, {**w, "W_dec": W_dec})
    expect(tmp_path, "saelens", "'W_dec'", "non-finite")


def test_truncated_file(tmp_path, w):
    write(tmp_path, w)
    path = tmp_path / "sae_weights.safetensors"
    path.write_bytes(path.read_bytes()[:-40])
    expect(tmp_path, "saelens", "sae_weights.safetensors", "truncated")


@pytest.mark.parametrize("mode", ["constant_norm_rescale", "covariance_whitening", "bogus"])
def test_unknown_normalization(tmp_path, w, mode):
    write(tmp_path, w, cfg_overrides={"normalize_activations": mode})
    expect(tmp_path, "saelens", "cfg.json", mode, "not supported")


def test_unknown_architecture(tmp_path, w):
    write(tmp_path, w, cfg_overrides={"architecture": "matching_pursuit"})
    expect(tmp_path, "saelens", "'matching_pursuit'", "not supported")


def test_topk_without_k(tmp_path, w):
    write(tmp_path, w, cfg_overrides={"architecture": "topk"})
    expect(tmp_path, "saelens", "needs 'k'")


def test_square_orientation_is_ambiguous_without_a_declared_layout(tmp_path):
    w = random_weights(16, 16, seed=2)
    thr = np.zeros(16, np.float32)
    write_gemmascope_dictionary(tmp_path, w["W_enc"], w["W_dec"], w["b_enc"], w["b_dec"], thr, safetensors=True)
    expect(tmp_path, "gemmascope", "params.safetensors", "'w_enc'", "square", "ambiguous")
    # the npz release documents [d_in, d_sae], so the same square weights load there
    (tmp_path / "params.safetensors").unlink()
    write_gemmascope_dictionary(tmp_path, w["W_enc"], w["W_dec"], w["b_enc"], w["b_dec"], thr)
    assert load_dictionary(tmp_path).d_sae == 16


def test_d_in_mismatch_with_activations(tmp_path, w):
    d = load_dictionary(write(tmp_path, w))
    with pytest.raises(DictionaryError) as info:
        d.topk(np.zeros((3, 9), np.float32), 4)
    assert "d_in=8" in str(info.value) and "[3, 9]" in str(info.value) and "saelens" in str(info.value)
    with pytest.raises(DictionaryError):
        d.check_input(np.full((2, 8), np.inf, np.float32))


def test_cfg_d_in_disagrees_with_tensors(tmp_path, w):
    write(tmp_path, w)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["d_in"] = 9
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    expect(tmp_path, "saelens", "sae_weights.safetensors", "expected [9, 32]")


def test_dictionary_error_is_a_value_error():
    assert issubclass(DictionaryError, ValueError)
