"""Helpers shared by the format readers: cfg.json parsing and activation-convention inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sae.errors import DictionaryError
from sae.spec import CONVENTIONS


def read_cfg(path: Path, fmt: str, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise DictionaryError("file is missing", format=fmt, file=path)
        return {}
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DictionaryError(f"is not valid JSON ({exc})", format=fmt, file=path) from exc
    if not isinstance(cfg, dict):
        raise DictionaryError("must hold a JSON object", format=fmt, file=path)
    return cfg


def cfg_int(cfg: dict[str, Any], key: str, fmt: str, path: Path) -> int | None:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DictionaryError(f"'{key}' must be a positive integer, got {value!r}", format=fmt, file=path)
    return value


def explicit_convention(cfg: dict[str, Any], fmt: str, path: Path) -> str | None:
    """An `activation_convention` written into cfg.json by whoever produced the dictionary wins over inference."""
    value = cfg.get("activation_convention")
    if value is None:
        return None
    if value not in CONVENTIONS:
        raise DictionaryError(f"'activation_convention' must be one of {CONVENTIONS}, got {value!r}",
                              format=fmt, file=path)
    return value


def transformer_lens_convention(hook_name: str | None, from_pretrained_kwargs: dict[str, Any] | None) -> str:
    """Which activations a TransformerLens-trained dictionary expects.

    TransformerLens hook names start with `blocks.` or `hook_`. Its `from_pretrained` centres the writing weights by
    default, so every residual-stream vector it produces is the raw Hugging Face vector minus its per-token mean;
    a dictionary trained with `center_writing_weights=False` (or on a model TransformerLens cannot centre) sees raw
    activations. Any other hook name is a Hugging Face module path, hence raw.
    """
    if not hook_name:
        return "unknown"
    if not (hook_name.startswith("blocks.") or hook_name.startswith("hook_")):
        return "hf_raw"
    kwargs = from_pretrained_kwargs or {}
    if kwargs.get("center_writing_weights") is False:
        return "hf_raw"
    return "transformer_lens"
