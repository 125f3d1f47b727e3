"""A run's degradation is decided once, at its first stage start, from the higher of the accepted and the current
level; drop sheds the trace, which `replay --shed` runs again; a flooding tenant's trace is deferred."""
from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from prometheus_client import REGISTRY

from explainer import services
from explainer.models import AuditEvent, Stage, Trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_limits(settings, redis_flush):
    settings.BP_CACHE_S = 0.0
    settings.BP_MAX_QUEUE_TENANT = 2
    settings.BP_MAX_QUEUE_GLOBAL = 5
    settings.BP_BURST_MULTIPLIER = 10.0
    return settings


def queued(tenant, count: int, *, level: str = "", granularity: str = "sentence") -> list[Trace]:
    return [Trace.objects.create(tenant=tenant, trace_id=uuid.uuid4().hex, status="queued", stage=Stage.LOAD,
                                 run_id=uuid.uuid4(), backpressure_level=level, granularity=granularity)
            for _ in range(count)]


def actions_total(action: str) -> float:
    return REGISTRY.get_sample_value("backpressure_actions_total", {"action": action}) or 0.0


def test_an_unloaded_trace_keeps_its_accept_level_and_the_decision_is_stored_once(alice, small_limits):
    [trace] = queued(alice[0], 1, level="hard", granularity="token")
    before = actions_total("saliency-fallback")
    assert services.trace_degradation_decide(trace=trace) == [
        "token->sentence", "reduce-samples", "reduce-topk", "reduce-layers", "saliency-fallback"]
    assert actions_total("saliency-fallback") == before + 1
    stored = Trace.objects.get(pk=trace.pk)
    assert (stored.backpressure_level, stored.degraded) == ("hard", trace.degraded)
    queued(alice[0], 10)  # the load rises; a re-run of the stage does the same work
    assert services.trace_degradation_decide(trace=Trace.objects.get(pk=trace.pk)) == trace.degraded


def test_the_load_at_the_first_stage_raises_the_accept_level(alice, small_limits):
    [trace] = queued(alice[0], 1)
    queued(alice[0], 2)  # the tenant has 3 > 2 queued: soft
    assert services.trace_degradation_decide(trace=trace) == ["reduce-samples", "reduce-topk", "reduce-layers"]
    assert Trace.objects.get(pk=trace.pk).backpressure_level == "soft"


def test_drop_sheds_and_replay_shed_runs_the_trace_again(alice, bob, small_limits):
    [trace] = queued(alice[0], 1)
    queued(bob[0], 6)  # 7 > 1.2 × 5 queued or running
    with pytest.raises(services.TraceShed, match="7 traces queued or running"):
        services.trace_degradation_decide(trace=trace)
    assert services.trace_shed(trace_pk=trace.pk, run_id=str(trace.run_id), reason="shed by backpressure")
    shed = Trace.objects.get(pk=trace.pk)
    assert (shed.status, shed.degraded, shed.error) == ("shed", ["drop"], "shed by backpressure")
    assert Trace.objects.filter(tenant=bob[0], status="shed").count() == 0

    out = StringIO()
    call_command("replay", shed=True, stdout=out)
    assert "re-running 1 shed traces" in out.getvalue() and "alice/" in out.getvalue()
    again = Trace.objects.get(pk=trace.pk)
    assert (again.status, again.stage, again.degraded, again.error) == ("queued", "load", None, "")
    assert again.run_id != trace.run_id and again.backpressure_level == "none"
    audited = AuditEvent.objects.filter(target=trace.trace_id).order_by("seq")
    assert [(e.action, e.details.get("after")) for e in audited if e.action != "trace.queued"] == \
        [("trace.shed", None), ("trace.replayed", "shed")]
    with pytest.raises(CommandError, match="--shed takes only"):
        call_command("replay", shed=True, dead_letters=True, stdout=StringIO())


def test_a_flooding_tenants_trace_is_deferred_without_counting_an_attempt(alice, bob, small_limits):
    flood = queued(alice[0], 4)
    queued(bob[0], 1)
    trace = flood[0]
    assert services.trace_claim_stage(trace_pk=trace.pk, run_id=str(trace.run_id), stage=Stage.LOAD, owner="w1")
    with pytest.raises(services.TraceDeferred):
        services.trace_degradation_decide(trace=Trace.objects.get(pk=trace.pk))
    assert services.trace_defer(trace_pk=trace.pk, run_id=str(trace.run_id), owner="w1")
    deferred = Trace.objects.get(pk=trace.pk)
    assert (deferred.status, deferred.lease_owner, deferred.attempts, deferred.degraded) == ("queued", "", 0, None)
    # Bob's trace is within his max: it is not deferred.
    bobs = Trace.objects.get(tenant=bob[0])
    assert services.trace_degradation_decide(trace=bobs) == []
