"""POST /ingest: every malformed-input class gets its 4xx, duplicates do no duplicate work, outages are 503s."""
from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from django.test import override_settings

from explainer.models import Trace, TraceEvent
from tests.local_servers import private_redis

pytestmark = pytest.mark.django_db


def _f16(array) -> str:
    return base64.b64encode(np.asarray(array, dtype="<f2").tobytes()).decode()


def completion(trace_id="t-1", **payload):
    return {"trace_id": trace_id, "event_type": "completion",
            "payload": {"model": "m", "text": "Hello world.", **payload}}


def activations(trace_id="t-1", rows=2, dim=4, **overrides):
    payload = {"layer": 3, "encoding": "f16-base64", "shape": [rows, dim],
               "data": _f16(np.ones((rows, dim)))}
    payload.update(overrides)
    return {"trace_id": trace_id, "event_type": "activations", "payload": payload}


def finalize(trace_id="t-1"):
    return {"trace_id": trace_id, "event_type": "finalize", "payload": {}}


def post(client, body, raw: bool = False):
    data = body if raw else json.dumps(body)
    return client.post("/ingest", data=data, content_type="application/json")


@pytest.fixture
def writer(alice, client_for, redis_flush):
    return client_for(alice[1])


def test_accepts_each_event_type_with_202_and_status_url(writer):
    for body in (completion(), activations(), finalize()):
        response = post(writer, body)
        assert response.status_code == 202, response.content
    assert response.json()["trace_id"] == "t-1"
    assert response.json()["status"] == "queued"
    assert response.json()["status_url"].endswith("/v1/traces/t-1")
    assert TraceEvent.objects.filter(trace__trace_id="t-1").count() == 3


def test_x_api_key_header_is_accepted(alice, client_for, redis_flush):
    assert post(client_for(alice[1], header="x-api-key"), completion()).status_code == 202


def test_json_encoded_activations_are_accepted(writer):
    body = activations(encoding="json", data=[[0.5, 1, 2, 3], [4, 5, 6, 7.25]])
    assert post(writer, body).status_code == 202


@pytest.mark.parametrize("body, path", [
    (b"{not json", ""),
    (b'{"trace_id": "t", "event_type": "finalize", "payload": {}, "x": NaN}', ""),
    (b"\xff\xfe", ""),
    (b"[]", ""),
    (b"[" * 100_000 + b"]" * 100_000, ""),  # the standard library's parser overflowed its stack: a 500
    (b'{"trace_id": "\\ud800", "event_type": "finalize", "payload": {}}', ""),  # a lone surrogate
    (b'{"trace_id": "t", "event_type": "finalize", "payload": {}, "x": 1e400}', ""),  # overflows to infinity
])
def test_malformed_json_is_400(writer, body, path):
    response = post(writer, body, raw=True)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == path


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_named(writer, constant):
    body = b'{"trace_id": "t", "event_type": "finalize", "payload": {}, "x": %s}' % constant.encode()
    message = post(writer, body, raw=True).json()["errors"][0]["message"]
    assert message.startswith("body is not valid JSON: NaN and Infinity are not JSON numbers: line 1 column")


@pytest.mark.parametrize("body, path", [
    ({"event_type": "finalize", "payload": {}}, ""),
    ({**finalize(), "trace_id": ""}, "trace_id"),
    ({**finalize(), "trace_id": "has space"}, "trace_id"),
    ({**finalize(), "trace_id": "x" * 129}, "trace_id"),
    ({**finalize(), "event_type": "explode"}, "event_type"),
    ({**finalize(), "granularity": "paragraph"}, "granularity"),
    ({**finalize(), "payload": []}, "payload"),
    ({**finalize(), "extra": 1}, ""),
    ({"trace_id": "t", "event_type": "completion", "payload": {"model": "m"}}, "payload"),
    (completion(tokens="not-a-list"), "payload.tokens"),
    (completion(final="yes"), "payload.final"),
])
def test_schema_violations_are_400_with_path(writer, body, path):
    response = post(writer, body)
    assert response.status_code == 400, response.content
    assert path in [e["path"] for e in response.json()["errors"]]


