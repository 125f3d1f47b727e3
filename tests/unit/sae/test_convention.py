from __future__ import annotations

from sae import check_convention, load_dictionary
from sae.testing import random_weights, write_saelens_dictionary


def make(tmp_path, hook, kwargs=None):
    w = random_weights(8, 16, seed=0)
    meta = {"hook_name": hook}
    if kwargs is not None:
        meta["model_from_pretrained_kwargs"] = kwargs
    write_saelens_dictionary(tmp_path, w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], {"metadata": meta})
    return load_dictionary(tmp_path)


def test_transformer_lens_dictionary_against_raw_capture(tmp_path):
    d = make(tmp_path, "blocks.8.hook_resid_pre")  # GPT-2 res-jb style
    message = check_convention(d, "hf_raw")
    assert message and "transformer_lens" in message and "hf_raw" in message and "per-token mean" in message
    assert "blocks.8.hook_resid_pre" in message
    assert check_convention(d, "transformer_lens") is None


def test_unknown_sides_are_not_reported(tmp_path):
    d = make(tmp_path, None)
    assert d.activation_convention == "unknown"
    assert check_convention(d, "hf_raw") is None
    assert check_convention(make(tmp_path / "b", "encoder.layer.2"), None) is None


def test_uncentred_transformer_lens_is_raw(tmp_path):
    d = make(tmp_path, "blocks.3.hook_resid_post", {"center_writing_weights": False})
    assert d.activation_convention == "hf_raw" and check_convention(d, "hf_raw") is None
