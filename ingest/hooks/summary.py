"""Per-token summaries: the cheap snapshot taken on the caller's thread and the window summary built off it.

The split matters for latency: `snapshot()` runs inside the model server's forward pass, so it only takes an owned
copy (a memcpy for arrays, a shallow list copy, nothing for immutable bytes). Parsing, float conversion and top-k
selection happen later in `window_summary()` on the store's writer thread.

numpy and torch are optional: without numpy, `list[float]` and JSON bytes still work (pure-Python path, json codec).
"""
from __future__ import annotations

import heapq
import json
import sys
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

try:
    import numpy as np
except ImportError:  # the hooks must import in a server without numpy
    np = None  # type: ignore[assignment]


@dataclass(frozen=True)
class TopkRows:
    """Top-k summary of `n` tokens: `indices: [n, k]` int32 and signed `values: [n, k]` float32, by |value| desc."""

    indices: Any
    values: Any
    d_model: int

    def __getitem__(self, rows: slice) -> "TopkRows":
        return TopkRows(self.indices[rows], self.values[rows], self.d_model)

    def __len__(self) -> int:
        return len(self.values)


class Deferred(Protocol):
    """Rows whose bytes are still in flight (e.g. a non-blocking device-to-host copy); the writer thread waits."""

    def materialize(self) -> Any:
        """Return a float32 `[n, d]` array or a `TopkRows`, blocking only the calling (writer) thread."""

    def __getitem__(self, rows: slice) -> "Deferred":
        """A view of a row range, so a block can be split across windows without touching the data."""


def snapshot(value: Any) -> tuple[Any, int | None]:
    """Return an owned copy of one token's summary and its width (None when only known after parsing).

    Accepts list/tuple of floats, numpy arrays, torch tensors (CPU or CUDA) and JSON-encoded bytes/str. A `[1, d]`
    shape is accepted as `[d]`. Raises TypeError for anything else, so a wiring mistake shows on the first token.
    """
    if np is not None and isinstance(value, np.ndarray):
        row = value.reshape(-1) if value.ndim != 1 else value
        if value.ndim != 1 and row.shape[0] != value.shape[-1]:
            raise ValueError(f"a token summary must be one vector, got shape {value.shape}")
        return np.array(row, dtype=np.float32), int(row.shape[0])
    if isinstance(value, list):
        return value.copy(), len(value)
    if isinstance(value, tuple):
        return list(value), len(value)
    if isinstance(value, (bytes, str)):
        return value, None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value), None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _snapshot_tensor(torch, value)
    raise TypeError(f"unsupported tensor_summary type {type(value).__name__}")


def _snapshot_tensor(torch: Any, tensor: Any) -> tuple[Any, int]:
    row = tensor.detach().reshape(-1)
    if tensor.dim() != 1 and row.shape[0] != tensor.shape[-1]:
        raise ValueError(f"a token summary must be one vector, got shape {tuple(tensor.shape)}")
    if row.is_cuda:
        return CudaRows.capture(torch, row.unsqueeze(0)), int(row.shape[0])
    return row.to(torch.float32, copy=True).numpy(), int(row.shape[0])


class CudaRows:
    """A GPU clone plus an event recorded on the caller's stream: no device sync on the caller's thread.

    The writer thread waits on the event and copies to host; this is the path for tensors handed directly to
    `capture_token`. `attach()` uses the batched staging path in `torch_hooks` instead (one copy per step).
    """

    __slots__ = ("_tensor", "_event", "_rows")

    def __init__(self, tensor: Any, event: Any, rows: slice = slice(None)) -> None:
        self._tensor, self._event, self._rows = tensor, event, rows

    @classmethod
    def capture(cls, torch: Any, rows: Any) -> "CudaRows":
        event = torch.cuda.Event()
        clone = rows.clone()
        event.record()
        return cls(clone, event)

    def __getitem__(self, rows: slice) -> "CudaRows":
        return CudaRows(self._tensor[rows], self._event)

    def materialize(self) -> Any:
        self._event.synchronize()
        return self._tensor.float().cpu().numpy()


def window_summary(segments: Sequence[Any], *, summary: str, topk: int) -> tuple[int, Any, Any]:
    """Turn a window's snapshots into `(d_model, values, indices)`; `indices` is None for a dense summary.

    dense: `values: [T, d]` float32. topk: `indices: [T, k]` int32 and `values: [T, k]` float32, k = min(topk, d).
    Without numpy both are nested lists.
    """
    if np is None:
        return _window_summary_lists(segments, summary=summary, topk=topk)
    dense: list[Any] = []
    picked: list[TopkRows] = []
    for segment in segments:
        block = _as_block(segment)
        if isinstance(block, TopkRows):
            picked.append(block)
        elif summary == "topk":
            indices, values = topk_by_magnitude(block, topk)
            picked.append(TopkRows(indices, values, block.shape[1]))
        else:
            dense.append(block)
    if summary == "dense":
        values = np.concatenate(dense, axis=0) if len(dense) > 1 else dense[0]
        return int(values.shape[1]), values, None
    widths = {rows.d_model for rows in picked}
    if len(widths) != 1:
        raise ValueError(f"rows of one window have different widths {sorted(widths)}")
    return (widths.pop(), np.concatenate([rows.values for rows in picked], axis=0),
            np.concatenate([rows.indices for rows in picked], axis=0))


def _as_block(segment: Any) -> Any:
    """One snapshot as a float32 `[n, d]` array (or `TopkRows` precomputed on the GPU)."""
    if hasattr(segment, "materialize"):
        segment = segment.materialize()
    if isinstance(segment, TopkRows):
        return segment
    if isinstance(segment, (bytes, str)):
        segment = json.loads(segment)
    block = np.asarray(segment, dtype=np.float32)
    return block.reshape(1, -1) if block.ndim == 1 else block


def topk_by_magnitude(x: Any, k: int) -> tuple[Any, Any]:
    """`x: [T, d]` → `(indices [T, k] int32, values [T, k] float32)`, the k largest |x| per row.

    Ordered by magnitude descending, ties by lower index, so the result is deterministic. argpartition keeps this
    O(d) per row; only the k survivors are sorted.
    """
    k = min(int(k), x.shape[1])
    magnitude = np.abs(x)
    part = np.argpartition(magnitude, x.shape[1] - k, axis=1)[:, x.shape[1] - k:]
    order = np.lexsort((part, -np.take_along_axis(magnitude, part, axis=1)), axis=1)
    indices = np.take_along_axis(part, order, axis=1)
    return indices.astype(np.int32), np.take_along_axis(x, indices, axis=1).astype(np.float32)


def _window_summary_lists(segments: Sequence[Any], *, summary: str, topk: int) -> tuple[int, Any, Any]:
    rows = [json.loads(s) if isinstance(s, (bytes, str)) else list(s) for s in segments]
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ValueError(f"rows of one window have different widths {sorted(widths)}")
    d_model = widths.pop()
    if summary == "dense":
        return d_model, [[float(v) for v in row] for row in rows], None
    k = min(topk, d_model)
    indices = [heapq.nsmallest(k, range(d_model), key=lambda i, row=row: (-abs(row[i]), i)) for row in rows]
    return d_model, [[float(row[i]) for i in idx] for row, idx in zip(rows, indices)], indices
