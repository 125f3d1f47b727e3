"""Forward hooks on transformer blocks: capture each block's output (the residual stream after it, `resid_post`).

Which modules: the block list of GPT-2 (`transformer.h`), Llama-style decoders (`model.layers`), BERT-style encoders
(`encoder.layer`), or else the longest `ModuleList` of identical blocks. Layer `L` is the output of block `L`
(= Hugging Face `hidden_states[L + 1]`, raw: no final norm).

Which positions: the first forward call of a trace captures every position (prefill or a plain forward pass); later
calls capture their new positions — the single token of a KV-cached decode step, or only the last row when
`generate(use_cache=False)` re-runs the whole prefix (a call of length n + 1 after n positions).

Blocks that return `(hidden, residual)` separately (vLLM-style Llama/Qwen/Gemma) carry the residual stream as their
sum; reading the first element alone would silently capture half of it, so two same-shaped tensors are summed.

CUDA: the hook never synchronises the device and never allocates once warmed up. Each block's rows (or their top-k,
selected on a side stream) are `copy_`-ed into a device staging buffer; one multi-token call (prefill), or up to 16
consecutive single-token calls (decode), make a block, which goes to pinned host memory in one non-blocking copy on
a side stream. A background thread waits on the copy's event, widens the rows to float32 and puts them into the
pipeline's windows. Staging and pinned buffers belong to a per-device pool kept across attach/detach
(`staging_stats()` counts its allocations); with no free pinned buffer a block is dropped and counted, never waited
for. `flush` first waits for a trace's rows still in flight.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
import weakref
from typing import Any, Sequence

from .pipeline import CapturePipeline
from .summary import TopkRows

logger = logging.getLogger(__name__)

_LAYER_PATHS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers", "encoder.layer",
                "bert.encoder.layer", "model.encoder.layer", "layers", "h")
_HANDLES: "weakref.WeakKeyDictionary[Any, list[CaptureHandle]]" = weakref.WeakKeyDictionary()


def find_layers(model: Any) -> tuple[str, list[Any]]:
    """Return `(path, blocks)`: the model's transformer block list, by known attribute paths first."""
    import torch

    for path in _LAYER_PATHS:
        node = model
        for name in path.split("."):
            node = getattr(node, name, None)
        if isinstance(node, torch.nn.ModuleList) and len(node) > 0:
            return path, list(node)
    candidates = [(name, mod) for name, mod in model.named_modules()
                  if isinstance(mod, torch.nn.ModuleList) and len(mod) > 0
                  and len({type(child) for child in mod}) == 1]
    if not candidates:
        raise ValueError(f"no transformer block list found in {type(model).__name__}")
    name, blocks = max(candidates, key=lambda item: len(item[1]))
    return name, list(blocks)


