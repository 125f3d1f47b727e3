"""What a format reader hands to the rest of the library: canonical tensors plus the encode settings.

Every format is reduced to the same vocabulary so that architectures never know where their weights came from:
`W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]`, and per architecture `threshold`,
`b_gate`, `r_mag`, `b_mag` (all `[d_sae]`). Orientation is fixed here, once, by shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sae.tensorfile import TensorFile

log = logging.getLogger(__name__)

CONVENTIONS = ("hf_raw", "transformer_lens", "unknown")


@dataclass(frozen=True)
class DictionarySpec:
    """One dictionary as read from disk, already validated (shapes, finiteness, known settings)."""

    format: str
    architecture: str
    folder: Path
    weights_file: Path
    d_in: int
    d_sae: int
    tensors: dict[str, np.ndarray]
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    k: int | None = None
    rescale_acts_by_decoder_norm: bool = False
    hook_name: str | None = None
    activation_convention: str = "unknown"
    cfg: dict[str, Any] = field(default_factory=dict)


def oriented(
    tf: TensorFile,
    name: str,
    canonical: tuple[int, int],
    *,
    stored_transposed: bool,
    declared: bool,
    label: str | None = None,
) -> np.ndarray:
    """Return matrix `name` of `tf` in `canonical` orientation, detecting a transposed file by its shape.

    `stored_transposed` is the orientation the format documents; a non-square matrix stored the other way round (some
    exporters do that) is accepted and logged. A square matrix carries no evidence, so it is accepted only when the
    format `declared` its orientation; otherwise guessing would silently swap encoder and decoder semantics.
    """
    label = label or name
    shape = tf.shape(name)
    rows, cols = canonical
    documented = (cols, rows) if stored_transposed else (rows, cols)
    if shape not in ((rows, cols), (cols, rows)):
        raise tf.error(f"has shape {list(shape)}, expected {list(documented)}", tensor=name)
    if rows == cols and not declared:
        raise tf.error(
            f"is square {list(shape)}: the {tf.format} format does not say whether it is [d_in, d_sae] or "
            "[d_sae, d_in], so the orientation is ambiguous; store it as documented and add a cfg.json naming it",
            tensor=name,
        )
    array = tf.array(name)
    if rows == cols:
        return array.T if stored_transposed else array
    if shape != documented:
        log.info("sae: %s %s/%s stored transposed %s; using its transpose", tf.format, tf.path, name, list(shape))
    return array if shape == (rows, cols) else array.T


def vector(tf: TensorFile, name: str, length: int) -> np.ndarray:
    shape = tf.shape(name)
    if shape != (length,):
        raise tf.error(f"has shape {list(shape)}, expected [{length}]", tensor=name)
    return tf.array(name)


def require(tf: TensorFile, names: tuple[str, ...], architecture: str) -> None:
    for name in names:
        if name not in tf.names:
            raise tf.error(f"is missing (needed by the {architecture} architecture; file has "
                           f"{sorted(tf.names)})", tensor=name)


def check_finite(tf: TensorFile, tensors: dict[str, np.ndarray], names: dict[str, str]) -> None:
    """Refuse NaN/Inf anywhere: one bad weight would poison every token's features silently.

    Scanned in row chunks so a memory-mapped matrix is streamed through the page cache, not copied.
    """
    for canonical, array in tensors.items():
        flat = array.reshape(array.shape[0], -1) if array.ndim == 2 else array.reshape(1, -1)
        step = max(1, (1 << 22) // max(1, flat.shape[1]))
        for start in range(0, flat.shape[0], step):
            chunk = flat[start:start + step]
            if not np.isfinite(chunk).all():
                bad = int(np.count_nonzero(~np.isfinite(flat)))
                raise tf.error(f"has {bad} non-finite values (NaN or Inf)", tensor=names.get(canonical, canonical))
