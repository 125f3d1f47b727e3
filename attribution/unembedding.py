"""Loading the model's unembedding that a dictionary folder may ship next to its SAE weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from .inputs import Unembedding

FILENAME = "unembed.safetensors"


def load_unembedding(folder: str | Path) -> Unembedding | None:
    """Read `unembed.safetensors` (`W_U [d_model, vocab]`, optional `ln_f_weight`/`ln_f_bias`) if the folder has it.

    The norm epsilon is taken from the tensor file's metadata (`eps`) when present, else LayerNorm's usual 1e-5.
    Returns None when there is no file, so callers fall back to the cosine value.
    """
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    tensors = load_file(str(path))
    if "W_U" not in tensors:
        raise ValueError(f"{path} has no W_U tensor")
    w_u = tensors["W_U"].astype(np.float32, copy=False)
    weight, bias = tensors.get("ln_f_weight"), tensors.get("ln_f_bias")
    for name, vec in (("ln_f_weight", weight), ("ln_f_bias", bias)):
        if vec is not None and vec.shape != (w_u.shape[0],):
            raise ValueError(f"{path}: {name} has shape {vec.shape}, expected ({w_u.shape[0]},)")
    return Unembedding(
        W_U=w_u,
        ln_f_weight=None if weight is None else weight.astype(np.float32, copy=False),
        ln_f_bias=None if bias is None else bias.astype(np.float32, copy=False),
        eps=_eps_from_metadata(path),
    )


def _eps_from_metadata(path: Path) -> float:
    with path.open("rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    raw = (header.get("__metadata__") or {}).get("eps")
    return float(raw) if raw is not None else 1e-5
