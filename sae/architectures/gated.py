"""Gated SAE (SAELens `GatedSAE`): a gate `sae_in @ W_enc + b_gate > 0` decides which features fire, a magnitude path
`relu(sae_in @ (W_enc * exp(r_mag)) + b_mag)` decides how strongly. The two paths share W_enc, so the fast paths run
one GEMM `s = sae_in @ W_enc` and derive both (the magnitude as `s * exp(r_mag) + b_mag`)."""

from __future__ import annotations

import numpy as np

from sae.architectures.base import Scoring, relu
from sae.spec import DictionarySpec

NAME = "gated"
EXTRA_TENSORS: tuple[str, ...] = ("b_gate", "r_mag", "b_mag")


def encode(sae_in: np.ndarray, spec: DictionarySpec) -> np.ndarray:
    t = spec.tensors
    active = (sae_in @ t["W_enc"] + t["b_gate"] > 0).astype(np.float32)
    magnitude = relu(sae_in @ (t["W_enc"] * np.exp(t["r_mag"])) + t["b_mag"])
    return active * magnitude


def scoring(spec: DictionarySpec) -> Scoring:
    t = spec.tensors
    return Scoring(
        "gated", t["W_enc"], np.zeros(spec.d_sae, np.float32),
        gate_bias=np.asarray(t["b_gate"], np.float32), mag_scale=np.exp(t["r_mag"]).astype(np.float32),
        mag_bias=np.asarray(t["b_mag"], np.float32),
    )
