"""Every accepted input type yields the same stored row; top-k equals numpy's top-k by magnitude."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ingest.hooks import CaptureConfig, CapturePipeline, read_shards
from ingest.hooks.summary import snapshot, topk_by_magnitude, window_summary

torch = pytest.importorskip("torch")

ROW = np.random.default_rng(7).standard_normal(32).astype(np.float32)

INPUTS = {
    "list": lambda: ROW.tolist(),
    "tuple": lambda: tuple(ROW.tolist()),
    "numpy_f32": lambda: ROW.copy(),
    "numpy_f64_2d": lambda: ROW.astype(np.float64).reshape(1, -1),
    "torch_cpu": lambda: torch.from_numpy(ROW.copy()),
    "torch_cpu_bf16_2d": lambda: torch.from_numpy(ROW.copy()).to(torch.bfloat16).reshape(1, -1),
    "json_bytes": lambda: json.dumps(ROW.tolist()).encode(),
    "json_str": lambda: json.dumps(ROW.tolist()),
    "bytearray": lambda: bytearray(json.dumps(ROW.tolist()).encode()),
}


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_every_accepted_input_type_stores_the_same_row(kind: str) -> None:
    pipeline = CapturePipeline(CaptureConfig("m", "h", window_size=2))
    pipeline.capture_token("t", 0, INPUTS[kind](), layer=1)
    envelope = pipeline.flush("t")
    tokens, rows = read_shards(pipeline.store, envelope["shards"])[1]
    expected = ROW.astype(np.float32)
    if kind.endswith("bf16_2d"):
        expected = torch.from_numpy(ROW.copy()).to(torch.bfloat16).float().numpy()
    assert tokens.tolist() == [0]
    np.testing.assert_array_equal(rows[0], expected)
    assert envelope["d_model"] == 32


def test_snapshot_owns_its_data() -> None:
    """Model servers reuse buffers: a later in-place write must not change what was captured."""
    source = ROW.copy()
    tensor = torch.from_numpy(ROW.copy())
    values = ROW.tolist()
    snaps = [snapshot(source)[0], snapshot(tensor)[0], snapshot(values)[0]]
    source[:] = 0
    tensor.zero_()
    values[0] = 1e9
    for snap in snaps:
        np.testing.assert_array_equal(np.asarray(snap, dtype=np.float32), ROW)


@pytest.mark.parametrize("value", [object(), {"a": 1}, 3.0, np.zeros((2, 3), dtype=np.float32)])
def test_unsupported_inputs_raise(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        snapshot(value)


def _reference_topk(x: np.ndarray, k: int) -> np.ndarray:
    """Independent reference: full stable sort of -|x| per row, then scatter back into a zero vector."""
    k = min(k, x.shape[1])
    order = np.argsort(-np.abs(x), axis=1, kind="stable")[:, :k]
    dense = np.zeros_like(x)
    np.put_along_axis(dense, order, np.take_along_axis(x, order, axis=1), axis=1)
    return dense


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)),
                elements=st.floats(-1e4, 1e4, width=32)),
       k=st.integers(1, 50))
def test_topk_equals_numpy_topk_by_magnitude(x: np.ndarray, k: int) -> None:
    indices, values = topk_by_magnitude(x, k)
    kk = min(k, x.shape[1])
    assert indices.shape == values.shape == (x.shape[0], kk)
    assert indices.dtype == np.int32
    np.testing.assert_array_equal(values, np.take_along_axis(x, indices.astype(np.int64), axis=1))
    assert (np.diff(np.abs(values), axis=1) <= 0).all(), "ordered by magnitude, descending"
    reference = np.sort(np.abs(_reference_topk(x, kk)), axis=1)[:, ::-1][:, :kk]
    np.testing.assert_array_equal(np.abs(values), reference)
    assert all(len(set(row)) == kk for row in indices.tolist()), "no index repeated"


def test_topk_matches_reference_exactly_without_ties() -> None:
    x = np.random.default_rng(3).standard_normal((8, 4096)).astype(np.float32)
    indices, values = topk_by_magnitude(x, 256)
    dense = np.zeros_like(x)
    np.put_along_axis(dense, indices.astype(np.int64), values, axis=1)
    np.testing.assert_array_equal(dense, _reference_topk(x, 256))


def test_window_summary_mixes_rows_and_blocks() -> None:
    x = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
    d, values, indices = window_summary([x[0], x[1:4], x[4].tolist()], summary="dense", topk=4)
    assert d == 12 and indices is None
    np.testing.assert_array_equal(values, x)
    d, values, indices = window_summary([x[0], x[1:4], x[4].tolist()], summary="topk", topk=4)
    ref_idx, ref_val = topk_by_magnitude(x, 4)
    np.testing.assert_array_equal(indices, ref_idx)
    np.testing.assert_array_equal(values, ref_val)
