"""The sweeper: a thread inside every worker that re-publishes stages whose lease expired, and gives the trace tables
statistics while they are young (`table_stats`).

It replaces a separate scheduler (beat), so recovery needs no process an operator might forget to run. Every worker
runs one, but a Redis lock lets only one of them sweep at a time; a sweep is a few indexed queries (and, while the
trace tables are young, an ANALYZE of a table of at most a few hundred thousand rows), so the lock is held for at
most a fraction of a second. It sweeps once at start, then every `SWEEP_INTERVAL_S`.
"""
from __future__ import annotations

import logging

import redis
from django.conf import settings

from . import services, table_stats
from .periodic import Periodic

logger = logging.getLogger(__name__)

LOCK_NAME = "hypergraph:sweeper"


class Sweeper(Periodic):
    name = "sweeper"

    def __init__(self, interval_s: float | None = None, redis_url: str | None = None) -> None:
        super().__init__(settings.SWEEP_INTERVAL_S if interval_s is None else interval_s)
        self._redis = redis.Redis.from_url(redis_url or settings.REDIS_URL, socket_connect_timeout=2,
                                           socket_timeout=5)

    def tick(self) -> None:
        self.sweep_once()

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
            result = services.traces_sweep()
            table_stats.young_tables_analyze()
            return result
        finally:
            try:
                lock.release()
            except redis.RedisError:
                pass  # the lock times out by itself
