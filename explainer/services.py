"""Writes to explainer state. Every status change is a conditional UPDATE, so stale or duplicate work changes nothing."""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import (
    ACTIVE_STATUSES,
    ApiKey,
    DeadLetter,
    Explanation,
    Outbox,
    Scope,
    Stage,
    Tenant,
    Trace,
    TraceStatus,
)

logger = logging.getLogger(__name__)


# --- Tenants -------------------------------------------------------------------------------------------

def tenant_create(*, slug: str, name: str = "") -> Tenant:
    return Tenant.objects.create(slug=slug, name=name or slug)


def api_key_create(*, tenant: Tenant, scopes: Iterable[str] = (Scope.TRACES_WRITE, Scope.TRACES_READ),
                   name: str = "default") -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored and cannot be shown again."""
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {Scope.values}")
    return ApiKey.objects.create_key(tenant=tenant, name=name, scopes=sorted(set(scopes)))


# --- Runs: start, claim, finish ------------------------------------------------------------------------

def trace_start_run(*, trace: Trace) -> Outbox:
    """Hand a trace to a new chain run: fresh run id, queued, and an outbox row published after commit.

    Must be called inside a transaction; the publish happens only if that transaction commits.
    """
    run_id = uuid.uuid4()
    Trace.objects.filter(pk=trace.pk).update(
        status=TraceStatus.QUEUED, stage="", run_id=run_id, error="", finished_at=None,
        finalized_at=trace.finalized_at or timezone.now(), updated=timezone.now(),
    )
    outbox = Outbox.objects.create(trace=trace, run_id=run_id)
    transaction.on_commit(lambda: outbox_publish(outbox_id=outbox.pk))
    return outbox


def trace_claim_stage(*, trace_pk: int, run_id: str, stage: Stage) -> bool:
    """Claim a stage of a run; False when the run was superseded or the trace already finished."""
    return bool(
        Trace.objects.filter(pk=trace_pk, run_id=run_id, status__in=ACTIVE_STATUSES).update(
            status=TraceStatus.RUNNING, stage=stage, updated=timezone.now()
        )
    )


def trace_record_timing(*, trace_pk: int, stage: Stage, seconds: float) -> None:
    with transaction.atomic():
        trace = Trace.objects.select_for_update().get(pk=trace_pk)
        trace.timings = {**trace.timings, stage: round(seconds, 4)}
        trace.save(update_fields=["timings", "updated"])


def trace_complete(*, trace_pk: int, run_id: str, document: dict, size_bytes: int) -> bool:
    """Upsert the explanation and mark the run complete, atomically."""
    with transaction.atomic():
        updated = Trace.objects.filter(pk=trace_pk, run_id=run_id, status=TraceStatus.RUNNING).update(
            status=TraceStatus.COMPLETE, finished_at=timezone.now(), updated=timezone.now()
        )
        if not updated:
            return False
        Explanation.objects.update_or_create(
            trace_id=trace_pk,
            defaults={
                "document": document,
                "size_bytes": size_bytes,
                "node_count": len(document["nodes"]),
                "incidence_count": len(document["incidences"]),
            },
        )
    return True


def trace_fail(*, trace_pk: int, run_id: str | None, stage: str, reason: str) -> bool:
    """Mark the run failed with its reason and record a dead letter an operator can re-run."""
    with transaction.atomic():
        query = Trace.objects.filter(pk=trace_pk, status__in=ACTIVE_STATUSES)
        if run_id is not None:
            query = query.filter(run_id=run_id)
        updated = query.update(
            status=TraceStatus.FAILED, error=reason[:4000], finished_at=timezone.now(), updated=timezone.now()
        )
        if updated:
            DeadLetter.objects.create(trace_id=trace_pk, run_id=run_id, stage=stage, reason=reason[:4000])
    if updated:
        logger.warning("trace %s failed at %s: %s", trace_pk, stage, reason)
    return bool(updated)


# --- Outbox, reconcile, dead letters ------------------------------------------------------------------

def outbox_publish(*, outbox_id: int) -> bool:
    """Send a run's chain to the broker and stamp the row; on a broker error the sweeper tries again later."""
    from .tasks import explain_chain

    outbox = Outbox.objects.filter(pk=outbox_id, published_at__isnull=True).first()
    if outbox is None:
        return False
    try:
        explain_chain(outbox.trace_id, str(outbox.run_id)).apply_async()
    except Exception:  # noqa: BLE001 - any broker failure leaves the row for the sweeper
        logger.exception("publishing outbox row %s failed; the sweeper will retry", outbox_id)
        return False
    Outbox.objects.filter(pk=outbox_id).update(published_at=timezone.now())
    return True


def outbox_sweep(*, older_than_s: int | None = None) -> int:
    """Publish rows that were committed but never published (a crash or broker outage after commit)."""
    age = settings.OUTBOX_SWEEP_AFTER_S if older_than_s is None else older_than_s
    cutoff = timezone.now() - timedelta(seconds=age)
    ids = Outbox.objects.filter(published_at__isnull=True, created__lte=cutoff).values_list("pk", flat=True)
    return sum(outbox_publish(outbox_id=pk) for pk in list(ids))


def traces_reconcile(*, deadline_s: int | None = None) -> list[Trace]:
    """Start a new run for finalized traces stuck in queued/running past the deadline (lost queue, killed worker)."""
    deadline = settings.RECONCILE_DEADLINE_S if deadline_s is None else deadline_s
    cutoff = timezone.now() - timedelta(seconds=deadline)
    stuck = Trace.objects.filter(status__in=ACTIVE_STATUSES, finalized_at__isnull=False, updated__lte=cutoff)
    restarted = []
    for trace in stuck:
        with transaction.atomic():
            claimed = Trace.objects.filter(pk=trace.pk, run_id=trace.run_id, updated__lte=cutoff).update(
                updated=timezone.now()
            )
            if claimed:
                trace_start_run(trace=trace)
                restarted.append(trace)
    return restarted


def dead_letters_replay(*, ids: Iterable[int] | None = None) -> list[DeadLetter]:
    """Re-run the traces of dead letters not yet replayed (all, or the given ids)."""
    letters = DeadLetter.objects.filter(replayed_at__isnull=True).select_related("trace")
    if ids is not None:
        letters = letters.filter(pk__in=list(ids))
    replayed = []
    for letter in letters:
        with transaction.atomic():
            if DeadLetter.objects.filter(pk=letter.pk, replayed_at__isnull=True).update(replayed_at=timezone.now()):
                trace_start_run(trace=letter.trace)
                replayed.append(letter)
    return replayed
