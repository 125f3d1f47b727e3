"""The sweeper: a thread inside every worker that re-publishes stages whose lease expired.

It replaces a separate scheduler (beat), so recovery needs no process an operator might forget to run. Every worker
runs one, but a Redis lock lets only one of them sweep at a time; a sweep is a few indexed queries, so the lock is
held for milliseconds. It sweeps once at start, then every `SWEEP_INTERVAL_S`.
"""
from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import close_old_connections, connection

from . import services

logger = logging.getLogger(__name__)

LOCK_NAME = "hypergraph:sweeper"


class Sweeper:
    def __init__(self, interval_s: float | None = None, redis_url: str | None = None) -> None:
        self.interval_s = settings.SWEEP_INTERVAL_S if interval_s is None else interval_s
        self._redis = redis.Redis.from_url(redis_url or settings.REDIS_URL, socket_connect_timeout=2,
                                           socket_timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def sweep_once(self) -> services.SweepResult | None:
        """Sweep if no other worker is sweeping; None when the lock was taken (or Redis is unreachable)."""
        lock = self._redis.lock(LOCK_NAME, timeout=max(60.0, 4 * self.interval_s), blocking=False)
        try:
            if not lock.acquire():
                return None
        except redis.RedisError as exc:
            logger.warning("sweeper: Redis unreachable, skipping this sweep: %s", exc)
            return None
        try:
            return services.traces_sweep()
        finally:
            try:
                lock.release()
            except redis.RedisError:
                pass  # the lock times out by itself

    def _loop(self) -> None:
        try:
            while True:
                try:
                    self.sweep_once()
                except Exception:  # noqa: BLE001 - a failed sweep (database down) must not end the loop
                    logger.exception("sweeper: sweep failed; trying again in %ss", self.interval_s)
                    close_old_connections()
                if self._stop.wait(self.interval_s):
                    return
        finally:
            connection.close()
