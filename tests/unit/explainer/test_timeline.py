"""The stage timeline and the one-line event summaries the trace page shows."""
from __future__ import annotations

import pytest

from explainer.event_summary import event_summary, with_event_summary
from explainer.models import Tenant, Trace, TraceEvent
from explainer.timeline import stage_timeline, total_seconds


def test_finished_stages_are_a_waterfall_of_their_seconds():
    trace = Trace(status="complete", stage="persist",
                  timings={"load": 1.0, "sae_decode": 2.0, "attribute": 1.0, "build": 0.5, "persist": 0.5})
    bars = {bar.name: bar for bar in stage_timeline(trace)}
    assert list(bars) == ["load", "sae_decode", "attribute", "build", "persist"]
    assert (bars["sae_decode"].offset_pct, bars["sae_decode"].width_pct) == (20.0, 40.0)
    assert (bars["persist"].offset_pct, bars["persist"].width_pct) == (90.0, 10.0)
    assert {bar.state for bar in bars.values()} == {"done"}
    assert total_seconds(trace.timings) == 5.0


@pytest.mark.parametrize("status,state", [("running", "running"), ("queued", "waiting"), ("failed", "failed")])
def test_the_current_stage_is_marked_and_later_ones_pending(status, state):
    trace = Trace(status=status, stage="attribute", timings={"load": 1.0, "sae_decode": 3.0})
    states = [(bar.name, bar.state, bar.seconds) for bar in stage_timeline(trace)]
    assert states == [("load", "done", 1.0), ("sae_decode", "done", 3.0), ("attribute", state, None),
                      ("build", "pending", None), ("persist", "pending", None)]


def test_no_finished_stage_means_no_total():
    assert total_seconds({}) is None
    assert all(bar.width_pct == 0 for bar in stage_timeline(Trace(status="queued", timings={})))


@pytest.mark.django_db
def test_event_summaries_read_a_few_keys_not_the_payload():
    trace = Trace.objects.create(tenant=Tenant.objects.create(slug="t"), trace_id="x")
    payloads = {
        "completion": {"model": "gpt-x", "text": "A" * 300},
        "activations": {"layer": 6, "shape": [5, 384], "encoding": "f16-base64", "data": "AAAA"},
        "finalize": {},
    }
    for n, (kind, payload) in enumerate(payloads.items()):
        TraceEvent.objects.create(trace=trace, event_type=kind, payload=payload, event_hash=str(n))
    TraceEvent.objects.create(trace=trace, event_type="activations", event_hash="s",
                              payload={"layers": [3, 6], "shards": ["k1", "k2", "k3"]})
    events = list(with_event_summary(TraceEvent.objects.filter(trace=trace).order_by("id")))
    assert all("payload" in e.get_deferred_fields() for e in events)
    summaries = [event_summary(e) for e in events]
    assert summaries[0] == f"gpt-x: “{'A' * 140}…”"
    assert summaries[1:] == ["layer 6, 5×384 rows, f16-base64", "—", "layers 3, 6, 3 shards in Redis"]


@pytest.mark.django_db
def test_lists_leave_activations_payloads_unread():
    trace = Trace.objects.create(tenant=Tenant.objects.create(slug="t"), trace_id="x")
    TraceEvent.objects.create(trace=trace, event_type="completion", event_hash="c",
                              payload={"model": "gpt-x", "text": "Hello."})
    TraceEvent.objects.create(trace=trace, event_type="activations", event_hash="a",
                              payload={"layer": 6, "shape": [5, 384], "encoding": "json", "data": [[0.0]]})
    events = with_event_summary(TraceEvent.objects.filter(trace=trace).order_by("id"), activations=False)
    assert [event_summary(e) for e in events] == ["gpt-x: “Hello.”", "activations (layer and shape on the event's page)"]
    assert events[1].summary_layer is None and events[1].summary_model is None
