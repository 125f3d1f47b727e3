"""The OpenAPI document at /api/schema/: valid OpenAPI 3.1, the API key on every operation that needs one, /ingest's
request schema the validator's own (with the limits in force), examples that match their schemas, and real answers
of the live server, for every status an operation documents, that match what it says."""
from __future__ import annotations

import base64
import gzip
import json
import shutil

import numpy as np
import pytest
from django.db import connection
from django.test import Client, override_settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from explainer.models import Scope, Trace, TraceStatus
from ingest.validation import Limits, event_schema
from tests.api.admin_traces import complete_trace, failed_trace
from tests.api.openapi_check import Answer, http, mismatches, pointer, schema_errors
from tests.local_servers import free_port, private_redis

PUBLIC = {"/healthz", "/readyz", "/metrics"}
API_KEY = [{"ApiKeyAuth": []}, {"XApiKey": []}]
# Statuses documented but not caused over HTTP here: a database outage is caused through the test client instead
# (test_database_down_answers_match_the_schema), where the connection can be pointed at a closed port.
DATABASE_DOWN = "503"


def served_schema(**settings) -> dict:
    with override_settings(**settings):
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture(scope="module")
def spec() -> dict:
    return served_schema()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_schema_is_valid_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert {(path, method) for path, method, _ in operations(spec)} == {
        ("/ingest", "post"), ("/v1/traces", "get"), ("/v1/traces/{trace_id}", "get"),
        ("/v1/traces/{trace_id}", "delete"), ("/v1/traces/{trace_id}/graph", "get"), ("/v1/dictionaries", "get"),
        ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")}


def test_every_operation_but_health_and_metrics_needs_the_api_key_in_either_header(spec):
    schemes = spec["components"]["securitySchemes"]
    assert (schemes["ApiKeyAuth"]["in"], schemes["ApiKeyAuth"]["name"]) == ("header", "Authorization")
    assert (schemes["XApiKey"]["in"], schemes["XApiKey"]["name"]) == ("header", "X-API-Key")
    assert "security" not in spec  # nothing is required globally: the public endpoints stay public
    for path, method, operation in operations(spec):
        if path in PUBLIC:
            assert "security" not in operation, path
        else:
            assert operation["security"] == API_KEY, path
            assert {"401", "403"} <= set(operation["responses"]), path


def test_ingest_documents_each_answer_with_the_error_envelope(spec):
    responses = spec["paths"]["/ingest"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "403", "409", "413", "429", "503"}
    for status in ("400", "401", "403", "409", "413", "429", "503"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Errors"}
    assert "Retry-After" in responses["503"]["headers"] and "Retry-After" in responses["429"]["headers"]
    body = spec["paths"]["/ingest"]["post"]["requestBody"]
    assert body["required"] and body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IngestEvent"}


def test_every_example_matches_its_schema(spec):
    checked = 0
    for path, method, operation in operations(spec):
        media = [("requestBody", operation.get("requestBody", {}))]
        media += [(f"responses/{status}", response) for status, response in operation["responses"].items()]
        for where, holder in media:
            for content_type, content in holder.get("content", {}).items():
                for name, example in content.get("examples", {}).items():
                    at = pointer("paths", path, method, *where.split("/"), "content", content_type, "schema")
                    assert schema_errors(spec, at, example["value"]) == [], (path, where, name)
                    checked += 1
    assert checked >= 20


# --- /ingest's request schema is the validator's ---------------------------------------------------------------------

def _f16(rows: list[list[float]]) -> str:
    return base64.b64encode(np.asarray(rows, dtype="<f2").tobytes()).decode()


INLINE = {"layer": 6, "encoding": "json", "shape": [2, 4], "data": [[0.5, 1, 2, 3], [4, 5, 6, 7]]}
SHARDS = {"layers": [6], "tokens": 3, "d_model": 384, "shards": ["activations:t:6:0"], "hook_point": "resid_post"}
BODIES = [
    {"trace_id": "t-1", "event_type": "completion", "payload": {"model": "m", "text": "Hi."}},
    {"trace_id": "t-1", "event_type": "completion", "granularity": "token",
     "payload": {"model": "m", "text": "Hi.", "tokens": ["Hi", "."], "token_ids": [1, 2, 3], "final": True}},
    {"trace_id": "t-1", "event_type": "activations", "payload": INLINE},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "encoding": "f16-base64",
                                                                "data": _f16([[1, 2, 3, 4], [5, 6, 7, 8]])}},
    {"trace_id": "t-1", "event_type": "activations", "payload": SHARDS},
    {"trace_id": "t-1", "event_type": "finalize", "payload": {}},
    {"trace_id": "t-1", "event_type": "finalize", "payload": {"anything": "goes"}},
    # refused
    {"trace_id": "t-1", "event_type": "completion", "payload": {"model": "m"}},
    {"trace_id": "t-1", "event_type": "completion", "payload": {"model": "m", "text": "x", "extra": 1}},
    {"trace_id": "t-1", "event_type": "completion", "payload": {"model": "m", "text": "x", "final": "yes"}},
    {"trace_id": "t-1", "event_type": "completion", "payload": {"model": "m", "text": "x", "token_ids": [-1]}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "shards": ["k"]}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {"layer": 6}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "shape": [2, 20000]}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "shape": [0, 4]}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "shape": [2]}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "encoding": "f32"}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "token_offset": 9000}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**SHARDS, "layers": list(range(9))}},
    {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "data": 5}},
    {"trace_id": "t-1", "event_type": "finalize", "payload": []},
    {"trace_id": "t-1", "event_type": "explode", "payload": {}},
    {"trace_id": "has space", "event_type": "finalize", "payload": {}},
    {"trace_id": "", "event_type": "finalize", "payload": {}},
    {"trace_id": "t-1", "event_type": "finalize", "payload": {}, "granularity": "paragraph"},
    {"trace_id": "t-1", "event_type": "finalize", "payload": {}, "extra": 1},
    {"trace_id": "t-1", "event_type": "finalize"},
    {"event_type": "finalize", "payload": {}},
    [],
    "finalize",
]


