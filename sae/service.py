"""`SAEDecodeService`: the decode stage's entry point — layer LRU, device choice, micro-batching, metrics.

Requests for the same layer that arrive within `max_wait_ms` of each other are decoded as one batch (their token rows
concatenated into one top-k call), because one large GEMM streams the encoder matrix from memory once instead of once
per trace. Batching needs no background thread: the first caller of an idle layer becomes that layer's leader, waits
for company, decodes the batch, hands every caller its rows, and keeps serving until the layer's queue is empty.
Inputs are checked in the caller's thread, so one bad request fails alone and never poisons a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sae import metrics
from sae.config import SAEConfig
from sae.dictionary import SAEDictionary, load_dictionary
from sae.torch_backend import Backend, select_backend

log = logging.getLogger(__name__)


@dataclass
class DecodeResult:
    """Top features per token: indices int64 [T, k], values float32 [T, k] sorted descending (0.0 = inactive)."""

    indices: np.ndarray
    values: np.ndarray
    layer: int
    device: str
    dictionary: SAEDictionary


@dataclass
class _Request:
    x: np.ndarray
    k: int
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple[np.ndarray, np.ndarray, str] | None = None
    error: BaseException | None = None


@dataclass
class _LayerQueue:
    cond: threading.Condition = field(default_factory=threading.Condition)
    pending: list[_Request] = field(default_factory=list)
    leader: bool = False


class SAEDecodeService:
    """Decode captured activations of a layer into their top-k SAE features."""

    def __init__(self, config: SAEConfig | None = None, *,
                 loader: Callable[[Path], SAEDictionary] = load_dictionary) -> None:
        self.config = config or SAEConfig.from_env()
        self._loader = loader
        self._cache: OrderedDict[int, SAEDictionary] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._queues: dict[int, _LayerQueue] = {}
        self._queues_lock = threading.Lock()
        self.backend: Backend = select_backend(self.config.device)
        self.batches: list[int] = []

    def _evict(self) -> None:
        while len(self._cache) > self.config.cache_layers:
            layer, dictionary = self._cache.popitem(last=False)
            self.backend.forget(dictionary)
            log.info("sae: evicted layer %s from the dictionary cache", layer)
        metrics.LAYER_CACHE_SIZE.set(len(self._cache))

    def cached_layers(self) -> list[int]:
        with self._cache_lock:
            return list(self._cache)

    def dictionary(self, layer: int) -> SAEDictionary:
        """The dictionary of `layer`, loaded once and kept in an LRU of `cache_layers` entries."""
        layer = int(layer)
        with self._cache_lock:
            if layer in self._cache:
                self._cache.move_to_end(layer)
                return self._cache[layer]
        folder = self.config.layer_folder(layer)
        dictionary = self._loader(folder)
        log.info("sae: loaded %s dictionary %s (%s, d_in=%d, d_sae=%d)", dictionary.format, folder,
                 dictionary.architecture, dictionary.d_in, dictionary.d_sae)
        with self._cache_lock:
            dictionary = self._cache.setdefault(layer, dictionary)
            self._cache.move_to_end(layer)
            self._evict()
        return dictionary

    def decode(self, layer: int, acts: np.ndarray, topk: int | None = None) -> DecodeResult:
        """acts: [T, d_in] -> top-k features per token. DictionaryError for a bad dictionary or mismatched input."""
        started = time.perf_counter()
        dictionary = self.dictionary(layer)
        x = dictionary.check_input(acts)
        k = int(topk or self.config.topk)
        if self.config.enable_service:
            indices, values, device = self._submit(int(layer), dictionary, _Request(x, k))
        else:
            indices, values, device = self._run(dictionary, x, k)
            self._record_batch(1)
        metrics.DECODE_REQUESTS.labels(device=device, layer=str(layer)).inc()
        metrics.DECODE_LATENCY.labels(device=device, layer=str(layer)).observe(time.perf_counter() - started)
        return DecodeResult(indices=indices, values=values, layer=int(layer), device=device, dictionary=dictionary)

    def _run(self, dictionary: SAEDictionary, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        return self.backend.topk(dictionary, x, k, self.config.tile_rows)

    def _record_batch(self, n: int) -> None:
        self.batches.append(n)
        del self.batches[:-1000]
        metrics.DECODE_BATCH_SIZE.observe(n)

    def _queue(self, layer: int) -> _LayerQueue:
        with self._queues_lock:
            return self._queues.setdefault(layer, _LayerQueue())

    def _submit(self, layer: int, dictionary: SAEDictionary, req: _Request) -> tuple[np.ndarray, np.ndarray, str]:
        q = self._queue(layer)
        with q.cond:
            q.pending.append(req)
            lead = not q.leader
            q.leader = True
            q.cond.notify_all()
        if lead:
            self._lead(q, dictionary)
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _lead(self, q: _LayerQueue, dictionary: SAEDictionary) -> None:
        """Serve batches of this layer until its queue is empty, then step down."""
        deadline = time.monotonic() + self.config.max_wait_ms / 1000.0
        while True:
            with q.cond:
                # only the first batch waits for company; later ones already waited while the last batch ran
                while len(q.pending) < self.config.batch_size and (left := deadline - time.monotonic()) > 0:
                    q.cond.wait(left)
                deadline = 0.0
                batch = q.pending[:self.config.batch_size]
                del q.pending[:self.config.batch_size]
                if not batch:
                    q.leader = False
                    return
            self._decode_batch(dictionary, batch)

    def _decode_batch(self, dictionary: SAEDictionary, batch: list[_Request]) -> None:
        self._record_batch(len(batch))
        try:
            k_max = max(r.k for r in batch)
            x = batch[0].x if len(batch) == 1 else np.concatenate([r.x for r in batch])
            indices, values, device = self._run(dictionary, x, k_max)
            start = 0
            for r in batch:
                stop = start + r.x.shape[0]
                r.result = (indices[start:stop, :r.k].copy(), values[start:stop, :r.k].copy(), device)
                start = stop
        except BaseException as exc:  # every waiter must wake up, whatever went wrong
            for r in batch:
                r.error = exc
        finally:
            for r in batch:
                r.done.set()
