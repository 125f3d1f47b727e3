"""What every log line of a trace's work says about it: the values bound in structlog's context.

The web process binds `request_id`, `tenant` and `trace_id`; the request id then travels with each published stage
as a Celery message header (`message_headers`), and the worker binds it again at task start (`task_context_bind`)
with the trace's `tenant`, `trace_id`, `run_id` and `stage` (`trace_context_bind`), so a request's worker lines can
be found by its id.
"""
from __future__ import annotations

import structlog

from .models import Trace

REQUEST_ID_HEADER = "request_id"


def message_headers() -> dict[str, str]:
    """Celery message headers carrying this context's request id (none outside a request's chain)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def task_context_bind(headers: dict | None) -> None:
    """Start a task's context afresh (a pool thread ran other tasks before), with the request id it was sent with."""
    structlog.contextvars.clear_contextvars()
    request_id = (headers or {}).get(REQUEST_ID_HEADER)
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=str(request_id))


def trace_context_bind(trace: Trace, *, run_id: str, stage: str) -> None:
    """Name the trace, its run and the stage in every line logged from here on (`trace.tenant` loaded)."""
    structlog.contextvars.bind_contextvars(tenant=trace.tenant.slug, trace_id=trace.trace_id, run_id=str(run_id),
                                           stage=str(stage))
