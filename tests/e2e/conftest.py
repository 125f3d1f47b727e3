"""End-to-end fixtures: a live HTTP server (pytest-django) and a real Celery worker process on the test database."""
from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path

import pytest

from hypergraph_site.demo import processes
from ingest.client import IngestClient, IngestError
from tests.e2e.shadow_model import write_shadow_model

WORKER_READY_TIMEOUT_S = 60


def _database_url(settings_dict: dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(scope="session")
def e2e_dirs(tmp_path_factory) -> dict[str, Path]:
    from hypergraph_site.demo.samples import write_dictionary

    root = tmp_path_factory.mktemp("e2e")
    dirs = {"dict_root": root / "dicts", "artifacts": root / "artifacts", "log": root / "worker.log",
            "shadow": root / "shadow-gpt2", "spans": root / "worker-spans.jsonl", "prometheus": root / "prometheus"}
    write_dictionary(dirs["dict_root"], name="sample")
    if importlib.util.find_spec("transformers") is not None:  # the model extra; test_shadow skips without it
        write_shadow_model(dirs["shadow"])
    return dirs


@pytest.fixture(scope="session")
def worker_metrics_port() -> int:
    """A free port for the worker's own metrics exporter (`WORKER_METRICS_PORT`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_env(e2e_dirs: dict[str, Path], graph_root: Path, metrics_port: int | None = None) -> dict[str, str]:
    """The environment a test worker runs with: the test database and Redis, the e2e folders; it observes itself as
    deployed: Prometheus multiprocess files in `e2e_dirs["prometheus"]`, its spans appended to `e2e_dirs["spans"]`
    (`OTEL_SPANS_FILE`), and with `metrics_port` its own exporter there."""
    from django.conf import settings
    from django.db import connection

    return {
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "DICT_ROOT": str(e2e_dirs["dict_root"]),
        "DICT_NAME": "sample",
        "ARTIFACT_ROOT": str(e2e_dirs["artifacts"]),
        "GRAPH_ROOT": str(graph_root),
        "DEV_MODE": "1",
        "TASK_RETRY_WINDOW_S": "5",
        # Traces of other models fall back to the unembedding reading: the shadow's residuals do not match theirs.
        "SHADOW_MODEL": str(e2e_dirs["shadow"]) if e2e_dirs["shadow"].exists() else "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(e2e_dirs["prometheus"]),
        "OTEL_SPANS_FILE": str(e2e_dirs["spans"]),
        **({"WORKER_METRICS_PORT": str(metrics_port)} if metrics_port else {}),
    }


def start_ready_worker(log: Path, env: dict[str, str], concurrency: int):
    """Start a worker and wait until it says it is ready (the test fails with its log if it does not)."""
    worker = processes.start_worker(log, env=env, concurrency=concurrency)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while b" ready." not in (log.read_bytes() if log.exists() else b""):
        if worker.poll() is not None or time.monotonic() > deadline:
            processes.stop(worker)
            pytest.fail("Celery worker did not start:\n" + log.read_text()[-4000:])
        time.sleep(0.2)
    return worker


@pytest.fixture(scope="package")
def celery_worker_process(django_db_setup, django_db_blocker, e2e_dirs, graph_root, worker_metrics_port):
    """A separate worker process (threads pool, both queues) explaining traces over the real Redis broker, with its
    own metrics exporter on `worker_metrics_port`.

    Package-scoped: it stops when the end-to-end tests are done, so it never consumes other tests' broker messages.
    """
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    worker = start_ready_worker(e2e_dirs["log"], worker_env(e2e_dirs, graph_root, worker_metrics_port),
                                concurrency=2)
    yield worker
    processes.stop(worker)


class Http:
    """The live server as a client sees it, through the product's own `IngestClient`."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = IngestClient(base_url, key)

    def post(self, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        return self.client.request("POST", "/ingest", body, headers=headers)

    def get(self, path: str) -> tuple[int, dict]:
        return self.client.request("GET", path)

    def wait_terminal(self, trace_id: str, timeout_s: float = 90.0) -> dict:
        """The trace once it has finished; a trace not there yet (sent asynchronously, by a model server) is waited
        for too."""
        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                _, body = self.get(f"/v1/traces/{trace_id}")
            except IngestError as exc:
                if exc.status != 404:
                    raise
            if body.get("status") in ("complete", "failed", "canceled", "shed"):
                return body
            time.sleep(0.3)
        raise AssertionError(f"trace {trace_id} not finished after {timeout_s}s: {body}")


@pytest.fixture
def web_dictionaries(settings, e2e_dirs, monkeypatch):
    """The live server (this process) sees the worker's dictionaries, so accept-time checks run as deployed."""
    from explainer import selectors

    settings.DICT_ROOT = str(e2e_dirs["dict_root"])
    settings.DICT_NAME = "sample"
    monkeypatch.setattr(selectors, "_catalog", None)
    return settings


@pytest.fixture
def http(live_server, celery_worker_process, transactional_db, make_tenant, web_dictionaries) -> Http:
    _, key = make_tenant("alice")
    return Http(live_server.url, key)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
