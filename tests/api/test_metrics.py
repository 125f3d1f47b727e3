"""GET /metrics: the scrape-time families (database, Redis), /ingest's counter and multiprocess mode."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from explainer.models import DeadLetter, Trace

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def scrape() -> dict[str, dict[tuple, float]]:
    """name → {sorted label items → value} of every sample /metrics answers."""
    response = Client().get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_traces_by_status_and_granularity_and_dead_letters_come_from_the_database(alice, redis_flush):
    tenant, _ = alice
    for i, (status, granularity) in enumerate([("complete", "sentence"), ("complete", "sentence"),
                                               ("failed", "token"), ("queued", "token")]):
        Trace.objects.create(tenant=tenant, trace_id=f"t{i}", status=status, granularity=granularity)
    failed = Trace.objects.get(trace_id="t2")
    DeadLetter.objects.create(trace=failed, stage="attribute", reason="boom")
    DeadLetter.objects.create(trace=failed, stage="attribute", reason="boom", quarantined=True)
    samples = scrape()
    assert samples["hypergraph_traces"] == {
        (("granularity", "sentence"), ("status", "complete")): 2,
        (("granularity", "token"), ("status", "failed")): 1,
        (("granularity", "token"), ("status", "queued")): 1,
    }
    assert samples["hypergraph_dead_letters"] == {(("stage", "attribute"), ("state", "pending")): 1,
                                                  (("stage", "attribute"), ("state", "quarantined")): 1}


def test_traces_carry_the_tenant_only_when_the_setting_allows(alice, settings, redis_flush):
    tenant, _ = alice
    Trace.objects.create(tenant=tenant, trace_id="t", status="complete")
    assert all("tenant" not in dict(labels) for labels in scrape()["hypergraph_traces"])
    settings.METRICS_TENANT_LABEL = True
    assert scrape()["hypergraph_traces"] == {
        (("granularity", "sentence"), ("status", "complete"), ("tenant", "alice")): 1}


def test_queue_depth_counts_every_priority_list_of_each_queue(redis_flush):
    redis_flush.rpush("default", "a", "b")
    redis_flush.rpush("default\x06\x163", "c")
    redis_flush.rpush("gpu\x06\x169", "d", "e", "f")
    samples = scrape()
    assert samples["hypergraph_queue_depth"] == {(("queue", "default"),): 3, (("queue", "gpu"),): 3}


def test_workers_alive_counts_fresh_heartbeats(redis_flush):
    from explainer.heartbeat import heartbeat_write

    assert scrape()["hypergraph_workers_alive"] == {(): 0}
    heartbeat_write(hostname="celery@a")
    heartbeat_write(hostname="celery@b")
    assert scrape()["hypergraph_workers_alive"] == {(): 2}


def test_ingest_answers_are_counted_by_status(alice, client_for, redis_flush):
    _, key = alice

    def count(status: str) -> float:
        return scrape().get("hypergraph_ingest_requests_total", {}).get((("status", status),), 0)

    before_401, before_400 = count("401"), count("400")
    Client().post("/ingest", data=b"{}", content_type="application/json")
    client_for(key).post("/ingest", data=b"not json", content_type="application/json")
    assert count("401") == before_401 + 1 and count("400") == before_400 + 1


def test_metrics_survive_redis_being_down(alice, settings):
    from explainer.heartbeat import redis_client

    Trace.objects.create(tenant=alice[0], trace_id="t", status="complete")

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    redis_client.cache_clear()
    try:
        samples = scrape()
    finally:
        redis_client.cache_clear()
    assert "hypergraph_traces" in samples and "hypergraph_queue_depth" not in samples


def test_multiprocess_mode_sums_other_processes_and_drops_exited_ones_live_gauges(tmp_path, settings):
    """Two processes record stage seconds and hold 3 dictionaries each in multiprocess mode, and the first retires
    as a process does at exit; this process's /metrics reads their files: both histograms, one live gauge."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "hypergraph_site.settings"}
    code = ("import sys, django; django.setup(); from explainer import metrics; from sae import metrics as sae_metrics;"
            "from explainer.metrics_export import process_metrics_retire;"
            "metrics.STAGE_SECONDS.labels(stage='load', granularity='sentence').observe(0.2);"
            "sae_metrics.LAYER_CACHE_SIZE.set(3); sys.argv[1] == 'exit' and process_metrics_retire()")
    for ending in ("exit", "alive"):
        subprocess.run([sys.executable, "-c", code, ending], env=env, cwd=ROOT, check=True)
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    samples = scrape()
    assert samples["hypergraph_stage_duration_seconds_count"][(("granularity", "sentence"), ("stage", "load"))] == 2
    assert samples["sae_layer_cache_size"] == {(): 3}
    assert "hypergraph_workers_alive" in samples  # the scrape-time families are served in multiprocess mode too
