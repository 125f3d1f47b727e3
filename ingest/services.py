"""Accepting events: the database commit is the acknowledgement; the chain is published only after it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from django.db import IntegrityError, transaction

from explainer.models import Trace, TraceEvent
from explainer.services import trace_start_run

from .validation import IngestEvent


class BrokerUnavailable(Exception):
    """Redis cannot be reached; nothing was written, the client should retry later."""


class TraceFinished(Exception):
    """The trace no longer accepts events (it was finalized)."""


@dataclass(frozen=True)
class AcceptResult:
    trace: Trace
    duplicate: bool


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)


def broker_check() -> None:
    """Ping Redis before any write, so an outage gives a clean 503 instead of a trace that can never run."""
    try:
        _redis().ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(str(exc)) from exc


def event_hash(event: IngestEvent) -> str:
    canonical = json.dumps(
        {"event_type": event.event_type, "payload": event.payload, "granularity": event.granularity},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_accept(*, tenant, event: IngestEvent) -> AcceptResult:
    """Store the event and, if it finalizes the trace, start a chain run — all in one transaction.

    Idempotent: an identical event re-sent is acknowledged again without new rows or work.
    """
    broker_check()
    digest = event_hash(event)
    try:
        return _accept(tenant, event, digest)
    except IntegrityError:
        # A concurrent request created the same trace or event first; the retry sees its rows.
        return _accept(tenant, event, digest)


def _accept(tenant, event: IngestEvent, digest: str) -> AcceptResult:
    with transaction.atomic():
        trace, _ = Trace.objects.get_or_create(tenant=tenant, trace_id=event.trace_id)
        trace = Trace.objects.select_for_update().get(pk=trace.pk)
        if TraceEvent.objects.filter(trace=trace, event_hash=digest).exists():
            return AcceptResult(trace=trace, duplicate=True)
        if trace.finalized_at is not None:
            raise TraceFinished(f"trace '{trace.trace_id}' is {trace.status} and accepts no more events")
        TraceEvent.objects.create(
            trace=trace, event_type=event.event_type, event_hash=digest,
            granularity=event.granularity or "", payload=event.payload,
        )
        _apply(trace, event)
        if event.finalizes:
            trace_start_run(trace=trace)
            trace.refresh_from_db()
    return AcceptResult(trace=trace, duplicate=False)


def _apply(trace: Trace, event: IngestEvent) -> None:
    """Copy the descriptive fields an event carries onto the trace."""
    fields = []
    if event.granularity:
        trace.granularity = event.granularity
        fields.append("granularity")
    if event.event_type == "completion":
        trace.model_name = event.payload["model"]
        trace.model_hash = event.payload.get("model_hash", "")
        fields += ["model_name", "model_hash"]
    if fields:
        trace.save(update_fields=[*fields, "updated"])