@pytest.mark.parametrize("limits", [Limits.from_settings(), Limits(16, 2, 8, 10)], ids=["default", "small"])
def test_the_request_schema_accepts_exactly_what_the_validator_accepts(limits):
    settings = dict(MAX_TRACE_TOKENS=limits.max_trace_tokens, MAX_LAYERS=limits.max_layers,
                    MAX_ACTIVATION_WIDTH=limits.max_activation_width, MAX_TEXT_CHARS=limits.max_text_chars)
    spec = served_schema(**settings)
    server = Draft202012Validator(event_schema(limits))
    verdicts = {}
    for n, body in enumerate(BODIES):
        documented = not schema_errors(spec, "#/components/schemas/IngestEvent", body)
        assert documented == server.is_valid(body), (n, body)
        verdicts[n] = documented
    assert 0 < sum(verdicts.values()) < len(BODIES)  # both kinds of body are among them


def test_the_documented_limits_are_the_deployments():
    spec = served_schema(MAX_ACTIVATION_WIDTH=512, MAX_TEXT_CHARS=100, MAX_TRACE_TOKENS=64, MAX_LAYERS=2)
    schemas = spec["components"]["schemas"]
    assert schemas["InlineActivations"]["properties"]["shape"]["prefixItems"][1]["maximum"] == 512
    assert schemas["InlineActivations"]["properties"]["shape"]["prefixItems"][0]["maximum"] == 64
    assert schemas["ShardedActivations"]["properties"]["layers"]["maxItems"] == 2
    assert schemas["CompletionPayload"]["properties"]["text"]["maxLength"] == 100


# --- real answers of the live server -----------------------------------------------------------------------------

class Observed:
    """Sends requests to the live server, checks each answer against the document, remembers the statuses seen."""

    def __init__(self, spec: dict, base_url: str) -> None:
        self.spec, self.base_url, self.seen = spec, base_url, set()

    def __call__(self, method: str, path: str, url: str, body=None, key: str | None = None, header="Authorization",
                 expect: int | None = None):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {} if key is None else {header: f"Api-Key {key}" if header == "Authorization" else key}
        answer = http(method.upper(), self.base_url + url, data, headers)
        assert answer.status == expect, (method, url, answer.status, answer.body[:500])
        assert mismatches(self.spec, path, method, answer) == [], (method, url, answer.status, answer.body[:500])
        self.seen.add((path, method, str(answer.status)))
        return answer

    def unseen(self, *paths: str) -> set[tuple[str, str, str]]:
        documented = {(path, method, status) for path, method, operation in operations(self.spec) if path in paths
                      for status in operation["responses"] if not (status == DATABASE_DOWN and path not in PUBLIC)}
        return documented - self.seen


