"""The OpenTelemetry SDK set up once per process (web: `wsgi.py`; workers: `celery.py` at worker start).

`OTEL_EXPORTER_OTLP_ENDPOINT` set: spans are batched and sent over OTLP/HTTP (the exporter reads the standard
`OTEL_EXPORTER_OTLP_*` variables itself). `OTEL_SPANS_FILE` set: each finished span is appended to that file as one
JSON line (`SpanFileExporter`), which a test or a person can read without a collector. Neither: nothing is set up,
and the API's no-op tracer makes every span free. Propagation is the SDK's default, W3C `traceparent`.
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult


class SpanFileExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object per line (`ReadableSpan.to_json`).

    Each line is one `write` on a file opened for appending, so the processes of a host (prefork children, gunicorn
    workers) can share the file without interleaving lines.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def tracing_configure(*, role: str) -> TracerProvider | None:
    """Install the tracer provider this process's settings ask for; None when tracing is off. `role` (web, worker)
    goes into the resource, so one service's spans say which kind of process made them."""
    if not settings.TRACING_ENABLED:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME,
                                                        "service.instance.role": role}))
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if settings.OTEL_SPANS_FILE:
        provider.add_span_processor(SimpleSpanProcessor(SpanFileExporter(settings.OTEL_SPANS_FILE)))
    trace.set_tracer_provider(provider)
    return provider


def tracing_flush() -> None:
    """Send what the batch processor still holds (a pool process exits without running atexit handlers)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=5000)
