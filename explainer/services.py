"""Writes to explainer state. Every status change is a conditional UPDATE, so stale or duplicate work changes nothing.

A run moves through its stages by the trace row alone: `trace_start_run` and `trace_advance` name the next stage and
give it a pickup lease, the stage's task claims it (`trace_claim_stage`), renews the lease while it works and advances
the trace when done. A publish that never arrives (a broker blip, a Redis restart that lost its queue) or a holder
that died (a killed worker) shows as an expired lease, and `traces_sweep` publishes the stage again.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from opentelemetry.context import Context

from .models import (
    ACTIVE_STATUSES,
    ApiKey,
    DeadLetter,
    Explanation,
    Scope,
    Stage,
    Tenant,
    Trace,
    TraceStatus,
)
from .artifacts import configured_artifact_store
from .audit import SYSTEM, audit_record, key_actor
from .log_context import message_headers
from .backpressure import DEFER, DROP, Level, actions_for, defers, effective_level, level_of
from .load_reading import ACTIONS_TOTAL, current_reading, limits
from .graph_documents import StoredGraph, graph_delete
from .leases import owner_is_gone
from .shards import shard_keys, shards_delete
from .tracing import run_context_save, stage_headers

logger = logging.getLogger(__name__)


# --- Tenants -------------------------------------------------------------------------------------------

def tenant_create(*, slug: str, name: str = "") -> Tenant:
    return Tenant.objects.create(slug=slug, name=name or slug)


def api_key_create(*, tenant: Tenant, scopes: Iterable[str] = (Scope.TRACES_WRITE, Scope.TRACES_READ),
                   name: str = "default", actor: str = SYSTEM) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored and cannot be shown again; the audit
    log records the key's public prefix."""
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}; known: {Scope.values}")
    with transaction.atomic():
        api_key, plaintext = ApiKey.objects.create_key(tenant=tenant, name=name, scopes=sorted(set(scopes)))
        api_key_audit(api_key=api_key, action="api_key.created", actor=actor)
    return api_key, plaintext


