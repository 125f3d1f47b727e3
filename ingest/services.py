"""Accepting events: the database commit is the acknowledgement; the run is published only after it.

Accepting is atomic: the event is stored unless it was stored before, and the trace's running summary (token count,
layers, extent of the activation rows) is updated with it. That summary lets every check that spans events — rows
beyond the completion's tokens, too many layers — be made here, at accept time, as a 400, without reading earlier
events back. On PostgreSQL an event that does not finalize takes two round trips (`pg_accept`: an unlocked read,
then one guarded write); finalizing events, and every event on other databases, lock the trace row in a
transaction.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from explainer.audit import SYSTEM
from explainer.models import Tenant, Trace, TraceEvent, TraceStatus
from explainer.pii import find_spans, scrub_text, scrub_tokens
from hypergraph_site.api.broker import broker_check
from explainer.selectors import dictionary_catalog
from explainer.load_reading import pressure_level
from explainer.services import trace_start_run
from explainer.text import tokenize

from . import pg_accept
from .validation import EventInvalid, IngestEvent


class TraceFinished(Exception):
    """The trace no longer accepts events (it was finalized, or expired)."""


class TraceConflict(Exception):
    """The event contradicts one the trace already has (a second, different completion)."""


# A successful Redis ping is trusted this long (seconds) by events that publish nothing; a finalize always pings.
BROKER_PING_REUSE_S = 1.0
# Unlocked attempts before an event on a contended trace takes the locking path.
OPTIMISTIC_TRIES = 3


@dataclass(frozen=True)
class AcceptResult:
    trace_id: str
    status: str
    duplicate: bool


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def event_row(event: IngestEvent) -> pg_accept.EventRow:
    """The event as stored, with its hash: sha256 of the canonical JSON of its type, granularity and payload.

    The payload is serialized once: that text is stored, and hashed inside the canonical object, written out here
    with its keys in sorted order exactly as `json.dumps(..., sort_keys=True)` would.
    """
    payload_json = _canonical(event.payload)
    canonical = (f'{{"event_type":{_canonical(event.event_type)},"granularity":{_canonical(event.granularity)},'
                 f'"payload":{payload_json}}}')
    return pg_accept.EventRow(event_type=event.event_type, event_hash=hashlib.sha256(canonical.encode()).hexdigest(),
                              granularity=event.granularity or "", payload_json=payload_json)


def event_accept(*, tenant: Tenant, event: IngestEvent, actor: str = SYSTEM) -> AcceptResult:
    """Store the event and, if it finalizes the trace, start a run (audited as queued by `actor`) — atomically.

    Idempotent: an identical event re-sent is acknowledged again without new rows or work. Raises `EventInvalid`
    for an event that contradicts the trace's earlier events or the configured dictionary. With `PII_SCRUB` the
    event is stored, and hashed, as `event_scrubbed` gives it: the same event sent twice is still one event.
    """
    _check_dictionary(event)
    if settings.PII_SCRUB:
        event = event_scrubbed(event, mask_numbers=settings.PII_MASK_NUMBERS)
    broker_check(reuse_s=0.0 if event.finalizes else BROKER_PING_REUSE_S)
    row = event_row(event)
    if connection.vendor == "postgresql" and not event.finalizes:
        for _ in range(OPTIMISTIC_TRIES):
            result = _accept_unlocked(tenant, event, row)
            if result is not None:
                return result
    try:
        return _accept(tenant, event, row, actor)
    except IntegrityError:
        # A concurrent request created the same trace or event first; the retry sees its rows.
        return _accept(tenant, event, row, actor)


def event_scrubbed(event: IngestEvent, *, mask_numbers: bool) -> IngestEvent:
    """The event with PII masked in a completion's prompt, text and tokens (other events carry no text).

    Tokens keep their count, so activation rows still line up with them. A completion sent without tokens whose
    text holds PII gets the tokens the service would have split the unmasked text into, masked: splitting the
    masked text instead would give a different number of positions than the activations have.
    """
    if event.event_type != "completion":
        return event
    payload = event.payload
    text, tokens, prompt = payload["text"], payload.get("tokens"), payload.get("prompt")
    scrubbed = dict(payload)
    if tokens is not None:
        scrubbed["tokens"] = scrub_tokens(tokens, mask_numbers=mask_numbers)
    elif find_spans(text, mask_numbers=mask_numbers):
        scrubbed["tokens"] = scrub_tokens(tokenize(text), mask_numbers=mask_numbers)
    scrubbed["text"] = scrub_text(text, mask_numbers=mask_numbers)
    if prompt:
        scrubbed["prompt"] = scrub_text(prompt, mask_numbers=mask_numbers)
    if scrubbed == payload:
        return event
    return dataclasses.replace(event, payload=scrubbed)


def _accept_unlocked(tenant, event: IngestEvent, row: pg_accept.EventRow) -> AcceptResult | None:
    """Accept without a lock (PostgreSQL); None when a concurrent request changed the trace first.

    A completion is tried as a new trace first, with no read: clients send it first (`capture_and_send` does), so
    it usually opens its trace, in one round trip; an activations event for that trace then usually lands in one
    round trip too. The read comes only when those writes do not apply.
    """
    accepted = AcceptResult(trace_id=event.trace_id, status=TraceStatus.OPEN, duplicate=False)
    if event.event_type == "completion" and _create(tenant, event, row):
        return accepted
    if event.event_type == "activations":
        outcome = pg_accept.trace_add_activations(
            tenant_id=tenant.pk, trace_id=event.trace_id, layers=_layers(event.payload),
            extent=_extent(event.payload)[1], max_layers=settings.MAX_LAYERS, event=row)
        if outcome is not None:
            return AcceptResult(trace_id=event.trace_id, status=TraceStatus.OPEN, duplicate=outcome == "duplicate")
    snapshot = pg_accept.trace_snapshot(tenant_id=tenant.pk, trace_id=event.trace_id, digest=row.event_hash)
    if snapshot is None:
        return accepted if _create(tenant, event, row) else None
    if snapshot.duplicate:
        return AcceptResult(trace_id=event.trace_id, status=snapshot.status, duplicate=True)
    _check_open(event.trace_id, snapshot.status, snapshot.finalized)
    written = pg_accept.trace_update_with_event(snapshot=snapshot, changes=_summary(snapshot, event), event=row)
    return accepted if written else None


def _create(tenant, event: IngestEvent, row: pg_accept.EventRow) -> bool:
    values = {"tenant_id": tenant.pk, "trace_id": event.trace_id, **_summary(None, event)}
    return pg_accept.trace_create_with_event(values=values, event=row)


def _accept(tenant: Tenant, event: IngestEvent, row: pg_accept.EventRow, actor: str) -> AcceptResult:
    with transaction.atomic():
        duplicate = Exists(TraceEvent.objects.filter(trace=OuterRef("pk"), event_hash=row.event_hash))
        trace = (Trace.objects.select_for_update(of=("self",)).filter(tenant=tenant, trace_id=event.trace_id)
                 .annotate(duplicate=duplicate).first())
        if trace is not None and trace.duplicate:
            return AcceptResult(trace_id=trace.trace_id, status=trace.status, duplicate=True)
        if trace is not None:
            _check_open(trace.trace_id, trace.status, trace.finalized_at is not None)
        summary = _summary(trace, event)
        if trace is None:
            trace = Trace.objects.create(tenant=tenant, trace_id=event.trace_id, **summary)
        else:  # also when nothing else changes: `updated` dates the last event, for TRACE_OPEN_TTL_S
            Trace.objects.filter(pk=trace.pk).update(**summary, updated=timezone.now())
        TraceEvent.objects.create(trace=trace, event_type=row.event_type, event_hash=row.event_hash,
                                  granularity=row.granularity, payload=event.payload)
        if event.finalizes:  # the level it is accepted at: its run degrades at least that much
            level = pressure_level(tenant_id=tenant.pk, granularity=summary.get("granularity", trace.granularity))
            trace.tenant = tenant  # the audit row names it; no query to load it again
            trace_start_run(trace=trace, level=level, actor=actor)
            trace.refresh_from_db(fields=["status"])
    return AcceptResult(trace_id=trace.trace_id, status=trace.status, duplicate=False)


def _check_open(trace_id: str, status: str, finalized: bool) -> None:
    """Raise `TraceFinished` unless the trace still takes events."""
    if finalized:
        raise TraceFinished(f"trace '{trace_id}' is {status} and accepts no more events")
    if status == TraceStatus.EXPIRED:
        raise TraceFinished(f"trace '{trace_id}' expired: it was not finalized within TRACE_OPEN_TTL_S "
                            f"({settings.TRACE_OPEN_TTL_S} s); send its events under a new trace id")


def _summary(trace: Trace | pg_accept.TraceSnapshot | None, event: IngestEvent) -> dict:
    """The trace fields this event changes, after checking it against what the trace received before."""
    token_count = trace.token_count if trace else None
    layers = list(trace.layers) if trace else []
    extent = trace.rows_extent if trace else 0
    changes: dict = {}
    if event.granularity:
        changes["granularity"] = event.granularity
    if event.event_type == "completion":
        if token_count is not None:
            raise TraceConflict(f"trace '{trace.trace_id}' already has a different completion event; a trace "
                                f"explains one response, so send this one under a new trace id")
        payload = event.payload
        tokens = payload.get("tokens")
        count = len(tokens) if tokens is not None else len(tokenize(payload["text"]))
        if count > settings.MAX_TRACE_TOKENS:
            raise EventInvalid([{"path": "payload.text", "message": (
                f"the completion has {count} tokens, more than MAX_TRACE_TOKENS ({settings.MAX_TRACE_TOKENS})")}])
        if extent > count:
            raise EventInvalid([{"path": "payload.tokens", "message": (
                f"activations already received cover {extent} positions, more than this completion's {count} "
                f"tokens")}])
        changes.update(model_name=payload["model"], model_hash=payload.get("model_hash", ""), token_count=count)
    elif event.event_type == "activations":
        path, event_extent = _extent(event.payload)
        if token_count is not None and event_extent > token_count:
            raise EventInvalid([{"path": path, "message": (
                f"activation rows reach position {event_extent - 1}, beyond the completion's {token_count} tokens")}])
        new_layers = sorted(set(layers) | set(_layers(event.payload)))
        if len(new_layers) > settings.MAX_LAYERS:
            raise EventInvalid([{"path": "payload.layer", "message": (
                f"the trace would have {len(new_layers)} layers, more than MAX_LAYERS ({settings.MAX_LAYERS})")}])
        if new_layers != layers:
            changes["layers"] = new_layers
        if event_extent > extent:
            changes["rows_extent"] = event_extent
    return changes


def _layers(payload: dict) -> list[int]:
    return [payload["layer"]] if "data" in payload else list(payload.get("layers", []))


def _extent(payload: dict) -> tuple[str, int]:
    """(path, one past the last position) that an activations payload covers."""
    offset = payload.get("token_offset", 0)
    if "data" in payload:
        return "payload.shape[0]", offset + payload["shape"][0]
    return "payload.tokens", offset + int(payload.get("tokens") or 0)


def _check_dictionary(event: IngestEvent) -> None:
    """Refuse layers and widths the configured dictionary cannot decode (skipped when no dictionary is installed)."""
    if event.event_type != "activations":
        return
    catalog = dictionary_catalog()
    if not catalog.widths:
        return
    payload = event.payload
    inline = "data" in payload
    for layer in _layers(payload):
        if layer not in catalog.widths:
            raise EventInvalid([{"path": "payload.layer" if inline else "payload.layers", "message": (
                f"layer {layer} is not in dictionary '{catalog.name}' (it has layers {sorted(catalog.widths)})")}])
        width = payload["shape"][1] if inline else int(payload.get("d_model") or 0)
        if width and width != catalog.widths[layer]:
            raise EventInvalid([{"path": "payload.shape[1]" if inline else "payload.d_model", "message": (
                f"rows of width {width} do not fit dictionary '{catalog.name}' layer {layer}, which takes width "
                f"{catalog.widths[layer]}")}])