class CaptureHandle:
    """Hooks attached to one model for one capture; `remove()` (or `detach()`) takes all of them off."""

    def __init__(self, model: Any, pipeline: CapturePipeline, trace_ids: list[str], layers: list[int], path: str,
                 staged: bool) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.pipeline = pipeline
        self.trace_ids = trace_ids
        self.layers = layers
        self.path = path
        self._first, self._last = layers[0], layers[-1]
        self._positions = 0
        self._start = 0
        self._rows = slice(None)
        self._hook_point_set = False
        self._failed = False
        self._removables: list[Any] = []
        self._stager = _Stager(self, torch) if staged else None

    def _hook(self, layer: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            try:
                self._on_output(layer, output)
            except Exception:
                self._fail(layer)
        return hook

    def _fail(self, layer: int) -> None:
        """A capture bug must not take generation down: log once, count one dropped row per failed call."""
        if not self._failed:
            self._failed = True
            logger.exception("capture: hook on layer %d failed; rows dropped", layer)
        for trace_id in self.trace_ids:
            self.pipeline.drop_rows(trace_id, 1, "capture hook error")

    def _on_output(self, layer: int, output: Any) -> None:
        torch = self._torch
        hidden = output[0] if isinstance(output, tuple) else output
        paired = (isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor)
                  and output[1].shape == hidden.shape)
        if paired:
            hidden = hidden + output[1]
        if hidden.dim() == 2:
            hidden = hidden.unsqueeze(0)
        if not self._hook_point_set:
            self._set_hook_point(paired)
        if layer == self._first:
            self._begin_step(hidden.shape[1])
        rows = hidden.detach()[: len(self.trace_ids), self._rows]
        if self._stager is not None:
            self._stager.stage(layer, rows)
            if layer == self._last:
                self._stager.end_step()
            return
        host = rows.float().cpu().numpy()
        if rows.device.type == "cpu" and rows.dtype == torch.float32:
            host = host.copy()  # a view of the model's own tensor: own it (`.to(copy=True)` is ~50x slower)
        for trace_id, block in zip(self.trace_ids, host):
            self.pipeline.capture_block(trace_id, self._start, block, layer, copy=False)

    def _set_hook_point(self, paired: bool) -> None:
        point = f"resid_post:{self.path}" + ("(hidden+residual)" if paired else "")
        for trace_id in self.trace_ids:
            self.pipeline.set_hook_point(trace_id, point)
            if self._stager is not None:
                self.pipeline.add_feeder(trace_id, self._stager.drain)
        self._hook_point_set = True

    def _begin_step(self, length: int) -> None:
        """Decide which positions of this forward call are new (see the module docstring)."""
        seen = self._positions
        if seen > 0 and length == seen + 1:
            self._rows, count = slice(length - 1, length), 1
        else:
            self._rows, count = slice(None), length
        self._start, self._positions = seen, seen + count

    def remove(self) -> None:
        for removable in self._removables:
            removable.remove()
        self._removables.clear()
        if self._stager is not None:
            self._stager.close()
        handles = _HANDLES.get(self.model)
        if handles and self in handles:
            handles.remove(self)


def attach(model: Any, pipeline: CapturePipeline, trace_id: str | Sequence[str], layers: Sequence[int] | None = None,
           *, staged: bool | None = None) -> CaptureHandle:
    """Register forward hooks capturing `layers` (None: the pipeline config's layers, else all) into `trace_id`.

    `trace_id` may be a list: batch row b goes to `trace_id[b]` (rows beyond the list are not captured; a single id
    captures row 0). `staged` forces the GPU staging path (default: when the model's parameters are on CUDA).
    Start the trace(s) first if you want `params` recorded.
    """
    path, blocks = find_layers(model)
    if layers is None:
        layers = pipeline.cfg.layers if pipeline.cfg.layers is not None else range(len(blocks))
    chosen = sorted({layer % len(blocks) for layer in layers})
    chosen = [layer for layer in chosen if pipeline.wants_layer(layer)]
    if not chosen:
        raise ValueError(f"no layer of {list(layers)} is captured by this pipeline (config layers "
                         f"{pipeline.cfg.layers}, model has {len(blocks)})")
    if staged is None:
        first = next(model.parameters(), None)
        staged = first is not None and first.is_cuda
    trace_ids = [trace_id] if isinstance(trace_id, str) else list(trace_id)
    handle = CaptureHandle(model, pipeline, trace_ids, chosen, path, staged)
    for layer in chosen:
        handle._removables.append(blocks[layer].register_forward_hook(handle._hook(layer)))
    _HANDLES.setdefault(model, []).append(handle)
    return handle


def detach(handle_or_model: Any) -> None:
    """Remove hooks: those of one handle, or every handle `attach` put on a model."""
    if isinstance(handle_or_model, CaptureHandle):
        handle_or_model.remove()
        return
    for handle in list(_HANDLES.get(handle_or_model, ())):
        handle.remove()


