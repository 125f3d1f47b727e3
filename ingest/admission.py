"""Admission at /ingest: a per-tenant rate limit shared by every web process, a per-tenant queue cap, and a refusal
of everything while the service is overloaded, all decided before anything is written.

The rate limit is a token bucket in Redis, one Lua script, so one round trip and the same bucket for every web
process (Redis's clock, not the processes'). The queue cap and the overload refusal read the load that backpressure
reads (`explainer.load_reading`), cached per process, so they cost no query per request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

from explainer.backpressure import refuses_admission
from explainer.load_reading import current_reading, limits
from explainer.models import Granularity

KEY_PREFIX = "hg:ingest:bucket"
GRANULARITIES = tuple(Granularity.values)

# KEYS: the tenant's bucket; ARGV: rate (tokens per second), burst (bucket size). Returns the seconds to wait for a
# token, 0 when one was taken. The bucket expires once it would be full again, so idle tenants cost no memory.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then
  tokens, at = burst, now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    retry_after_s: int


@cache
def _take_script():
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    return client.register_script(_TAKE)


def rate_limit(*, tenant_id: int) -> Refusal | None:
    """Take one request from the tenant's bucket; a 429 when it is empty (`INGEST_RATE_PER_TENANT`, 0: off)."""
    rate = settings.INGEST_RATE_PER_TENANT
    if rate <= 0:
        return None
    burst = settings.INGEST_BURST_PER_TENANT or max(1, math.ceil(rate))
    wait = float(_take_script()(keys=[f"{KEY_PREFIX}:{tenant_id}"], args=[rate, burst]))
    if wait <= 0:
        return None
    return Refusal(429, f"this tenant sends more than INGEST_RATE_PER_TENANT ({rate:g} requests per second, bursts of "
                        f"{burst}); retry after Retry-After seconds", max(1, math.ceil(wait)))


def load_admission(*, tenant_id: int, finalizes: bool) -> Refusal | None:
    """503 while every granularity is at the drop level (global overload); 429 for a finalize that would take the
    tenant past its queue cap (`BP_MAX_QUEUE_TENANT` × `BP_BURST_MULTIPLIER` traces queued or running)."""
    bounds, reading = limits(), current_reading()
    loads = {g: reading.load_for(tenant_id=tenant_id, granularity=g) for g in GRANULARITIES}
    if refuses_admission(bounds, loads):
        return Refusal(503, f"the service is overloaded ({reading.global_active} traces queued or running, "
                            f"BP_MAX_QUEUE_GLOBAL {bounds.max_queue_global}); nothing was stored, retry later",
                       settings.RETRY_AFTER_S)
    active = reading.tenant_active.get(tenant_id, 0)
    if finalizes and active >= bounds.tenant_queue_cap:
        return Refusal(429, f"this tenant has {active} traces queued or running, its cap (BP_MAX_QUEUE_TENANT × "
                            f"BP_BURST_MULTIPLIER) is {bounds.tenant_queue_cap}; finalize it again later",
                       settings.RETRY_AFTER_S)
    return None
