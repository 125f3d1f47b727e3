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
    assert body["status"] == "open" and body["granularity"] == "sentence"
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
    assert response.json()["status"] == "open"


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


def test_the_concepts_view_serves_what_the_trace_recorded_and_refuses_unknown_views(alice, alice_trace, client_for):
    Trace.objects.filter(pk=alice_trace.pk).update(status=TraceStatus.COMPLETE,
                                                   concepts={"skipped": "the completion has no prompt"})
    Explanation.objects.create(trace=alice_trace, document=DOC, size_bytes=10, node_count=1, incidence_count=0)
    view = client_for(alice[1]).get("/v1/traces/t-1/graph?view=concepts")
    assert view.status_code == 200
    assert (view.json()["nodes"], view.json()["metadata"]["skipped"]) == ([], "the completion has no prompt")
    unknown = client_for(alice[1]).get("/v1/traces/t-1/graph?view=circuits")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["path"] == "view"


def test_tenant_of_a_trace_never_changes(alice_trace, bob):
    from django.core.exceptions import ValidationError

    alice_trace.tenant = bob[0]
    with pytest.raises(ValidationError):
        alice_trace.save()


# --- two tenants, one trace_id --------------------------------------------------------------------------------------

SHARED_ID = "req-42"
TENANT_CONTENT = {
    # tenant slug: model, features (layer, index, label; distinct label prefixes, so none is grouped), output tokens
    "alice": ("alice-model", [(3, 11, "Biology: mitosis"), (5, 12, "Biology: genome")], ["Cells", " divide"]),
    "bob": ("bob-model", [(4, 21, "Finance: bonds"), (6, 22, "Markets: yields"), (6, 23, "Savings: cash")],
            ["Rates", " rose", " again"]),
}


def _graph_of(model: str, features: list[tuple[int, int, str]], tokens: list[str]) -> dict:
    """A small valid HIF v1 document whose every part (meta, feature ids, labels, tokens) names its tenant."""
    import hif

    nodes = [{"id": f"feat_{layer}_{index}", "type": "sae_feature", "label": label, "layer": layer,
              "activation_strength": 1.0 + n} for n, (layer, index, label) in enumerate(features)]
    nodes += [{"id": f"token_out_{i}", "type": "output_token", "label": tok, "position": i}
              for i, tok in enumerate(tokens)]
    incidences = [{"id": f"att_{n}", "node_ids": [f"feat_{layer}_{index}", f"token_out_{n % len(tokens)}"],
                   "weight": 0.9 - 0.1 * n, "metadata": {"type": "causal_circuit", "method": "acdc",
                                                        "window": f"sent-{n % len(tokens)}"}}
                  for n, (layer, index, _) in enumerate(features)]
    meta = {"model_name": model, "model_hash": f"sha256:{model}", "sae_dictionary": "sample",
            "granularity": "sentence", "created_at": "2025-01-01T00:00:00Z"}
    doc = hif.build_hif(nodes, incidences, meta, hif.HypergraphConfig())
    assert hif.validate_hif(doc) == []
    return doc


@pytest.fixture
def same_trace_id_for_two_tenants(alice, bob, client_for, redis_flush):
    """Alice and Bob each send a completion under the same trace_id; both traces complete with their own graph."""
    docs = {}
    for slug, (tenant, key) in (("alice", alice), ("bob", bob)):
        model, features, tokens = TENANT_CONTENT[slug]
        response = client_for(key).post("/ingest", {
            "trace_id": SHARED_ID, "event_type": "completion",
            "payload": {"model": model, "prompt": f"{slug} asks", "text": "".join(tokens), "tokens": tokens}},
            format="json")
        assert response.status_code == 202, response.content
        trace = Trace.objects.get(tenant=tenant, trace_id=SHARED_ID)
        docs[slug] = _graph_of(model, features, tokens)
        Trace.objects.filter(pk=trace.pk).update(status=TraceStatus.COMPLETE)
        Explanation.objects.create(trace=trace, document=docs[slug], size_bytes=100,
                                   node_count=len(docs[slug]["nodes"]),
                                   incidence_count=len(docs[slug]["incidences"]))
    return docs


def _own_and_other(reader: str) -> tuple[str, set[str], set[str], list[str]]:
    model, features, tokens = TENANT_CONTENT[reader]
    other = next(slug for slug in TENANT_CONTENT if slug != reader)
    return model, {label for *_, label in features}, {label for *_, label in TENANT_CONTENT[other][1]}, tokens


READERS = pytest.mark.parametrize("reader", ["alice", "bob"])


@pytest.fixture
def reader_client(same_trace_id_for_two_tenants, alice, bob, client_for):
    return lambda reader: client_for({"alice": alice, "bob": bob}[reader][1])


@READERS
def test_same_trace_id_detail_is_the_readers_own(reader, reader_client, same_trace_id_for_two_tenants):
    doc = same_trace_id_for_two_tenants[reader]
    response = reader_client(reader).get(f"/v1/traces/{SHARED_ID}")
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == TENANT_CONTENT[reader][0] and body["status"] == "complete"
    assert (body["counts"]["nodes"], body["counts"]["incidences"]) == (len(doc["nodes"]), len(doc["incidences"]))


