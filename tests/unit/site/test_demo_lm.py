"""Which traces the demo sends: the committed language model's when it can run, else the bundled sample's."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from hypergraph_site.demo import lm

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_the_committed_model_and_its_dictionary_layers_are_found(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    found, why = lm.lm_available(MODELS)
    assert why == "" and found.layers == [1, 3] and found.folder == MODELS / "pydoc-gpt2"
    assert lm.lm_service_env(found) == {"DICT_ROOT": str(MODELS / "dicts"), "DICT_NAME": "pydoc-gpt2",
                                        "HG_GROUPING": "none", "SHADOW_MODEL": str(MODELS / "pydoc-gpt2"),
                                        "ATTR_TOKEN_BUDGET_MS": "30000", "BP_MAX_BACKLOG_TOKEN": "600",
                                        "BP_MAX_BACKLOG_SENTENCE": "600"}


def test_without_the_model_extra_or_the_files_the_demo_says_why_it_uses_the_sample(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else object())
    assert lm.lm_available(MODELS) == (None, "torch not installed (the `model` extra)")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    found, why = lm.lm_available(tmp_path)
    assert found is None and "manage.py train_lm" in why
    (tmp_path / "pydoc-gpt2").mkdir()
    (tmp_path / "pydoc-gpt2" / "config.json").write_text("{}")
    found, why = lm.lm_available(tmp_path)
    assert found is None and "manage.py train_sae --model pydoc-gpt2" in why
