"""Every size a client sends has a maximum; what contradicts the trace or the dictionary is a 400 at accept time."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from django.db import connection

from explainer.models import Trace, TraceEvent
from tests.local_servers import free_port

pytestmark = pytest.mark.django_db


def _f16(rows: int, dim: int) -> str:
    return base64.b64encode(np.ones((rows, dim), dtype="<f2").tobytes()).decode()


def acts(trace_id="t-1", layer=3, rows=2, dim=4, **extra):
    return {"trace_id": trace_id, "event_type": "activations",
            "payload": {"layer": layer, "encoding": "f16-base64", "shape": [rows, dim], "data": _f16(rows, dim),
                        **extra}}


def completion(trace_id="t-1", tokens=None, text="One two three four five six."):
    payload = {"model": "m", "text": text}
    if tokens is not None:
        payload["tokens"] = tokens
    return {"trace_id": trace_id, "event_type": "completion", "payload": payload}


@pytest.fixture
def post(alice, client_for, redis_flush):
    client = client_for(alice[1])

    def send(body):
        return client.post("/ingest", data=json.dumps(body), content_type="application/json")

    return send


def errors(response) -> list[tuple[str, str]]:
    return [(e["path"], e["message"]) for e in response.json()["errors"]]


def test_the_poison_token_offset_is_400_naming_the_limit(post):
    response = post(acts(token_offset=1_000_000_000_000))
    assert response.status_code == 400
    [(path, message)] = errors(response)
    assert path == "payload.token_offset" and "MAX_TRACE_TOKENS" in message
    assert not Trace.objects.exists()


def test_offset_plus_rows_beyond_the_trace_limit_is_400(post, settings):
    settings.MAX_TRACE_TOKENS = 16
    response = post(acts(token_offset=10, rows=8))
    assert response.status_code == 400
    assert errors(response)[0][0] == "payload.token_offset" and "MAX_TRACE_TOKENS" in errors(response)[0][1]
    assert post(acts(token_offset=8, rows=8)).status_code == 202


@pytest.mark.parametrize("body, path, setting", [
    (acts(rows=8193), "payload.shape[0]", "MAX_TRACE_TOKENS"),
    (acts(dim=16385, rows=1), "payload.shape[1]", "MAX_ACTIVATION_WIDTH"),
    (acts(layer=5000), "payload.layer", ""),
    (completion(tokens=["x"] * 8194), "payload.tokens", "MAX_TRACE_TOKENS"),
    (completion(text="x" * (256 * 1024 + 1)), "payload.text", "MAX_TEXT_CHARS"),
    ({"trace_id": "t-1", "event_type": "activations",
      "payload": {"layers": list(range(9)), "shards": ["k"], "tokens": 3}}, "payload.layers", "MAX_LAYERS"),
    ({"trace_id": "t-1", "event_type": "activations",
      "payload": {"layers": [3], "shards": ["k"], "tokens": 9000}}, "payload.tokens", "MAX_TRACE_TOKENS"),
])
def test_each_size_has_a_maximum(post, body, path, setting):
    response = post(body)
    assert response.status_code == 400, response.content
    assert path in [p for p, _ in errors(response)], errors(response)
    assert setting in " ".join(m for _, m in errors(response))


def test_too_many_layers_over_several_events_is_400(post, settings):
    settings.MAX_LAYERS = 2
    assert post(acts(layer=1)).status_code == 202
    assert post(acts(layer=2)).status_code == 202
    assert post(acts(layer=1, rows=1)).status_code == 202  # a layer already counted
    response = post(acts(layer=3))
    assert response.status_code == 400 and "MAX_LAYERS" in errors(response)[0][1]


def test_rows_beyond_the_completions_tokens_are_400_in_either_order(post):
    assert post(completion(tokens=["a"] * 12)).status_code == 202
    response = post(acts(rows=40))
    assert response.status_code == 400
    assert errors(response)[0] == ("payload.shape[0]", "activation rows reach position 39, beyond the "
                                                       "completion's 12 tokens")
    assert post(acts("t-2", rows=40)).status_code == 202
    response = post(completion("t-2", tokens=["a"] * 12))
    assert response.status_code == 400 and errors(response)[0][0] == "payload.tokens"
    assert TraceEvent.objects.filter(trace__trace_id="t-2").count() == 1


def test_an_empty_completion_is_400(post):
    response = post(completion(text=""))
    assert response.status_code == 400
    assert errors(response) == [("payload.text", "the completion is empty: send its text (or tokens)")]
    assert post(completion(text="", tokens=["Hi"])).status_code == 202


def test_a_layer_or_width_the_dictionary_lacks_is_400(post, sample_dictionary):
    response = post(acts(layer=3, dim=384))
    assert response.status_code == 400
    assert errors(response) == [("payload.layer", "layer 3 is not in dictionary 'sample' (it has layers [6])")]
    response = post(acts(layer=6, dim=256))
    assert response.status_code == 400 and errors(response)[0][0] == "payload.shape[1]"
    assert "takes width 384" in errors(response)[0][1]
    envelope = {"layers": [9], "shards": ["k"], "tokens": 3, "d_model": 384}
    response = post({"trace_id": "t-1", "event_type": "activations", "payload": envelope})
    assert response.status_code == 400 and errors(response)[0][0] == "payload.layers"
    assert str(sample_dictionary) not in response.content.decode()
    assert post(acts(layer=6, dim=384)).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_database_down_is_a_json_503_with_retry_after(alice, client_for, redis_flush):
    """A real connection failure (the database's port closed), not a patched one."""
    client = client_for(alice[1])
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = free_port()
    try:
        ingest = client.post("/ingest", data=json.dumps(completion()), content_type="application/json")
        read = client.get("/v1/traces/t-1")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    for response in (ingest, read):
        assert response.status_code == 503, response.content
        assert response["Content-Type"] == "application/json"
        assert response["Retry-After"] == "5"
        assert "database is unreachable" in response.json()["errors"][0]["message"]