@pytest.mark.parametrize("overrides, fragment", [
    ({"data": _f16(np.ones(7))}, "do not match shape"),
    ({"data": "!!!not base64!!!"}, "invalid base64"),
    ({"data": _f16([[np.nan, 1, 1, 1], [1, 1, 1, 1]])}, "NaN or Inf"),
    ({"data": _f16([[np.inf, 1, 1, 1], [1, 1, 1, 1]])}, "NaN or Inf (first at [0, 0])"),
    ({"encoding": "json", "data": [[1e39, 1, 1, 1], [1, 1, 1, 1]]}, "value 1e+39 at [0, 0] is out of float32 range"),
    ({"encoding": "json", "data": [[1, 2, 3, 4], [1, 2, 3]]}, "rectangular"),
    ({"encoding": "json", "data": [["a", "b", "c", "d"], ["a", "b", "c", "d"]]}, "numbers only"),
    ({"encoding": "json", "data": [[True, False, True, False], [True, False, True, False]]}, "numbers only"),
    ({"encoding": "json", "data": [[1, 2, 3, 4]]}, "declared"),
    ({"encoding": "json", "data": "abc"}, "nested lists"),
    ({"encoding": "f16-base64", "data": [[1.0]]}, "base64 string"),
    ({"shape": [2]}, "too short"),
    ({"shape": [0, 4]}, "less than the minimum"),
    ({"encoding": "f32"}, "is not one of"),
    ({"shards": ["activations:t-1:3:0"]}, "not both"),
])
def test_bad_activation_arrays_are_400(writer, overrides, fragment):
    response = post(writer, activations(**overrides))
    assert response.status_code == 400, response.content
    assert any(fragment in e["message"] for e in response.json()["errors"]), response.json()


def test_activations_with_neither_data_nor_shards_is_400(writer):
    response = post(writer, {"trace_id": "t", "event_type": "activations", "payload": {"layer": 1}})
    assert response.status_code == 400


def test_shards_envelope_is_accepted(writer):
    envelope = {"trace_id": "t-1", "model_name": "m", "model_hash": "h", "layers": [3], "tokens": 4,
                "shards": ["activations:t-1:3:0"], "dropped": 0, "compress": "json", "summary": "dense",
                "d_model": 4, "hook_point": "resid_post", "convention": "hf_raw"}
    assert post(writer, {"trace_id": "t-1", "event_type": "activations", "payload": envelope}).status_code == 202


def test_body_over_the_limit_is_413(writer):
    with override_settings(INGEST_MAX_BODY_BYTES=1000):
        response = post(writer, activations(rows=64, dim=64))
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["errors"][0]["message"]
    assert not Trace.objects.exists()


def test_identical_event_resent_is_acknowledged_without_duplicate_work(writer, django_capture_on_commit_callbacks,
                                                                      redis_flush):
    post(writer, completion())
    with django_capture_on_commit_callbacks(execute=True):
        first = post(writer, finalize())
    with django_capture_on_commit_callbacks(execute=True):
        second = post(writer, finalize())
    assert first.status_code == second.status_code == 202
    assert TraceEvent.objects.filter(event_type="finalize").count() == 1
    assert Trace.objects.get().stage == "load"
    assert redis_flush.llen("default") == 1  # one stage message on the broker


def test_different_events_of_one_type_are_all_stored(writer, alice, client_for):
    """Two `activations` events on one trace (layers 3 and 5) are two events, not one and a duplicate."""
    layer_3 = activations(layer=3, data=_f16(np.full((2, 4), 0.5)))
    layer_5 = activations(layer=5, data=_f16(np.full((2, 4), -1.5)))
    for body in (completion(tokens=["a"] * 6), layer_3, layer_5, layer_3):  # the last is a true re-send of layer 3
        assert post(writer, body).status_code == 202
    stored = TraceEvent.objects.filter(trace__trace_id="t-1", event_type="activations")
    assert sorted(event.payload["layer"] for event in stored) == [3, 5]
    assert client_for(alice[1]).get("/v1/traces/t-1").json()["counts"]["events"] == 3

    # Same layer, different rows (a second chunk at another token offset) is new data too.
    assert post(writer, activations(layer=3, token_offset=2, data=_f16(np.full((2, 4), 0.5)))).status_code == 202
    assert client_for(alice[1]).get("/v1/traces/t-1").json()["counts"]["events"] == 4


