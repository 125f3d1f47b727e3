"""SAELens: `cfg.json` + `sae_weights.safetensors` (`W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec`,
plus `threshold` for JumpReLU and `b_gate`, `r_mag`, `b_mag` for gated).

Both cfg generations are read the way SAELens reads them: 6.x keeps `hook_name` under `metadata`; older files are flat,
say `hook_point`, and mark TopK as `activation_fn_str: "topk"` with `activation_fn_kwargs.k`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from sae.architectures import get_architecture
from sae.errors import DictionaryError
from sae.formats.common import cfg_int, explicit_convention, read_cfg, transformer_lens_convention
from sae.normalization import check_normalization
from sae.spec import DictionarySpec, check_finite, oriented, require, vector
from sae.tensorfile import open_tensor_file

NAME = "saelens"
CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SIGNATURE = f"{CFG} + {WEIGHTS}"

log = logging.getLogger(__name__)


def detect(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file()


def _architecture(cfg: dict[str, Any], path: Path) -> tuple[str, int | None]:
    arch = cfg.get("architecture", "standard")
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
    k = cfg_int(cfg, "k", NAME, path)
    if arch == "standard" and activation == "topk":
        arch, k = "topk", cfg_int(cfg.get("activation_fn_kwargs") or {}, "k", NAME, path)
    if arch == "topk" and k is None:
        raise DictionaryError("architecture 'topk' needs 'k'", format=NAME, file=path)
    return arch, k


def _fold_norm_scaling(tensors: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """SAELens's `fold_activation_norm_scaling_factor`: the encoder absorbs the scale, the decoder undoes it."""
    s = np.float32(factor)
    return {**tensors, "W_enc": tensors["W_enc"] * s, "W_dec": tensors["W_dec"] / s, "b_dec": tensors["b_dec"] / s}


def read(folder: Path) -> DictionarySpec:
    cfg_path = folder / CFG
    cfg = read_cfg(cfg_path, NAME)
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    arch_name, k = _architecture(cfg, cfg_path)
    architecture = get_architecture(arch_name, format=NAME, file=cfg_path)
    normalize = check_normalization(cfg.get("normalize_activations", "none"), format=NAME, file=cfg_path)

    tf = open_tensor_file(folder / WEIGHTS, NAME)
    require(tf, ("W_enc", "W_dec", "b_dec") + architecture.EXTRA_TENSORS, arch_name)
    d_in = cfg_int(cfg, "d_in", NAME, cfg_path) or tf.shape("b_dec")[0]
    d_sae = cfg_int(cfg, "d_sae", NAME, cfg_path) or tf.shape("W_dec")[0]
    tensors = {
        "W_enc": oriented(tf, "W_enc", (d_in, d_sae), stored_transposed=False, declared=True),
        "W_dec": oriented(tf, "W_dec", (d_sae, d_in), stored_transposed=False, declared=True),
        "b_dec": vector(tf, "b_dec", d_in),
    }
    for name in architecture.EXTRA_TENSORS:
        tensors[name] = vector(tf, name, d_sae)
    check_finite(tf, tensors, {})

    if normalize == "expected_average_only_in":
        factor = cfg.get("norm_scaling_factor")
        if factor is not None:
            if not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 0:
                raise DictionaryError(f"'norm_scaling_factor' must be a positive number, got {factor!r}",
                                      format=NAME, file=cfg_path)
            tensors = _fold_norm_scaling(tensors, float(factor))
            log.info("sae: %s: folded norm_scaling_factor %.6g into W_enc/W_dec/b_dec (as SAELens does)",
                     folder, factor)
        else:
            log.info("sae: %s: normalize_activations=expected_average_only_in without a scaling factor; encode is "
                     "unchanged (as in SAELens)", folder)

    hook_name = metadata.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    tl_kwargs = metadata.get("model_from_pretrained_kwargs") or cfg.get("model_from_pretrained_kwargs")
    convention = explicit_convention(cfg, NAME, cfg_path) or transformer_lens_convention(hook_name, tl_kwargs)
    return DictionarySpec(
        format=NAME, architecture=architecture.NAME, folder=folder, weights_file=tf.path, d_in=d_in, d_sae=d_sae,
        tensors=tensors, apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        normalize_activations=normalize, k=k,
        rescale_acts_by_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm", False)),
        hook_name=hook_name, activation_convention=convention, cfg=cfg,
    )


def write_saelens(folder: str | Path, tensors: dict[str, np.ndarray], cfg_overrides: dict[str, Any] | None = None
                  ) -> Path:
    """Write a SAELens 6.x folder: `cfg.json` (with `metadata`) + `sae_weights.safetensors`, float32.

    `tensors` holds W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_dec and the architecture's extras; `cfg_overrides`
    is merged into the cfg (a `metadata` dict is merged into the metadata). SAELens's own `SAE.load_from_disk` reads it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = np.shape(tensors["W_enc"])
    cfg: dict[str, Any] = {
        "architecture": "standard", "d_in": int(d_in), "d_sae": int(d_sae), "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.0.0", "model_name": None, "hook_name": None},
    }
    overrides = dict(cfg_overrides or {})
    if isinstance(overrides.get("metadata"), dict):
        cfg["metadata"].update(overrides.pop("metadata"))
    cfg.update(overrides)
    save_file({name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()},
              str(folder / WEIGHTS))
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder
