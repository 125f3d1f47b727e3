"""The whole product: events over HTTP → live server → Redis → a separate worker process → graph in the database."""
from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest

import hif
from explainer.graph_documents import graph_load
from explainer.models import Explanation, Trace
from hypergraph_site.demo.samples import LAYER, make_dictionary, sample_events
from ingest.client import IngestError
from tests.e2e.graphs import graph_features

pytestmark = pytest.mark.django_db(transaction=True)


def _events_of(trace_id: str) -> list[dict]:
    return [e for e in sample_events() if e["trace_id"] == trace_id]


def _acts_of(event: dict) -> np.ndarray:
    payload = event["payload"]
    if payload["encoding"] == "json":
        return np.asarray(payload["data"], dtype=np.float32)
    raw = base64.b64decode(payload["data"])
    return np.frombuffer(raw, dtype="<f2").reshape(payload["shape"]).astype(np.float32)


@pytest.mark.parametrize("trace_id", ["sample-biology", "sample-finance", "sample-code"])
def test_sample_trace_is_explained_end_to_end(http, trace_id):
    events = _events_of(trace_id)
    for event in events:
        status, body = http.post(event)
        assert status == 202, body
    summary = http.wait_terminal(trace_id)
    assert summary["status"] == "complete", summary["error"]
    assert set(summary["timings"]) == {"load", "sae_decode", "attribute", "build", "persist"}

    status, doc = http.get(f"/v1/traces/{trace_id}/graph")
    assert status == 200
    assert hif.validate_hif(doc) == []
    assert doc["meta"]["granularity"] == events[0]["granularity"]

    # Test-side computation of the encoder: the strongest features must be the ones the graph names.
    dictionary = make_dictionary()
    x = _acts_of(events[1])
    dense = np.maximum((x - dictionary.b_dec) @ dictionary.W_enc + dictionary.b_enc, 0)
    strongest = np.argsort(-dense.max(axis=0))[:5]
    expected = {f"feat_{LAYER}_{i}" for i in strongest.tolist()}
    assert expected <= graph_features(doc)
    assert all(inc["metadata"]["type"] == "causal_circuit" for inc in doc["incidences"])
    expected_method = {"sentence": "acdc", "token": "shapley"}[events[0]["granularity"]]
    assert {inc["metadata"]["method"] for inc in doc["incidences"]} == {expected_method}
    assert {inc["attributes"]["value"] for inc in doc["incidences"]} == {"cosine"}
    assert summary["verification"]["value"] == "cosine" and summary["verification"]["shadow_skipped"]
    assert all(inc["metadata"]["window"].startswith(("sent-", "tok-")) for inc in doc["incidences"])

    stored = Trace.objects.get(trace_id=trace_id).explanation
    assert graph_load(explanation=stored) == doc and stored.node_count == len(doc["nodes"])

    for fmt, schema in (("hif-standard", "hif-standard"), ("neuronpedia", "neuronpedia")):
        status, exported = http.get(f"/v1/traces/{trace_id}/graph?format={fmt}")
        assert status == 200 and hif.validate_hif(exported, schema=schema) == [], fmt


def test_duplicate_finalize_creates_no_duplicate_work(http):
    events = _events_of("sample-code")
    for event in events + [events[-1]]:
        assert http.post(event)[0] == 202
    summary = http.wait_terminal("sample-code")
    assert summary["status"] == "complete" and summary["counts"]["events"] == len(events)
    assert Explanation.objects.filter(trace__trace_id="sample-code").count() == 1


def test_a_width_the_dictionary_lacks_is_refused_at_accept_time(http):
    bad = np.zeros((4, 256), dtype="<f2")
    with pytest.raises(IngestError) as refused:
        http.post({"trace_id": "bad-width", "event_type": "activations",
                   "payload": {"layer": LAYER, "encoding": "f16-base64", "shape": [4, 256],
                               "data": base64.b64encode(bad.tobytes()).decode()}})
    [error] = refused.value.body["errors"]
    assert refused.value.status == 400 and error["path"] == "payload.shape[1]"
    assert "384" in error["message"] and "256" in error["message"]


def test_rows_that_do_not_match_the_tokens_fail_the_trace_and_the_worker_keeps_serving(http):
    events = _events_of("sample-finance")
    acts = _acts_of(events[1])[:5]
    short = {**events[1]["payload"], "encoding": "f16-base64", "shape": list(acts.shape),
             "data": base64.b64encode(acts.astype("<f2").tobytes()).decode()}
    for event in (events[0], {**events[1], "trace_id": "short", "payload": short}, events[2]):
        assert http.post({**event, "trace_id": "short"})[0] == 202
    failed = http.wait_terminal("short")
    assert failed["status"] == "failed"
    tokens = len(events[0]["payload"]["tokens"])
    assert f"activations cover 5 positions but the completion has {tokens} tokens" in failed["error"]

    for event in events:
        http.post(event)
    assert http.wait_terminal("sample-finance")["status"] == "complete"


def test_missing_dictionary_is_dead_lettered_and_replayable(http, e2e_dirs, settings, tmp_path, monkeypatch):
    """A web host without dictionaries accepts any layer; the worker fails the trace without showing its paths."""
    from django.core.management import call_command

    from explainer import selectors
    from explainer.models import DeadLetter
    from hypergraph_site.demo.samples import write_dictionary

    settings.DICT_ROOT = str(tmp_path / "no-dictionaries")
    monkeypatch.setattr(selectors, "_catalog", None)
    events = _events_of("sample-biology")
    events[1]["payload"]["layer"] = 9
    for event in events:
        assert http.post(event)[0] == 202
    failed = http.wait_terminal("sample-biology")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("layer 9 is not in dictionary 'sample' (it has layers [")
    assert "/" not in failed["error"]
    assert DeadLetter.objects.filter(trace__trace_id="sample-biology", replayed_at__isnull=True).count() == 1

    layer_9 = e2e_dirs["dict_root"] / "sample" / "layer_9"
    write_dictionary(e2e_dirs["dict_root"], name="staging").rename(layer_9)
    try:
        call_command("replay", dead_letters=True, trace="sample-biology")
        assert http.wait_terminal("sample-biology")["status"] == "complete"
    finally:
        shutil.rmtree(layer_9)


def test_expired_shards_fail_the_trace_with_a_clear_reason(http):
    http.post({"trace_id": "expired", "event_type": "completion",
               "payload": {"model": "m", "text": "Gone soon."}})
    http.post({"trace_id": "expired", "event_type": "activations",
               "payload": {"trace_id": "expired", "layers": [LAYER], "tokens": 3, "dropped": 0, "compress": "json",
                           "shards": [f"activations:expired:{LAYER}:0"]}})
    http.post({"trace_id": "expired", "event_type": "finalize", "payload": {}})
    failed = http.wait_terminal("expired")
    assert failed["status"] == "failed"
    assert "expired or missing" in failed["error"] and f"activations:expired:{LAYER}:0" in failed["error"]
