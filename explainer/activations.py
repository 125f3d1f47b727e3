"""Decoding of inline activation arrays carried by `activations` events.

Used by the load stage, and by `/ingest` validation (so a bad array is a 400, never a failed trace later): the
ingest app calls into explainer, never the other way round.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

MAX_ELEMENTS = 64 * 1024 * 1024
F16_MAX = float(np.finfo(np.float16).max)
F32_MAX = float(np.finfo(np.float32).max)


class ActivationDataError(ValueError):
    """The inline array does not match its declared encoding, shape or value range."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def decode_inline_activations(payload: dict[str, Any]) -> np.ndarray:
    """Return the `[T, d]` float32 array of an inline `activations` payload, or raise `ActivationDataError`."""
    rows, dim = (int(v) for v in payload["shape"])
    if rows * dim > MAX_ELEMENTS:
        raise ActivationDataError("payload.shape", f"shape {rows}x{dim} exceeds {MAX_ELEMENTS} elements")
    encoding = payload["encoding"]
    data = payload["data"]
    if encoding == "f16-base64":
        array = _decode_f16_base64(data, rows, dim)
    else:
        array = _decode_json_rows(data, rows, dim)
    if not np.isfinite(array).all():
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ActivationDataError("payload.data", f"activations contain NaN or Inf (first at {list(position)}); "
                                                  f"float16 values must be finite, |x| <= {F16_MAX:g}")
    return array


def _decode_f16_base64(data: Any, rows: int, dim: int) -> np.ndarray:
    if not isinstance(data, str):
        raise ActivationDataError("payload.data", "encoding f16-base64 needs a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ActivationDataError("payload.data", f"invalid base64: {exc}") from None
    expected = rows * dim * 2
    if len(raw) != expected:
        raise ActivationDataError(
            "payload.data",
            f"{len(raw)} bytes of float16 data do not match shape [{rows}, {dim}] ({expected} bytes expected)",
        )
    return np.frombuffer(raw, dtype="<f2").reshape(rows, dim).astype(np.float32)


def _decode_json_rows(data: Any, rows: int, dim: int) -> np.ndarray:
    if not isinstance(data, list):
        raise ActivationDataError("payload.data", "encoding json needs nested lists of numbers")
    try:
        array = np.array(data)
    except ValueError:
        raise ActivationDataError("payload.data", "data is not a rectangular [T, d] array") from None
    if array.dtype.kind not in "iuf":
        raise ActivationDataError("payload.data", f"data must hold numbers only, found dtype '{array.dtype}'")
    if array.shape != (rows, dim):
        raise ActivationDataError("payload.data", f"data has shape {list(array.shape)}, declared [{rows}, {dim}]")
    beyond = np.abs(array) > F32_MAX
    if beyond.any():
        position = tuple(int(i) for i in np.argwhere(beyond)[0])
        raise ActivationDataError("payload.data", f"value {array[position]:g} at {list(position)} is out of float32 "
                                                  f"range (|x| <= {F32_MAX:g})")
    return array.astype(np.float32)
