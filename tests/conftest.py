"""Shared fixtures: Alice/Bob/Charlie tenants with keys, API clients, and Redis on a test database number."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DEV_MODE", "1")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def graph_root(tmp_path_factory) -> Path:
    """Where the tests' graph documents go (and the end-to-end workers', through GRAPH_ROOT)."""
    return tmp_path_factory.mktemp("graphs")


@pytest.fixture(autouse=True)
def _graphs_in_a_test_folder(request, graph_root):
    """Graph documents written by a test go to a temporary folder, never the checkout's var/graphs.

    Only where pytest-django runs: the SAELens oracle test runs in a venv of its own, without Django.
    """
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from hypergraph_site.storage import local_storage

    settings = request.getfixturevalue("settings")
    settings.STORAGES = {**settings.STORAGES, "graphs": local_storage(graph_root)}


@pytest.fixture
def make_tenant(db):
    from explainer.models import Scope
    from explainer.services import api_key_create, tenant_create

    def make(slug: str, scopes=(Scope.TRACES_WRITE, Scope.TRACES_READ)):
        tenant = tenant_create(slug=slug)
        _, key = api_key_create(tenant=tenant, scopes=scopes)
        return tenant, key

    return make


@pytest.fixture
def alice(make_tenant):
    return make_tenant("alice")


@pytest.fixture
def bob(make_tenant):
    return make_tenant("bob")


@pytest.fixture
def charlie(make_tenant):
    """Charlie may read but not write."""
    from explainer.models import Scope

    return make_tenant("charlie", scopes=(Scope.TRACES_READ,))


@pytest.fixture
def client_for():
    from rest_framework.test import APIClient

    def make(key: str | None, header: str = "authorization") -> APIClient:
        client = APIClient()
        if key is not None and header == "authorization":
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        elif key is not None:
            client.credentials(HTTP_X_API_KEY=key)
        return client

    return make


@pytest.fixture
def redis_flush():
    """Empty the test Redis database (broker queues included) before and after a test."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server mode on 127.0.0.1 (tests/s3_server.py), for the whole session."""
    from tests.s3_server import s3_server as start

    with start() as server:
        yield server


@pytest.fixture
def s3(s3_server, settings, monkeypatch):
    """This process keeps graphs and artifacts in a fresh bucket of the test S3 server, SSE-KMS under a new key."""
    from hypergraph_site.storage import s3_storage
    from tests.s3_server import ACCESS, REGION

    for name, value in ACCESS.items():
        monkeypatch.setenv(name, value)
    s3_server.start()
    bucket = s3_server.new_bucket()
    store = s3_storage(bucket=bucket.name, region=REGION, endpoint_url=s3_server.url, kms_key_id=bucket.kms_key)
    settings.STORAGE_BACKEND = settings.ARTIFACT_BACKEND = "s3"
    settings.S3_BUCKET, settings.S3_PREFIX, settings.S3_KMS_KEY_ID = bucket.name, "hypergraph", bucket.kms_key
    settings.STORAGES = {**settings.STORAGES, "graphs": store, "artifacts": store}
    yield bucket
    s3_server.start()  # a test that stopped it leaves it running for the next


@pytest.fixture(scope="session")
def _in_memory_spans():
    """This process's tracer provider, once per session (OpenTelemetry allows one): the SDK's in-memory exporter,
    fed only while a test asks for spans, so the rest of the session keeps none."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class WhileAsked(SimpleSpanProcessor):
        recording = False

        def on_end(self, span) -> None:
            if self.recording:
                super().on_end(span)

    exporter = InMemorySpanExporter()
    processor = WhileAsked(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another tracer provider was installed in this process first"
    return exporter, processor


@pytest.fixture
def spans(_in_memory_spans, settings):
    """Tracing on (`TRACING_ENABLED`) for one test; the spans this process finished during it."""
    exporter, processor = _in_memory_spans
    settings.TRACING_ENABLED = True
    exporter.clear()
    processor.recording = True
    yield exporter
    processor.recording = False
    exporter.clear()
