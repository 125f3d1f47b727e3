"""Graph documents and stage artifacts on a real S3 server (moto's server mode, tests/s3_server.py): encryption
headers, keys under the tenant's prefix, the gzip round trip, the hash check, an outage, deletion and purge."""
from __future__ import annotations

import gzip
import hashlib
import logging
import uuid
from datetime import timedelta
from datetime import timezone as dt_timezone

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

import hif
from explainer import pipeline, services
from explainer.artifacts import ArtifactMissing, ObjectArtifactStore
from explainer.graph_documents import GraphCorrupt, graph_bytes, graph_store
from explainer.models import DeadLetter, Explanation, Scope, Stage, Tenant, Trace, TraceEvent, TraceStatus
from explainer.object_store import StorageUnavailable
from explainer.runner import TRANSIENT_ERRORS
from explainer.shards import shard_client
from tests.api.admin_traces import complete_trace, small_document, staff_user
from tests.unit.explainer.test_object_keys import HOSTILE

pytestmark = pytest.mark.django_db


def _explanation(trace: Trace) -> Explanation:
    return Explanation.objects.get(trace=trace)


def test_graph_objects_are_sse_kms_under_the_key_gzipped_and_hashed(s3, alice, client_for):
    trace = complete_trace(alice[0], "req-42")
    explanation = _explanation(trace)
    day = trace.created.astimezone(dt_timezone.utc)
    assert explanation.object_key.startswith(f"hypergraph/alice/{day:%Y/%m/%d}/req-42-")
    assert explanation.document is None and s3.keys() == [explanation.object_key]

    head = s3.head(explanation.object_key)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == s3.kms_key
    assert (head["ContentType"], head["ContentEncoding"]) == ("application/json", "gzip")
    stored = gzip.decompress(s3.get(explanation.object_key))
    assert stored == hif.dumps_canonical(small_document())
    assert hashlib.sha256(stored).hexdigest() == explanation.content_sha256

    client = client_for(alice[1])
    plain = client.get("/v1/traces/req-42/graph")
    assert plain.status_code == 200 and "Content-Encoding" not in plain and plain.json() == small_document()
    zipped = client.get("/v1/traces/req-42/graph", HTTP_ACCEPT_ENCODING="br, gzip;q=0.8")
    assert zipped["Content-Encoding"] == "gzip" and zipped["Vary"] == "Accept-Encoding"
    assert zipped.content == s3.get(explanation.object_key)
    refused = client.get("/v1/traces/req-42/graph", HTTP_ACCEPT_ENCODING="gzip;q=0")
    assert "Content-Encoding" not in refused and refused.json() == small_document()
    exported = client.get("/v1/traces/req-42/graph?format=hif-standard")
    assert exported.status_code == 200 and hif.validate_hif(exported.json(), schema="hif-standard") == []


def test_without_a_kms_key_objects_are_sse_s3(s3, alice, settings):
    from hypergraph_site.storage import s3_storage
    from tests.s3_server import REGION

    store = s3_storage(bucket=s3.name, region=REGION, endpoint_url=s3.server.url, kms_key_id="")
    settings.STORAGES = {**settings.STORAGES, "graphs": store, "artifacts": store}
    trace = complete_trace(alice[0], "plain")
    ObjectArtifactStore("hypergraph").save_json(trace.pk, "trace", {"tokens": []})
    for key in s3.keys():
        head = s3.head(key)
        assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head, key


def test_hostile_trace_ids_land_under_the_tenant_prefix(s3, alice):
    """Ids the ingest API would refuse are stored safely all the same: the key scheme never trusts them."""
    tenant = alice[0]
    now = timezone.now()
    keys = {graph_store(trace=Trace(tenant=tenant, trace_id=trace_id, created=now), document=small_document()).key
            for trace_id in HOSTILE}
    assert len(keys) == len(HOSTILE)
    assert s3.keys() == sorted(keys) and all(key.startswith("hypergraph/alice/") for key in keys)
    assert s3.keys("hypergraph/alice/") == s3.keys()


def test_stage_artifacts_round_trip_encrypted_and_are_deleted(s3):
    store = ObjectArtifactStore("hypergraph")
    acts = {"layer_6": np.arange(12, dtype=np.float32).reshape(3, 4)}
    store.save_arrays(7, "acts", acts)
    store.save_json(7, "trace", {"tokens": ["a", "b", "c"], "windows": [[0, 3]]})
    assert s3.keys() == ["hypergraph/_artifacts/7/acts.safetensors", "hypergraph/_artifacts/7/trace.json"]
    assert all(s3.head(key)["SSEKMSKeyId"] == s3.kms_key for key in s3.keys())
    np.testing.assert_array_equal(store.load_arrays(7, "acts")["layer_6"], acts["layer_6"])
    assert store.load_json(7, "trace")["tokens"] == ["a", "b", "c"]
    with pytest.raises(ArtifactMissing, match="artifact 'features' of trace 7 is missing"):
        store.load_arrays(7, "features")
    store.delete(7)
    assert s3.keys() == []