def model_hash(model: Any) -> str:
    """A short fingerprint of a model: its config, parameter names/shapes/dtypes and a few leading weights.

    Cheap enough to call at startup (it reads 64 values of the first 8 tensors), and it tells two random-weight
    models of the same architecture apart, which a config hash alone would not.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for index, (name, tensor) in enumerate(sorted(model.state_dict().items())):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        if index < 8 and tensor.numel():
            digest.update(tensor.detach().reshape(-1)[:64].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]


_MIB = 1 << 20


def _capacity(nbytes: int) -> int:
    """Bytes to allocate for `nbytes`: the next power of two (at least 1 MiB), so buffers grow a few times in a
    process's life rather than on every longer prompt (torch's pinned allocator rounds to a power of two anyway)."""
    return max(_MIB, 1 << (nbytes - 1).bit_length())


class _Layout:
    """Byte layout of one block in the flat staging buffers: values [n_layers, B, rows, width] then int32 indices."""

    def __init__(self, n_layers: int, batch: int, rows: int, d_model: int, width: int, dtype: Any, topk: bool,
                 itemsize: int) -> None:
        self.shape = (n_layers, batch, rows, width)
        self.d_model, self.dtype, self.topk = d_model, dtype, topk
        count = n_layers * batch * rows * width
        self.values_bytes = count * itemsize
        self.indices_offset = -(-self.values_bytes // 16) * 16
        self.total = self.indices_offset + count * 4 if topk else self.values_bytes

    def views(self, torch: Any, flat: Any) -> tuple[Any, Any]:
        values = flat[: self.values_bytes].view(self.dtype).view(self.shape)
        if not self.topk:
            return values, None
        return values, flat[self.indices_offset:self.total].view(torch.int32).view(self.shape)


class _Pool:
    """One device's staging memory and side stream, shared by every handle and kept across attach/detach.

    Why: a server attaches per request. A handle that allocated its own pinned ring paid a cudaHostAlloc of the whole
    ring (tens of MiB: tens of ms on the model thread) on most requests. Here a handle takes buffers the pool holds
    and allocates only for a block larger than any before. Host buffers (pinned on CUDA): at most RING per attached
    handle, best fit first; a block that finds none is dropped and counted, never waited for. Device buffers: one
    per attached handle while attached, each returned with the event after its last read.

    Buffers are allocated (and block views taken) outside inference mode, as normal tensors: one allocated inside a
    model's `torch.inference_mode()` would be an inference tensor, which `detach()` or `flush()` outside it could no
    longer copy into.
    """

    RING = 4
    STATS = ("host_allocs", "host_bytes", "device_allocs", "device_bytes", "copies", "copy_bytes", "dropped_copies")

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.lock = threading.Lock()
        self.handles = 0
        self.host_free: list[Any] = []
        self.host_count = 0
        self.staging_free: list[tuple[Any, Any]] = []
        self.stats = dict.fromkeys(self.STATS, 0)

    def attach(self, change: int) -> None:
        with self.lock:
            self.handles += change

    def take_host(self, nbytes: int) -> Any:
        """A host buffer of at least `nbytes` (a free one if any fits), or None when this pool's ring is in use."""
        with self.lock:
            fits = [buf for buf in self.host_free if buf.numel() >= nbytes]
            if fits:
                buf = min(fits, key=lambda b: b.numel())
                self.host_free.remove(buf)
                return buf
            if self.host_count < self.RING * max(1, self.handles):
                self.host_count += 1
            elif self.host_free:  # replace the smallest free buffer by a larger one
                self.host_free.remove(min(self.host_free, key=lambda b: b.numel()))
            else:
                self.stats["dropped_copies"] += 1
                return None
            size = _capacity(nbytes)
            self.stats["host_allocs"] += 1
            self.stats["host_bytes"] += size
        try:  # outside the lock: the copier thread keeps returning buffers meanwhile
            with self.torch.inference_mode(False):  # a normal tensor (see the class docstring)
                return self.torch.empty(size, dtype=self.torch.uint8, pin_memory=self.cuda)
        except Exception:
            with self.lock:
                self.host_count -= 1
            raise

    def give_host(self, buf: Any) -> None:
        with self.lock:
            if self.host_count > self.RING * max(1, self.handles):
                self.host_count -= 1  # fewer handles than at the peak: let torch's allocator have it back
            else:
                self.host_free.append(buf)

    def take_staging(self, nbytes: int) -> tuple[Any, Any]:
        """A device buffer of at least `nbytes` and the event after its last read (None: nothing pending)."""
        with self.lock:
            fits = [entry for entry in self.staging_free if entry[0].numel() >= nbytes]
            if fits:
                entry = min(fits, key=lambda e: e[0].numel())
                self.staging_free.remove(entry)
                return entry
            if self.staging_free:  # too small for this block: give the largest back to torch's allocator
                old = max(self.staging_free, key=lambda e: e[0].numel())
                self.staging_free.remove(old)
                self._release(old[0])
            size = _capacity(nbytes)
            self.stats["device_allocs"] += 1
            self.stats["device_bytes"] += size
        with self.torch.inference_mode(False):
            return self.torch.empty(size, dtype=self.torch.uint8, device=self.device), None

    def give_staging(self, buf: Any, ready: Any) -> None:
        with self.lock:
            self.staging_free.append((buf, ready))

    def _release(self, buf: Any) -> None:
        if self.stream is not None:
            buf.record_stream(self.stream)  # a host copy on the side stream may still read it

    def count_copy(self, nbytes: int) -> None:
        with self.lock:
            self.stats["copies"] += 1
            self.stats["copy_bytes"] += nbytes

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.stats)


