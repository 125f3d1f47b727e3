"""What backpressure reads: broker list lengths (priority lists included), active traces per tenant and
granularity, and the throughput average shared through Redis."""
from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from explainer import load_reading
from explainer.load_reading import current_reading, throughput_count
from explainer.models import Trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh(settings, redis_flush):
    settings.BP_CACHE_S = 0.0
    return redis_flush


def add_traces(tenant, status: str, count: int, granularity: str = "sentence") -> None:
    for _ in range(count):
        Trace.objects.create(tenant=tenant, trace_id=uuid.uuid4().hex, status=status, granularity=granularity)


def back_date_fold(client, granularity: str, seconds: float) -> None:
    """Make the last fold of the throughput average `seconds` older, as if that much time had passed."""
    key = f"{load_reading.KEY_PREFIX}:throughput:{granularity}"
    client.hset(key, "at", float(client.hget(key, "at")) - seconds)


def test_queue_lengths_count_every_priority_list_of_both_queues(fresh):
    fresh.rpush("default", *["m"] * 3)
    fresh.rpush("default\x06\x163", "m")
    fresh.rpush("gpu\x06\x169", *["m"] * 2)
    fresh.rpush("other", "m")
    reading = current_reading()
    assert reading.queue_lengths == {"default": 4, "gpu": 2}
    assert reading.global_active == 6  # no traces in the database: the broker's messages are the queue


def test_active_traces_per_tenant_and_granularity(fresh, alice, bob):
    add_traces(alice[0], "queued", 3)
    add_traces(alice[0], "running", 2, granularity="token")
    add_traces(bob[0], "queued", 1)
    add_traces(bob[0], "complete", 5)
    reading = current_reading()
    assert reading.tenant_active == {alice[0].pk: 5, bob[0].pk: 1}
    assert reading.tenant_running == {alice[0].pk: 2}
    assert reading.tenant_queued == {alice[0].pk: 3, bob[0].pk: 1}
    assert reading.granularity_active == {"sentence": 4, "token": 2}
    assert reading.global_active == 6
    load = reading.load_for(tenant_id=alice[0].pk, granularity="token")
    assert (load.tenant_active, load.tenant_running, load.global_active) == (5, 2, 6)


def test_throughput_is_measured_from_finishes_and_gives_the_backlog(fresh, alice):
    add_traces(alice[0], "queued", 10)
    assert current_reading().throughput["sentence"] is None  # nothing measured yet: no backlog
    assert current_reading().backlog_s("sentence") == 0.0
    for _ in range(4):
        throughput_count(granularity="sentence")
    back_date_fold(fresh, "sentence", 2.0)
    reading = current_reading()
    assert reading.throughput["sentence"] == pytest.approx(2.0, rel=0.05)  # 4 finishes in 2 s
    assert reading.backlog_s("sentence") == pytest.approx(5.0, rel=0.05)  # 10 traces at 2 per second


def test_an_idle_service_keeps_its_throughput_and_a_stalled_one_loses_it(fresh, alice):
    current_reading()
    for _ in range(4):
        throughput_count(granularity="sentence")
    back_date_fold(fresh, "sentence", 2.0)
    current_reading()  # 2 per second measured
    back_date_fold(fresh, "sentence", 60.0)
    assert current_reading().throughput["sentence"] == pytest.approx(2.0, rel=0.05)  # idle: nothing to finish
    add_traces(alice[0], "queued", 1)
    back_date_fold(fresh, "sentence", 60.0)
    assert current_reading().throughput["sentence"] < 0.5  # work waited a minute and nothing finished


def test_the_level_gauge_follows_each_reading(fresh, alice, settings):
    settings.BP_MAX_QUEUE_GLOBAL = 5
    current_reading()
    assert REGISTRY.get_sample_value("backpressure_level", {"granularity": "sentence"}) == 0
    add_traces(alice[0], "queued", 6)  # 6 > 5: hard
    current_reading()
    assert REGISTRY.get_sample_value("backpressure_level", {"granularity": "token"}) == 2
