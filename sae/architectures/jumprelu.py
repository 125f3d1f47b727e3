"""JumpReLU SAE (SAELens `JumpReLUSAE`, Gemma Scope): `relu(pre) * (pre > threshold)` with `pre = sae_in @ W_enc +
b_enc`. A learned per-feature threshold removes the small activations a ReLU would let through."""

from __future__ import annotations

import numpy as np

from sae.architectures.base import Scoring, relu
from sae.spec import DictionarySpec

NAME = "jumprelu"
EXTRA_TENSORS: tuple[str, ...] = ("b_enc", "threshold")


def encode(sae_in: np.ndarray, spec: DictionarySpec) -> np.ndarray:
    t = spec.tensors
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    return relu(pre) * (pre > t["threshold"]).astype(np.float32)


def scoring(spec: DictionarySpec) -> Scoring:
    t = spec.tensors
    return Scoring("threshold", t["W_enc"], t["b_enc"], threshold=np.asarray(t["threshold"], np.float32))