_POOLS: dict[str, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(torch: Any, device: Any) -> _Pool:
    with _POOLS_LOCK:
        pool = _POOLS.get(str(device))
        if pool is None:
            pool = _POOLS[str(device)] = _Pool(torch, device)
        return pool


def staging_stats() -> dict[str, dict[str, int]]:
    """Per device, since the process started: host buffers (pinned on CUDA) and device staging buffers allocated
    (count, bytes), device-to-host copies (count, bytes) and copies dropped for want of a free host buffer.

    For operators: once warmed up with the longest prompt, allocations stay flat; a rising count means blocks
    larger than any before or more handles attached at once, and rising `dropped_copies` a copier thread behind.
    """
    with _POOLS_LOCK:
        pools = list(_POOLS.items())
    return {device: pool.snapshot() for device, pool in pools}


class _Block:
    """Positions `start ..` of a handle's traces staged together: `rows` of the layout's capacity are filled."""

    __slots__ = ("layout", "start", "rows", "traces", "host", "event")

    def __init__(self, layout: _Layout, start: int, traces: list[str]) -> None:
        self.layout, self.start, self.traces = layout, start, traces
        self.rows = 0
        self.host: Any = None
        self.event: Any = None


class _Copier:
    """The background thread that finishes host copies for every handle, in order.

    Per block: wait on its event (created with blocking sync, so this thread sleeps instead of spinning a core),
    widen to float32 with numpy (torch's CPU kernels would wake an OpenMP team beside the model thread), return the
    host buffer to its pool, then hand the rows to the pipeline's windows. Window bookkeeping and shard submission
    therefore run here, never on the model thread (a 2,048-token prefill is 128 windows per layer).
    """

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.pid = 0
        self.lock = threading.Lock()

    def put(self, stager: "_Stager | None", item: Any) -> None:
        if self.pid != os.getpid():
            self._start()
        self.queue.put((stager, item))

    def barrier(self, timeout_s: float) -> bool:
        """Wait until everything queued before this call was delivered; False at the timeout."""
        marker = threading.Event()
        self.put(None, marker)
        return marker.wait(timeout_s)

    def _start(self) -> None:
        """Start lazily, and again after a fork (a thread started before `fork()` does not exist in the child)."""
        with self.lock:
            if self.pid == os.getpid():
                return
            if self.pid:
                self.queue = queue.SimpleQueue()
            threading.Thread(target=self._run, args=(self.queue,), name="hg-capture-d2h", daemon=True).start()
            self.pid = os.getpid()

    @staticmethod
    def _run(items: "queue.SimpleQueue[Any]") -> None:
        while True:
            stager, item = items.get()
            if stager is None:
                item.set()
            else:
                stager.deliver(item)


_COPIER = _Copier()


def _float32(torch: Any, values: Any) -> Any:
    """An owned float32 numpy copy of host tensor `values`. bfloat16 is widened by a shift (exact: a bfloat16 is the
    upper half of a float32), which is what torch's `.float()` computes, bit for bit."""
    import numpy as np

    if values.dtype == torch.bfloat16:
        bits = values.view(torch.int16).numpy().view(np.uint16)
        return np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)
    return np.array(values.numpy(), dtype=np.float32)


