"""The numbers backpressure decides on, read from where they really are, at most once per `BP_CACHE_S` per process.

- Broker queue depth: the Redis list lengths of the `default` and `gpu` queues, every priority list included (kombu
  keeps priority p > 0 of queue q in the list `q\\x06\\x16p`).
- Traces queued or running, per tenant and per granularity, from the database (one grouped query).
- Throughput: an exponential moving average of finished traces per second per granularity, kept in Redis so every
  web and worker process sees the same figure. Finishes are counted (`throughput_count`); whichever process reads
  first after a second has passed folds the new count into the average, atomically (one Lua script).

Global queue depth is the larger of the database's active traces and the broker's waiting messages: each waiting
trace has one message, but a lost message (healed later by the sweeper) or a duplicate re-publish makes either one
alone under- or over-count.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from functools import cache, lru_cache

import redis
from celery import current_app
from django.conf import settings
from django.db.models import Count
from prometheus_client import Counter, Gauge

from .backpressure import Level, Limits, Load, level_of, parse_ladder
from .models import ACTIVE_STATUSES, Granularity, Trace, TraceStatus

# kombu's Redis transport: priority steps and the separator of a priority list's name.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
QUEUES = ("default", "gpu")
# The throughput average forgets with this time constant (seconds): a minute of history weighs about 1 - 1/e².
THROUGHPUT_TAU_S = 30.0
KEY_PREFIX = "hg:bp"

LEVEL_GAUGE = Gauge("backpressure_level", "Backpressure level without tenant terms (0 none, 1 soft, 2 hard, 3 drop)",
                    ["granularity"], multiprocess_mode="max")
ACTIONS_TOTAL = Counter("backpressure_actions_total", "Traces a backpressure action was applied to", ["action"])

# Folds the finishes counted since the last fold into the average. KEYS: finish counter, state hash; ARGV: traces
# active of the granularity, seconds between folds, time constant. While nothing is active and nothing finished the
# average is kept (an idle service has not lost its capacity); the first finishes seen start it.
_FOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local state = redis.call('HMGET', KEYS[2], 'at', 'count', 'rate')
local at, before, rate = tonumber(state[1]), tonumber(state[2]), tonumber(state[3])
if at == nil then
  redis.call('HSET', KEYS[2], 'at', now, 'count', count)
  return false
end
local dt = now - at
if dt < tonumber(ARGV[2]) then
  if rate == nil then return false end
  return tostring(rate)
end
local sample = (count - before) / dt
if tonumber(ARGV[1]) > 0 or sample > 0 then
  if rate == nil then
    if sample > 0 then rate = sample end
  else
    local alpha = 1 - math.exp(-dt / tonumber(ARGV[3]))
    rate = alpha * sample + (1 - alpha) * rate
  end
end
redis.call('HSET', KEYS[2], 'at', now, 'count', count)
if rate == nil then return false end
redis.call('HSET', KEYS[2], 'rate', rate)
return tostring(rate)
"""


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)


@cache
def _broker() -> redis.Redis:
    return redis.Redis.from_url(current_app.conf.broker_url or settings.REDIS_URL, socket_connect_timeout=1,
                                socket_timeout=2)


@cache
def _fold_script():
    return _client().register_script(_FOLD)


def limits() -> Limits:
    """The BP_* settings as one value (built once per distinct set of values: /ingest asks on every request)."""
    return _limits(settings.BP_MAX_BACKLOG_SENTENCE, settings.BP_MAX_BACKLOG_TOKEN, settings.BP_MAX_QUEUE_TENANT,
                   settings.BP_MAX_QUEUE_GLOBAL, settings.BP_TENANT_MIN_GUARANTEE, settings.BP_BURST_MULTIPLIER,
                   settings.BP_DEGRADE_LADDER)


@lru_cache(maxsize=8)
def _limits(max_backlog_sentence: float, max_backlog_token: float, max_queue_tenant: int, max_queue_global: int,
            tenant_min_guarantee: int, burst_multiplier: float, ladder: str) -> Limits:
    return Limits(max_backlog_sentence=max_backlog_sentence, max_backlog_token=max_backlog_token,
                  max_queue_tenant=max_queue_tenant, max_queue_global=max_queue_global,
                  tenant_min_guarantee=tenant_min_guarantee, burst_multiplier=burst_multiplier,
                  ladder=parse_ladder(ladder))


