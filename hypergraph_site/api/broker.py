"""Is the broker (Redis) reachable? Asked before an event is accepted, and by `/readyz`."""
from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


class BrokerUnavailable(Exception):
    """Redis cannot be reached; nothing was written, the client should retry later."""


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)


def broker_check() -> None:
    """Ping Redis before any write, so an outage gives a clean 503 instead of a trace that can never run."""
    try:
        _redis().ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(str(exc)) from exc
