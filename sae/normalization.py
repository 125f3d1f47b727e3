"""Input normalisation named by `normalize_activations`, exactly as SAELens applies it inside `encode`.

- `none`: identity.
- `expected_average_only_in`: identity at encode time. SAELens trains on activations scaled to an expected norm of
  sqrt(d_in) and folds that scalar into the weights when it is known (the format reader does the same).
- `layer_norm`: per token, subtract the mean and divide by (std + eps) with the *unbiased* std, eps = 1e-5 —
  SAELens uses `torch.std` (Bessel-corrected) and adds eps to the std, not to the variance.

Anything else (including SAELens's `constant_norm_rescale` and `covariance_whitening`) is refused, so a dictionary is
never decoded with a normalisation it was not trained with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sae.errors import DictionaryError

SUPPORTED = ("none", "expected_average_only_in", "layer_norm")
LAYER_NORM_EPS = np.float32(1e-5)


def check_normalization(value: object, *, format: str, file: Path) -> str:
    if value is None:
        return "none"
    if value not in SUPPORTED:
        raise DictionaryError(f"normalize_activations={value!r} is not supported (use one of {SUPPORTED})",
                              format=format, file=file)
    return str(value)


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """x: [T, d_in] float32 -> normalised [T, d_in] float32 (a new array for layer_norm, `x` itself otherwise)."""
    if mode != "layer_norm":
        return x
    centred = x - x.mean(axis=-1, keepdims=True, dtype=np.float32)
    std = centred.std(axis=-1, keepdims=True, ddof=1, dtype=np.float32)
    return centred / (std + LAYER_NORM_EPS)
