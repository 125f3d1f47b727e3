"""The span context of a run: carried to published stages in the message headers, kept for the sweeper's
re-publishes, and nothing at all with tracing off."""
from __future__ import annotations

import json

import pytest
from django.db import transaction
from django.utils import timezone
from opentelemetry import trace

from explainer import runner, services, tracing
from explainer.models import Stage, Trace

pytestmark = pytest.mark.django_db(transaction=True)

TRACER = trace.get_tracer("tests")


def published_traceparent(redis_client, queue: str) -> str | None:
    """The trace and parent span ids (`<trace id>-<span id>`) the waiting stage message carries."""
    message = json.loads(redis_client.lindex(queue, 0))
    traceparent = message["headers"].get("traceparent")
    return traceparent and "-".join(traceparent.split("-")[1:3])


def traceparent_of(span) -> str:
    return f"{span.context.trace_id:032x}-{span.context.span_id:016x}"


def start_run(tenant) -> tuple[Trace, trace.Span]:
    """A run started (and its first stage published) inside a request's span, as a finalize event does."""
    trace_row = Trace.objects.create(tenant=tenant, trace_id="t-1")
    with TRACER.start_as_current_span("POST /ingest") as request_span, transaction.atomic():
        services.trace_start_run(trace=trace_row)
    trace_row.refresh_from_db()
    return trace_row, request_span


def test_the_first_stage_and_the_sweepers_re_publish_carry_the_finalize_requests_context(alice, redis_flush, spans):
    trace_row, request_span = start_run(alice[0])
    assert published_traceparent(redis_flush, "default") == traceparent_of(request_span)

    redis_flush.delete("default")  # the message is lost; the lease expires and the sweeper publishes it again
    Trace.objects.filter(pk=trace_row.pk).update(lease_until=timezone.now())
    assert trace_row.pk in services.traces_sweep().republished
    assert published_traceparent(redis_flush, "default") == traceparent_of(request_span)


def test_inline_stages_chain_their_spans_and_the_published_one_continues_it(alice, redis_flush, spans):
    trace_row, request_span = start_run(alice[0])
    redis_flush.delete("default")
    parent = tracing.context_of({"traceparent": f"00-{traceparent_of(request_span)}-01"})
    works = {stage: (lambda t: None) for stage in Stage}
    runner.run_chain(Stage.LOAD, trace_row.pk, str(trace_row.run_id), works, finish=None,
                     runs_here=lambda stage: stage != Stage.BUILD, parent=parent)
    stage_spans = [s for s in spans.get_finished_spans() if s.name.startswith("stage ")]
    assert [s.name for s in stage_spans] == ["stage load", "stage sae_decode", "stage attribute"]
    parents = [request_span] + stage_spans[:-1]
    for span, expected in zip(stage_spans, parents):
        assert span.context.trace_id == request_span.context.trace_id
        assert span.parent.span_id == expected.context.span_id
    assert published_traceparent(redis_flush, "default") == traceparent_of(stage_spans[-1])


def test_with_tracing_off_nothing_is_carried_or_kept(alice, redis_flush, settings):
    settings.TRACING_ENABLED = False
    trace_row, request_span = start_run(alice[0])
    assert published_traceparent(redis_flush, "default") is None
    assert redis_flush.keys(tracing.RUN_CONTEXT_PREFIX + "*") == []
    assert tracing.stage_headers(run_id=str(trace_row.run_id)) == {}
