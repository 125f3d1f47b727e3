"""Leases claimed by conditional UPDATE, hand-over between stages, the sweeper, dead letters and quarantine."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from explainer import services
from explainer.graph_documents import StoredGraph
from explainer.models import AuditEvent, DeadLetter, Stage, Trace, TraceStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trace(alice, redis_flush):
    tenant, _ = alice
    trace = Trace.objects.create(tenant=tenant, trace_id="t-1")
    with transaction.atomic():
        services.trace_start_run(trace=trace)
    trace.refresh_from_db()
    return trace


def claim(trace, stage=Stage.LOAD, owner="a" * 32, run_id=None) -> bool:
    return services.trace_claim_stage(trace_pk=trace.pk, run_id=run_id or trace.run_id, stage=stage, owner=owner)


def audited() -> list[tuple[str, str, str]]:
    """(action, actor, target) of every audit row about a trace, oldest first."""
    return list(AuditEvent.objects.filter(action__startswith="trace.").values_list("action", "actor", "target"))


def expire(trace) -> None:
    Trace.objects.filter(pk=trace.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_start_run_makes_load_due_and_publishes_it_after_commit(trace, redis_flush):
    assert trace.status == TraceStatus.QUEUED and trace.stage == Stage.LOAD and trace.lease_owner == ""
    assert trace.lease_until > timezone.now()
    assert redis_flush.llen("default") == 1


def test_a_held_lease_cannot_be_claimed_until_it_expires(trace):
    assert claim(trace, owner="a" * 32)
    assert not claim(trace, owner="b" * 32)  # a redelivered copy while the holder works
    expire(trace)
    assert claim(trace, owner="b" * 32)  # the holder died: the next delivery takes over
    trace.refresh_from_db()
    assert trace.status == TraceStatus.RUNNING and trace.lease_owner == "b" * 32 and trace.attempts == 2


def test_claims_of_another_stage_or_a_superseded_run_fail(trace):
    assert not claim(trace, stage=Stage.SAE_DECODE)
    assert not claim(trace, run_id=uuid.uuid4())


def test_advance_hands_the_next_stage_over_and_records_the_time(trace):
    assert claim(trace)
    assert not services.trace_advance(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, owner="x" * 32,
                                      timings={"load": 1.0})
    assert services.trace_advance(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, owner="a" * 32,
                                  timings={"load": 1.25})
    trace.refresh_from_db()
    assert (trace.stage, trace.lease_owner, trace.attempts) == (Stage.SAE_DECODE, "", 0)
    assert trace.timings == {"load": 1.25}
    assert not claim(trace, owner="b" * 32, stage=Stage.LOAD)  # the run moved on


def test_advance_keeping_the_lease_is_a_claim_of_the_next_stage(trace):
    assert claim(trace)
    assert services.trace_advance(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, owner="a" * 32,
                                  timings={"load": 1.0}, keep=True)
    trace.refresh_from_db()
    assert (trace.status, trace.stage, trace.lease_owner, trace.attempts) == \
        (TraceStatus.RUNNING, Stage.SAE_DECODE, "a" * 32, 1)
    assert not claim(trace, owner="b" * 32, stage=Stage.SAE_DECODE)  # held, as after a claim
    expire(trace)
    assert claim(trace, owner="b" * 32, stage=Stage.SAE_DECODE)  # and taken over once it expires


def test_renewing_fails_once_the_lease_was_taken_over(trace):
    assert claim(trace, owner="a" * 32)
    assert services.trace_renew_lease(trace_pk=trace.pk, owner="a" * 32)
    expire(trace)
    assert claim(trace, owner="b" * 32)
    assert not services.trace_renew_lease(trace_pk=trace.pk, owner="a" * 32)


def test_finished_trace_cannot_be_claimed(trace):
    services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    assert not claim(trace)


def test_fail_records_one_dead_letter(trace):
    assert services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    assert not services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="again")
    letter = DeadLetter.objects.get()
    assert (letter.stage, letter.reason, letter.quarantined) == (Stage.LOAD, "boom", False)
    trace.refresh_from_db()
    assert trace.status == TraceStatus.FAILED and trace.error == "boom" and trace.lease_until is None
    assert audited() == [("trace.queued", "system", "t-1"), ("trace.failed", "system", "t-1")]
    assert AuditEvent.objects.get(action="trace.failed").details == {
        "run_id": str(trace.run_id), "stage": "load", "reason": "boom", "dead_letter": letter.pk,
        "quarantined": False}


def test_complete_upserts_one_explanation_only_for_the_holder(trace):
    Trace.objects.filter(pk=trace.pk).update(stage=Stage.PERSIST)
    assert claim(trace, stage=Stage.PERSIST)
    graph = StoredGraph(key="k.hif.json.gz", sha256="0" * 64, size_bytes=3, node_count=1, incidence_count=0,
                        meta={"version": "hif-1"})
    kwargs = {"trace_pk": trace.pk, "run_id": trace.run_id, "graph": graph, "timings": {"persist": 0.5}}
    assert not services.trace_complete(owner="x" * 32, **kwargs)
    assert services.trace_complete(owner="a" * 32, **kwargs)
    assert not services.trace_complete(owner="a" * 32, **kwargs)
    trace.refresh_from_db()
    assert trace.status == TraceStatus.COMPLETE and trace.explanation.node_count == 1
    assert (trace.explanation.object_key, trace.explanation.meta) == ("k.hif.json.gz", {"version": "hif-1"})
    assert trace.timings == {"persist": 0.5}
    assert [row[0] for row in audited()] == ["trace.queued", "trace.complete"]
    assert AuditEvent.objects.get(action="trace.complete").tenant == "alice"


def test_sweep_republishes_expired_leases_once(trace, redis_flush):
    redis_flush.flushdb()
    assert services.traces_sweep().republished == []  # lease still running
    expire(trace)
    assert services.traces_sweep().republished == [trace.pk]
    assert services.traces_sweep().republished == []  # the re-publish moved the lease forward
    assert redis_flush.llen("default") == 1


def test_sweep_fails_a_stage_that_keeps_dying(trace):
    with override_settings(STAGE_MAX_ATTEMPTS=2):
        for owner in ("a" * 32, "b" * 32):
            assert claim(trace, owner=owner)
            expire(trace)
        result = services.traces_sweep()
    assert result.failed == [trace.pk]
    trace.refresh_from_db()
    assert trace.status == TraceStatus.FAILED and "started 2 times" in trace.error


def test_sweep_ignores_traces_never_finalized(alice):
    Trace.objects.create(tenant=alice[0], trace_id="open", lease_until=timezone.now() - timedelta(hours=1))
    assert services.traces_sweep().republished == []


def test_dead_letter_replay_starts_a_new_run_once(trace, redis_flush):
    services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="boom")
    assert len(services.dead_letters_replay(actor="cli").replayed) == 1
    assert services.dead_letters_replay().replayed == []
    assert audited()[-1] == ("trace.replayed", "cli", "t-1")
    assert AuditEvent.objects.last().details["dead_letter"] == DeadLetter.objects.get().pk
    after = Trace.objects.get(pk=trace.pk)
    assert after.status == TraceStatus.QUEUED and after.run_id != trace.run_id and after.stage == Stage.LOAD


def test_dead_letter_replay_filters(trace, alice):
    other = Trace.objects.create(tenant=alice[0], trace_id="t-2")
    with transaction.atomic():
        services.trace_start_run(trace=other)
    other.refresh_from_db()
    services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="shards expired")
    services.trace_fail(trace_pk=other.pk, run_id=other.run_id, stage=Stage.SAE_DECODE, reason="no dictionary")
    DeadLetter.objects.filter(trace=other).update(created=timezone.now() - timedelta(days=2))
    assert services.dead_letters_replay(stage="build").replayed == []
    assert services.dead_letters_replay(reason="DICTIONARY", since=timezone.now() - timedelta(days=1)).replayed == []
    assert [d.trace.trace_id for d in services.dead_letters_replay(trace_id="t-2").replayed] == ["t-2"]
    assert [d.trace.trace_id for d in services.dead_letters_replay(reason="expired").replayed] == ["t-1"]


def test_a_trace_that_keeps_failing_is_quarantined_and_skipped(trace):
    with override_settings(DEAD_LETTER_MAX_REPLAYS=2):
        services.trace_fail(trace_pk=trace.pk, run_id=trace.run_id, stage=Stage.LOAD, reason="poison")
        assert len(services.dead_letters_replay().replayed) == 1
        run_id = Trace.objects.get(pk=trace.pk).run_id
        services.trace_fail(trace_pk=trace.pk, run_id=run_id, stage=Stage.LOAD, reason="poison")
        result = services.dead_letters_replay()
    assert result.replayed == [] and [d.trace_id for d in result.quarantined] == [trace.pk]
    assert Trace.objects.get(pk=trace.pk).status == TraceStatus.FAILED


def test_open_traces_expire_after_the_ttl_and_their_shards_are_deleted(alice, redis_flush, settings):
    from explainer.models import TraceEvent

    stale = Trace.objects.create(tenant=alice[0], trace_id="stale")
    fresh = Trace.objects.create(tenant=alice[0], trace_id="fresh")
    TraceEvent.objects.create(trace=stale, event_type="activations", event_hash="h",
                              payload={"shards": ["activations:stale:3:0"], "layers": [3], "tokens": 2})
    redis_flush.set("activations:stale:3:0", b"rows")
    Trace.objects.filter(pk=stale.pk).update(updated=timezone.now() - timedelta(seconds=settings.TRACE_OPEN_TTL_S + 1))
    assert services.traces_sweep().expired == [stale.pk]
    stale.refresh_from_db()
    assert stale.status == TraceStatus.EXPIRED and "TRACE_OPEN_TTL_S" in stale.error
    assert Trace.objects.get(pk=fresh.pk).status == TraceStatus.OPEN
    assert not redis_flush.exists("activations:stale:3:0")
    assert TraceEvent.objects.filter(trace=stale).count() == 1


def test_a_lease_held_by_a_dead_process_of_this_host_is_taken_over_at_once(trace):
    import subprocess
    import sys

    from explainer.leases import HOST_TAG, owner_token

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{HOST_TAG}:{child.stdout.strip()}:deadbeef"
    assert claim(trace, owner=dead)
    assert claim(trace, owner=owner_token())  # the lease has not expired, but its holder is gone
    trace.refresh_from_db()
    assert trace.attempts == 2


def test_a_lease_held_by_a_live_or_remote_process_is_not_taken_over(trace):
    import os

    from explainer.leases import HOST_TAG, owner_token

    assert claim(trace, owner=f"{HOST_TAG}:{os.getpid()}:alive")
    assert not claim(trace, owner=owner_token())
    Trace.objects.filter(pk=trace.pk).update(lease_owner="0000beef:1:otherhost")
    assert not claim(trace, owner=owner_token())


def test_the_sweeper_republishes_a_stage_whose_holder_on_this_host_died(trace, redis_flush):
    import subprocess
    import sys

    from explainer.leases import HOST_TAG

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert claim(trace, owner=f"{HOST_TAG}:{child.stdout.strip()}:deadbeef")
    redis_flush.flushdb()
    assert services.traces_sweep().republished == [trace.pk]
    assert Trace.objects.get(pk=trace.pk).lease_owner == ""
    assert redis_flush.llen("default") == 1