@READERS
@pytest.mark.parametrize("query", ["", "?format=hif-1"])
def test_same_trace_id_hif1_graph_is_the_readers_own(reader, query, reader_client, same_trace_id_for_two_tenants):
    response = reader_client(reader).get(f"/v1/traces/{SHARED_ID}/graph{query}")
    assert response.status_code == 200
    assert response.json() == same_trace_id_for_two_tenants[reader]


@READERS
def test_same_trace_id_hif_standard_graph_is_the_readers_own(reader, reader_client):
    model, own_labels, other_labels, tokens = _own_and_other(reader)
    response = reader_client(reader).get(f"/v1/traces/{SHARED_ID}/graph?format=hif-standard")
    assert response.status_code == 200
    std = response.json()
    assert std["metadata"]["model_name"] == model
    labels = {node["attrs"].get("label") for node in std["nodes"]}
    assert own_labels | set(tokens) <= labels and not other_labels & labels


@READERS
def test_same_trace_id_neuronpedia_graph_is_the_readers_own(reader, reader_client):
    model, own_labels, other_labels, tokens = _own_and_other(reader)
    response = reader_client(reader).get(f"/v1/traces/{SHARED_ID}/graph?format=neuronpedia")
    assert response.status_code == 200
    graph = response.json()
    assert (graph["metadata"]["scan"], graph["metadata"]["prompt"]) == (model, f"{reader} asks")
    assert graph["metadata"]["prompt_tokens"][-len(tokens):] == tokens
    clerps = {node["clerp"] for node in graph["nodes"]}
    assert own_labels <= clerps and not other_labels & clerps


def test_list_is_newest_first_filtered_and_cursor_paginated(alice, bob, client_for):
    from datetime import timedelta

    from django.utils import timezone

    tenant = alice[0]
    for i in range(5):
        Trace.objects.create(tenant=tenant, trace_id=f"l-{i}", model_name="m" if i % 2 else "n",
                             status=TraceStatus.COMPLETE if i < 3 else TraceStatus.OPEN)
    Trace.objects.create(tenant=bob[0], trace_id="bobs", model_name="m")
    Trace.objects.filter(trace_id="l-0").update(created=timezone.now() - timedelta(days=3))
    client = client_for(alice[1])

    first = client.get("/v1/traces?limit=2").json()
    assert [t["trace_id"] for t in first["results"]] == ["l-4", "l-3"]
    second = client.get(first["next"]).json()
    third = client.get(second["next"]).json()
    assert [t["trace_id"] for t in second["results"] + third["results"]] == ["l-2", "l-1", "l-0"]
    assert third["next"] is None

    def ids(query: str) -> list[str]:
        return [t["trace_id"] for t in client.get(f"/v1/traces/?{query}").json()["results"]]

    assert ids("status=complete") == ["l-2", "l-1", "l-0"]
    assert ids("model=m") == ["l-3", "l-1"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert "l-0" not in ids(f"since={since.replace('+', '%2B')}")
    item = client.get("/v1/traces?status=complete&limit=1").json()["results"][0]
    assert set(item) >= {"trace_id", "status", "nodes", "incidences", "url", "created", "finished"}


@pytest.mark.parametrize("query, path", [("status=done", "status"), ("granularity=word", "granularity"),
                                         ("since=yesterday", "since")])
def test_list_filters_are_validated(alice, client_for, query, path):
    response = client_for(alice[1]).get(f"/v1/traces?{query}")
    assert response.status_code == 400 and response.json()["errors"][0]["path"] == path


def test_unknown_endpoints_answer_the_json_envelope(alice, client_for):
    response = client_for(alice[1]).get("/v1/nothing-here")
    assert response.status_code == 404
    assert "no such endpoint" in response.json()["errors"][0]["message"]
    assert client_for(alice[1]).get("/v1/traces/t-404/").json()["errors"][0]["message"]


def test_dictionaries_lists_what_the_service_can_decode(alice, client_for, sample_dictionary):
    body = client_for(alice[1]).get("/v1/dictionaries").json()
    assert body == {"dictionaries": [{"name": "sample", "layers": [
        {"layer": 6, "readable": True, "d_in": 384, "d_sae": 4096, "architecture": "standard", "format": "saelens",
         "labelled": True}]}]}


def test_the_catalog_reads_a_layer_again_only_when_its_files_change(sample_dictionary, monkeypatch):
    from explainer import selectors

    reads = []
    real = selectors.read_spec
    monkeypatch.setattr(selectors, "read_spec", lambda folder: reads.append(folder) or real(folder))
    selectors._layer_info.cache_clear()
    assert selectors.dictionary_catalog(max_age_s=0).widths == {6: 384}
    assert selectors.dictionary_catalog(max_age_s=0).widths == {6: 384}
    assert len(reads) == 1
    labels = sample_dictionary / "labels.json"
    labels.unlink()
    assert selectors.dictionary_catalog(max_age_s=0).layers[6].labelled is False
    assert len(reads) == 2