def _finished_key(granularity: str) -> str:
    return f"{KEY_PREFIX}:finished:{granularity}"


def throughput_count(*, granularity: str) -> None:
    """Count one finished trace of `granularity` towards the throughput average (never fails the caller)."""
    try:
        _client().incr(_finished_key(granularity))
    except redis.RedisError:
        pass  # the average misses one finish; the trace's outcome is in the database regardless


@dataclass(frozen=True)
class Reading:
    """One look at the load. `throughput[g]` is None until finishes of `g` have been measured."""

    queue_lengths: dict[str, int]
    tenant_active: dict[int, int]
    tenant_running: dict[int, int]
    tenant_queued: dict[int, int]
    granularity_active: dict[str, int]
    throughput: dict[str, float | None]
    db_active: int = 0
    at: float = field(default_factory=time.monotonic)

    @property
    def global_active(self) -> int:
        return max(self.db_active, sum(self.queue_lengths.values()))

    def backlog_s(self, granularity: str) -> float:
        """Seconds to finish the granularity's queued and running work at the measured rate (0 while unmeasured)."""
        work, rate = self.granularity_active.get(granularity, 0), self.throughput.get(granularity)
        if not work or rate is None:
            return 0.0
        return work / rate if rate > 0 else math.inf

    def load_for(self, *, tenant_id: int | None, granularity: str) -> Load:
        return Load(backlog_s=self.backlog_s(granularity), tenant_active=self.tenant_active.get(tenant_id, 0),
                    tenant_running=self.tenant_running.get(tenant_id, 0), global_active=self.global_active)


def _read() -> Reading:
    tenant_active: dict[int, int] = {}
    tenant_running: dict[int, int] = {}
    tenant_queued: dict[int, int] = {}
    granularity_active: dict[str, int] = {}
    rows = (Trace.objects.filter(status__in=ACTIVE_STATUSES).values_list("tenant_id", "granularity", "status")
            .annotate(n=Count("id")).order_by())
    for tenant_id, granularity, status, n in rows:
        tenant_active[tenant_id] = tenant_active.get(tenant_id, 0) + n
        granularity_active[granularity] = granularity_active.get(granularity, 0) + n
        counts = tenant_running if status == TraceStatus.RUNNING else tenant_queued
        counts[tenant_id] = counts.get(tenant_id, 0) + n
    keys = [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for queue in QUEUES for step in PRIORITY_STEPS]
    with _broker().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        lengths = pipe.execute()
    queue_lengths = {queue: sum(lengths[i * len(PRIORITY_STEPS):(i + 1) * len(PRIORITY_STEPS)])
                     for i, queue in enumerate(QUEUES)}
    fold = _fold_script()
    with _client().pipeline(transaction=False) as pipe:
        for granularity in Granularity.values:
            fold(keys=[_finished_key(granularity), f"{KEY_PREFIX}:throughput:{granularity}"],
                 args=[granularity_active.get(granularity, 0), 1.0, THROUGHPUT_TAU_S], client=pipe)
        rates = pipe.execute()
    throughput = {g: float(rate) if rate is not None else None for g, rate in zip(Granularity.values, rates)}
    reading = Reading(queue_lengths=queue_lengths, tenant_active=tenant_active, tenant_running=tenant_running,
                      tenant_queued=tenant_queued, granularity_active=granularity_active, throughput=throughput,
                      db_active=sum(tenant_active.values()))
    unbounded = limits().tenant_min_guarantee
    for granularity in Granularity.values:
        load = Load(backlog_s=reading.backlog_s(granularity), tenant_active=0, tenant_running=unbounded,
                    global_active=reading.global_active)
        LEVEL_GAUGE.labels(granularity=granularity).set(level_of(limits(), load, granularity))
    return reading


_lock = threading.Lock()
_cached: Reading | None = None


def current_reading() -> Reading:
    """The latest reading, at most `BP_CACHE_S` old: /ingest and stage starts pay for a reading once a second."""
    global _cached
    with _lock:
        if _cached is None or time.monotonic() - _cached.at >= settings.BP_CACHE_S:
            _cached = _read()
        return _cached


def pressure_level(*, tenant_id: int | None, granularity: str) -> Level:
    """The level work of `granularity` from the tenant meets now."""
    return level_of(limits(), current_reading().load_for(tenant_id=tenant_id, granularity=granularity), granularity)
