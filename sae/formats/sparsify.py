"""EleutherAI sparsify: `cfg.json` + `sae.safetensors` (`encoder.weight [d_sae, d_in]`, `encoder.bias`, `W_dec`,
`b_dec`), always TopK.

The oracle is sparsify's own `SparseCoder.encode`: `relu(F.linear(x - b_dec, encoder.weight, encoder.bias))` then the
top `k` (the subtraction is skipped for transcoders, whose input lives in a different space from `b_dec`). SAELens's
converter for these files sets `apply_b_dec_to_input` and the `W_dec` orientation differently, so it is not copied.
"""

from __future__ import annotations

from pathlib import Path

from sae.errors import DictionaryError
from sae.formats.common import cfg_int, explicit_convention, read_cfg
from sae.spec import DictionarySpec, check_finite, oriented, require, vector
from sae.tensorfile import open_tensor_file

NAME = "sparsify"
WEIGHTS = "sae.safetensors"
SIGNATURE = f"cfg.json + {WEIGHTS}"


def detect(folder: Path) -> bool:
    return (folder / WEIGHTS).is_file()


def read(folder: Path) -> DictionarySpec:
    cfg_path = folder / "cfg.json"
    cfg = read_cfg(cfg_path, NAME)
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise DictionaryError(f"activation {activation!r} is not supported (only 'topk')", format=NAME, file=cfg_path)
    k = cfg_int(cfg, "k", NAME, cfg_path)
    if k is None:
        raise DictionaryError("'k' is missing", format=NAME, file=cfg_path)
    tf = open_tensor_file(folder / WEIGHTS, NAME)
    require(tf, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), "topk")
    d_sae, d_in = tf.shape("encoder.bias")[0], tf.shape("b_dec")[0]
    if cfg.get("d_in") not in (None, d_in):
        raise DictionaryError(f"'d_in' is {cfg['d_in']} but b_dec has {d_in} entries", format=NAME, file=cfg_path)
    tensors = {
        "W_enc": oriented(tf, "encoder.weight", (d_in, d_sae), stored_transposed=True, declared=True),
        "b_enc": vector(tf, "encoder.bias", d_sae),
        "W_dec": oriented(tf, "W_dec", (d_sae, d_in), stored_transposed=False, declared=True),
        "b_dec": vector(tf, "b_dec", d_in),
    }
    check_finite(tf, tensors, {"W_enc": "encoder.weight", "b_enc": "encoder.bias"})
    transcode = bool(cfg.get("transcode", False))
    hook_name = cfg.get("hookpoint")
    return DictionarySpec(
        format=NAME, architecture="topk", folder=folder, weights_file=tf.path, d_in=d_in, d_sae=d_sae,
        tensors=tensors, apply_b_dec_to_input=not transcode, normalize_activations="none", k=k,
        hook_name=hook_name,
        activation_convention=explicit_convention(cfg, NAME, cfg_path) or "hf_raw",
        cfg=cfg,
    )
