"""Accepting events of one trace concurrently on PostgreSQL: no event and no summary change may be lost.

The unlocked accept path (`ingest.pg_accept`) reads a trace without a lock and writes only while what it read still
holds; these tests race real requests on real connections, and check the guard that makes that safe.
"""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from explainer.models import Trace, TraceEvent
from ingest import pg_accept
from ingest.services import event_accept, event_row
from ingest.validation import validate_event
from tests.api.test_ingest import activations, completion

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the unlocked path is PostgreSQL's")]


def _race(bodies: list[dict], tenant) -> list[BaseException]:
    """Accept every body on its own thread and connection, all released at once; return what they raised."""
    barrier = threading.Barrier(len(bodies))
    raised: list[BaseException] = []

    def send(body: dict) -> None:
        try:
            event = validate_event(body)
            barrier.wait()
            event_accept(tenant=tenant, event=event)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            raised.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return raised


def test_activations_of_eight_layers_sent_at_once_all_land_in_the_summary(alice):
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(completion("race", tokens=["a", "b", "c", "d"])))
    bodies = [activations("race", rows=4 - layer % 3, layer=layer) for layer in range(8)]
    assert _race(bodies, tenant) == []
    trace = Trace.objects.get(trace_id="race")
    assert trace.layers == list(range(8))
    assert trace.rows_extent == 4
    assert TraceEvent.objects.filter(trace=trace, event_type="activations").count() == 8


def test_the_same_new_trace_opened_by_many_requests_at_once_is_one_trace(alice):
    tenant, _ = alice
    bodies = [completion("opened", tokens=["a", "b"])] * 4 + [activations("opened", rows=2, layer=1)] * 4
    assert _race(bodies, tenant) == []
    trace = Trace.objects.get(trace_id="opened")
    assert (trace.token_count, trace.layers, trace.rows_extent) == (2, [1], 2)
    assert sorted(TraceEvent.objects.filter(trace=trace).values_list("event_type", flat=True)) == \
        ["activations", "completion"]


def test_a_write_after_the_trace_changed_writes_nothing(alice):
    """The guard: a snapshot that another request made stale must not be written over, event included."""
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(activations("stale", rows=2, layer=3)))
    late = validate_event(activations("stale", rows=3, layer=5))
    row = event_row(late)
    digest = row.event_hash
    snapshot = pg_accept.trace_snapshot(tenant_id=tenant.pk, trace_id="stale", digest=digest)
    event_accept(tenant=tenant, event=validate_event(activations("stale", rows=2, layer=4)))  # meanwhile
    written = pg_accept.trace_update_with_event(
        snapshot=snapshot, changes={"layers": [3, 5], "rows_extent": 3}, event=row)
    assert written is False
    trace = Trace.objects.get(trace_id="stale")
    assert (trace.layers, trace.rows_extent) == ([3, 4], 2)
    assert not TraceEvent.objects.filter(event_hash=digest).exists()
    event_accept(tenant=tenant, event=late)  # sent again, it reads afresh and lands
    trace.refresh_from_db()
    assert (trace.layers, trace.rows_extent) == ([3, 4, 5], 3)


def test_an_event_racing_the_finalize_is_either_stored_before_it_or_refused(alice):
    tenant, _ = alice
    event_accept(tenant=tenant, event=validate_event(completion("closing", tokens=list("abcdef"))))
    bodies = [activations("closing", rows=6, layer=layer) for layer in range(4)]
    bodies.append({"trace_id": "closing", "event_type": "finalize", "payload": {}})
    raised = _race(bodies, tenant)
    assert all(type(exc).__name__ == "TraceFinished" for exc in raised)
    trace = Trace.objects.get(trace_id="closing")
    stored = TraceEvent.objects.filter(trace=trace, event_type="activations").count()
    assert stored + len(raised) == 4
    assert len(trace.layers) == stored  # the summary the run starts from matches the events it will read

