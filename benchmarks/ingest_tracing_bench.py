"""Benchmark: what OpenTelemetry costs POST /ingest, with tracing off (no provider: the API's no-op spans) and on
(the SDK with a batch processor, as with `OTEL_EXPORTER_OTLP_ENDPOINT`, its exporter discarding the spans so the
network is not measured).

Each round is a fresh process (a tracer provider cannot be removed once installed), alternating off and on, that
sends `--traces` traces through Django's test client (the whole middleware and view stack, no HTTP server): a
completion event that opens the trace and a finalize event that starts its run and publishes its first stage (with
tracing on, the run's span context is also kept in Redis). It prints the median milliseconds per request of each
round and of each mode.

Run (a migrated database and Redis; the queued stage messages are deleted afterwards):
  DATABASE_URL=postgres://... REDIS_URL=redis://.../N .venv/bin/python benchmarks/ingest_tracing_bench.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _round(mode: str, traces: int) -> list[float]:
    """One process's per-request milliseconds."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hypergraph_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from explainer.services import api_key_create, tenant_create

    if mode == "on":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        trace.set_tracer_provider(provider)
        settings.TRACING_ENABLED = True
    tenant = tenant_create(slug=f"bench-{uuid.uuid4().hex[:8]}")
    _, key = api_key_create(tenant=tenant, scopes=["traces:write"])
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    timings = []
    for i in range(traces + 20):  # the first 20 warm up (imports, connections, caches) and are not counted
        trace_id = f"bench-{uuid.uuid4().hex}"
        for event in ({"trace_id": trace_id, "event_type": "completion", "granularity": "sentence",
                       "payload": {"model": "bench", "prompt": "Why?", "text": "Because. It is so.",
                                   "tokens": ["Because", ".", " It", " is", " so", "."]}},
                      {"trace_id": trace_id, "event_type": "finalize", "payload": {}}):
            body = json.dumps(event).encode()
            started = time.perf_counter()
            status = client.post("/ingest", data=body, content_type="application/json").status_code
            if i >= 20:
                timings.append(1000 * (time.perf_counter() - started))
            assert status == 202, status
    import redis

    redis.Redis.from_url(settings.REDIS_URL).delete("default")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode (default 3)")
    parser.add_argument("--traces", type=int, default=200, help="traces per round (two requests each)")
    parser.add_argument("--round", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.round:
        print(json.dumps(_round(args.round, args.traces)))
        return
    per_mode: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            out = subprocess.run([sys.executable, __file__, "--round", mode, "--traces", str(args.traces)], cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout
            timings = json.loads(out.strip().splitlines()[-1])
            per_mode[mode] += timings
            print(f"tracing {mode:3s}: median {statistics.median(timings):.3f} ms/request ({len(timings)} requests)")
    off, on = (statistics.median(per_mode[m]) for m in ("off", "on"))
    print(f"all rounds: off {off:.3f} ms, on {on:.3f} ms, tracing adds {on - off:+.3f} ms per request")


if __name__ == "__main__":
    main()
