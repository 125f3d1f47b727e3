"""Admission at POST /ingest: the per-tenant rate limit (429), the per-tenant queue cap (429), global overload (503),
each before anything is stored; and the backpressure level a finalized trace was accepted at."""
from __future__ import annotations

import pytest

from explainer.models import Trace, TraceEvent
from tests.api.test_ingest import completion, finalize, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_readings(settings, redis_flush):
    """Every request reads the load afresh, so each test sees the traces it just queued."""
    settings.BP_CACHE_S = 0.0
    return settings


def queue(client, trace_id: str) -> int:
    post(client, completion(trace_id))
    return post(client, finalize(trace_id)).status_code


def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_nothing_is_stored(alice, bob, client_for,
                                                                                   fresh_readings):
    fresh_readings.INGEST_RATE_PER_TENANT = 0.5
    fresh_readings.INGEST_BURST_PER_TENANT = 2
    writer = client_for(alice[1])
    assert [post(writer, completion(f"r-{i}")).status_code for i in range(2)] == [202, 202]
    refused = post(writer, completion("r-2"))
    assert refused.status_code == 429, refused.content
    assert "INGEST_RATE_PER_TENANT" in refused.json()["errors"][0]["message"]
    assert 1 <= int(refused["Retry-After"]) <= 2  # one token at 0.5 per second
    assert not Trace.objects.filter(trace_id="r-2").exists()
    # Another tenant has a bucket of its own.
    assert post(client_for(bob[1]), completion("r-2")).status_code == 202


def test_the_rate_limit_is_off_by_default(alice, client_for, fresh_readings):
    writer = client_for(alice[1])
    assert {post(writer, completion(f"r-{i}")).status_code for i in range(30)} == {202}


def test_a_finalize_past_the_tenants_queue_cap_is_429_and_other_tenants_still_queue(alice, bob, client_for,
                                                                                      fresh_readings):
    fresh_readings.BP_MAX_QUEUE_TENANT = 1
    fresh_readings.BP_BURST_MULTIPLIER = 2.0  # cap: 2 traces queued or running
    writer = client_for(alice[1])
    assert [queue(writer, f"a-{i}") for i in range(2)] == [202, 202]
    assert post(writer, completion("a-2")).status_code == 202  # only finalizes add queued work
    refused = post(writer, finalize("a-2"))
    assert refused.status_code == 429, refused.content
    assert refused["Retry-After"] == str(fresh_readings.RETRY_AFTER_S)
    assert "BP_MAX_QUEUE_TENANT" in refused.json()["errors"][0]["message"]
    assert Trace.objects.get(trace_id="a-2").status == "open"  # its completion is kept; finalize again later
    assert not TraceEvent.objects.filter(trace__trace_id="a-2", event_type="finalize").exists()
    assert queue(client_for(bob[1]), "b-0") == 202


def test_global_overload_is_503_with_retry_after_before_anything_is_written(alice, bob, client_for,
                                                                              fresh_readings):
    fresh_readings.BP_MAX_QUEUE_GLOBAL = 2  # drop past 2.4 traces queued or running
    flooder = client_for(bob[1])
    assert [queue(flooder, f"b-{i}") for i in range(3)] == [202, 202, 202]
    refused = post(client_for(alice[1]), completion("a-0"))
    assert refused.status_code == 503, refused.content
    assert refused["Retry-After"] == str(fresh_readings.RETRY_AFTER_S)
    assert "overloaded" in refused.json()["errors"][0]["message"]
    assert not Trace.objects.filter(trace_id="a-0").exists()


def test_a_finalized_trace_records_the_level_it_was_accepted_at(alice, client_for, fresh_readings):
    fresh_readings.BP_MAX_QUEUE_TENANT = 1  # soft once the tenant has more than one queued
    fresh_readings.BP_BURST_MULTIPLIER = 10.0
    writer = client_for(alice[1])
    assert [queue(writer, f"l-{i}") for i in range(3)] == [202, 202, 202]
    levels = dict(Trace.objects.values_list("trace_id", "backpressure_level"))
    assert levels == {"l-0": "none", "l-1": "none", "l-2": "soft"}
    detail = writer.get("/v1/traces/l-2").json()
    assert detail["degraded"] == []  # decided when its first stage starts
