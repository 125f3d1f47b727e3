"""Operators' view of a real run: the worker's metrics (its exporter and the web's /metrics in multiprocess mode),
/readyz seeing the worker's heartbeat, and one OpenTelemetry trace from the finalize request through every stage."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from explainer.models import Stage
from hypergraph_site.demo.samples import sample_events

pytestmark = pytest.mark.django_db(transaction=True)

STAGES = [str(stage) for stage in Stage]


def samples_of(text: str) -> dict[str, dict[tuple, float]]:
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    return sum(value for key, value in samples.get(name, {}).items() if set(labels.items()) <= set(key))


def explain(http, trace_id: str) -> dict:
    for event in (e for e in sample_events() if e["trace_id"] == trace_id):
        assert http.post(event)[0] == 202
    summary = http.wait_terminal(trace_id)
    assert summary["status"] == "complete", summary["error"]
    return summary


def test_worker_metrics_reach_the_scrape(http, live_server, worker_metrics_port, e2e_dirs, settings):
    explain(http, "sample-finance")
    with urllib.request.urlopen(f"http://127.0.0.1:{worker_metrics_port}/metrics", timeout=10) as answer:
        worker = samples_of(answer.read().decode())
    for stage in STAGES:
        assert total(worker, "hypergraph_stage_duration_seconds_count", stage=stage, granularity="sentence") >= 1
    assert total(worker, "hypergraph_queue_lag_seconds_count", granularity="sentence") >= 1
    assert total(worker, "sae_decode_requests_total") >= 1 and total(worker, "sae_decode_latency_seconds_count") >= 1
    assert total(worker, "sae_decode_batch_size_count") >= 1
    assert total(worker, "attribution_latency_seconds_count", granularity="sentence") >= 1
    assert total(worker, "hypergraph_hif_nodes_count") >= 1 and total(worker, "hypergraph_hif_nodes_sum") > 0
    assert total(worker, "hypergraph_hif_prune_ratio_count") >= 1

    # The web process's /metrics: what the database and Redis say, and, reading the worker's multiprocess folder
    # as a web process of the same host does, the worker's own samples.
    settings.PROMETHEUS_MULTIPROC_DIR = str(e2e_dirs["prometheus"])
    with urllib.request.urlopen(f"{live_server.url}/metrics", timeout=10) as answer:
        web = samples_of(answer.read().decode())
    assert total(web, "hypergraph_traces", status="complete", granularity="sentence") >= 1
    assert {key for key in web["hypergraph_queue_depth"]} == {(("queue", "default"),), (("queue", "gpu"),)}
    assert web["hypergraph_workers_alive"][()] >= 1
    for stage in STAGES:
        assert total(web, "hypergraph_stage_duration_seconds_count", stage=stage) >= 1


def test_readyz_sees_the_worker(http, live_server):
    with urllib.request.urlopen(f"{live_server.url}/readyz", timeout=10) as answer:
        assert json.loads(answer.read())["checks"]["worker"] == "ok"


def test_one_trace_from_the_finalize_request_through_every_stage(http, spans, e2e_dirs):
    """The live server's spans in the SDK's in-memory exporter, the worker's in its `OTEL_SPANS_FILE`."""
    explain(http, "sample-code")
    finalize = [s for s in spans.get_finished_spans()
                if s.name == "POST /ingest" and s.attributes.get("hypergraph.event_type") == "finalize"]
    assert len(finalize) == 1 and finalize[0].attributes["http.response.status_code"] == 202
    trace_id = f"0x{finalize[0].context.trace_id:032x}"

    deadline = time.monotonic() + 10
    while True:  # the persist span ends just after the trace is marked complete
        lines = e2e_dirs["spans"].read_text().splitlines() if e2e_dirs["spans"].exists() else []
        stages = {s["name"]: s for s in map(json.loads, lines) if s["context"]["trace_id"] == trace_id}
        if len(stages) == len(STAGES) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(stages) == sorted(f"stage {stage}" for stage in STAGES)
    parent = f"0x{finalize[0].context.span_id:016x}"
    for stage in STAGES:
        span = stages[f"stage {stage}"]
        assert span["parent_id"] == parent, stage
        assert span["attributes"]["hypergraph.stage"] == stage and span["status"]["status_code"] == "UNSET"
        parent = span["context"]["span_id"]
