"""Probes, metrics and the OpenAPI schema."""
from __future__ import annotations

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_healthz():
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_redis():
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


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
