"""Reading shards back: what the explainer's load stage calls for an `activations` event that names shards."""
from __future__ import annotations

from typing import Any, Sequence

from .codec import decode_shard

_MGET_CHUNK = 256


class ShardsMissing(KeyError):
    """Some shard keys are gone (TTL expired, Redis flushed, never written). `keys` lists them; the message is
    what the trace's failure reason should say."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        shown = ", ".join(self.keys[:20]) + (f", ... ({len(self.keys)} in all)" if len(self.keys) > 20 else "")
        super().__init__(f"{len(self.keys)} activation shard(s) missing or expired: {shown}")

    def __str__(self) -> str:
        return str(self.args[0])


def read_shards(client: Any, keys: Sequence[str]) -> dict[int, tuple[Any, Any]]:
    """Fetch and decode shards: layer → (token_indices int64 [T] ascending, rows float32 [T, d_model]).

    `client` is a `redis.Redis` (binary responses, i.e. without `decode_responses`) or anything with
    `mget(keys) -> list[bytes | None]` such as `InMemoryStore`. Top-k shards are scattered into zero vectors of
    width d_model, so callers always get dense rows. A token present in several shards of one layer keeps the row
    of the last key listed. Raises `ShardsMissing` before decoding anything if a key is absent.
    """
    import numpy as np

    keys = list(keys)
    blobs: list[Any] = []
    for start in range(0, len(keys), _MGET_CHUNK):
        blobs.extend(client.mget(keys[start:start + _MGET_CHUNK]))
    missing = [key for key, blob in zip(keys, blobs) if blob is None]
    if missing:
        raise ShardsMissing(missing)
    per_layer: dict[int, list[tuple[Any, Any]]] = {}
    widths: dict[int, int] = {}
    for key, blob in zip(keys, blobs):
        shard = decode_shard(blob)
        if widths.setdefault(shard.layer, shard.d_model) != shard.d_model:
            raise ValueError(f"shard {key}: d_model {shard.d_model} != {widths[shard.layer]} of layer {shard.layer}")
        rows = shard.values
        if shard.indices is not None:
            rows = np.zeros((len(shard.token_indices), shard.d_model), dtype=np.float32)
            np.put_along_axis(rows, shard.indices, shard.values, axis=1)
        per_layer.setdefault(shard.layer, []).append((shard.token_indices, rows))
    return {layer: _merge(parts) for layer, parts in sorted(per_layer.items())}


def _merge(parts: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Concatenate, sort by token index (stable), keep the last row of duplicated tokens."""
    import numpy as np

    tokens = np.concatenate([t for t, _ in parts]).astype(np.int64)
    rows = np.concatenate([r for _, r in parts], axis=0).astype(np.float32, copy=False)
    order = np.argsort(tokens, kind="stable")
    tokens, rows = tokens[order], rows[order]
    keep = np.append(tokens[1:] != tokens[:-1], True)
    return tokens[keep], rows[keep]
