"""Forward hooks on transformer blocks: capture each block's output (the residual stream after it, `resid_post`).

Which modules: the block list of GPT-2 (`transformer.h`), Llama-style decoders (`model.layers`), BERT-style encoders
(`encoder.layer`), or else the longest `ModuleList` of identical blocks. Layer `L` is the output of block `L`
(= Hugging Face `hidden_states[L + 1]`, raw: no final norm).

Which positions: the first forward call of a trace captures every position (prefill or a plain forward pass); later
calls capture their new positions — the single token of a KV-cached decode step, or only the last row when
`generate(use_cache=False)` re-runs the whole prefix (a call of length n + 1 after n positions).

Blocks that return `(hidden, residual)` separately (vLLM-style Llama/Qwen/Gemma) carry the residual stream as their
sum; reading the first element alone would silently capture half of it, so two same-shaped tensors are summed.

CUDA: the hook never synchronises the device. Each block's rows (or their top-k, selected on the GPU) are `copy_`-ed
into one preallocated GPU staging buffer; after the last captured block of a step, one non-blocking copy moves the
whole step into pinned host memory and a CUDA event marks it; a background thread waits on the event and hands the
rows to the pipeline's windows. With no free pinned buffer the step is dropped and counted, never waited for.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
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
                self._stager.end_step(self._start)
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


class _Transfer:
    """One step's staged rows in (pinned) host memory, converted to numpy by the D2H thread."""

    __slots__ = ("event", "host", "layout", "free", "done", "values", "indices")

    def __init__(self, event: Any, host: Any, layout: "_Layout", free: Any) -> None:
        self.event, self.host, self.layout, self.free = event, host, layout, free
        self.done = threading.Event()
        self.values: Any = None
        self.indices: Any = None


class _StagedRows:
    """Rows of one (layer, batch row) in a transfer; what the windows hold until the writer encodes them."""

    __slots__ = ("transfer", "slot", "batch", "lo", "hi")

    def __init__(self, transfer: _Transfer, slot: int, batch: int, lo: int, hi: int) -> None:
        self.transfer, self.slot, self.batch, self.lo, self.hi = transfer, slot, batch, lo, hi

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, rows: slice) -> "_StagedRows":
        lo, hi, _ = rows.indices(len(self))
        return _StagedRows(self.transfer, self.slot, self.batch, self.lo + lo, self.lo + hi)

    def materialize(self) -> Any:
        transfer = self.transfer
        transfer.done.wait()
        values = transfer.values[self.slot, self.batch, self.lo:self.hi]
        if transfer.indices is None:
            return values
        return TopkRows(transfer.indices[self.slot, self.batch, self.lo:self.hi], values, transfer.layout.d_model)


class _Layout:
    """Byte layout of one step in the flat staging buffers: values [n_layers, B, s, width] then int32 indices."""

    def __init__(self, n_layers: int, batch: int, length: int, d_model: int, width: int, dtype: Any, topk: bool,
                 itemsize: int) -> None:
        self.shape = (n_layers, batch, length, width)
        self.d_model, self.dtype, self.topk = d_model, dtype, topk
        count = n_layers * batch * length * width
        self.values_bytes = count * itemsize
        self.indices_offset = -(-self.values_bytes // 16) * 16
        self.total = self.indices_offset + count * 4 if topk else self.values_bytes

    def views(self, torch: Any, flat: Any) -> tuple[Any, Any]:
        values = flat[: self.values_bytes].view(self.dtype).view(self.shape)
        if not self.topk:
            return values, None
        return values, flat[self.indices_offset:self.total].view(torch.int32).view(self.shape)


class _Stager:
    """GPU staging buffer + a ring of pinned host buffers + the D2H thread. Buffers grow (a one-time device sync)
    when a step is larger than any before, so attach, then warm up with the longest prompt you expect."""

    RING = 4

    def __init__(self, handle: CaptureHandle, torch: Any) -> None:
        self.handle = handle
        self.torch = torch
        self.slots = {layer: slot for slot, layer in enumerate(handle.layers)}
        cfg = handle.pipeline.cfg
        self.topk = cfg.topk if cfg.summary == "topk" else 0
        self.gpu: Any = None
        self.free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.capacity = 0
        self.layout: _Layout | None = None
        self.values: Any = None
        self.indices: Any = None
        self.transfers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="hg-capture-d2h", daemon=True)
        self.thread.start()

    def stage(self, layer: int, rows: Any) -> None:
        """`rows: [B, s, d]` on the model's device; enqueue device-side copies only."""
        torch = self.torch
        if layer == self.handle._first:
            self._begin(rows)
        slot = self.slots[layer]
        if self.topk:
            indices = rows.abs().topk(min(self.topk, rows.shape[-1]), dim=-1, sorted=True).indices
            self.values[slot].copy_(rows.gather(-1, indices))
            self.indices[slot].copy_(indices.to(torch.int32))
        else:
            self.values[slot].copy_(rows)

    def _begin(self, rows: Any) -> None:
        torch = self.torch
        batch, length, d_model = rows.shape
        width = min(self.topk, d_model) if self.topk else d_model
        layout = _Layout(len(self.slots), batch, length, d_model, width, rows.dtype, bool(self.topk),
                         rows.element_size())
        if layout.total > self.capacity:
            self._grow(layout.total, rows.device)
        self.layout = layout
        self.values, self.indices = layout.views(torch, self.gpu)

    def _grow(self, needed: int, device: Any) -> None:
        torch = self.torch
        self.capacity = max(needed, 2 * self.capacity)
        self.gpu = torch.empty(self.capacity, dtype=torch.uint8, device=device)
        self.free = queue.SimpleQueue()
        for _ in range(self.RING):
            self.free.put(torch.empty(self.capacity, dtype=torch.uint8, pin_memory=device.type == "cuda"))

    def end_step(self, start: int) -> None:
        """One non-blocking copy of the whole step to a free pinned buffer, then hand the rows to the windows."""
        torch = self.torch
        layout = self.layout
        handle = self.handle
        n_layers, batch, length, width = layout.shape
        try:
            host = self.free.get_nowait()
        except queue.Empty:
            for trace_id in handle.trace_ids[:batch]:
                handle.pipeline.drop_rows(trace_id, n_layers * length, "no free pinned buffer (D2H thread behind)")
            return
        cuda = self.gpu.is_cuda
        host[: layout.total].copy_(self.gpu[: layout.total], non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        transfer = _Transfer(event, host, layout, self.free)
        for layer, slot in self.slots.items():
            for row, trace_id in enumerate(handle.trace_ids[:batch]):
                handle.pipeline.capture_block(trace_id, start, _StagedRows(transfer, slot, row, 0, length), layer,
                                              width=layout.d_model, copy=False)
        self.transfers.put(transfer)

    def _run(self) -> None:
        torch = self.torch
        while True:
            transfer = self.transfers.get()
            if transfer is None:
                return
            try:
                if transfer.event is not None:
                    transfer.event.synchronize()
                values, indices = transfer.layout.views(torch, transfer.host)
                transfer.values = values.to(torch.float32, copy=True).numpy()
                transfer.indices = indices.numpy().copy() if indices is not None else None
            except Exception:
                logger.exception("capture: device-to-host transfer failed")
            finally:
                transfer.free.put(transfer.host)
                transfer.host = None
                transfer.done.set()

    def close(self) -> None:
        """Let in-flight transfers finish, then end the thread (the windows may still need their rows)."""
        self.transfers.put(None)
