"""Probes, metrics and the OpenAPI schema."""
from __future__ import annotations

import time

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_healthz():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_redis_and_a_worker_heartbeat(redis_flush):
    from explainer.heartbeat import heartbeat_write

    heartbeat_write(hostname="celery@host-a")
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "worker": "ok"}}


@override_settings(READYZ_WORKER_MAX_AGE_S=12)
def test_readyz_reports_a_missing_or_stale_worker_without_failing(redis_flush):
    from explainer.heartbeat import heartbeat_write

    assert Client().get("/readyz").json()["checks"]["worker"] == "error: no worker heartbeat within 12 s"
    heartbeat_write(hostname="celery@host-a", now=time.time() - 13)
    response = Client().get("/readyz")
    assert response.json()["checks"]["worker"] == "error: no worker heartbeat within 12 s"
    # Events are still accepted and queued without a worker, so the web process stays ready.
    assert response.status_code == 200 and response.json()["status"] == "ready"


def test_a_stopped_heartbeat_removes_its_worker(redis_flush, settings):
    from explainer.heartbeat import Heartbeat, workers_alive

    beat = Heartbeat("celery@host-b", interval_s=0.05)
    beat.start()
    deadline = time.monotonic() + 5
    while "celery@host-b" not in workers_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(workers_alive()) == {"celery@host-b"}
    beat.stop()
    assert workers_alive() == {}
    assert redis_flush.smembers("hypergraph:heartbeats") == set()


def test_readyz_is_503_when_redis_is_unreachable():
    from hypergraph_site.api import broker

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        broker._redis.cache_clear()
        try:
            response = Client().get("/readyz")
        finally:
            broker._redis.cache_clear()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("error")


def test_metrics_are_prometheus_text():
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests" in response.content


def test_openapi_schema_describes_every_endpoint():
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/ingest", "/v1/traces/{trace_id}", "/v1/traces/{trace_id}/graph", "/healthz", "/readyz",
                 "/metrics"):
        assert path in paths
