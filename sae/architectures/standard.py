"""Standard (ReLU) SAE: `relu(sae_in @ W_enc + b_enc)` (SAELens `StandardSAE.encode`)."""

from __future__ import annotations

import numpy as np

from sae.architectures.base import Scoring, relu
from sae.spec import DictionarySpec

NAME = "standard"
EXTRA_TENSORS: tuple[str, ...] = ("b_enc",)


def encode(sae_in: np.ndarray, spec: DictionarySpec) -> np.ndarray:
    """sae_in: [T, d_in] (already normalised and b_dec-shifted) -> [T, d_sae]."""
    t = spec.tensors
    return relu(sae_in @ t["W_enc"] + t["b_enc"])


def scoring(spec: DictionarySpec) -> Scoring:
    return Scoring("plain", spec.tensors["W_enc"], spec.tensors["b_enc"])