class _Stager:
    """Stages one handle's rows on the device and moves them to host memory in blocks, off the model's stream.

    Model thread, per captured layer: one device copy into the block's staging buffer on the model's stream (a few
    µs of bandwidth), or, for top-k, the selection on the pool's side stream after the model's stream. A block is one
    multi-token step (prefill) or up to STEPS consecutive single-token steps (decode), so decode pays one host copy
    and one copier wake-up per STEPS tokens. Closing a block makes the side stream wait for the model's stream and
    queues there one non-blocking copy into a host buffer, then an event, then hands the block to the copier thread.
    Nothing on the model thread waits for the device; the model's stream waits only before reusing the staging
    buffer, for the host copy of the block before it (long done by then).

    Thread safety: `lock` guards the open block and the in-flight counts, because `drain` (from `flush`, another
    thread) may close the open block while the model thread stages.
    """

    STEPS = 16
    BLOCK_BYTES = 64 * _MIB  # decode blocks stop short of this (dense all-layer capture of a wide model, batch 64)

    def __init__(self, handle: CaptureHandle, torch: Any) -> None:
        self.handle, self.torch = handle, torch
        self.slots = {layer: slot for slot, layer in enumerate(handle.layers)}
        cfg = handle.pipeline.cfg
        self.topk = cfg.topk if cfg.summary == "topk" else 0
        self.pool: _Pool | None = None
        self.gpu: Any = None
        self.gpu_ready: Any = None  # event after the last read of `gpu` (the host copy of the previous block)
        self.model_stream: Any = None
        self.block: _Block | None = None  # open block: staged rows not yet copied to host
        self.step_block: _Block | None = None  # the block the current forward call writes into
        self.values: Any = None
        self.indices: Any = None
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}  # rows per trace queued for the copier, not yet delivered
        self.abandoned: set[str] = set()
        self.closed = False

    def stage(self, layer: int, rows: Any) -> None:
        """`rows: [B, s, d]` on the model's device; enqueue device work only."""
        if layer == self.handle._first:
            self._begin(rows)
        lo = self.step_block.rows
        slot = self.slots[layer]
        values = self.values[slot, :, lo:lo + rows.shape[1]]
        if not self.topk:
            values.copy_(rows)
            return
        indices = self.indices[slot, :, lo:lo + rows.shape[1]]
        side = self.pool.stream
        if side is None:
            self._topk_into(rows, values, indices)
            return
        torch = self.torch
        side.wait_stream(torch.cuda.current_stream(rows.device))
        with torch.cuda.stream(side):
            self._topk_into(rows, values, indices)
        rows.record_stream(side)  # the model may free `rows` before the side stream has read it

    def _topk_into(self, rows: Any, values: Any, indices: Any) -> None:
        top = rows.abs().topk(values.shape[-1], dim=-1, sorted=True).indices
        values.copy_(rows.gather(-1, top))
        indices.copy_(top)

    def _begin(self, rows: Any) -> None:
        """First captured layer of a forward call: join the open decode block or close it and open a new one."""
        batch, length, d_model = rows.shape
        start = self.handle._start
        with self.lock:
            block = self.block
            if block is not None and not (
                    length == 1 and block.start + block.rows == start and block.layout.shape[1] == batch
                    and block.layout.d_model == d_model and block.layout.dtype == rows.dtype
                    and self.gpu.device == rows.device):
                self._close(block)
                block = None
            if block is None:
                block = self.block = self._open(rows, start)
            self.step_block = block

    def _open(self, rows: Any, start: int) -> _Block:
        torch = self.torch
        batch, length, d_model = rows.shape
        width = min(self.topk, d_model) if self.topk else d_model

        def layout(capacity: int) -> _Layout:
            return _Layout(len(self.slots), batch, capacity, d_model, width, rows.dtype, bool(self.topk),
                           rows.element_size())

        capacity = length
        if length == 1:
            capacity = max(1, min(self.STEPS, self.BLOCK_BYTES // layout(1).total))
        shape = layout(capacity)
        if self.pool is None:
            self.pool = _pool(torch, rows.device)
            self.pool.attach(1)
        if self.gpu is None or self.gpu.numel() < shape.total or self.gpu.device != rows.device:
            if self.gpu is not None:
                self.pool.give_staging(self.gpu, self.gpu_ready)
            self.gpu, self.gpu_ready = self.pool.take_staging(shape.total)
        if self.pool.cuda:
            self.model_stream = torch.cuda.current_stream(rows.device)
            if self.gpu_ready is not None:
                self.model_stream.wait_event(self.gpu_ready)  # device-side: the host copy of the last block
                self.gpu_ready = None
        with torch.inference_mode(False):
            self.values, self.indices = shape.views(torch, self.gpu)
        return _Block(shape, start, self.handle.trace_ids[:batch])

    def end_step(self) -> None:
        """Last captured layer: the call's rows are staged; a full block goes to host memory now."""
        handle = self.handle
        length = handle._positions - handle._start
        with self.lock:
            block, self.step_block = self.step_block, None
            if block is not self.block:  # `drain` closed the block during this call: these rows were not copied
                for trace_id in block.traces:
                    handle.pipeline.drop_rows(trace_id, len(self.slots) * length, "flushed during a forward call")
                return
            block.rows += length
            if block.rows >= block.layout.shape[2]:
                self._close(block)

    def _close(self, block: _Block) -> None:
        """Queue the block's host copy on the side stream and hand it to the copier (caller holds `lock`)."""
        torch = self.torch
        self.block = None
        if block.rows == 0:
            return
        pool, layout = self.pool, block.layout
        rows = len(self.slots) * block.rows
        host = pool.take_host(layout.total)
        if host is None:
            for trace_id in block.traces:
                self.handle.pipeline.drop_rows(trace_id, rows, "no free pinned buffer (copier thread behind)")
            return
        if pool.cuda:
            side = pool.stream
            side.wait_stream(self.model_stream)  # the staging copies of this block, queued on the model's stream
            with torch.cuda.stream(side):
                host[: layout.total].copy_(self.gpu[: layout.total], non_blocking=True)
            block.event = self.gpu_ready = torch.cuda.Event(blocking=True)
            block.event.record(side)
        else:
            host[: layout.total].copy_(self.gpu[: layout.total])
        block.host = host
        for trace_id in block.traces:
            self.pending[trace_id] = self.pending.get(trace_id, 0) + rows
        pool.count_copy(layout.total)
        _COPIER.put(self, block)

    def deliver(self, block: _Block) -> None:
        """Copier thread: wait for the block's host copy, widen it, hand its rows to the pipeline's windows."""
        torch, layout, pipeline = self.torch, block.layout, self.handle.pipeline
        rows = len(self.slots) * block.rows
        try:
            try:
                if block.event is not None:
                    block.event.synchronize()
                values, indices = layout.views(torch, block.host)
                values = _float32(torch, values[:, :, : block.rows])
                if indices is not None:
                    indices = indices[:, :, : block.rows].numpy().copy()
            finally:
                self.pool.give_host(block.host)
                block.host = None
            for layer, slot in self.slots.items():
                for row, trace_id in enumerate(block.traces):
                    if trace_id in self.abandoned:
                        continue
                    part = values[slot, row]
                    if indices is not None:
                        part = TopkRows(indices[slot, row], part, layout.d_model)
                    pipeline.capture_block(trace_id, block.start, part, layer, width=layout.d_model, copy=False)
                time.sleep(0)  # hand the GIL back to the model thread between layers
        except Exception:
            logger.exception("capture: device-to-host transfer failed; rows dropped")
            for trace_id in block.traces:
                if trace_id not in self.abandoned:
                    pipeline.drop_rows(trace_id, rows, "device-to-host transfer failed")
        finally:
            with self.lock:
                for trace_id in block.traces:
                    self.pending[trace_id] -= rows

    def drain(self, trace_id: str, timeout_s: float) -> int:
        """For `flush`: copy the open block, wait until the copier delivered everything queued so far; return the
        rows of `trace_id` still in flight at the timeout (they will be discarded, not delivered late)."""
        with self.lock:
            if self.block is not None:
                self._close(self.block)
        if _COPIER.barrier(timeout_s):
            return 0
        with self.lock:
            self.abandoned.add(trace_id)
            return self.pending.get(trace_id, 0)

    def close(self) -> None:
        """`detach`: copy the open block, give the staging buffer back to the pool (in-flight copies complete)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self.block is not None:
                self._close(self.block)
            if self.pool is not None:
                if self.gpu is not None:
                    self.pool.give_staging(self.gpu, self.gpu_ready)
                    self.gpu = self.gpu_ready = None
                self.pool.attach(-1)
