"""The whole product: events over HTTP → live server → Redis → a separate worker process → graph in the database."""
from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest

import hif
from explainer.models import Outbox, Trace
from explainer.samples import LAYER, make_dictionary, sample_events

pytestmark = pytest.mark.django_db(transaction=True)


def _events_of(trace_id: str) -> list[dict]:
    return [e for e in sample_events() if e["trace_id"] == trace_id]


def _acts_of(event: dict) -> np.ndarray:
    payload = event["payload"]
    if payload["encoding"] == "json":
        return np.asarray(payload["data"], dtype=np.float32)
    raw = base64.b64decode(payload["data"])
    return np.frombuffer(raw, dtype="<f2").reshape(payload["shape"]).astype(np.float32)


def _graph_features(doc: dict) -> set[str]:
    """Feature ids in the graph: feature nodes plus the members that supernodes stand for."""
    ids = set()
    for node in doc["nodes"]:
        if node["type"] == "sae_feature":
            ids.add(node["id"])
        elif node["type"] == "circuit_supernode":
            ids.update(node["attributes"]["members"])
    return ids


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
    assert expected <= _graph_features(doc)
    assert all(inc["metadata"]["type"] == "causal_circuit" for inc in doc["incidences"])
    expected_method = {"sentence": "acdc", "token": "shapley"}[events[0]["granularity"]]
    assert {inc["metadata"]["method"] for inc in doc["incidences"]} == {expected_method}
    assert {inc["attributes"]["value"] for inc in doc["incidences"]} == {"cosine"}
    assert all(inc["metadata"]["window"].startswith(("sent-", "tok-")) for inc in doc["incidences"])

    stored = Trace.objects.get(trace_id=trace_id).explanation
    assert stored.document == doc and stored.node_count == len(doc["nodes"])

    for fmt, schema in (("hif-standard", "hif-standard"), ("neuronpedia", "neuronpedia")):
        status, exported = http.get(f"/v1/traces/{trace_id}/graph?format={fmt}")
        assert status == 200 and hif.validate_hif(exported, schema=schema) == [], fmt


def test_duplicate_finalize_creates_no_duplicate_work(http):
    events = _events_of("sample-code")
    for event in events + [events[-1]]:
        assert http.post(event)[0] == 202
    assert http.wait_terminal("sample-code")["status"] == "complete"
    assert Outbox.objects.filter(trace__trace_id="sample-code").count() == 1


def test_dictionary_mismatch_fails_the_trace_and_the_worker_keeps_serving(http):
    rng = np.random.default_rng(1)
    bad = rng.standard_normal((4, 256)).astype("<f2")
    http.post({"trace_id": "bad-width", "event_type": "completion",
               "payload": {"model": "m", "text": "One two three four."}})
    http.post({"trace_id": "bad-width", "event_type": "activations",
               "payload": {"layer": LAYER, "encoding": "f16-base64", "shape": [4, 256],
                           "data": base64.b64encode(bad.tobytes()).decode()}})
    http.post({"trace_id": "bad-width", "event_type": "finalize", "payload": {}})
    failed = http.wait_terminal("bad-width")
    assert failed["status"] == "failed"
    assert "384" in failed["error"] and "256" in failed["error"], failed["error"]

    for event in _events_of("sample-finance"):
        http.post(event)
    assert http.wait_terminal("sample-finance")["status"] == "complete"


def test_missing_dictionary_is_dead_lettered_and_replayable(http, e2e_dirs):
    from django.core.management import call_command

    from explainer.models import DeadLetter
    from explainer.samples import write_dictionary

    events = _events_of("sample-biology")
    events[1]["payload"]["layer"] = 9
    for event in events:
        http.post(event)
    failed = http.wait_terminal("sample-biology")
    assert failed["status"] == "failed"
    assert "layer_9" in failed["error"], failed["error"]
    assert DeadLetter.objects.filter(trace__trace_id="sample-biology", replayed_at__isnull=True).count() == 1

    layer_9 = e2e_dirs["dict_root"] / "sample" / "layer_9"
    write_dictionary(e2e_dirs["dict_root"], name="staging").rename(layer_9)
    try:
        call_command("replay", dead_letters=True)
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