def test_new_event_for_a_finalized_trace_is_409(writer):
    post(writer, completion())
    post(writer, finalize())
    response = post(writer, activations())
    assert response.status_code == 409
    assert "accepts no more events" in response.json()["errors"][0]["message"]


def test_completion_with_final_true_finalizes(writer):
    response = post(writer, completion(final=True))
    assert response.status_code == 202
    trace = Trace.objects.get()
    assert trace.finalized_at is not None and trace.run_id is not None and trace.stage == "load"


def test_missing_key_is_401_with_challenge(client_for):
    response = post(client_for(None), finalize())
    assert response.status_code == 401
    assert "Api-Key" in response["WWW-Authenticate"]


def test_unknown_or_revoked_key_is_401(alice, client_for):
    assert post(client_for("nope.nope"), finalize()).status_code == 401
    tenant, key = alice
    tenant.api_keys.update(revoked=True)
    assert post(client_for(key), finalize()).status_code == 401


def test_a_revoked_key_stops_working_at_once_here_and_within_the_cache_time_elsewhere(alice, client_for, settings):
    import time

    tenant, key = alice
    client = client_for(key)
    assert post(client, completion("a")).status_code == 202  # verified and cached
    api_key = tenant.api_keys.get()
    api_key.revoked = True
    api_key.save()  # revoked in this process: the cache is dropped
    assert post(client, completion("b")).status_code == 401

    api_key.revoked = False
    api_key.save()
    settings.API_KEY_CACHE_S = 0.3
    assert post(client, completion("c")).status_code == 202
    tenant.api_keys.update(revoked=True)  # as another process would revoke it: no signal here
    assert post(client, completion("d")).status_code == 202
    time.sleep(0.35)
    assert post(client, completion("e")).status_code == 401


def test_key_without_write_scope_is_403(charlie, client_for):
    response = post(client_for(charlie[1]), finalize())
    assert response.status_code == 403
    assert "traces:write" in response.json()["errors"][0]["message"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server to start and stop")
def test_redis_stopped_is_503_with_retry_after_and_no_rows(alice, client_for):
    """A real Redis server is started for this test, then shut down: the next request must write nothing."""
    from hypergraph_site.api import broker

    writer = client_for(alice[1])
    with private_redis() as server, override_settings(REDIS_URL=server.url):
        broker._redis.cache_clear()
        try:
            assert post(writer, completion("up")).status_code == 202
            server.stop()
            before = (Trace.objects.count(), TraceEvent.objects.count())
            response = post(writer, completion("down", final=True))
            after = (Trace.objects.count(), TraceEvent.objects.count())
        finally:
            broker._redis.cache_clear()
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert before == after
    assert not Trace.objects.filter(trace_id="down").exists()


def test_a_trailing_slash_reaches_the_same_endpoint(writer):
    response = writer.post("/ingest/", data=json.dumps(completion()), content_type="application/json")
    assert response.status_code == 202
    assert writer.get("/v1/traces/t-1/").json()["status"] == "open"


def test_a_second_different_completion_is_409_naming_the_conflict(writer):
    assert post(writer, completion()).status_code == 202
    assert post(writer, completion()).status_code == 202  # the same one again is only acknowledged
    response = post(writer, completion(text="Something else."))
    assert response.status_code == 409
    [error] = response.json()["errors"]
    assert error["path"] == "payload" and "already has a different completion" in error["message"]


def test_events_for_an_expired_trace_are_409(writer):
    post(writer, completion())
    Trace.objects.filter(trace_id="t-1").update(status="expired")
    response = post(writer, activations())
    assert response.status_code == 409 and "TRACE_OPEN_TTL_S" in response.json()["errors"][0]["message"]
