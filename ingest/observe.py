"""What /ingest tells operators: a span per request (the parent of the explanation's stages when it finalizes a
trace) and `hypergraph_ingest_requests_total` by answer.

The span continues the caller's trace when the request carries a W3C `traceparent`. With tracing off the tracer is
the API's no-op one: a request pays for a context attach and detach, no more.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter

TRACER = trace.get_tracer("hypergraph_sidecar.ingest")
INGEST_REQUESTS = Counter(
    "hypergraph_ingest_requests_total", "Answers of POST /ingest by HTTP status (and tenant, with METRICS_TENANT_LABEL)",
    ["status", "tenant"] if settings.METRICS_TENANT_LABEL else ["status"])


@contextmanager
def ingest_span(request: HttpRequest) -> Iterator[trace.Span]:
    parent = propagate.extract(request.headers) if "traceparent" in request.headers else None
    with TRACER.start_as_current_span("POST /ingest", context=parent, kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "POST", "http.route": "/ingest"}) as span:
        yield span


def ingest_answered(*, span: trace.Span, response: HttpResponseBase, tenant: str) -> None:
    span.set_attribute("http.response.status_code", response.status_code)
    if response.status_code >= 500:
        span.set_status(StatusCode.ERROR)
    if settings.METRICS_TENANT_LABEL:
        INGEST_REQUESTS.labels(status=str(response.status_code), tenant=tenant).inc()
    else:
        INGEST_REQUESTS.labels(status=str(response.status_code)).inc()