@pytest.fixture
def observe(spec, live_server):
    return Observed(spec, live_server.url)


@pytest.fixture
def write_only_key(make_tenant):
    """Dora may write but not read."""
    return make_tenant("dora", scopes=(Scope.TRACES_WRITE,))[1]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server to start and stop")
def test_every_ingest_answer_matches_the_schema(observe, alice, charlie, redis_flush):
    from hypergraph_site.api import broker

    key, ingest = alice[1], ("post", "/ingest", "/ingest")
    observe(*ingest, {"trace_id": "t-1", "event_type": "completion",
                      "payload": {"model": "m", "text": "Hello world.", "tokens": ["Hello", " world", "."]}},
            key, expect=202)
    observe(*ingest, {"trace_id": "t-1", "event_type": "activations", "payload": INLINE}, key, header="X-API-Key",
            expect=202)
    observe(*ingest, {"trace_id": "t-2", "event_type": "activations", "payload": SHARDS}, key, expect=202)
    observe(*ingest, {"trace_id": "t-1", "event_type": "finalize", "payload": {}}, key, expect=202)
    observe(*ingest, {"trace_id": "t-1", "event_type": "activations", "payload": {**INLINE, "layer": 5}}, key,
            expect=409)
    observe(*ingest, {"trace_id": "t-5", "event_type": "completion", "payload": {"model": "m", "text": "A"}}, key,
            expect=202)
    observe(*ingest, {"trace_id": "t-5", "event_type": "completion", "payload": {"model": "m", "text": "B"}}, key,
            expect=409)
    bad = observe(*ingest, {"trace_id": "t-3", "event_type": "activations", "payload": {**INLINE, "shape": [2, 9]}},
                  key, expect=400)
    assert json.loads(bad.body)["errors"][0]["path"].startswith("payload")
    observe(*ingest, b'{"trace_id": "t", "event_type": "finalize", "payload": {}, "x": NaN}', key, expect=400)
    observe(*ingest, {"trace_id": "t-3", "event_type": "finalize", "payload": {}}, None, expect=401)
    observe(*ingest, {"trace_id": "t-3", "event_type": "finalize", "payload": {}}, "no.such-key", expect=401)
    observe(*ingest, {"trace_id": "t-3", "event_type": "finalize", "payload": {}}, charlie[1], expect=403)
    with override_settings(INGEST_MAX_BODY_BYTES=100):
        observe(*ingest, {"trace_id": "t-3", "event_type": "activations", "payload": INLINE}, key, expect=413)
    with override_settings(INGEST_RATE_PER_TENANT=0.01, INGEST_BURST_PER_TENANT=1):
        for expect in (202, 429):
            observe(*ingest, {"trace_id": f"t-{expect}", "event_type": "completion",
                              "payload": {"model": "m", "text": "Hi."}}, key, expect=expect)
    with private_redis() as server, override_settings(REDIS_URL=server.url):
        broker._redis.cache_clear()
        try:
            server.stop()
            observe(*ingest, {"trace_id": "t-4", "event_type": "finalize", "payload": {}}, key, expect=503)
        finally:
            broker._redis.cache_clear()
    assert observe.unseen("/ingest") == set()


