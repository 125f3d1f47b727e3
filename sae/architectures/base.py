"""What the fast top-k paths need from an architecture: one GEMM plus one elementwise step.

Every supported architecture computes its post-activations as an elementwise function of a single affine map
`s = sae_in @ W + bias`, which is what lets the CPU and torch paths select top-k features tile by tile without ever
materialising the dense `[T, d_sae]` activations. `Scoring` describes that map and step declaratively so each backend
(numpy, torch) implements the three steps once:

- `plain`: score = s; features with score <= 0 are inactive (ReLU, and TopK which applies ReLU after selection).
- `threshold`: score = s where s > threshold else 0 (JumpReLU).
- `gated`: s = sae_in @ W_enc; score = s * exp(r_mag) + b_mag where s + b_gate > 0 else 0 (gated, which shares W_enc
  between the gate and the magnitude path, so one GEMM serves both).

A score that is <= 0 is an inactive feature: returned with value 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scoring:
    kind: str
    W: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray | None = None
    gate_bias: np.ndarray | None = None
    mag_scale: np.ndarray | None = None
    mag_bias: np.ndarray | None = None
    k_cap: int | None = None

    def activate(self, s: np.ndarray, cols: slice = slice(None)) -> np.ndarray:
        """In place on a block s = x @ W + bias covering feature columns `cols`; returns the block."""
        if self.kind == "threshold":
            np.multiply(s, s > self.threshold[cols], out=s)
        elif self.kind == "gated":
            gate = (s + self.gate_bias[cols]) > 0
            np.multiply(s, self.mag_scale[cols], out=s)
            np.add(s, self.mag_bias[cols], out=s)
            np.multiply(s, gate, out=s)
        return s


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.float32(0.0))
