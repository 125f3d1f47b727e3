"""Decode backends: the numpy CPU path, and an optional torch path (CUDA, or torch CPU standing in for it in tests).

`SAE_DEVICE=auto` picks CUDA when torch sees a GPU, else the numpy path; `cuda` insists on the GPU and falls back to
numpy (counted in `sae_decode_fallbacks_total`) when there is none, as it does when torch is not installed or a torch
decode fails at run time. torch is imported lazily so the library works without it.

The torch path works on row blocks of at most `block_elems` scores: `addmm` of the block against the whole encoder in
the weight dtype (bf16/fp16 on GPU, with fp32 accumulation inside the GEMM), the architecture's elementwise step, and a
selection of k + margin candidates per row straight on the low-precision scores (`top_candidates`), so the
`[T, d_sae]` scores are never held whatever T is, and no per-chunk candidates are merged. The candidates are then
rescored in fp32 against the fp32 encoder rows and the final k taken from those exact scores: low precision only picks
candidates, so the features and values match the fp32 reference unless a true top-k feature fell outside the margin.

Input preparation (b_dec subtraction, normalisation) and the finiteness check run on the device in fp32. A host array
goes up through two pinned staging buffers on a side stream, so the host copy of one piece overlaps the DMA of the
previous one and the device works on a row block while later rows are still being copied.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Iterable, Iterator

import numpy as np

from sae import metrics
from sae.dictionary import SAEDictionary
from sae.errors import DictionaryError
from sae.normalization import LAYER_NORM_EPS

log = logging.getLogger(__name__)


class Backend:
    name = "cpu"

    def topk(self, dictionary: SAEDictionary, x: np.ndarray, k: int,
             tile_rows: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError

    def forget(self, dictionary: SAEDictionary) -> None:
        """Drop per-dictionary device state (called when the layer leaves the LRU)."""


class NumpyBackend(Backend):
    """The float32 numpy path; `fallback_from` names the device that was wanted, for the fallback counter."""

    def __init__(self, fallback_from: str | None = None) -> None:
        self.fallback_from = fallback_from

    def topk(self, dictionary: SAEDictionary, x: np.ndarray, k: int,
             tile_rows: int) -> tuple[np.ndarray, np.ndarray, str]:
        if self.fallback_from:
            metrics.DECODE_FALLBACKS.labels(device=self.fallback_from).inc()
        indices, values = dictionary.topk(x, k, tile_rows=tile_rows)
        return indices, values, "cpu"


def top_candidates(s: Any, m: int, group: int) -> Any:
    """s: [R, n] scores -> int64 indices [R, m] of the m largest per row (unsorted; ties broken arbitrarily).

    With `group` > 1 the selection reads the scores about once instead of the several passes of a radix top-k over
    n columns: the first n // group * group columns form n // group groups (group q = columns q, q + n // group, ...),
    the m groups with the largest maxima are kept, and the top m is taken among their members plus the < group tail
    columns. Exact, as on the CPU path (`sae.topk`): an element of a dropped group is beaten by m group maxima, which
    are m distinct elements >= it.
    """
    import torch

    R, n = s.shape
    n_groups = n // group
    if group == 1 or n_groups < 2 * m:
        return torch.topk(s, m, dim=1, sorted=False).indices
    body = n_groups * group
    maxima = s[:, :body].unflatten(1, (group, n_groups)).amax(1)  # [R, n_groups]; reduction over a strided axis
    top = torch.topk(maxima, m, dim=1, sorted=False).indices  # [R, m]
    members = torch.arange(group, device=s.device) * n_groups
    cols = (top.unsqueeze(2) + members).flatten(1)  # [R, m * group]
    if body < n:
        cols = torch.cat([cols, torch.arange(body, n, device=s.device).expand(R, -1)], 1)
    best = torch.topk(torch.gather(s, 1, cols), m, dim=1, sorted=False).indices
    return torch.gather(cols, 1, best)


def group_size(n: int, m: int) -> int:
    """Power of two near sqrt(n / m): balances the n / g group maxima against the m * g members gathered."""
    return 1 << max(0, round(math.log2(max(1.0, math.sqrt(n / max(1, m))))))


class TorchTopK:
    """Low-precision candidate selection + exact fp32 rescoring for one dictionary on one torch device.

    `block_elems` bounds the temporaries: a row block's scores ([R, d_sae] in the weight dtype) and a rescoring
    chunk's gathered encoder rows ([r, k + margin, d_in] fp32). `stage_elems` is the size of each pinned staging buffer
    for host input. Thread-safe: the staging buffers are used under a lock.
    """

    def __init__(self, dictionary: SAEDictionary, device: str, dtype: Any = None, block_elems: int = 1 << 27,
                 margin: int = 32, stage_elems: int = 1 << 21) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.block_elems = block_elems
        self.margin = margin
        self.stage_elems = stage_elems
        self.group: int | None = None  # None: group_size(d_sae, k + margin); 1: a plain torch.topk (for comparisons)
        scoring = dictionary.scoring()
        self.kind = scoring.kind
        self.k_cap = scoring.k_cap
        self.d_in, self.d_sae = dictionary.d_in, dictionary.d_sae
        self.check_shape = dictionary.check_shape
        self.format, self.file = dictionary.format, dictionary.spec.weights_file
        self.layer_norm = dictionary.spec.normalize_activations == "layer_norm"

        def t(a: np.ndarray | None) -> Any:
            if a is None:
                return None
            return torch.as_tensor(np.array(a, dtype=np.float32), device=self.device)

        self.b_dec = t(dictionary.b_dec) if dictionary.spec.apply_b_dec_to_input else None
        W32 = t(scoring.W)  # [d_in, d_sae]
        self.W_lo = W32 if self.dtype == torch.float32 else W32.to(self.dtype)
        # [d_sae, d_in] row-major: rescoring gathers whole rows (d_in contiguous floats each); gathering from the
        # transposed view instead (stride (1, d_sae)) made the rescoring ~9x slower on an H200
        self.W32_T = W32.T.contiguous()
        del W32
        self.bias = t(scoring.bias)
        self.bias_lo = self.bias.to(self.dtype)
        self.threshold = t(scoring.threshold)
        self.gate_bias, self.mag_scale, self.mag_bias = t(scoring.gate_bias), t(scoring.mag_scale), t(scoring.mag_bias)
        self._stage_lock = threading.Lock()
        self._staging: list[tuple[Any, Any]] | None = None  # (pinned buffer, event of its last DMA) x 2, on CUDA
        self._copy_stream: Any = None

    def _activate(self, s: Any, pick: Any) -> Any:
        """The architecture's elementwise step on scores s; `pick(p)` gives per-feature parameter p for s's columns."""
        torch = self.torch
        zero = torch.zeros((), dtype=s.dtype, device=s.device)
        if self.kind == "threshold":
            return torch.where(s > pick(self.threshold), s, zero)
        if self.kind == "gated":
            gate = (s + pick(self.gate_bias)) > 0
            return torch.where(gate, s * pick(self.mag_scale) + pick(self.mag_bias), zero)
        return s

    def sae_in(self, x: Any) -> Any:
        """x: [R, d_in] fp32 on the device -> what the encoder sees (as `SAEDictionary.sae_in`, in torch fp32)."""
        if self.layer_norm:
            centred = x - x.mean(-1, keepdim=True)
            x = centred / (centred.std(-1, keepdim=True) + float(LAYER_NORM_EPS))  # unbiased std, as SAELens
        return x - self.b_dec if self.b_dec is not None else x

    def block_rows(self) -> int:
        """Rows per candidate block: [rows, d_sae] scores within `block_elems`."""
        return max(1, self.block_elems // self.d_sae)

    def candidates(self, x: Any, m: int) -> Any:
        """x: [T, d_in] sae_in fp32 -> indices [T, m] of the top-m low-precision scores, a row block at a time."""
        torch = self.torch
        group = self.group or group_size(self.d_sae, m)
        out = torch.empty((x.shape[0], m), dtype=torch.int64, device=x.device)
        rows = self.block_rows()
        for r in range(0, x.shape[0], rows):
            s = torch.addmm(self.bias_lo, x[r:r + rows].to(self.dtype), self.W_lo)
            s = self._activate(s, lambda p: p.to(s.dtype))
            out[r:r + rows] = top_candidates(s, m, group)
        return out

    def rescore(self, x: Any, idx: Any) -> Any:
        """Exact fp32 scores [T, m] of the candidate features idx [T, m]: gathered encoder rows, bounded memory."""
        torch = self.torch
        out = torch.empty(idx.shape, dtype=torch.float32, device=x.device)
        rows = max(1, self.block_elems // (idx.shape[1] * self.d_in))
        for r in range(0, x.shape[0], rows):
            ii = idx[r:r + rows]
            w = self.W32_T.index_select(0, ii.flatten()).unflatten(0, ii.shape)  # [rows, m, d_in]
            s = torch.bmm(w, x[r:r + rows].unsqueeze(2)).squeeze(2) + self.bias[ii]
            out[r:r + rows] = self._activate(s, lambda p: p[ii])
        return out

    def _decode(self, x: Any, k_sel: int) -> tuple[Any, Any]:
        """x: [R, d_in] raw fp32 rows on the device -> (indices [R, k_sel], fp32 values [R, k_sel]), sorted."""
        torch = self.torch
        exact = self.dtype == torch.float32
        m = min(self.d_sae, k_sel if exact else k_sel + self.margin)
        x = self.sae_in(x)
        idx = self.candidates(x, m)
        v, j = torch.topk(self.rescore(x, idx), k_sel, dim=1)
        return torch.gather(idx, 1, j), v.clamp_min(0)

    def _decode_blocks(self, blocks: Iterable[tuple[int, Any]], T: int, k: int) -> tuple[Any, Any]:
        """Decode (start row, [R, d_in] fp32 device rows) blocks into [T, k] outputs; checks finiteness once."""
        torch = self.torch
        k_sel = min(k, self.d_sae)
        indices = torch.zeros((T, k), dtype=torch.int64, device=self.device)
        values = torch.zeros((T, k), dtype=torch.float32, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for start, x in blocks:
            finite &= torch.isfinite(x).all()
            i, v = self._decode(x, k_sel)
            indices[start:start + x.shape[0], :k_sel] = i
            values[start:start + x.shape[0], :k_sel] = v
        if not bool(finite):  # one device sync, after all the work is queued
            raise DictionaryError("activations contain NaN or Inf", format=self.format, file=self.file)
        if self.k_cap is not None and self.k_cap < k:
            values[:, self.k_cap:] = 0.0
        return indices, values

    def topk_tensor(self, x: Any, k: int) -> tuple[Any, Any]:
        """x: torch tensor [T, d_in] (or [d_in]), any float dtype, ideally already on this device (e.g. activations
        captured on the GPU) -> (indices int64 [T, k], values float32 [T, k]) on the device, as `topk`."""
        torch = self.torch
        T, _ = self.check_shape(tuple(x.shape))
        x = x.reshape(T, self.d_in)
        rows = self.block_rows()
        with torch.inference_mode():
            blocks = ((r, x[r:r + rows].to(self.device, torch.float32)) for r in range(0, T, rows))
            return self._decode_blocks(blocks, T, k)

    def topk(self, x_np: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """x_np: host array [T, d_in] (or [d_in]) -> (indices int64 [T, k], values float32 [T, k]) sorted by value
        descending, as `SAEDictionary.topk`: inactive features and entries past the architecture's own k are 0.0."""
        x = np.asarray(x_np)
        T, _ = self.check_shape(x.shape)
        x = x.reshape(T, self.d_in)
        with self.torch.inference_mode(), self._stage_lock:
            indices, values = self._decode_blocks(self._upload(x), T, k)
            return indices.cpu().numpy(), values.cpu().numpy()

    def _upload(self, x: np.ndarray) -> Iterator[tuple[int, Any]]:
        """Yield (start row, fp32 device rows) blocks of host x [T, d_in], each ready on the current stream.

        On CUDA the rows go through two pinned buffers of `stage_elems` on a side stream: the host fills one while the
        other's DMA runs, and never waits for the decode kernels, which start on a block as soon as it has arrived.
        """
        torch = self.torch
        T, rows = x.shape[0], self.block_rows()
        if self.device.type != "cuda":
            for r in range(0, T, rows):
                yield r, torch.from_numpy(np.array(x[r:r + rows], np.float32)).to(self.device)
            return
        piece = max(1, self.stage_elems // self.d_in)
        if self._staging is None:
            self._staging = [(torch.empty((piece, self.d_in), dtype=torch.float32, pin_memory=True),
                              torch.cuda.Event()) for _ in range(2)]
            self._copy_stream = torch.cuda.Stream(self.device)
        compute, copy = torch.cuda.current_stream(self.device), self._copy_stream
        x_dev = torch.empty((T, self.d_in), dtype=torch.float32, device=self.device)
        copy.wait_stream(compute)  # x_dev's memory may have been freed by kernels still queued on the compute stream
        n = 0
        for r in range(0, T, rows):
            for p in range(r, min(T, r + rows), piece):
                buf, done = self._staging[n % 2]
                n += 1
                done.synchronize()  # the DMA that last read this buffer has finished
                src = x[p:p + piece]
                if src.flags.writeable and src.flags.c_contiguous:  # torch's copy runs on several threads
                    buf[:len(src)].copy_(torch.from_numpy(src))
                else:  # torch.from_numpy warns on read-only arrays
                    np.copyto(buf[:len(src)].numpy(), src, casting="unsafe")
                with torch.cuda.stream(copy):
                    x_dev[p:p + len(src)].copy_(buf[:len(src)], non_blocking=True)
                    done.record(copy)
            compute.wait_stream(copy)
            yield r, x_dev[r:r + rows]


class TorchBackend(Backend):
    def __init__(self, device: str, dtype: Any = None) -> None:
        self.name = device
        self.device = device
        self.dtype = dtype
        self._prepared: dict[int, TorchTopK] = {}
        self._lock = threading.Lock()
        self._numpy = NumpyBackend(fallback_from=device)

    def _get(self, dictionary: SAEDictionary) -> TorchTopK:
        with self._lock:
            prepared = self._prepared.get(id(dictionary))
            if prepared is None:
                prepared = self._prepared[id(dictionary)] = TorchTopK(dictionary, self.device, self.dtype)
            return prepared

    def forget(self, dictionary: SAEDictionary) -> None:
        with self._lock:
            self._prepared.pop(id(dictionary), None)

    def topk(self, dictionary: SAEDictionary, x: np.ndarray, k: int,
             tile_rows: int) -> tuple[np.ndarray, np.ndarray, str]:
        try:
            indices, values = self._get(dictionary).topk(x, k)
        except RuntimeError as exc:  # CUDA OOM, driver trouble: the numpy path still gives the same features
            log.warning("sae: torch %s decode failed (%s); using the numpy CPU path", self.device, exc)
            return self._numpy.topk(dictionary, x, k, tile_rows)
        return indices, values, self.device


def torch_cuda_available() -> bool | None:
    """True/False when torch is importable, None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return bool(torch.cuda.is_available())


def select_backend(device: str) -> Backend:
    if device == "cpu":
        return NumpyBackend()
    cuda = torch_cuda_available()
    if cuda:
        return TorchBackend("cuda")
    if device == "cuda" or cuda is None:
        log.warning("sae: SAE_DEVICE=%s but %s; decoding on the numpy CPU path", device,
                    "torch is not installed" if cuda is None else "no CUDA device is available")
        return NumpyBackend(fallback_from="cuda" if device == "cuda" else "auto")
    return NumpyBackend()