def test_a_changed_object_is_reported_and_never_served(s3, alice, client_for, client, django_user_model, caplog):
    trace = complete_trace(alice[0], "req-42")
    key = _explanation(trace).object_key
    other = dict(small_document(), incidences=[])
    s3.put(key, gzip.compress(hif.dumps_canonical(other)))
    with pytest.raises(GraphCorrupt, match="differs from the recorded"):
        graph_bytes(explanation=_explanation(trace))
    for fmt in ("hif-1", "neuronpedia"):
        response = client_for(alice[1]).get(f"/v1/traces/req-42/graph?format={fmt}")
        assert response.status_code == 500
        assert response.json()["errors"][0]["message"] == (
            "the stored graph of trace 'req-42' does not match its recorded hash; it is not served")
    client.force_login(staff_user(django_user_model, "root", superuser=True))
    assert client.get(reverse("admin:explainer_trace_graph_document", args=[trace.pk])).status_code == 500
    s3.put(key, b"not gzip at all")
    assert client_for(alice[1]).get("/v1/traces/req-42/graph").status_code == 500
    assert "is corrupt" in caplog.text


def test_an_unreachable_store_is_a_transient_error_and_a_503(s3, alice, client_for):
    trace = complete_trace(alice[0], "req-42")
    s3.server.stop()
    with pytest.raises(StorageUnavailable, match="the object store is unreachable") as raised:
        graph_store(trace=trace, document=small_document())
    assert isinstance(raised.value, TRANSIENT_ERRORS) and s3.server.url not in str(raised.value)
    with pytest.raises(StorageUnavailable):
        ObjectArtifactStore("hypergraph").load_json(trace.pk, "trace")
    read = client_for(alice[1]).get("/v1/traces/req-42/graph")
    assert read.status_code == 503 and read["Retry-After"] == "5"
    _, deleter = services.api_key_create(tenant=alice[0], scopes=[Scope.TRACES_DELETE])
    assert client_for(deleter).delete("/v1/traces/req-42").status_code == 503
    assert Trace.objects.filter(pk=trace.pk).exists()  # kept: it says what is still to delete
    s3.server.start()
    assert client_for(alice[1]).get("/v1/traces/req-42/graph").status_code == 200


def _trace_with_everything(tenant: Tenant, trace_id: str, redis_client) -> Trace:
    """A complete trace with a stored graph, stage artifacts left over and capture shards in Redis."""
    trace = complete_trace(tenant, trace_id)
    ObjectArtifactStore("hypergraph").save_json(trace.pk, "trace", {"tokens": ["x"]})
    shard = f"activations:{tenant.slug}:{trace_id}:6:0"
    redis_client.set(shard, b"rows")
    TraceEvent.objects.create(trace=trace, event_type="activations", event_hash=f"h-{trace_id}",
                              payload={"layers": [6], "tokens": 1, "d_model": 4, "shards": [shard]})
    DeadLetter.objects.create(trace=trace, stage="load", reason="earlier run")
    return trace


def _gone(s3, trace: Trace, key: str, redis_client) -> bool:
    return (not Trace.objects.filter(pk=trace.pk).exists() and not TraceEvent.objects.filter(trace_id=trace.pk)
            and not DeadLetter.objects.filter(trace_id=trace.pk) and key not in s3.keys()
            and s3.keys(f"hypergraph/_artifacts/{trace.pk}/") == []
            and redis_client.exists(f"activations:{trace.tenant.slug}:{trace.trace_id}:6:0") == 0)


def test_delete_removes_the_trace_everywhere_and_logs_who_asked(s3, alice, bob, client_for, redis_flush, caplog):
    redis_client = shard_client()
    redis_client.flushdb()
    trace = _trace_with_everything(alice[0], "req-42", redis_client)
    key = _explanation(trace).object_key
    bobs = _trace_with_everything(bob[0], "req-42", redis_client)
    api_key, deleter = services.api_key_create(tenant=alice[0], scopes=[Scope.TRACES_DELETE])

    assert client_for(alice[1]).delete("/v1/traces/req-42").status_code == 403  # read and write only
    with caplog.at_level(logging.INFO, logger="explainer.services"):
        response = client_for(deleter).delete("/v1/traces/req-42")
    assert response.status_code == 204 and response.content == b""
    assert _gone(s3, trace, key, redis_client)
    assert f"trace deleted: tenant=alice key_prefix={api_key.prefix} trace_id=req-42" in caplog.text
    assert client_for(deleter).delete("/v1/traces/req-42").status_code == 404
    assert Trace.objects.filter(pk=bobs.pk).exists() and _explanation(bobs).object_key in s3.keys()


