from __future__ import annotations

import numpy as np
import pytest

from ingest.hooks import InMemoryStore, Shard, ShardsMissing, encode_shard, read_shards

META = {"trace_id": "t", "model_name": "m", "model_hash": "h", "hook_point": "resid_post", "convention": "hf_raw"}


def _put(store: InMemoryStore, key: str, layer: int, tokens: list[int], values: np.ndarray, codec: str = "json",
         indices: np.ndarray | None = None, d_model: int | None = None) -> None:
    store.data[key] = encode_shard(Shard(layer=layer, window=0, token_indices=tokens,
                                         d_model=d_model or values.shape[1],
                                         summary="dense" if indices is None else "topk", values=values,
                                         indices=indices, codec=codec, meta=META))


def test_rows_are_sorted_and_the_last_duplicate_wins() -> None:
    store = InMemoryStore()
    _put(store, "a", 0, [5, 6], np.full((2, 3), 1.0, dtype=np.float32))
    _put(store, "b", 0, [1, 6], np.full((2, 3), 2.0, dtype=np.float32), codec="f16-zstd")
    tokens, rows = read_shards(store, ["a", "b"])[0]
    assert tokens.dtype == np.int64 and rows.dtype == np.float32
    assert tokens.tolist() == [1, 5, 6]
    assert rows[:, 0].tolist() == [2.0, 1.0, 2.0]


def test_topk_shards_are_scattered_into_zero_vectors() -> None:
    store = InMemoryStore()
    _put(store, "k", 2, [0], np.array([[-4.0, 2.0]], dtype=np.float32), codec="f16-lz4",
         indices=np.array([[3, 0]], dtype=np.int32), d_model=5)
    tokens, rows = read_shards(store, ["k"])[2]
    assert rows.tolist() == [[2.0, 0.0, 0.0, -4.0, 0.0]]


def test_missing_keys_are_all_listed() -> None:
    store = InMemoryStore()
    _put(store, "present", 0, [0], np.ones((1, 2), dtype=np.float32))
    with pytest.raises(ShardsMissing) as info:
        read_shards(store, ["gone1", "present", "gone2"])
    assert info.value.keys == ["gone1", "gone2"]
    assert "gone1" in str(info.value) and "gone2" in str(info.value)


def test_width_mismatch_within_a_layer_is_an_error() -> None:
    store = InMemoryStore()
    _put(store, "a", 0, [0], np.ones((1, 2), dtype=np.float32))
    _put(store, "b", 0, [1], np.ones((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="d_model"):
        read_shards(store, ["a", "b"])
