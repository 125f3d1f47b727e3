"""The capture shards a trace's activations events point at, in Redis: read by the load stage, deleted on expiry."""
from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

from .models import Trace


@cache
def shard_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def shard_keys(trace: Trace) -> list[str]:
    """Every shard key the trace's activations events name (inline activations have none)."""
    payloads = trace.events.filter(event_type="activations").values_list("payload", flat=True)
    return [key for payload in payloads for key in payload.get("shards", [])]


def shards_delete(keys: list[str]) -> int:
    return shard_client().delete(*keys) if keys else 0
