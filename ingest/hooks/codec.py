"""Shard encoding: one window of one layer, self-describing so a reader needs no capture config.

Two families, told apart by their first bytes:
- `json`: a single JSON object `{"format": "hg-shard", "v": 1, "codec": "json", ...header, "token_indices",
  "values", "indices"?}`; readable with `redis-cli GET`, about 20 bytes per float.
- binary (`f16-zstd`, `f16-lz4`): `b"HGS1"` + uint32 LE header length + header JSON + one compressed frame holding
  the sections the header lists (token indices int32, values float16, top-k indices int32), little-endian, C order.
  float16 halves float32 and is the precision SAE decode tolerates; values beyond ±65504 are clipped rather than
  becoming inf, because an inf would fail the trace downstream.
"""
from __future__ import annotations

import json
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

try:
    import numpy as np
except ImportError:
    np = None  # type: ignore[assignment]

MAGIC = b"HGS1"
FORMAT = "hg-shard"
VERSION = 1
_F16_MAX = 65504.0


@dataclass(frozen=True)
class Shard:
    """A decoded shard. `values: [T, d]` (dense) or `[T, k]` with `indices: [T, k]` (topk); `meta` holds the
    provenance fields (trace_id, model_name, model_hash, hook_point, convention)."""

    layer: int
    window: int
    token_indices: Any
    d_model: int
    summary: str
    values: Any
    indices: Any
    codec: str
    meta: dict[str, Any]


def encode_shard(shard: Shard) -> bytes:
    """Serialise with `shard.codec`. Runs on the writer thread, never on the model's."""
    header = {"format": FORMAT, "v": VERSION, "codec": shard.codec, "layer": int(shard.layer),
              "window": int(shard.window), "d_model": int(shard.d_model), "summary": shard.summary,
              "tokens": len(shard.token_indices), **shard.meta}
    if shard.codec == "json":
        return _encode_json(header, shard)
    return _encode_binary(header, shard)


def _encode_json(header: dict[str, Any], shard: Shard) -> bytes:
    """Row by row with a GIL yield between rows: one `json.dumps` of a 16x4096 window holds the GIL ~80 ms in C,
    which would stall the model thread; per row it is a few ms, like any Python thread's switch interval."""
    parts = [json.dumps(header)[:-1], ', "token_indices": ', json.dumps([int(t) for t in shard.token_indices]),
             ', "values": [']
    parts.append(", ".join(_dumps_rows(shard.values)))
    parts.append("]")
    if shard.indices is not None:
        parts.extend([', "indices": ', json.dumps(_tolist(shard.indices))])
    parts.append("}")
    return "".join(parts).encode()


def _dumps_rows(rows: Any) -> list[str]:
    out = []
    for row in rows:
        out.append(json.dumps(_tolist(row)))
        time.sleep(0)
    return out


def _tolist(array: Any) -> list[Any]:
    return array.tolist() if hasattr(array, "tolist") else list(array)


def _encode_binary(header: dict[str, Any], shard: Shard) -> bytes:
    if np is None:
        raise RuntimeError(f"codec {shard.codec!r} needs numpy; use compress='json'")
    sections = [("token_indices", np.asarray(shard.token_indices, dtype="<i4")),
                ("values", np.clip(np.asarray(shard.values, dtype=np.float32), -_F16_MAX, _F16_MAX).astype("<f2"))]
    if shard.indices is not None:
        sections.append(("indices", np.asarray(shard.indices, dtype="<i4")))
    header["sections"] = [[name, array.dtype.str, list(array.shape)] for name, array in sections]
    raw = b"".join(np.ascontiguousarray(array).tobytes() for _, array in sections)
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + _compress(shard.codec, raw)


_LOCAL = threading.local()


def _compress(codec: str, raw: bytes) -> bytes:
    if codec == "f16-zstd":
        # one compressor per thread (an instance is not thread-safe): building its context per shard held the GIL
        # ~15 µs per shard beside the model thread; the frames are the same bytes
        compressor = getattr(_LOCAL, "zstd", None)
        if compressor is None:
            import zstandard
            compressor = _LOCAL.zstd = zstandard.ZstdCompressor(level=3)
        return compressor.compress(raw)
    if codec == "f16-lz4":
        import lz4.frame
        return lz4.frame.compress(raw)
    raise ValueError(f"unknown codec {codec!r}")


def _decompress(codec: str, frame: bytes) -> bytes:
    if codec == "f16-zstd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(frame)
    if codec == "f16-lz4":
        import lz4.frame
        return lz4.frame.decompress(frame)
    raise ValueError(f"unknown codec {codec!r}")


_HEADER_FIELDS = ("format", "v", "codec", "layer", "window", "d_model", "summary", "tokens", "sections",
                  "token_indices", "values", "indices")


def decode_shard(blob: bytes) -> Shard:
    """Parse any shard (codec read from the blob). Returns numpy arrays: token_indices int64, values float32,
    indices int64 or None. Raises ValueError for bytes that are not a shard."""
    if blob[:4] == MAGIC:
        (length,) = struct.unpack_from("<I", blob, 4)
        header = json.loads(blob[8:8 + length])
        raw = _decompress(header["codec"], blob[8 + length:])
        arrays, offset = {}, 0
        for name, dtype, shape in header["sections"]:
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += count * np.dtype(dtype).itemsize
        if offset != len(raw):
            raise ValueError(f"shard payload has {len(raw)} bytes, its header describes {offset}")
    elif blob[:1] == b"{":
        header = json.loads(blob)
        arrays = {name: header[name] for name in ("token_indices", "values", "indices") if name in header}
    else:
        raise ValueError("not a hypergraph-sidecar shard (unknown leading bytes)")
    if header.get("format") != FORMAT:
        raise ValueError(f"not a hypergraph-sidecar shard (format {header.get('format')!r})")
    tokens = np.asarray(arrays["token_indices"], dtype=np.int64).reshape(-1)
    values = np.asarray(arrays["values"], dtype=np.float32).reshape(len(tokens), -1)
    if header["summary"] == "dense" and values.shape[1] != int(header["d_model"]):
        raise ValueError(f"dense shard rows have width {values.shape[1]}, header says d_model {header['d_model']}")
    indices = arrays.get("indices")
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64).reshape(values.shape)
    return Shard(layer=int(header["layer"]), window=int(header["window"]), token_indices=tokens,
                 d_model=int(header["d_model"]), summary=header["summary"], values=values, indices=indices,
                 codec=header["codec"], meta={k: v for k, v in header.items() if k not in _HEADER_FIELDS})
