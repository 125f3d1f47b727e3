"""Is the broker (Redis) reachable? Asked before an event is accepted, and by `/readyz`."""
from __future__ import annotations

import time
from functools import cache

import redis
from django.conf import settings


class BrokerUnavailable(Exception):
    """Redis cannot be reached; nothing was written, the client should retry later."""


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)


_last_ok = {"at": float("-inf")}


def broker_check(*, reuse_s: float = 0.0) -> None:
    """Ping Redis before any write, so an outage gives a clean 503 instead of a trace that can never run.

    `reuse_s` lets a busy caller trust a successful ping this recent instead of paying a round trip per request:
    an event accepted in that window while Redis has just gone down is still committed, and its run is published
    by the sweeper once Redis is back, so nothing is lost; only the clean 503 comes up to `reuse_s` later.
    """
    if time.monotonic() - _last_ok["at"] < reuse_s:
        return
    try:
        _redis().ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(str(exc)) from exc
    _last_ok["at"] = time.monotonic()