def test_purge_deletes_traces_past_retention_in_batches(s3, make_tenant, settings, redis_flush):
    redis_client = shard_client()
    redis_client.flushdb()
    settings.RETENTION_DAYS = 30
    keeper, _ = make_tenant("keeper")  # keeps everything
    Tenant.objects.filter(pk=keeper.pk).update(retention_days=0)
    brief, _ = make_tenant("brief")  # one day
    Tenant.objects.filter(pk=brief.pk).update(retention_days=1)
    usual, _ = make_tenant("usual")  # RETENTION_DAYS
    old = timezone.now() - timedelta(days=40)
    expired, kept = [], []
    for tenant, trace_id, age in ((usual, "old-1", old), (usual, "old-2", old), (usual, "old-3", old),
                                  (brief, "two-days", timezone.now() - timedelta(days=2)),
                                  (usual, "new", timezone.now()), (keeper, "ancient", old),
                                  (brief, "today", timezone.now())):
        trace = _trace_with_everything(tenant, trace_id, redis_client)
        Trace.objects.filter(pk=trace.pk).update(created=age)
        (expired if trace_id.startswith(("old", "two")) else kept).append((trace, _explanation(trace).object_key))
    running = Trace.objects.create(tenant=usual, trace_id="still-running", status=TraceStatus.RUNNING)
    Trace.objects.filter(pk=running.pk).update(created=old)

    call_command("purge", "--dry-run")
    assert Trace.objects.count() == 8
    call_command("purge", "--batch-size", "2")
    assert all(_gone(s3, trace, key, redis_client) for trace, key in expired)
    assert sorted(Trace.objects.values_list("trace_id", flat=True)) == ["ancient", "new", "still-running", "today"]
    assert sorted(key for _, key in kept) == sorted(k for k in s3.keys() if "/_artifacts/" not in k)


def test_purge_prints_its_progress_and_total(s3, alice, settings, capsys):
    settings.RETENTION_DAYS = 1
    trace = complete_trace(alice[0], "old")
    Trace.objects.filter(pk=trace.pk).update(created=timezone.now() - timedelta(days=3))
    call_command("purge")
    captured = capsys.readouterr()
    assert "deleted 1 traces past retention" in captured.out and "purging" in captured.err


def test_deleting_a_tenant_deletes_its_objects(s3, alice, bob, redis_flush):
    redis_client = shard_client()
    traces = [_trace_with_everything(alice[0], f"t-{n}", redis_client) for n in range(3)]
    keys = [_explanation(t).object_key for t in traces]
    bobs = complete_trace(bob[0], "t-0")
    Tenant.objects.get(slug="alice").delete()
    assert all(_gone(s3, trace, key, redis_client) for trace, key in zip(traces, keys))
    assert s3.keys() == [_explanation(bobs).object_key]


def test_the_admin_edits_a_tenants_retention_and_its_deletion_deletes_its_objects(s3, alice, client,
                                                                                django_user_model):
    client.force_login(staff_user(django_user_model, "root", superuser=True))
    tenant = alice[0]
    change = reverse("admin:explainer_tenant_change", args=[tenant.pk])
    assert client.post(change, {"slug": "alice", "name": "Alice", "retention_days": "7"}).status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).retention_days == 7
    key = _explanation(complete_trace(tenant, "req-42")).object_key
    delete = reverse("admin:explainer_tenant_delete", args=[tenant.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists() and key not in s3.keys()


def _persisting(tenant: Tenant, trace_id: str, owner: str) -> tuple[Trace, ObjectArtifactStore]:
    """A trace whose persist stage `owner` holds, with the built document in the artifact store."""
    trace = Trace.objects.create(tenant=tenant, trace_id=trace_id, status=TraceStatus.RUNNING, stage=Stage.PERSIST,
                                 run_id=uuid.uuid4(), lease_owner=owner)
    store = ObjectArtifactStore("hypergraph")
    store.save_json(trace.pk, "graph", small_document())
    return trace, store


def test_persist_stores_the_document_then_completes_and_drops_the_artifacts(s3, alice):
    trace, store = _persisting(alice[0], "req-42", "a" * 32)
    graph = pipeline.persist_stage(trace, store)
    assert s3.keys() == sorted([graph.key, f"hypergraph/_artifacts/{trace.pk}/graph.json"])
    assert Trace.objects.get(pk=trace.pk).status == TraceStatus.RUNNING  # not complete until recorded
    assert pipeline.persist_finish(trace, store, "a" * 32, graph, 0.1)
    explanation = _explanation(trace)
    assert (explanation.object_key, explanation.content_sha256) == (graph.key, graph.sha256)
    assert explanation.meta == small_document()["meta"] and s3.keys() == [graph.key]


def test_a_trace_deleted_while_it_persisted_leaves_nothing_behind(s3, alice):
    trace, store = _persisting(alice[0], "req-42", "a" * 32)
    graph = pipeline.persist_stage(trace, store)
    Trace.objects.filter(pk=trace.pk).delete()
    assert not pipeline.persist_finish(trace, store, "a" * 32, graph, 0.1)
    assert s3.keys() == []


def test_a_persist_that_lost_its_lease_keeps_the_document_for_the_holder(s3, alice):
    trace, store = _persisting(alice[0], "req-42", "b" * 32)  # another worker holds it now
    graph = pipeline.persist_stage(trace, store)
    assert not pipeline.persist_finish(trace, store, "a" * 32, graph, 0.1)
    assert graph.key in s3.keys()