def api_key_revoke(*, api_key: ApiKey, actor: str) -> bool:
    """Revoke a key (it stops working within `API_KEY_CACHE_S` everywhere); False when it was revoked already."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=api_key.pk, revoked=False).update(revoked=True)
        if revoked:
            api_key.revoked = True
            api_key_audit(api_key=api_key, action="api_key.revoked", actor=actor)
    return bool(revoked)


def api_key_audit(*, api_key: ApiKey, action: str, actor: str) -> None:
    """Audit a change to a key by its public prefix, name and scopes (never the key or its hash)."""
    audit_record(action=action, actor=actor, tenant=api_key.tenant, target=key_actor(api_key.prefix),
                 details={"name": api_key.name, "scopes": list(api_key.scopes)})


# --- Runs: start, claim, advance, finish ----------------------------------------------------------------

STAGE_TASKS = {stage: f"explainer.tasks.stage_{stage.value}" for stage in Stage}


def _lease_end() -> datetime:
    return timezone.now() + timedelta(seconds=settings.STAGE_LEASE_S)


def stage_queue(stage: Stage) -> str:
    """The queue `stage`'s task is routed to (the Celery app's routing is the one source)."""
    route = current_app.conf.task_routes.get(STAGE_TASKS[Stage(stage)], {})
    return route.get("queue", current_app.conf.task_default_queue)


def stage_publish(*, trace_pk: int, run_id: str, stage: Stage, context: Context | None = None) -> bool:
    """Send one stage's task to the broker (retrying briefly); False leaves it to the sweeper, never loses it.

    The trace row already says this stage is due, with a pickup lease: if the message never arrives, the lease
    expires and `traces_sweep` publishes it again. The message's headers carry the span context of `context` (the
    previous stage), or of the current span, or the run's kept one (`tracing.stage_headers`).
    """
    headers = stage_headers(run_id=str(run_id), context=context)
    try:
        current_app.send_task(STAGE_TASKS[Stage(stage)], args=(trace_pk, str(run_id)), retry=True,
                              headers={**message_headers(), **headers},
                              retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                                            "interval_max": 1.0})
    except Exception:  # noqa: BLE001 - any broker failure is healed by the sweeper
        logger.warning("publishing %s of trace %s failed; the sweeper will publish it again", stage, trace_pk,
                       exc_info=True)
        return False
    return True


def trace_start_run(*, trace: Trace, level: Level = Level.NONE, actor: str = SYSTEM, action: str = "trace.queued",
                    details: dict | None = None) -> uuid.UUID:
    """Hand a trace to a new run: fresh run id, queued at the load stage, published after the transaction commits.

    `level` is the backpressure level the trace was accepted at; the run decides its degradation afresh from it.
    Audited as `action` (queued, or replayed for a dead letter's re-run) in the same transaction: call it last in
    the caller's transaction. Give `trace.tenant` already loaded on hot paths, or naming it costs a query.
    """
    run_id = uuid.uuid4()
    now = timezone.now()
    Trace.objects.filter(pk=trace.pk).update(
        status=TraceStatus.QUEUED, stage=Stage.LOAD, run_id=run_id, error="", finished_at=None, lease_owner="",
        lease_until=_lease_end(), attempts=0, finalized_at=trace.finalized_at or now, updated=now,
        backpressure_level=level.label, degraded=None,
    )
    transaction.on_commit(lambda: _publish_first_stage(trace_pk=trace.pk, run_id=str(run_id)))
    audit_record(action=action, actor=actor, tenant=trace.tenant, target=trace.trace_id,
                 details={"run_id": str(run_id), **(details or {})})
    return run_id


def _publish_first_stage(*, trace_pk: int, run_id: str) -> None:
    """The run's span context (the finalize request's, when tracing) is kept for re-published stages first."""
    run_context_save(run_id=run_id)
    stage_publish(trace_pk=trace_pk, run_id=run_id, stage=Stage.LOAD)


def trace_claim_stage(*, trace_pk: int, run_id: str, stage: Stage, owner: str) -> bool:
    """Take the lease of a due stage; False when another live holder has it, the run moved on or the trace finished.

    A lease held by a process of this host that has exited (a killed pool process whose message came straight back)
    is taken over at once rather than after it expires.
    """
    now = timezone.now()
    due = Trace.objects.filter(pk=trace_pk, run_id=run_id, stage=stage, status__in=ACTIVE_STATUSES)
    claim = {"status": TraceStatus.RUNNING, "lease_owner": owner, "lease_until": _lease_end(),
             "attempts": F("attempts") + 1, "updated": now}
    if due.filter(Q(lease_owner="") | Q(lease_until__lt=now)).update(**claim):
        return True
    holder = due.values_list("lease_owner", flat=True).first()
    return bool(holder and owner_is_gone(holder) and due.filter(lease_owner=holder).update(**claim))


def trace_renew_lease(*, trace_pk: int, owner: str) -> bool:
    """Extend a held lease; False when it was taken over (the holder should stop writing)."""
    return bool(Trace.objects.filter(pk=trace_pk, lease_owner=owner).update(lease_until=_lease_end()))


def trace_advance(*, trace_pk: int, run_id: str, stage: Stage, owner: str, timings: dict,
                  keep: bool = False) -> bool:
    """Record a finished stage (`timings`: the run's stage seconds so far, this one included) and make the next one
    due, in one conditional UPDATE that changes nothing if the lease was taken over meanwhile.

    With `keep` the holder goes straight on to the next stage: it keeps the lease, as if it had claimed it.
    """
    lease = {"lease_owner": owner, "attempts": 1, "status": TraceStatus.RUNNING} if keep else \
        {"lease_owner": "", "attempts": 0}
    return bool(
        Trace.objects.filter(pk=trace_pk, run_id=run_id, stage=stage, lease_owner=owner).update(
            stage=Stage(stage).next, lease_until=_lease_end(), timings=timings, updated=timezone.now(), **lease,
        )
    )


def trace_complete(*, trace_pk: int, run_id: str, owner: str, graph: StoredGraph, timings: dict) -> bool:
    """Upsert the explanation (the stored document's key, hash and summary) and mark the run complete, atomically,
    if this holder still has the lease. The document is in the object store already: a complete trace always has
    its whole document there.

    Always committed durably, even on a worker connection that commits stage transitions asynchronously: once it
    returns, the caller deletes the artifacts a re-run would need.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO on")
        now = timezone.now()
        done = Trace.objects.filter(pk=trace_pk, run_id=run_id, stage=Stage.PERSIST, lease_owner=owner,
                                    status=TraceStatus.RUNNING).update(
            status=TraceStatus.COMPLETE, finished_at=now, updated=now, lease_owner="", lease_until=None,
            timings=timings,
        )
        if not done:
            return False
        Explanation.objects.bulk_create(
            [Explanation(trace_id=trace_pk, document=None, object_key=graph.key, content_sha256=graph.sha256,
                         meta=graph.meta, size_bytes=graph.size_bytes, node_count=graph.node_count,
                         incidence_count=graph.incidence_count)],
            update_conflicts=True, unique_fields=["trace"],
            update_fields=["document", "object_key", "content_sha256", "meta", "size_bytes", "node_count",
                           "incidence_count", "updated"],
        )
        _trace_audit(trace_pk, "trace.complete", {"run_id": str(run_id), "nodes": graph.node_count,
                                                  "incidences": graph.incidence_count})
    return True


def _trace_audit(trace_pk: int, action: str, details: dict) -> None:
    """Audit what the system did to a trace known by its key (one small read for its tenant and id)."""
    tenant, trace_id = Trace.objects.filter(pk=trace_pk).values_list("tenant__slug", "trace_id").get()
    audit_record(action=action, actor=SYSTEM, tenant=tenant, target=trace_id, details=details)


def trace_fail(*, trace_pk: int, run_id: str | None, stage: str, reason: str) -> bool:
    """Mark the run failed with its reason and record a dead letter an operator can re-run.

    The letter is quarantined when the trace has failed `DEAD_LETTER_MAX_REPLAYS` times: replays then skip it.
    """
    with transaction.atomic():
        query = Trace.objects.filter(pk=trace_pk, status__in=ACTIVE_STATUSES)
        if run_id is not None:
            query = query.filter(run_id=run_id)
        now = timezone.now()
        updated = query.update(status=TraceStatus.FAILED, error=reason[:4000], finished_at=now, updated=now,
                               lease_owner="", lease_until=None)
        if updated:
            failures = DeadLetter.objects.filter(trace_id=trace_pk).count() + 1
            letter = DeadLetter.objects.create(trace_id=trace_pk, run_id=run_id, stage=stage, reason=reason[:4000],
                                               quarantined=failures >= settings.DEAD_LETTER_MAX_REPLAYS)
            _trace_audit(trace_pk, "trace.failed", {"run_id": str(run_id) if run_id else None, "stage": str(stage),
                                                    "reason": reason[:500], "dead_letter": letter.pk,
                                                    "quarantined": letter.quarantined})
    if updated:
        logger.warning("trace %s failed at %s: %s", trace_pk, stage, reason)
    return bool(updated)


# --- Backpressure: degrade or shed, once per run; replaying shed traces ------------------------------------

class TraceShed(Exception):
    """Backpressure dropped the trace before any work; the message is the reason recorded on it."""


class TraceDeferred(Exception):
    """The trace's tenant is over its queue max while another tenant's work waits: it goes back behind it."""


def trace_degradation_decide(*, trace: Trace) -> list[str]:
    """The actions the trace's run works with, decided at its first stage start and stored; raises `TraceShed`
    when the decision is to drop it, `TraceDeferred` when its tenant must let another tenant's waiting work go first
    (`backpressure.defers`).

    Every stage start looks at the load (for the level gauge); only the first one decides, from the higher of the
    level the trace was accepted at and the level now. The decision is one conditional UPDATE, so a stage re-run
    after a crash, or a second holder, finds it and does the same work.
    """
    reading = current_reading()
    load = reading.load_for(tenant_id=trace.tenant_id, granularity=trace.granularity)
    if trace.degraded is None:
        bounds = limits()
        if trace.stage == Stage.LOAD and defers(bounds, tenant_id=trace.tenant_id, tenant_active=reading.tenant_active,
                                                tenant_queued=reading.tenant_queued):
            raise TraceDeferred(f"tenant {trace.tenant_id} has {load.tenant_active} traces queued or running "
                                f"(BP_MAX_QUEUE_TENANT {bounds.max_queue_tenant}) while other tenants wait")
        level = max(Level.of(trace.backpressure_level), level_of(bounds, load, trace.granularity))
        actions = actions_for(bounds, level, trace.granularity)
        decided = effective_level(bounds, level).label
        if Trace.objects.filter(pk=trace.pk, run_id=trace.run_id, degraded__isnull=True).update(
                degraded=actions, backpressure_level=decided):
            for action in actions:
                ACTIONS_TOTAL.labels(action=action).inc()
            trace.degraded, trace.backpressure_level = actions, decided
        else:
            trace.refresh_from_db(fields=["degraded", "backpressure_level"])
    if DROP in (trace.degraded or []):
        raise TraceShed(f"shed by backpressure: {load.backlog_s:.2f} s of {trace.granularity} backlog, "
                        f"{load.global_active} traces queued or running (BP_MAX_QUEUE_GLOBAL "
                        f"{limits().max_queue_global}); replay it with `manage.py replay --shed`")
    return trace.degraded


def trace_defer(*, trace_pk: int, run_id: str, owner: str) -> bool:
    """Give a claimed first stage back and publish it again, behind the messages waiting now.

    The claim is not counted as an attempt: a deferred trace must not end failed for having waited its turn.
    """
    deferred = Trace.objects.filter(pk=trace_pk, run_id=run_id, stage=Stage.LOAD, lease_owner=owner).update(
        status=TraceStatus.QUEUED, lease_owner="", lease_until=_lease_end(), attempts=F("attempts") - 1,
        updated=timezone.now())
    if deferred:
        ACTIONS_TOTAL.labels(action=DEFER).inc()
        stage_publish(trace_pk=trace_pk, run_id=run_id, stage=Stage.LOAD)
    return bool(deferred)


def trace_shed(*, trace_pk: int, run_id: str, reason: str) -> bool:
    """Mark the run `shed` with its reason: terminal, and recoverable by `traces_shed_replay`."""
    now = timezone.now()
    with transaction.atomic():
        shed = Trace.objects.filter(pk=trace_pk, run_id=run_id, status__in=ACTIVE_STATUSES).update(
            status=TraceStatus.SHED, error=reason[:4000], finished_at=now, updated=now, lease_owner="",
            lease_until=None)
        if shed:
            _trace_audit(trace_pk, "trace.shed", {"run_id": str(run_id), "reason": reason[:500]})
    if shed:
        logger.warning("trace %s shed: %s", trace_pk, reason)
    return bool(shed)


def traces_shed_replay(*, trace_id: str | None = None, since: datetime | None = None) -> list[Trace]:
    """Start a new run of every shed trace (narrowed by the filters); each decides its degradation afresh."""
    traces = Trace.objects.filter(status=TraceStatus.SHED).select_related("tenant").order_by("finished_at", "pk")
    if trace_id:
        traces = traces.filter(trace_id=trace_id)
    if since is not None:
        traces = traces.filter(finished_at__gte=since)
    replayed = []
    for trace in traces:
        with transaction.atomic():
            if Trace.objects.filter(pk=trace.pk, status=TraceStatus.SHED).update(status=TraceStatus.QUEUED):
                trace_start_run(trace=trace, action="trace.replayed", details={"after": "shed"})
                replayed.append(trace)
    return replayed


# --- Sweeping expired leases, dead letters -------------------------------------------------------------

@dataclass
class SweepResult:
    republished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)


def traces_sweep(*, limit: int = 500) -> SweepResult:
    """Publish again every due stage whose lease expired or whose holder on this host died; fail runs whose stage
    keeps dying; expire open traces.

    An expired lease means the stage's message was lost (broker outage, Redis restart) or its holder stopped renewing
    (killed worker, database outage); a holder of this host that exited (its worker was killed) need not be waited
    for. Each re-publish first moves the lease forward by a conditional UPDATE, so two
    sweepers, or a holder that comes back, never publish the same stage twice in one lease period.
    """
    now = timezone.now()
    expired = list(Trace.objects.filter(status__in=ACTIVE_STATUSES, finalized_at__isnull=False, lease_until__lt=now)
                   .order_by("lease_until").values_list("pk", "run_id", "stage", "attempts", "lease_until")[:limit])
    held = (Trace.objects.filter(status=TraceStatus.RUNNING, lease_until__gte=now).exclude(lease_owner="")
            .values_list("pk", "run_id", "stage", "attempts", "lease_until", "lease_owner")[:limit])
    orphaned = [row[:5] for row in held if owner_is_gone(row[5])]  # its holder on this host died (worker killed)
    result = SweepResult()
    for pk, run_id, stage, attempts, lease_until in expired + orphaned:
        if attempts >= settings.STAGE_MAX_ATTEMPTS:
            reason = (f"stage {stage} was started {attempts} times without finishing (its worker was killed or "
                      f"stopped each time); giving up")
            if trace_fail(trace_pk=pk, run_id=str(run_id), stage=stage, reason=reason):
                result.failed.append(pk)
            continue
        taken = Trace.objects.filter(pk=pk, run_id=run_id, stage=stage, lease_until=lease_until).update(
            lease_owner="", lease_until=_lease_end())
        if taken:
            stage_publish(trace_pk=pk, run_id=str(run_id), stage=Stage(stage))
            result.republished.append(pk)
    result.expired = traces_expire(limit=limit)
    if result.republished or result.failed:
        logger.warning("sweep: re-published %d stages, failed %d traces", len(result.republished), len(result.failed))
    return result


def traces_expire(*, limit: int = 500) -> list[int]:
    """End traces never finalized within `TRACE_OPEN_TTL_S` of their last event, and delete their capture shards.

    Their events stay (an operator can still see what arrived); the shards would expire in Redis anyway, but a
    client that gave up should not hold memory for the rest of the shards' TTL.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.TRACE_OPEN_TTL_S)
    stale = list(Trace.objects.filter(status=TraceStatus.OPEN, updated__lt=cutoff).order_by("updated")[:limit])
    expired = []
    for trace in stale:
        ended = Trace.objects.filter(pk=trace.pk, status=TraceStatus.OPEN, updated=trace.updated).update(
            status=TraceStatus.EXPIRED, finished_at=now, updated=now,
            error=f"not finalized within TRACE_OPEN_TTL_S ({settings.TRACE_OPEN_TTL_S} s) of its last event")
        if ended:
            shards_delete(shard_keys(trace))
            expired.append(trace.pk)
    if expired:
        logger.info("sweep: expired %d traces never finalized", len(expired))
    return expired


@dataclass
class ReplayResult:
    replayed: list[DeadLetter] = field(default_factory=list)
    quarantined: list[DeadLetter] = field(default_factory=list)


def dead_letters_replay(*, ids: Iterable[int] | None = None, trace_id: str | None = None, stage: str | None = None,
                        reason: str | None = None, since: datetime | None = None,
                        actor: str = SYSTEM) -> ReplayResult:
    """Re-run the traces of dead letters not yet replayed, narrowed by the filters; quarantined ones are skipped.
    Each re-run is audited as `trace.replayed` by `actor`."""
    letters = DeadLetter.objects.filter(replayed_at__isnull=True).select_related("trace", "trace__tenant")
    if ids is not None:
        letters = letters.filter(pk__in=list(ids))
    if trace_id:
        letters = letters.filter(trace__trace_id=trace_id)
    if stage:
        letters = letters.filter(stage=stage)
    if reason:
        letters = letters.filter(reason__icontains=reason)
    if since is not None:
        letters = letters.filter(created__gte=since)
    result = ReplayResult()
    for letter in letters:
        if letter.quarantined:
            result.quarantined.append(letter)
            continue
        with transaction.atomic():
            if DeadLetter.objects.filter(pk=letter.pk, replayed_at__isnull=True).update(replayed_at=timezone.now()):
                trace_start_run(trace=letter.trace, actor=actor, action="trace.replayed",
                                details={"dead_letter": letter.pk, "failed_stage": letter.stage})
                result.replayed.append(letter)
    return result


def trace_record_verification(*, trace_pk: int, run_id: str, verification: dict) -> bool:
    """Store what the attribute stage valued and how its graph verified, for this run only (a replay's new run id
    leaves a stale stage's figures unwritten)."""
    return bool(Trace.objects.filter(pk=trace_pk, run_id=run_id).update(verification=verification))


def trace_record_concepts(*, trace_pk: int, run_id: str, concepts: dict) -> bool:
    """Store the prompt's concepts and their interactions, for this run only (as `trace_record_verification`)."""
    return bool(Trace.objects.filter(pk=trace_pk, run_id=run_id).update(concepts=concepts))


# --- Deleting: one trace, a batch of expired ones, a tenant's ---------------------------------------------

def trace_stored_data_delete(*, trace: Trace) -> None:
    """Delete what the trace has outside its rows: the graph object, stage artifacts and capture shards.

    Done before the rows go, so a failure here (the store or Redis unreachable) leaves the rows that say what is
    still to delete, and doing it again finishes the job (deleting what is already gone is no error).
    """
    key = Explanation.objects.filter(trace=trace).values_list("object_key", flat=True).first()
    graph_delete(key=key or "")
    configured_artifact_store().delete(trace.pk)
    shards_delete(shard_keys(trace))


def traces_delete(*, trace_pks: Iterable[int]) -> int:
    """Delete the traces everywhere: stored data first, then the rows (events, explanation, dead letters cascade)."""
    traces = list(Trace.objects.filter(pk__in=list(trace_pks)))
    for trace in traces:
        trace_stored_data_delete(trace=trace)
    Trace.objects.filter(pk__in=[t.pk for t in traces]).delete()
    return len(traces)


def trace_delete(*, trace: Trace, actor: ApiKey) -> None:
    """Delete one trace everywhere on a client's request; the audit log records who asked (tenant, key prefix,
    trace id) in the transaction that deletes the rows."""
    with transaction.atomic():
        traces_delete(trace_pks=[trace.pk])
        audit_record(action="trace.deleted", actor=key_actor(actor.prefix), tenant=trace.tenant,
                     target=trace.trace_id)
    logger.warning("trace deleted: tenant=%s key_prefix=%s trace_id=%s", trace.tenant.slug, actor.prefix,
                   trace.trace_id)


def tenant_stored_data_delete(*, tenant: Tenant, batch_size: int = 500) -> int:
    """Delete the stored data of every trace of the tenant (its rows go with the tenant's by cascade)."""
    deleted = 0
    for trace in tenant.traces.order_by("pk").iterator(chunk_size=batch_size):
        trace_stored_data_delete(trace=trace)
        deleted += 1
    if deleted:
        logger.warning("tenant %s is being deleted: the stored data of its %d traces deleted", tenant.slug, deleted)
    return deleted
