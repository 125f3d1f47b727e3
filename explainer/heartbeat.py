"""Worker heartbeats in Redis: every worker says it is alive every `WORKER_HEARTBEAT_S`; `/readyz` and /metrics read them.

One key per worker hostname (`hypergraph:heartbeat:<hostname>`, the time of the beat, expiring after
`READYZ_WORKER_MAX_AGE_S`), plus a set naming the hostnames, so a reader needs no SCAN over a database that also
holds the capture shards: it reads the set and the keys in one round trip and drops hostnames whose key expired.
"""
from __future__ import annotations

import logging
import time
from functools import cache

import redis
from django.conf import settings

from .periodic import Periodic

logger = logging.getLogger(__name__)

KEY_PREFIX = "hypergraph:heartbeat:"
MEMBERS_KEY = "hypergraph:heartbeats"


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)


def heartbeat_write(*, hostname: str, now: float | None = None) -> None:
    ttl_ms = max(1, int(settings.READYZ_WORKER_MAX_AGE_S * 1000))
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(KEY_PREFIX + hostname, repr(time.time() if now is None else now), px=ttl_ms)
    pipe.sadd(MEMBERS_KEY, hostname)
    pipe.execute()


def workers_alive(*, max_age_s: float | None = None) -> dict[str, float]:
    """Hostname → seconds since its last heartbeat, for workers seen within `max_age_s` (default
    `READYZ_WORKER_MAX_AGE_S`). Raises `redis.RedisError` when Redis is unreachable."""
    max_age = settings.READYZ_WORKER_MAX_AGE_S if max_age_s is None else max_age_s
    client = redis_client()
    hostnames = sorted(h.decode() for h in client.smembers(MEMBERS_KEY))
    if not hostnames:
        return {}
    beats = client.mget([KEY_PREFIX + h for h in hostnames])
    gone = [h for h, beat in zip(hostnames, beats) if beat is None]
    if gone:
        client.srem(MEMBERS_KEY, *gone)
    now = time.time()
    ages = {h: max(0.0, now - float(beat)) for h, beat in zip(hostnames, beats) if beat is not None}
    return {h: age for h, age in ages.items() if age <= max_age}


class Heartbeat(Periodic):
    """A thread that writes this worker's heartbeat until stopped (started when the worker is ready)."""

    name = "heartbeat"

    def __init__(self, hostname: str, interval_s: float | None = None) -> None:
        super().__init__(settings.WORKER_HEARTBEAT_S if interval_s is None else interval_s)
        self.hostname = hostname

    def tick(self) -> None:
        heartbeat_write(hostname=self.hostname)

    def stop(self, timeout_s: float = 5.0) -> None:
        super().stop(timeout_s)
        try:
            redis_client().delete(KEY_PREFIX + self.hostname)
        except redis.RedisError:
            pass  # the key expires by itself
