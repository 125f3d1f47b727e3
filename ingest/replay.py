"""Replaying recorded `/ingest` events, in process or over HTTP, and waiting for their traces to finish."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from explainer.models import TERMINAL_STATUSES, Explanation, Tenant, Trace

from .services import event_accept
from .validation import EventInvalid, validate_event


@dataclass(frozen=True)
class RecordedEvent:
    tenant: str | None
    body: dict
    source: str  # "file:line", for error messages


def read_events(paths: list[Path]) -> Iterator[RecordedEvent]:
    for path in paths:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            body = json.loads(line)
            yield RecordedEvent(tenant=body.pop("tenant", None), body=body, source=f"{path}:{number}")


def send_in_process(event: RecordedEvent, default_tenant: str) -> str:
    """Send through the same validation and accept path as `POST /ingest`; return the trace's status."""
    tenant = Tenant.objects.get(slug=event.tenant or default_tenant)
    try:
        result = event_accept(tenant=tenant, event=validate_event(event.body))
    except EventInvalid as exc:
        raise ValueError(f"{event.source}: {exc.errors}") from None
    return result.status


def http_sender(base_url: str, api_key: str) -> Callable[[RecordedEvent], str]:
    from ingest.client import IngestClient

    client = IngestClient(base_url, api_key)
    return lambda event: client.request("POST", "/ingest", event.body)[1]["status"]


@dataclass(frozen=True)
class TraceOutcome:
    trace_id: str
    status: str
    nodes: int | None
    incidences: int | None
    seconds: float | None


def wait_for(tenant_slug: str, trace_ids: list[str], timeout_s: float,
             on_poll: Callable[[int], None] | None = None) -> list[TraceOutcome]:
    """Poll the database until every trace is terminal (or the timeout passes) and summarise each."""
    deadline = time.monotonic() + timeout_s
    while True:
        traces = {t.trace_id: t for t in Trace.objects.filter(tenant__slug=tenant_slug, trace_id__in=trace_ids)}
        done = sum(t.status in TERMINAL_STATUSES for t in traces.values())
        if on_poll:
            on_poll(done)
        if done == len(trace_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    explanations = {e.trace_id: e for e in Explanation.objects.filter(trace__in=traces.values())}
    outcomes = []
    for trace_id in trace_ids:
        trace = traces.get(trace_id)
        explanation = explanations.get(trace.pk) if trace else None
        seconds = (trace.finished_at - trace.finalized_at).total_seconds() \
            if trace and trace.finished_at and trace.finalized_at else None
        outcomes.append(TraceOutcome(
            trace_id=trace_id, status=trace.status if trace else "missing",
            nodes=explanation.node_count if explanation else None,
            incidences=explanation.incidence_count if explanation else None, seconds=seconds,
        ))
    return outcomes


def wait_and_report(tenant_slug: str, trace_ids: list[str], timeout_s: float) -> list[TraceOutcome]:
    """`wait_for` with a progress bar (stderr), then a table of trace, status, nodes, incidences and seconds."""
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("explaining", total=len(trace_ids))
        outcomes = wait_for(tenant_slug, trace_ids, timeout_s, lambda done: progress.update(task, completed=done))
    table = Table("trace", "status", "nodes", "incidences", "seconds")
    for o in outcomes:
        table.add_row(o.trace_id, o.status, str(o.nodes or "-"), str(o.incidences or "-"),
                      f"{o.seconds:.2f}" if o.seconds is not None else "-")
    Console().print(table)
    return outcomes
