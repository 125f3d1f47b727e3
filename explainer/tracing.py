"""OpenTelemetry spans of the chain: one trace per explained trace, carried from the ingest request to every stage.

The finalize request's span is the parent of the run's first stage; each stage's span is the parent of the next,
whether the next runs inline in the same task or is published (its W3C `traceparent` travels in the Celery message
headers). A stage the sweeper re-publishes has no span around it, so the run's context is also kept in Redis (for
`TRACE_OPEN_TTL_S`) when tracing is on, and the re-published stage joins the same trace.

Only the OpenTelemetry API is used here: with no tracer provider configured (`TRACING_ENABLED` off) every span is a
no-op and nothing is injected, stored or read.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Mapping

import redis
from django.conf import settings
from opentelemetry import propagate, trace
from opentelemetry.context import Context

from .heartbeat import redis_client

logger = logging.getLogger(__name__)

TRACER = trace.get_tracer("hypergraph_sidecar.explainer")
RUN_CONTEXT_PREFIX = "hypergraph:run-trace:"


def carrier_of(context: Context | None = None) -> dict[str, str]:
    """The W3C trace-context headers of `context` (default: the current one); empty when no span is recording."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def context_of(carrier: Mapping[str, str] | None) -> Context | None:
    return propagate.extract(carrier) if carrier else None


def run_context_save(*, run_id: str) -> None:
    """Keep the current span's context as the run's, for stages re-published without one (the sweeper)."""
    carrier = carrier_of() if settings.TRACING_ENABLED else {}
    if not carrier:
        return
    try:
        redis_client().set(RUN_CONTEXT_PREFIX + str(run_id), carrier["traceparent"], ex=settings.TRACE_OPEN_TTL_S)
    except redis.RedisError as exc:
        logger.warning("tracing: could not keep the context of run %s: %s", run_id, exc)


def stage_headers(*, run_id: str, context: Context | None = None) -> dict[str, str]:
    """The trace-context headers a published stage carries: `context`'s, the current span's, or the run's kept one."""
    if not settings.TRACING_ENABLED:
        return {}
    carrier = carrier_of(context)
    if carrier:
        return carrier
    try:
        kept = redis_client().get(RUN_CONTEXT_PREFIX + str(run_id))
    except redis.RedisError:
        return {}
    return {"traceparent": kept.decode()} if kept else {}


@contextmanager
def stage_span(*, stage: str, trace_pk: int, run_id: str, granularity: str,
               parent: Context | None) -> Iterator[trace.Span]:
    """The span of one stage's work, a child of `parent` (the previous stage, or the finalize request)."""
    with TRACER.start_as_current_span(f"stage {stage}", context=parent, kind=trace.SpanKind.CONSUMER, attributes={
            "hypergraph.stage": stage, "hypergraph.trace_pk": trace_pk, "hypergraph.run_id": str(run_id),
            "hypergraph.granularity": granularity}) as span:
        yield span
