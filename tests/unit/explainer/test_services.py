"""Claims by conditional UPDATE, outbox sweeping, reconcile and dead letters."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from explainer import services
from explainer.models import DeadLetter, Outbox, Stage, Trace, TraceStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trace(alice, redis_flush):
    tenant, _ = alice
    trace = Trace.objects.create(tenant=tenant, trace_id="t-1")
    with transaction.atomic():
        services.trace_start_run(trace=trace)
    trace.refresh_from_db()
    return trace


def test_start_run_publishes_after_commit(trace, redis_flush):
    outbox = Outbox.objects.get(trace=trace)
    assert outbox.published_at is not None and str(outbox.run_id) == str(trace.run_id)
    assert redis_flush.llen("default") == 1


def test_claim_succeeds_once_per_run_and_not_for_a_superseded_run(trace):
    assert services.trace_claim_stage(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD)
    assert services.trace_claim_stage(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD)  # re-run is safe
    assert not services.trace_claim_stage(trace_pk=trace.pk, run_id=uuid.uuid4(), stage=Stage.LOAD)
    trace.refresh_from_db()
    assert trace.status == TraceStatus.RUNNING and trace.stage == Stage.LOAD


def test_finished_trace_cannot_be_claimed(trace):
    services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    assert not services.trace_claim_stage(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.SAE_DECODE)


def test_fail_records_one_dead_letter(trace):
    assert services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    assert not services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="again")
    letter = DeadLetter.objects.get()
    assert (letter.stage, letter.reason) == (Stage.LOAD, "boom")
    trace.refresh_from_db()
    assert trace.status == TraceStatus.FAILED and trace.error == "boom"


def test_dead_letter_replay_starts_a_new_run(trace, redis_flush):
    services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    replayed = services.dead_letters_replay()
    assert len(replayed) == 1 and services.dead_letters_replay() == []
    trace_after = Trace.objects.get(pk=trace.pk)
    assert trace_after.status == TraceStatus.QUEUED and trace_after.run_id != trace.run_id
    assert Outbox.objects.filter(trace=trace).count() == 2


def test_unpublished_outbox_rows_are_swept(trace, redis_flush):
    Outbox.objects.update(published_at=None, created=timezone.now() - timedelta(minutes=1))
    redis_flush.flushdb()
    assert services.outbox_sweep() == 1
    assert redis_flush.llen("default") == 1
    assert services.outbox_sweep() == 0


def test_reconcile_restarts_only_stuck_traces(trace, alice):
    fresh = Trace.objects.create(tenant=alice[0], trace_id="fresh", finalized_at=timezone.now())
    Trace.objects.filter(pk=trace.pk).update(status=TraceStatus.RUNNING,
                                             updated=timezone.now() - timedelta(hours=1))
    restarted = services.traces_reconcile(deadline_s=600)
    assert [t.pk for t in restarted] == [trace.pk]
    after = Trace.objects.get(pk=trace.pk)
    assert after.status == TraceStatus.QUEUED and after.run_id != trace.run_id
    assert Trace.objects.get(pk=fresh.pk).run_id is None


def test_complete_upserts_one_explanation(trace):
    services.trace_claim_stage(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.PERSIST)
    doc = {"nodes": [{"id": "a"}], "incidences": []}
    assert services.trace_complete(trace_pk=trace.pk, run_id=trace.run_id, document=doc, size_bytes=3)
    assert not services.trace_complete(trace_pk=trace.pk, run_id=trace.run_id, document=doc, size_bytes=3)
    assert Trace.objects.get(pk=trace.pk).explanation.node_count == 1
