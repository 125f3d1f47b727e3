"""The capture pipeline: per-token snapshots → windows → shard jobs on a store's writer thread → an envelope.

Cost model on the caller's (model server's) thread: `capture_token` takes an owned snapshot, appends it to the
layer's open window and, every `window_size` tokens, hands the window to the store as one job (`queue.put_nowait`).
Summaries (top-k), encoding and I/O happen on the writer thread. One thread captures a given trace at a time
(the thread generating it, or on the GPU path of `attach` its copier thread, which `flush` waits for); different
traces may be captured from different threads.

`dropped` counts rows (one token at one layer) that did not reach the store: queue full, write failed, encoding
failed, or still in flight when `flush` gave up waiting. Drops are logged once per trace.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from .codec import Shard, encode_shard
from .config import CaptureConfig
from .summary import Deferred, snapshot, window_summary

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

LayerHook = Callable[..., None]


class _Window:
    __slots__ = ("index", "tokens", "segments", "count")

    def __init__(self, index: int) -> None:
        self.index, self.tokens, self.segments, self.count = index, [], [], 0


class _Trace:
    """Mutable state of one trace. Window fields are touched by the capturing thread only; the outcome fields
    (written, pending, dropped) by the writer too, under `cond`."""

    def __init__(self, trace_id: str, params: dict[str, Any] | None, hook_point: str) -> None:
        self.trace_id = trace_id
        self.params = dict(params or {})
        self.hook_point = hook_point
        self.windows: dict[int, _Window] = {}
        self.next_window: dict[int, int] = {}
        self.token_set: set[int] = set()
        self.d_model: int | None = None
        self.feeders: list[Callable[[str, float], int]] = []
        self.cond = threading.Condition()
        self.written: list[tuple[int, int, str]] = []
        self.pending_jobs = 0
        self.pending_rows = 0
        self.dropped = 0
        self.warned = False
        self.closed = False

    def drop(self, rows: int, reason: str) -> None:
        """Count lost rows (caller holds `cond`) and log the first loss of this trace."""
        self.dropped += rows
        if not self.warned:
            self.warned = True
            logger.warning("capture: trace %s dropping activations (%s); counted in the envelope's `dropped`",
                           self.trace_id, reason)


class _ShardJob:
    """One window of one layer, encoded on the writer thread."""

    __slots__ = ("key", "pipeline", "trace", "layer", "window", "tokens", "segments", "rows", "d_model")

    def __init__(self, pipeline: "CapturePipeline", trace: _Trace, layer: int, window: _Window) -> None:
        self.key = shard_key(pipeline.cfg.namespace, trace.trace_id, layer, window.index)
        self.pipeline, self.trace, self.layer = pipeline, trace, layer
        self.window, self.tokens, self.segments, self.rows = window.index, window.tokens, window.segments, window.count
        self.d_model = 0

    def encode(self) -> bytes:
        cfg = self.pipeline.cfg
        d_model, values, indices = window_summary(self.segments, summary=cfg.summary, topk=cfg.topk)
        self.d_model = d_model
        self.segments = []
        meta = {"trace_id": self.trace.trace_id, "model_name": cfg.model_name, "model_hash": cfg.model_hash,
                "hook_point": self.trace.hook_point, "convention": cfg.convention}
        if self.trace.params:
            meta["params"] = self.trace.params
        return encode_shard(Shard(layer=self.layer, window=self.window, token_indices=self.tokens, d_model=d_model,
                                  summary=cfg.summary, values=values, indices=indices, codec=cfg.compress, meta=meta))

    def done(self, ok: bool, nbytes: int) -> None:
        trace = self.trace
        with trace.cond:
            if trace.closed:
                return
            trace.pending_jobs -= 1
            trace.pending_rows -= self.rows
            if ok:
                trace.written.append((self.layer, self.window, self.key))
                trace.d_model = trace.d_model or self.d_model
            else:
                trace.drop(self.rows, "store write or encoding failed")
            trace.cond.notify_all()


class CapturePipeline:
    """Collects per-token summaries for traces and ships them as windowed shards to `store`.

    `store=None` uses an `InMemoryStore` (dry run: the envelope names keys that only live in this process).
    """

    def __init__(self, cfg: CaptureConfig, store: Any = None) -> None:
        if store is None:
            from .stores import InMemoryStore
            store = InMemoryStore(queue_max=cfg.queue_max, batch_max=cfg.batch_max)
        self.cfg = cfg
        self.store = store
        self._traces: dict[str, _Trace] = {}
        self._layer_filter = frozenset(cfg.layers) if cfg.layers is not None else None
        self._default_layer = cfg.layers[0] if cfg.layers else 0

    def start_trace(self, trace_id: str, params: dict[str, Any] | None = None) -> None:
        """Open a trace. `params` (JSON-serialisable, e.g. generation settings) is written into every shard header.
        Capturing into a trace that was never started starts it implicitly."""
        self._traces[trace_id] = _Trace(trace_id, params, self.cfg.hook_point)

    def set_hook_point(self, trace_id: str, hook_point: str) -> None:
        """Record where the rows come from (set by `attach`; recorded in shards and the envelope)."""
        self._trace(trace_id).hook_point = hook_point

    def _trace(self, trace_id: str) -> _Trace:
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace(trace_id, None, self.cfg.hook_point)
        return trace

    def wants_layer(self, layer: int) -> bool:
        return self._layer_filter is None or layer in self._layer_filter

    def capture_token(self, trace_id: str, token_idx: int, tensor_summary: Any, layer: int | None = None) -> None:
        """Capture one token's summary at `layer` (None: the first configured layer, else 0). Never blocks."""
        if layer is None:
            layer = self._default_layer
        elif self._layer_filter is not None and layer not in self._layer_filter:
            return
        trace = self._traces.get(trace_id) or self._trace(trace_id)
        row, width = snapshot(tensor_summary)
        if width is not None and trace.d_model != width:
            self._check_width(trace, width)
        trace.token_set.add(token_idx)
        window = trace.windows.get(layer) or self._open_window(trace, layer)
        window.tokens.append(token_idx)
        window.segments.append(row)
        window.count += 1
        if window.count >= self.cfg.window_size:
            self._submit(trace, layer, window)

    def capture_block(self, trace_id: str, start_idx: int, rows: np.ndarray | Deferred, layer: int, *,
                      width: int | None = None, copy: bool = True) -> None:
        """Capture consecutive tokens `start_idx ..` of one layer at once: `rows: [n, d]` numpy array, `TopkRows`
        (pass `width`), or a deferred block (`len()`, row slicing, `materialize()`). `copy=False` hands ownership
        over."""
        if not self.wants_layer(layer):
            return
        trace = self._traces.get(trace_id) or self._trace(trace_id)
        if copy:
            import numpy as np
            rows = np.array(rows, dtype=np.float32)
        width = width if width is not None else int(rows.shape[1])
        if trace.d_model != width:
            self._check_width(trace, width)
        count = len(rows)
        trace.token_set.update(range(start_idx, start_idx + count))
        taken = 0
        while taken < count:
            window = trace.windows.get(layer) or self._open_window(trace, layer)
            take = min(self.cfg.window_size - window.count, count - taken)
            window.segments.append(rows if take == count else rows[taken:taken + take])
            window.tokens.extend(range(start_idx + taken, start_idx + taken + take))
            window.count += take
            taken += take
            if window.count >= self.cfg.window_size:
                self._submit(trace, layer, window)

    def add_feeder(self, trace_id: str, drain: Callable[[str, float], int]) -> None:
        """Register a source that captures into `trace_id` from its own thread (`attach`'s GPU path: rows still in
        device-to-host copies). `flush` first calls `drain(trace_id, timeout_s)`, which delivers what is in flight
        and returns how many rows it could not (counted as dropped)."""
        self._trace(trace_id).feeders.append(drain)

    def drop_rows(self, trace_id: str, rows: int, reason: str) -> None:
        """Count rows lost before reaching the pipeline (e.g. no free pinned buffer on the GPU path)."""
        trace = self._trace(trace_id)
        with trace.cond:
            trace.drop(rows, reason)

    @staticmethod
    def _check_width(trace: _Trace, width: int) -> None:
        if trace.d_model is not None:
            raise ValueError(f"trace {trace.trace_id}: summary width {width} != {trace.d_model} seen before")
        trace.d_model = width

    def _open_window(self, trace: _Trace, layer: int) -> _Window:
        index = trace.next_window.get(layer, 0)
        trace.next_window[layer] = index + 1
        window = trace.windows[layer] = _Window(index)
        return window

    def _submit(self, trace: _Trace, layer: int, window: _Window) -> None:
        del trace.windows[layer]
        job = _ShardJob(self, trace, layer, window)
        with trace.cond:
            trace.pending_jobs += 1
            trace.pending_rows += job.rows
        if not self.store.submit(job):
            with trace.cond:
                trace.pending_jobs -= 1
                trace.pending_rows -= job.rows
                trace.drop(job.rows, "capture queue full: store slow or down")

    def flush(self, trace_id: str) -> dict[str, Any]:
        """Drain the trace's feeders, close its open windows, wait (at most `cfg.flush_timeout_s` for all of it) for
        its shards, return the envelope.

        The envelope is the `activations` event payload of `POST /ingest`. Shards still unwritten at the deadline
        are counted in `dropped` and left out of `shards`, so every listed key was acknowledged by the store.
        """
        trace = self._traces.get(trace_id)
        if trace is None:
            raise KeyError(f"capture: unknown trace {trace_id!r} (never started or already flushed)")
        deadline = time.monotonic() + self.cfg.flush_timeout_s
        for drain in trace.feeders:
            lost = drain(trace_id, max(0.0, deadline - time.monotonic()))
            if lost:
                with trace.cond:
                    trace.drop(lost, f"rows still in device-to-host copies {self.cfg.flush_timeout_s}s after flush")
        for layer, window in list(trace.windows.items()):
            self._submit(trace, layer, window)
        with trace.cond:
            trace.cond.wait_for(lambda: trace.pending_jobs == 0, timeout=max(0.0, deadline - time.monotonic()))
            if trace.pending_jobs:
                trace.drop(trace.pending_rows, f"shards not written within {self.cfg.flush_timeout_s}s of flush")
            trace.closed = True
            written = sorted(trace.written)
            dropped = trace.dropped
        del self._traces[trace_id]
        return {
            "trace_id": trace_id,
            "model_name": self.cfg.model_name,
            "model_hash": self.cfg.model_hash,
            "layers": sorted({layer for layer, _, _ in written}),
            "tokens": len(trace.token_set),
            "shards": [key for _, _, key in written],
            "dropped": dropped,
            "compress": self.cfg.compress,
            "summary": self.cfg.summary,
            "d_model": int(trace.d_model or 0),
            "hook_point": trace.hook_point,
            "convention": self.cfg.convention,
        }

    def close(self) -> None:
        """Stop the store's writer thread after it drains."""
        self.store.close()


def register_layer_hook(pipeline: CapturePipeline, trace_id: str) -> LayerHook:
    """Return `hook(token_idx, acts, layer=None)` bound to one trace: what a model server calls per token."""
    capture = pipeline.capture_token

    def hook(token_idx: int, acts: Any, layer: int | None = None) -> None:
        capture(trace_id, token_idx, acts, layer)

    return hook


def shard_key(namespace: str, trace_id: str, layer: int, window: int) -> str:
    """`<namespace>:<trace_id>:<layer>:<window>`: the key layout readers and TTL sweeps rely on."""
    return f"{namespace}:{trace_id}:{layer}:{window}"
