"""Shard stores: a bounded queue drained by one background writer thread per store.

Why a thread and a bounded queue: the model server's thread may only hand a job over (`submit`, a few µs); encoding
and I/O happen on the writer. When the store is slow or down the queue fills and `submit` returns False at once, so
the caller counts a drop instead of blocking, and memory stays bounded by `queue_max` windows.

A job is any object with `key: str`, `encode() -> bytes` and `done(ok: bool, nbytes: int)`; the pipeline's window
jobs are the only producer in this package.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

logger = logging.getLogger(__name__)


class Job(Protocol):
    key: str

    def encode(self) -> bytes: ...

    def done(self, ok: bool, nbytes: int) -> None: ...


_STOP = object()


class _Writer:
    """The background thread shared by both stores: batch, encode, write, report each job's outcome."""

    def __init__(self, write_batch: Callable[[list[tuple[str, bytes]]], None], *, queue_max: int, batch_max: int,
                 name: str, on_error: Callable[[Exception], None]) -> None:
        self._write_batch = write_batch
        self._on_error = on_error
        self._batch_max = batch_max
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self._name = name
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, job: Job) -> bool:
        """Hand a job to the writer; False (never blocking) when the queue is full."""
        if self._pid != os.getpid():
            self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _start(self) -> None:
        """Start lazily and again after a fork: a thread started before `fork()` does not exist in the child."""
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._pid:
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is _STOP for job in batch)
            self._process([job for job in batch if job is not _STOP])
            if stop:
                return

    def _process(self, jobs: list[Job]) -> None:
        encoded: list[tuple[Job, bytes]] = []
        for job in jobs:
            try:
                encoded.append((job, job.encode()))
            except Exception:
                logger.exception("capture: could not encode shard %s; dropped", job.key)
                job.done(False, 0)
            time.sleep(0)  # hand the GIL back between shards: the model thread waits ~one shard, not a whole batch
        if not encoded:
            return
        try:
            self._write_batch([(job.key, blob) for job, blob in encoded])
            ok = True
        except Exception as exc:
            ok = False
            self._on_error(exc)
        for job, blob in encoded:
            job.done(ok, len(blob) if ok else 0)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let queued jobs finish, then stop the thread (blocking up to `timeout_s`)."""
        if self._thread is None or self._pid != os.getpid():
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        self._thread, self._pid = None, 0


class InMemoryStore:
    """Shards in a dict, for tests and dry runs. Same writer thread as Redis, so it exercises the same paths;
    `mget` makes it readable by `read_shards`. No TTL."""

    def __init__(self, *, queue_max: int = 1024, batch_max: int = 64) -> None:
        self.data: dict[str, bytes] = {}
        self._writer = _Writer(self._write, queue_max=queue_max, batch_max=batch_max, name="hg-capture-memory",
                               on_error=_log_write_error)

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        self.data.update(items)

    def submit(self, job: Job) -> bool:
        return self._writer.submit(job)

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def mget(self, keys: Iterable[str]) -> list[bytes | None]:
        return [self.data.get(key) for key in keys]

    def close(self) -> None:
        self._writer.close()


class RedisStore:
    """Shards in Redis under their keys with `SET key blob EX ttl_s`, pipelined per batch (one round trip).

    The client fails fast (short socket timeouts, no client-side retries): the writer thread is the only one that
    waits, and while it waits the queue absorbs or drops, so a Redis outage costs data, never generation.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, client: Any = None, ttl_s: int = 3600,
                 queue_max: int = 1024, batch_max: int = 64, socket_timeout_s: float = 1.0) -> None:
        self.url = url
        self.ttl_s = int(ttl_s)
        self._client = client if client is not None else _fail_fast_client(url, socket_timeout_s)
        self._failing = False
        self._writer = _Writer(self._write, queue_max=queue_max, batch_max=batch_max, name="hg-capture-redis",
                               on_error=self._on_error)

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> "RedisStore":
        """Store configured by a `CaptureConfig` (URL, TTL, queue and batch bounds)."""
        return cls(cfg.redis_url, ttl_s=cfg.ttl_s, queue_max=cfg.queue_max, batch_max=cfg.batch_max, **kwargs)

    @property
    def client(self) -> Any:
        return self._client

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key, blob in items:
            pipe.set(key, blob, ex=self.ttl_s)
        pipe.execute()
        if self._failing:
            self._failing = False
            logger.warning("capture: Redis at %s reachable again", self.url)

    def _on_error(self, exc: Exception) -> None:
        """Log an outage once when it starts (per-trace drop counts are logged by the pipeline), not per batch."""
        if not self._failing:
            self._failing = True
            logger.warning("capture: Redis at %s unavailable (%s: %s); dropping shards until it recovers",
                           self.url, type(exc).__name__, exc)

    def submit(self, job: Job) -> bool:
        return self._writer.submit(job)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._client.mget(list(keys))

    def close(self) -> None:
        self._writer.close()


def _log_write_error(exc: Exception) -> None:
    logger.warning("capture: shard write failed (%s: %s); shards dropped", type(exc).__name__, exc)


def _fail_fast_client(url: str, socket_timeout_s: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
                                retry=Retry(NoBackoff(), 0))
