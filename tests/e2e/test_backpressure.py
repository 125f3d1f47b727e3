"""Backpressure for real: traces finalized while no worker runs fill the queue, the levels rise (soft, hard, then
/ingest refuses with 503), and the worker started afterwards sheds and degrades the work as recorded; shed traces
are replayed; a tenant flooding the queue does not starve another.

The worker is started by each test once the queue is full (a paused worker), so these tests must not share the
package's worker: it would drain the queue while it fills.
"""
from __future__ import annotations

import base64

import pytest
from django.core.management import call_command

from explainer.models import Trace
from hif.ids import parse_feature_node
from explainer.text import tokenize
from hypergraph_site.demo import processes
from hypergraph_site.demo.samples import LAYER, make_dictionary, planted_activations
from ingest.client import IngestClient, IngestError
from tests.e2e.conftest import Http, start_ready_worker, worker_env
from tests.e2e.dictionaries import owned_layers, write_sample_layer
from tests.e2e.graphs import graph_features

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Cells divide by mitosis. The nucleus holds the genome. Enzymes speed reactions."
# Layers no other end-to-end test uses (test_layers: 5, 7; others: 1, 3, 6, 9).
LAYERS = (2, 4, 8)
LIMITS = {"BP_MAX_QUEUE_TENANT": 2, "BP_MAX_QUEUE_GLOBAL": 5, "BP_BURST_MULTIPLIER": 4.0, "BP_CACHE_S": 0.0}


@pytest.fixture
def bp_limits(settings):
    """Small limits for the live server (this process) and, through the environment, the worker."""
    for name, value in LIMITS.items():
        setattr(settings, name, value)
    return {name: str(value) for name, value in LIMITS.items()}


@pytest.fixture
def paused_worker(django_db_setup, e2e_dirs, graph_root, tmp_path, bp_limits):
    """Starts a worker (one process, so traces start in queue order) only when the test calls it."""
    import redis
    from celery import current_app
    from django.conf import settings

    if current_app.control.ping(timeout=1.0):
        pytest.fail("another worker consumes the test queues (the package's): run these tests before the others")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    started = []

    def start(**env: str):
        worker_environment = {**worker_env(e2e_dirs, graph_root), **bp_limits, "SHADOW_MODEL": "", **env}
        started.append(start_ready_worker(tmp_path / "worker.log", worker_environment, concurrency=1))

    yield start
    for worker in started:
        processes.stop(worker)


@pytest.fixture
def three_layer_dictionaries(e2e_dirs):
    dictionary = make_dictionary()
    with owned_layers(e2e_dirs, LAYERS) as folders:
        for layer, folder in zip(LAYERS, folders):
            write_sample_layer(folder, dictionary, layer)
        yield dictionary


def trace_events(trace_id: str, granularity: str, layers: tuple[int, ...], seed: int) -> list[dict]:
    dictionary = make_dictionary()
    tokens = tokenize(TEXT)
    events = [{"trace_id": trace_id, "event_type": "completion", "granularity": granularity,
               "payload": {"model": "sample-model", "prompt": "Explain.", "text": TEXT, "tokens": tokens}}]
    for layer in layers:
        acts = planted_activations(dictionary, "Biology", len(tokens), seed=seed + layer)
        events.append({"trace_id": trace_id, "event_type": "activations", "payload": {
            "layer": layer, "encoding": "f16-base64", "shape": list(acts.shape), "convention": "hf_raw",
            "data": base64.b64encode(acts.astype("<f2").tobytes()).decode()}})
    return events + [{"trace_id": trace_id, "event_type": "finalize", "payload": {}}]


def send(http: Http, events: list[dict]) -> None:
    for event in events:
        status, body = http.post(event)
        assert status == 202, body


def graph_of(http: Http, trace_id: str) -> dict:
    status, document = http.get(f"/v1/traces/{trace_id}/graph")
    assert status == 200, document
    return document


def feature_layers(document: dict) -> set[int]:
    """Layers of the graph's features, those grouped into supernodes included."""
    return {parse_feature_node(feature_id)[0] for feature_id in graph_features(document)}


