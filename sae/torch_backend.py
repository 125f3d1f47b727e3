"""Decode backends: the numpy CPU path, and an optional torch path (CUDA, or torch CPU standing in for it in tests).

`SAE_DEVICE=auto` picks CUDA when torch sees a GPU, else the numpy path; `cuda` insists on the GPU and falls back to
numpy (counted in `sae_decode_fallbacks_total`) when there is none, as it does when torch is not installed or a torch
decode fails at run time. torch is imported lazily so the library works without it.

The torch path streams the encoder in column chunks: `addmm` of a chunk in the weight dtype (bf16/fp16 on GPU, with
fp32 accumulation inside the GEMM), the architecture's elementwise step, and a per-chunk `topk` of k + margin
candidates, so the `[T, d_sae]` scores are never held, nor read a second time. The merged candidates are then rescored
in fp32 against the fp32 encoder columns and the final k taken from those exact scores: low precision only picks
candidates, so the features and values match the fp32 reference unless a true top-k feature fell outside the margin.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from sae import metrics
from sae.dictionary import SAEDictionary

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


class TorchTopK:
    """Chunked low-precision candidate selection + exact fp32 rescoring for one dictionary on one torch device."""

    def __init__(self, dictionary: SAEDictionary, device: str, dtype: Any = None, chunk_cols: int = 16384,
                 margin: int = 32) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.chunk_cols = chunk_cols
        self.margin = margin
        scoring = dictionary.fast_path().scoring
        self.kind = scoring.kind
        self.k_cap = scoring.k_cap
        self.d_in, self.d_sae = dictionary.d_in, dictionary.d_sae
        self.prepare = dictionary.sae_in

        def t(a: np.ndarray | None, dtype: Any = torch.float32) -> Any:
            if a is None:
                return None
            return torch.as_tensor(np.array(a, dtype=np.float32), dtype=dtype, device=self.device)

        self.W32_T = t(np.asarray(scoring.W).T)  # [d_sae, d_in] fp32, rows gathered for rescoring
        self.W_lo = self.W32_T.T.to(self.dtype).contiguous() if self.dtype != torch.float32 else self.W32_T.T
        self.bias = t(scoring.bias)
        self.bias_lo = self.bias.to(self.dtype)
        self.threshold = t(scoring.threshold)
        self.gate_bias, self.mag_scale, self.mag_bias = t(scoring.gate_bias), t(scoring.mag_scale), t(scoring.mag_bias)

    def _activate(self, s: Any, cols: slice) -> Any:
        torch = self.torch
        if self.kind == "threshold":
            return torch.where(s > self.threshold[cols].to(s.dtype), s, torch.zeros((), dtype=s.dtype, device=s.device))
        if self.kind == "gated":
            gate = (s + self.gate_bias[cols].to(s.dtype)) > 0
            mag = s * self.mag_scale[cols].to(s.dtype) + self.mag_bias[cols].to(s.dtype)
            return torch.where(gate, mag, torch.zeros((), dtype=s.dtype, device=s.device))
        return s

    def candidates(self, x: Any, m: int) -> Any:
        """x: [T, d_in] -> indices [T, m] of the top-m low-precision scores, chunk by chunk (no [T, d_sae] held)."""
        torch = self.torch
        x_lo = x.to(self.dtype)
        best_v, best_i = None, None
        for start in range(0, self.d_sae, self.chunk_cols):
            cols = slice(start, min(self.d_sae, start + self.chunk_cols))
            s = self._activate(torch.addmm(self.bias_lo[cols], x_lo, self.W_lo[:, cols]), cols)
            v, i = torch.topk(s, min(m, s.shape[1]), dim=1)
            i = i + start
            if best_v is None:
                best_v, best_i = v, i
            else:
                v, j = torch.topk(torch.cat([best_v, v], 1), min(m, best_v.shape[1] + v.shape[1]), dim=1)
                best_v, best_i = v, torch.gather(torch.cat([best_i, i], 1), 1, j)
        return best_i

    def rescore(self, x: Any, idx: Any, row_chunk: int = 256) -> Any:
        """Exact fp32 scores of the candidate features idx [T, m] (gathered encoder columns, bounded memory)."""
        torch = self.torch
        out = torch.empty(idx.shape, dtype=torch.float32, device=self.device)
        for r in range(0, x.shape[0], row_chunk):
            rows = slice(r, r + row_chunk)
            w = self.W32_T[idx[rows]]  # [rows, m, d_in]
            s = torch.bmm(w, x[rows].unsqueeze(2)).squeeze(2) + self.bias[idx[rows]]
            if self.kind == "threshold":
                s = torch.where(s > self.threshold[idx[rows]], s, torch.zeros((), device=s.device))
            elif self.kind == "gated":
                gate = (s + self.gate_bias[idx[rows]]) > 0
                s = torch.where(gate, s * self.mag_scale[idx[rows]] + self.mag_bias[idx[rows]],
                                torch.zeros((), device=s.device))
            out[rows] = s
        return out

    def topk(self, x_np: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.as_tensor(self.prepare(x_np), device=self.device)
            k_sel = min(k, self.d_sae)
            exact = self.dtype == torch.float32
            m = min(self.d_sae, k_sel if exact else k_sel + self.margin)
            idx = self.candidates(x, m)
            scores = self.rescore(x, idx)
            v, j = torch.topk(scores, k_sel, dim=1)
            i = torch.gather(idx, 1, j)
            indices = np.zeros((x.shape[0], k), np.int64)
            values = np.zeros((x.shape[0], k), np.float32)
            indices[:, :k_sel] = i.cpu().numpy()
            values[:, :k_sel] = v.clamp_min(0).cpu().numpy()
        if self.k_cap is not None and self.k_cap < k:
            values[:, self.k_cap:] = 0.0
        return indices, values


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
