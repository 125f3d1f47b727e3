"""Gemma Scope (Google DeepMind): `params.npz` (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`,
`threshold`), or the later `params.safetensors` with lower-case names (`w_enc`, `w_dec`, ...). Always JumpReLU.

Gemma Scope's reference encode is `pre = x @ W_enc + b_enc; acts = (pre > threshold) * relu(pre)`: it does not subtract
`b_dec` from the input. There is no cfg; an optional `cfg.json` beside the weights may name `hook_name` and
`activation_convention` (the release trained on raw model activations, hence the `hf_raw` default). The npz release
documents its orientation; the lower-case safetensors exports exist in both orientations, so a square matrix there is
refused rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

from sae.formats.common import explicit_convention, read_cfg
from sae.spec import DictionarySpec, check_finite, oriented, require, vector
from sae.tensorfile import open_tensor_file

NAME = "gemmascope"
FILES = ("params.npz", "params.safetensors")
SIGNATURE = " or ".join(FILES)


def detect(folder: Path) -> bool:
    return any((folder / f).is_file() for f in FILES)


def read(folder: Path) -> DictionarySpec:
    npz = (folder / FILES[0]).is_file()
    tf = open_tensor_file(folder / (FILES[0] if npz else FILES[1]), NAME)
    names = {c: (c if npz else c.lower()) for c in ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")}
    require(tf, tuple(names.values()), "jumprelu")
    d_sae, d_in = tf.shape(names["b_enc"])[0], tf.shape(names["b_dec"])[0]
    tensors = {
        "W_enc": oriented(tf, names["W_enc"], (d_in, d_sae), stored_transposed=False, declared=npz),
        "W_dec": oriented(tf, names["W_dec"], (d_sae, d_in), stored_transposed=False, declared=npz),
        "b_enc": vector(tf, names["b_enc"], d_sae),
        "b_dec": vector(tf, names["b_dec"], d_in),
        "threshold": vector(tf, names["threshold"], d_sae),
    }
    check_finite(tf, tensors, names)
    cfg_path = folder / "cfg.json"
    cfg = read_cfg(cfg_path, NAME, required=False)
    return DictionarySpec(
        format=NAME, architecture="jumprelu", folder=folder, weights_file=tf.path, d_in=d_in, d_sae=d_sae,
        tensors=tensors, apply_b_dec_to_input=False, normalize_activations="none",
        hook_name=cfg.get("hook_name"),
        activation_convention=explicit_convention(cfg, NAME, cfg_path) or "hf_raw",
        cfg=cfg,
    )