def test_every_trace_dictionary_and_health_answer_matches_the_schema(observe, alice, bob, write_only_key,
                                                                     sample_dictionary, redis_flush, graph_root):
    from explainer.services import api_key_create
    from hypergraph_site.api import broker

    tenant, key = alice
    _, deleter_key = api_key_create(tenant=tenant, scopes=[Scope.TRACES_DELETE])
    complete_trace(tenant, "done")
    failed_trace(tenant, "broken")
    Trace.objects.create(tenant=tenant, trace_id="open-one", model_name="m")
    Trace.objects.create(tenant=tenant, trace_id="running", status=TraceStatus.RUNNING, stage="attribute")

    traces = ("get", "/v1/traces")
    page = observe(*traces, "/v1/traces?limit=2", key=key, expect=200)
    following = json.loads(page.body)["next"]
    assert following and len(json.loads(page.body)["results"]) == 2
    observe(*traces, following.removeprefix(observe.base_url), key=key, expect=200)
    observe(*traces, "/v1/traces?status=complete&granularity=sentence&model=sample-model", key=key, expect=200)
    observe(*traces, "/v1/traces?status=done", key=key, expect=400)
    observe(*traces, "/v1/traces?since=yesterday", key=key, expect=400)
    observe(*traces, "/v1/traces", expect=401)
    observe(*traces, "/v1/traces", key=write_only_key, expect=403)

    detail = ("get", "/v1/traces/{trace_id}")
    for trace_id in ("done", "broken", "open-one", "running"):
        observe(*detail, f"/v1/traces/{trace_id}", key=key, expect=200)
    observe(*detail, "/v1/traces/done", key=bob[1], expect=404)
    observe(*detail, "/v1/traces/done", expect=401)
    observe(*detail, "/v1/traces/done", key=write_only_key, expect=403)

    graph = ("get", "/v1/traces/{trace_id}/graph")
    for fmt in ("hif-1", "hif-standard", "neuronpedia"):
        observe(*graph, f"/v1/traces/done/graph?format={fmt}", key=key, expect=200)
    observe(*graph, "/v1/traces/open-one/graph", key=key, expect=202)
    observe(*graph, "/v1/traces/running/graph", key=key, expect=202)
    observe(*graph, "/v1/traces/done/graph?format=graphml", key=key, expect=400)
    observe(*graph, "/v1/traces/nope/graph", key=key, expect=404)
    observe(*graph, "/v1/traces/broken/graph", key=key, expect=409)
    observe(*graph, "/v1/traces/done/graph", expect=401)
    observe(*graph, "/v1/traces/done/graph", key=write_only_key, expect=403)
    tampered = complete_trace(tenant, "tampered")
    (graph_root / tampered.explanation.object_key).write_bytes(gzip.compress(b'{"nodes": [], "incidences": []}'))
    observe(*graph, "/v1/traces/tampered/graph", key=key, expect=500)

    delete = ("delete", "/v1/traces/{trace_id}")
    observe(*delete, "/v1/traces/tampered", expect=401)
    observe(*delete, "/v1/traces/tampered", key=key, expect=403)  # read and write, not delete
    observe(*delete, "/v1/traces/tampered", key=deleter_key, expect=204)
    observe(*delete, "/v1/traces/tampered", key=deleter_key, expect=404)

    dictionaries = ("get", "/v1/dictionaries")
    listed = observe(*dictionaries, "/v1/dictionaries", key=key, expect=200)
    assert json.loads(listed.body)["dictionaries"][0]["layers"][0]["d_in"] == 384
    observe(*dictionaries, "/v1/dictionaries", expect=401)
    observe(*dictionaries, "/v1/dictionaries", key=write_only_key, expect=403)

    observe("get", "/healthz", "/healthz", expect=200)
    observe("get", "/metrics", "/metrics", expect=200)
    observe("get", "/readyz", "/readyz", expect=200)
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        broker._redis.cache_clear()
        try:
            observe("get", "/readyz", "/readyz", expect=503)
        finally:
            broker._redis.cache_clear()
    assert observe.unseen("/v1/traces", "/v1/traces/{trace_id}", "/v1/traces/{trace_id}/graph", "/v1/dictionaries",
                          "/healthz", "/readyz", "/metrics") == set()


@pytest.mark.django_db(transaction=True)
def test_database_down_answers_match_the_schema(spec, alice):
    """The read endpoints' and /ingest's 503: a real connection failure (the database's port closed)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {alice[1]}")
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = free_port()
    try:
        answers = {
            ("/ingest", "post"): client.post("/ingest", data=json.dumps(
                {"trace_id": "t", "event_type": "finalize", "payload": {}}), content_type="application/json"),
            ("/v1/traces", "get"): client.get("/v1/traces"),
            ("/v1/traces/{trace_id}", "get"): client.get("/v1/traces/t"),
            ("/v1/traces/{trace_id}/graph", "get"): client.get("/v1/traces/t/graph"),
            ("/v1/dictionaries", "get"): client.get("/v1/dictionaries"),
        }
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    for (path, method), response in answers.items():
        answer = Answer(response.status_code, {k.lower(): v for k, v in response.items()}, response.content)
        assert answer.status == 503, (path, response.content)
        assert mismatches(spec, path, method, answer) == [], path
