"""Hosts that share no disk: the web server and two Celery workers (the `gpu` queue on one, `default` on the other,
each with an `ARTIFACT_ROOT` of its own) keep stage artifacts and graphs in S3 (moto's server mode, a thread of
this process), and an S3 outage during persist ends in a dead letter that `replay --dead-letters` finishes."""
from __future__ import annotations

import gzip
import hashlib
import tempfile
import time
from pathlib import Path

import pytest

import hif
from explainer.models import DeadLetter, Explanation, Trace
from hypergraph_site.demo.samples import sample_events
from ingest.client import IngestError
from tests.e2e.conftest import Http, _database_url
from tests.local_servers import ServiceStack, free_port, kill_group, private_redis
from tests.s3_server import s3_env

pytestmark = pytest.mark.django_db(transaction=True)
RETRY_WINDOW_S = 4


@pytest.fixture(scope="module")
def s3_stack(django_db_setup, django_db_blocker, e2e_dirs, s3_server):
    """gunicorn on S3 storage and a Redis of its own (so the package's worker never takes these stages)."""
    from django.db import connection

    bucket = s3_server.new_bucket()
    workdir = Path(tempfile.mkdtemp(prefix="hg-s3-"))
    with private_redis() as redis_server:
        stack = ServiceStack(workdir, {
            "DATABASE_URL": _database_url(connection.settings_dict), "REDIS_URL": redis_server.url,
            "DICT_ROOT": str(e2e_dirs["dict_root"]), "DICT_NAME": "sample", "DEV_MODE": "1",
            "PYTHONUNBUFFERED": "1", "TASK_RETRY_WINDOW_S": str(RETRY_WINDOW_S),
            "GRAPH_ROOT": str(workdir / "no-graphs-here"), **s3_env(bucket),
        })
        port = free_port()
        try:
            stack.start_web(port, workers=1)
            yield stack, bucket, f"http://127.0.0.1:{port}"
        finally:
            stack.stop_all()


@pytest.fixture
def workers(s3_stack):
    """Start workers for one test; all of them are killed when it ends."""
    stack, started = s3_stack[0], []

    def start(queues: str, env: dict[str, str]):
        process, log = stack.start_worker(concurrency=1, queues=queues, env=env)
        started.append(process)
        return log

    yield start
    for process in started:
        kill_group(process)
        stack.processes.remove(process)


def _events(trace_id: str) -> list[dict]:
    return [e for e in sample_events() if e["trace_id"] == trace_id]


def _stages_run(log: Path) -> set[str]:
    text = log.read_text(errors="replace")
    return {stage for stage in ("load", "sae_decode", "attribute", "build", "persist")
            if f"explainer.tasks.stage_{stage}[" in text}


def _stored(bucket, trace_id: str) -> tuple[Explanation, bytes]:
    explanation = Explanation.objects.get(trace__trace_id=trace_id)
    data = gzip.decompress(bucket.get(explanation.object_key))
    assert hashlib.sha256(data).hexdigest() == explanation.content_sha256
    head = bucket.head(explanation.object_key)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == bucket.kms_key
    return explanation, data


def test_two_workers_with_no_shared_folder_complete_the_chain(s3_stack, workers, make_tenant, tmp_path):
    _, bucket, url = s3_stack
    gpu_root, cpu_root = tmp_path / "gpu-host", tmp_path / "cpu-host"
    gpu_log = workers("gpu", {"ARTIFACT_ROOT": str(gpu_root)})
    cpu_log = workers("default", {"ARTIFACT_ROOT": str(cpu_root)})
    http = Http(url, make_tenant("alice")[1])
    for event in _events("sample-biology"):
        assert http.post(event)[0] == 202
    summary = http.wait_terminal("sample-biology")
    assert summary["status"] == "complete", summary["error"]

    # Tasks each worker received: load on `default` publishes decode to `gpu`, which publishes attribute back to
    # `default`; that worker then runs build and persist in the same task (it takes their queue).
    assert _stages_run(gpu_log) == {"sae_decode"}
    assert _stages_run(cpu_log) == {"load", "attribute"}
    assert not gpu_root.exists() and not cpu_root.exists()  # the arrays went through S3, never a disk
    explanation, data = _stored(bucket, "sample-biology")
    assert explanation.object_key.startswith("hypergraph/alice/")
    # The artifacts are deleted right after the trace is marked complete, so wait for the worker to get there.
    deadline = time.monotonic() + 10
    while bucket.keys() != [explanation.object_key] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bucket.keys() == [explanation.object_key]
    status, document = http.get("/v1/traces/sample-biology/graph")
    assert status == 200 and hif.dumps_canonical(document) == data and hif.validate_hif(document) == []


def test_an_s3_outage_during_persist_is_dead_lettered_then_replayed(s3_stack, workers, make_tenant, tmp_path):
    """Artifacts on a local folder here, so that persist is the one stage that needs S3 when it goes away."""
    stack, bucket, url = s3_stack
    workers("default,gpu", {"ARTIFACT_BACKEND": "local", "ARTIFACT_ROOT": str(tmp_path / "artifacts")})
    http = Http(url, make_tenant("alice")[1])
    *first, finalize = _events("sample-finance")
    for event in first:
        assert http.post(event)[0] == 202
    bucket.server.stop()
    try:
        assert http.post(finalize)[0] == 202
        failed = http.wait_terminal("sample-finance")
        assert failed["status"] == "failed" and failed["timings"].keys() == {"load", "sae_decode", "attribute",
                                                                              "build"}
        assert failed["error"].startswith("StorageUnavailable: the object store is unreachable "
                                          "(EndpointConnectionError) for 'hypergraph/alice/")
        assert f"still failing after retrying for {RETRY_WINDOW_S}s" in failed["error"]
        assert bucket.server.url not in failed["error"]
        assert DeadLetter.objects.get(trace__trace_id="sample-finance").stage == "persist"
        assert not Explanation.objects.filter(trace__trace_id="sample-finance").exists()
        with pytest.raises(IngestError) as refused:
            http.get("/v1/traces/sample-finance/graph")
        assert refused.value.status == 409 and "object store is unreachable" in str(refused.value.body)
    finally:
        bucket.server.start()

    assert "re-running 1 dead-lettered traces" in stack.manage("replay", "--dead-letters")
    summary = http.wait_terminal("sample-finance")
    assert summary["status"] == "complete", summary["error"]
    _, data = _stored(bucket, "sample-finance")
    status, document = http.get("/v1/traces/sample-finance/graph")
    assert status == 200 and hif.dumps_canonical(document) == data
    assert Trace.objects.get(trace_id="sample-finance").dead_letters.get().replayed_at is not None
