"""Training and labelling on any activation source: a synthetic one here (the MiniLM binding is tested with the
commands that use it, in tests/unit/explainer/test_minilm_training.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from sae import load_dictionary, load_labels  # noqa: E402
from sae.labeling import LabelConfig, label_features, label_for, top_examples  # noqa: E402
from sae.training import ActivationSource, Corpus, TrainConfig, train  # noqa: E402


def planted_capture(layer: int, max_tokens: int, seq_len: int, progress=None) -> Corpus:
    """Rows that are sparse sums of 32 fixed directions, each token named after its strongest direction."""
    rng = np.random.default_rng(layer)
    directions = rng.standard_normal((32, 24)).astype(np.float32)
    codes = rng.random((max_tokens, 32)) * (rng.random((max_tokens, 32)) < 0.1)
    acts = (codes @ directions).astype(np.float32)
    if progress:
        progress(max_tokens)
    names = [f"w{int(i)}" for i in codes.argmax(1)]
    chunk = np.arange(max_tokens, dtype=np.int32) // seq_len
    return Corpus(acts=acts, tokens=names, doc=(chunk % 3).astype(np.int32),
                  position=(np.arange(max_tokens) % seq_len).astype(np.int32), chunk=chunk, docs=["a", "b", "c"])


PLANTED = ActivationSource(model_name="planted", dataset="synthetic", hook_name=lambda layer: f"planted.{layer}",
                           convention="hf_raw", capture=planted_capture)


def test_top_examples_against_a_loop():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 20, (50, 4))
    val = rng.random((50, 4)).astype(np.float32) * (rng.random((50, 4)) > 0.3)
    rows, vals = top_examples(idx, val, 20, 3)
    for f in range(20):
        hits = sorted(((float(v), t) for t in range(50) for i, v in zip(idx[t], val[t]) if i == f and v > 0),
                      key=lambda p: (-p[0], p[1]))[:3]
        assert [t for _, t in hits] == [int(r) for r in rows[f] if r >= 0]
        np.testing.assert_allclose(vals[f][: len(hits)], [v for v, _ in hits])


def test_label_form():
    assert label_for(["def", "lambda", "def"], ["function", "function", "lambda"]) == \
        "Keyword: def, lambda (in function)"
    assert label_for([",", ".", ","], ["a", "b", "c"]).startswith("Punctuation: ")
    assert label_for([], []).startswith("Dead: ")


def test_any_source_trains_labels_and_records_its_names(tmp_path):
    cfg = TrainConfig(dict_root=tmp_path, name="planted", layer=2, d_sae=64, k=4, max_tokens=4000, seq_len=50,
                      steps=150, batch_size=256, dead_after_tokens=5000)
    lines = []
    result = train(cfg, PLANTED, show_progress=False, echo=lines.append)
    assert "FVU" in lines[0] and result.fvu < 0.5
    d = load_dictionary(result.folder)
    assert (d.d_in, d.d_sae, d.k, d.hook_name, d.activation_convention) == (24, 64, 4, "planted.2", "hf_raw")
    again = train(TrainConfig(**{**cfg.__dict__, "name": "again"}), PLANTED, show_progress=False, echo=print)
    np.testing.assert_allclose(load_dictionary(again.folder).W_dec, d.W_dec, atol=1e-5)  # seeded

    label_features(LabelConfig(dict_root=tmp_path, name="planted", layer=2, max_tokens=4000, seq_len=50), PLANTED,
                   show_progress=False, echo=lambda s: None)
    assert set(load_labels(result.folder)) == set(range(64))