def test_a_filling_queue_goes_soft_then_hard_then_refuses_and_the_worker_degrades_and_sheds_as_recorded(
        live_server, make_tenant, web_dictionaries, three_layer_dictionaries, paused_worker):
    _, key = make_tenant("alice")
    http = Http(live_server.url, key)
    names = [f"fill-{i}" for i in range(7)]
    for i, name in enumerate(names):
        send(http, trace_events(name, "token", LAYERS, seed=i))
    accepted = dict(Trace.objects.values_list("trace_id", "backpressure_level"))
    # Tenant max 2: soft from the 4th trace; global max 5: hard at the 7th; past 1.2 × 5 the service refuses.
    assert [accepted[name] for name in names] == ["none"] * 3 + ["soft"] * 3 + ["hard"]
    with pytest.raises(IngestError) as refused:
        IngestClient(live_server.url, key, max_retries=0).request("POST", "/ingest",
                                                                  trace_events("fill-7", "token", LAYERS, 7)[0])
    assert refused.value.status == 503 and "overloaded" in refused.value.body["errors"][0]["message"]
    assert not Trace.objects.filter(trace_id="fill-7").exists()

    paused_worker(SAE_TOPK="256")
    outcome = {name: http.wait_terminal(name, timeout_s=180) for name in names}
    # The first trace started with 7 queued or running (over 1.2 × 5): shed, whatever it was accepted at.
    assert outcome["fill-0"]["status"] == "shed" and outcome["fill-0"]["degraded"] == ["drop"]
    assert "shed by backpressure" in outcome["fill-0"]["error"]
    levels = dict(Trace.objects.values_list("trace_id", "backpressure_level"))
    order = ["none", "soft", "hard", "drop"]
    for name in names[1:]:
        assert outcome[name]["status"] == "complete", outcome[name]
        assert order.index(levels[name]) >= order.index(accepted[name])  # never less than at accept
    assert {levels[name] for name in names[1:]} == {"soft", "hard"}
    for name in names[1:]:
        document, degraded = graph_of(http, name), outcome[name]["degraded"]
        limits = document["meta"]["limits"]
        assert document["meta"]["granularity"] == "sentence"  # token->sentence
        if levels[name] == "soft":
            assert degraded == ["token->sentence", "reduce-samples", "reduce-topk", "reduce-layers"]
            assert (limits["per_token_incident_cap"], limits["min_edge_weight"]) == (128, 0.02)
            assert feature_layers(document) <= {4, 8}
        else:
            assert degraded == ["token->sentence", "reduce-samples", "reduce-topk", "reduce-layers",
                                "saliency-fallback"]
            assert (limits["per_token_incident_cap"], limits["min_edge_weight"]) == (64, 0.05)
            assert feature_layers(document) <= {8}
            assert {inc["metadata"]["method"] for inc in document["incidences"]} == {"saliency"}

    call_command("replay", shed=True)
    replayed = http.wait_terminal("fill-0", timeout_s=120)
    assert replayed["status"] == "complete" and replayed["degraded"] == [] and replayed["error"] is None
    document = graph_of(http, "fill-0")
    # Explained per token, from layers a degraded run would not have loaded (soft keeps 4 and 8, hard 8).
    assert document["meta"]["granularity"] == "token" and feature_layers(document) - {4, 8}
    assert document["meta"]["limits"]["per_token_incident_cap"] == 256


def test_a_tenant_flooding_the_queue_does_not_starve_another(live_server, make_tenant, web_dictionaries, settings,
                                                             paused_worker):
    settings.BP_MAX_QUEUE_GLOBAL = 100
    settings.BP_BURST_MULTIPLIER = 10.0
    alice, bob = (Http(live_server.url, make_tenant(slug)[1]) for slug in ("alice", "bob"))
    flood = [f"flood-{i}" for i in range(10)]
    for i, name in enumerate(flood):
        send(alice, trace_events(name, "sentence", (LAYER,), seed=i))
    send(bob, trace_events("quiet", "sentence", (LAYER,), seed=99))

    paused_worker(BP_MAX_QUEUE_GLOBAL="100", BP_BURST_MULTIPLIER="10")
    assert bob.wait_terminal("quiet", timeout_s=120)["status"] == "complete"
    for name in flood:
        assert alice.wait_terminal(name, timeout_s=180)["status"] == "complete"
    # In queue order bob's trace would have waited for all ten; it finished while (at least) nine were still waiting.
    quiet_done = Trace.objects.get(trace_id="quiet").finished_at
    assert Trace.objects.filter(tenant__slug="alice", finished_at__lt=quiet_done).count() <= 1
