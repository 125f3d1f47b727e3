"""GET /v1/traces/<id>[/graph]: tenant isolation, status while running, stored graph when complete."""
from __future__ import annotations

import pytest

from explainer.models import Explanation, Trace, TraceStatus

pytestmark = pytest.mark.django_db

DOC = {"network-type": "directed", "meta": {"version": "hif-1"}, "nodes": [{"id": "a"}], "incidences": []}


@pytest.fixture
def alice_trace(alice):
    tenant, _ = alice
    return Trace.objects.create(tenant=tenant, trace_id="t-1", model_name="m")


def test_owner_reads_status_and_counts(alice, alice_trace, client_for):
    response = client_for(alice[1]).get("/v1/traces/t-1")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "queued" and body["granularity"] == "sentence"
    assert body["counts"]["events"] == 0 and body["error"] is None


def test_other_tenant_gets_404_not_403(bob, alice_trace, client_for):
    for url in ("/v1/traces/t-1", "/v1/traces/t-1/graph"):
        assert client_for(bob[1]).get(url).status_code == 404


def test_unknown_trace_is_404(alice, client_for):
    assert client_for(alice[1]).get("/v1/traces/nope").status_code == 404


def test_read_needs_a_key(alice_trace, client_for):
    assert client_for(None).get("/v1/traces/t-1").status_code == 401


def test_graph_is_202_while_not_finished(alice, alice_trace, client_for):
    response = client_for(alice[1]).get("/v1/traces/t-1/graph")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_graph_of_failed_trace_is_409_with_reason(alice, alice_trace, client_for):
    Trace.objects.filter(pk=alice_trace.pk).update(status=TraceStatus.FAILED, error="dictionary missing")
    response = client_for(alice[1]).get("/v1/traces/t-1/graph")
    assert response.status_code == 409
    assert "dictionary missing" in response.json()["errors"][0]["message"]


def test_complete_graph_is_returned(alice, alice_trace, client_for):
    Trace.objects.filter(pk=alice_trace.pk).update(status=TraceStatus.COMPLETE)
    Explanation.objects.create(trace=alice_trace, document=DOC, size_bytes=10, node_count=1, incidence_count=0)
    response = client_for(alice[1]).get("/v1/traces/t-1/graph")
    assert response.status_code == 200
    assert response.json() == DOC
    detail = client_for(alice[1]).get("/v1/traces/t-1").json()
    assert detail["counts"]["nodes"] == 1


def test_unknown_format_is_400(alice, alice_trace, client_for):
    response = client_for(alice[1]).get("/v1/traces/t-1/graph?format=graphml")
    assert response.status_code == 400


def test_tenant_of_a_trace_never_changes(alice_trace, bob):
    from django.core.exceptions import ValidationError

    alice_trace.tenant = bob[0]
    with pytest.raises(ValidationError):
        alice_trace.save()
