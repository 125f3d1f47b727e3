"""Writers of valid dictionary folders, for tests and for generating the sample dictionary.

They write exactly what the real libraries write (SAELens 6.x cfg.json with `metadata`, sparsify's `cfg.json` +
`sae.safetensors`, Gemma Scope's `params.npz`), so the readers are exercised on the real layouts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from sae.formats.saelens import write_saelens


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def write_saelens_dictionary(
    folder: str | Path,
    W_enc: np.ndarray,
    b_enc: np.ndarray | None,
    W_dec: np.ndarray,
    b_dec: np.ndarray,
    cfg_overrides: dict[str, Any] | None = None,
    extra_tensors: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write `cfg.json` + `sae_weights.safetensors` (W_enc [d_in, d_sae], W_dec [d_sae, d_in]) and return the folder.

    `cfg_overrides` is merged into the cfg (e.g. {"architecture": "topk", "k": 32} or {"metadata": {"hook_name": ..}});
    `extra_tensors` adds threshold / b_gate / r_mag / b_mag for the other architectures (gated passes b_enc=None).
    """
    tensors = {"W_enc": W_enc, "W_dec": W_dec, "b_dec": b_dec}
    if b_enc is not None:
        tensors["b_enc"] = b_enc
    tensors.update(extra_tensors or {})
    return write_saelens(folder, tensors, cfg_overrides)


def write_sparsify_dictionary(
    folder: str | Path,
    encoder_weight: np.ndarray,
    encoder_bias: np.ndarray,
    W_dec: np.ndarray,
    b_dec: np.ndarray,
    k: int,
    cfg_overrides: dict[str, Any] | None = None,
) -> Path:
    """sparsify layout: encoder.weight [d_sae, d_in] (nn.Linear), W_dec [d_sae, d_in]."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d_sae, d_in = np.shape(encoder_weight)
    save_file({"encoder.weight": _f32(encoder_weight), "encoder.bias": _f32(encoder_bias), "W_dec": _f32(W_dec),
               "b_dec": _f32(b_dec)}, str(folder / "sae.safetensors"))
    cfg = {"expansion_factor": max(1, d_sae // d_in), "normalize_decoder": True, "num_latents": int(d_sae), "k": k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": int(d_in)}
    cfg.update(cfg_overrides or {})
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return folder


def write_gemmascope_dictionary(
    folder: str | Path,
    W_enc: np.ndarray,
    W_dec: np.ndarray,
    b_enc: np.ndarray,
    b_dec: np.ndarray,
    threshold: np.ndarray,
    *,
    safetensors: bool = False,
    transpose_enc: bool = False,
) -> Path:
    """Gemma Scope `params.npz`, or the lower-case `params.safetensors` (optionally with W_enc stored [d_sae, d_in])."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"W_enc": _f32(W_enc.T if transpose_enc else W_enc), "W_dec": _f32(W_dec), "b_enc": _f32(b_enc),
              "b_dec": _f32(b_dec), "threshold": _f32(threshold)}
    if safetensors:
        save_file({name.lower(): a for name, a in arrays.items()}, str(folder / "params.safetensors"))
    else:
        np.savez(folder / "params.npz", **arrays)
    return folder


def random_weights(d_in: int, d_sae: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights shaped like a trained SAE (unit-norm decoder rows, encoder ~ decoder transpose)."""
    rng = np.random.default_rng(seed)
    W_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    W_enc = (W_dec.T + 0.1 * rng.standard_normal((d_in, d_sae))).astype(np.float32)
    return {
        "W_enc": W_enc, "W_dec": W_dec,
        "b_enc": (-0.1 + 0.05 * rng.standard_normal(d_sae)).astype(np.float32),
        "b_dec": (0.1 * rng.standard_normal(d_in)).astype(np.float32),
    }
