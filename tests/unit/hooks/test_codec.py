"""Shards are self-describing and every codec decodes to the same values (float16 tolerance for binary)."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.hooks import COMPRESS_OPTIONS, Shard, decode_shard, encode_shard
from ingest.hooks.codec import MAGIC
from ingest.hooks.summary import topk_by_magnitude

META = {"trace_id": "t-1", "model_name": "gpt2", "model_hash": "abc", "hook_point": "resid_post",
        "convention": "hf_raw"}


def _shard(codec: str, values: np.ndarray, indices: np.ndarray | None = None, d_model: int | None = None) -> Shard:
    return Shard(layer=3, window=2, token_indices=list(range(32, 32 + len(values))),
                 d_model=d_model or values.shape[1], summary="dense" if indices is None else "topk",
                 values=values, indices=indices, codec=codec, meta=META)


@pytest.mark.parametrize("codec", COMPRESS_OPTIONS)
def test_dense_roundtrip_and_self_description(codec: str) -> None:
    values = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32) * 10
    shard = decode_shard(encode_shard(_shard(codec, values)))
    assert (shard.layer, shard.window, shard.d_model, shard.summary, shard.codec) == (3, 2, 64, "dense", codec)
    assert shard.token_indices.tolist() == list(range(32, 48))
    assert shard.meta == META
    assert shard.indices is None
    if codec == "json":
        np.testing.assert_array_equal(shard.values, values)
    else:
        np.testing.assert_array_equal(shard.values, values.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("codec", COMPRESS_OPTIONS)
def test_topk_roundtrip(codec: str) -> None:
    x = np.random.default_rng(1).standard_normal((16, 512)).astype(np.float32)
    indices, values = topk_by_magnitude(x, 32)
    shard = decode_shard(encode_shard(_shard(codec, values, indices, d_model=512)))
    assert shard.summary == "topk" and shard.d_model == 512
    np.testing.assert_array_equal(shard.indices, indices)
    np.testing.assert_allclose(shard.values, values, rtol=1e-3 if codec != "json" else 0, atol=0)


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 48)),
                     elements=st.floats(-6e4, 6e4, width=32)))
def test_binary_and_json_shards_decode_to_the_same_values(values: np.ndarray) -> None:
    as_json = decode_shard(encode_shard(_shard("json", values))).values
    for codec in ("f16-zstd", "f16-lz4"):
        binary = decode_shard(encode_shard(_shard(codec, values))).values
        np.testing.assert_allclose(binary, as_json, rtol=2 ** -10, atol=2 ** -24)


def test_float16_overflow_is_clipped_not_inf() -> None:
    values = np.array([[1e6, -1e6, 3.0]], dtype=np.float32)
    decoded = decode_shard(encode_shard(_shard("f16-zstd", values))).values
    assert np.isfinite(decoded).all()
    assert decoded.tolist() == [[65504.0, -65504.0, 3.0]]


def test_binary_header_is_readable_without_decompressing() -> None:
    blob = encode_shard(_shard("f16-lz4", np.ones((2, 4), dtype=np.float32)))
    assert blob[:4] == MAGIC
    (length,) = struct.unpack_from("<I", blob, 4)
    header = json.loads(blob[8:8 + length])
    assert header["codec"] == "f16-lz4" and header["layer"] == 3 and header["d_model"] == 4
    assert header["sections"] == [["token_indices", "<i4", [2]], ["values", "<f2", [2, 4]]]


def test_binary_is_smaller_than_json() -> None:
    values = np.random.default_rng(2).standard_normal((16, 4096)).astype(np.float32)
    sizes = {codec: len(encode_shard(_shard(codec, values))) for codec in COMPRESS_OPTIONS}
    assert sizes["f16-zstd"] < 16 * 4096 * 2 * 1.01 < sizes["json"] / 5


@pytest.mark.parametrize("blob", [b"", b"garbage", b'{"format": "other"}', MAGIC + b"\x00"])
def test_foreign_bytes_are_rejected(blob: bytes) -> None:
    with pytest.raises((ValueError, KeyError, struct.error)):
        decode_shard(blob)
