"""A trace of the worker's SHADOW_MODEL: valued through the model, verified by ablation, figures everywhere."""
from __future__ import annotations

import pytest

import hif
from explainer.models import Trace
from tests.e2e.dictionaries import owned_layers, write_random_tied
from tests.e2e.shadow_model import WIDTH

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAYER = 2  # the shadow model's last block; layers 1, 3, 5, 6, 7 and 9 belong to other e2e tests
# Two concepts: a quoted phrase and a backtick span (the quotes and backticks are the word-level tokenizer's [UNK]).
PROMPT = 'the "cells divide" by mitosis and the `nucleus` holds the genome'


@pytest.fixture
def shadow_dictionary(e2e_dirs):
    """A random tied ReLU dictionary (b_enc = 0, so real residuals switch features on) for the shadow's layer."""
    with owned_layers(e2e_dirs, [LAYER]) as [folder]:
        write_random_tied(folder, WIDTH, seed=LAYER)
        yield folder


def test_a_trace_of_the_shadow_model_is_valued_through_it_and_verified(http, e2e_dirs, shadow_dictionary,
                                                                       admin_client):
    from django.conf import settings

    from ingest.client import capture_and_send
    from ingest.hooks import CaptureConfig, CapturePipeline, RedisStore
    from ingest.hooks.torch_hooks import model_hash

    tokenizer = transformers.AutoTokenizer.from_pretrained(e2e_dirs["shadow"])
    model = transformers.AutoModelForCausalLM.from_pretrained(e2e_dirs["shadow"]).eval()
    pipeline = CapturePipeline(CaptureConfig("shadow-gpt2", model_hash(model), layers=[LAYER], compress="f16-zstd"),
                               store=RedisStore(settings.REDIS_URL, ttl_s=600))
    try:
        capture_and_send(model, tokenizer, PROMPT,
                         client=http.client, trace_id="shadow-e2e", layers=[LAYER], max_new_tokens=8,
                         granularity="token", pipeline=pipeline)
    finally:
        pipeline.close()
    summary = http.wait_terminal("shadow-e2e", timeout_s=120)
    assert summary["status"] == "complete", summary["error"]
    figures = summary["verification"]
    assert figures["value"] == "model" and figures["shadow_model"] == e2e_dirs["shadow"].name, figures
    assert figures["verifier"] == "ablation" and figures["checked"] > 0
    assert figures["checked"] + figures["budget_exhausted"] == 16
    assert figures["spearman"] is not None and -1 <= figures["spearman"] <= 1

    status, doc = http.get("/v1/traces/shadow-e2e/graph")
    assert status == 200 and hif.validate_hif(doc) == []
    assert {inc["attributes"]["value"] for inc in doc["incidences"]} == {"model"}
    assert {inc["metadata"]["method"] for inc in doc["incidences"]} == {"gradient"}
    checked = [inc["attributes"] for inc in doc["incidences"] if inc["attributes"].get("verifier") == "ablation"]
    assert checked and all(isinstance(a["observed_effect"], float) and isinstance(a["verified"], bool)
                           for a in checked)
    assert sum(a["verified"] for a in checked) <= figures["verified"]  # pruning may drop checked incidences

    trace = Trace.objects.get(trace_id="shadow-e2e")
    for url in (f"/admin/explainer/trace/{trace.pk}/change/", f"/admin/explainer/trace/{trace.pk}/graph/"):
        page = admin_client.get(url).content.decode()
        assert 'data-role="verification"' in page and 'data-figure="spearman"' in page, url

    status, concepts = http.get("/v1/traces/shadow-e2e/graph?view=concepts")
    assert status == 200 and hif.validate_hif(concepts, "hif-standard") == [], concepts
    nodes = {node["node"]: node["attrs"] for node in concepts["nodes"]}
    assert [(a["label"], a["tokens"]) for a in nodes.values() if a["type"] == "concept"] == \
        [("cells divide", [2, 3]), ("nucleus", [10])]
    prompt_tokens = len(tokenizer(PROMPT)["input_ids"])
    assert nodes["target"]["position"] == prompt_tokens and 0 < nodes["target"]["p0"] <= 1
    search = concepts["metadata"]["search"]
    assert search["calls"] >= 3 and search["stopped"] in ("rounds", "low_gain", "exhausted", "max_edges")
    assert {i["node"] for i in concepts["incidences"] if i["direction"] == "head"} <= {"target"}

    status, standard = http.get("/v1/traces/shadow-e2e/graph?format=hif-standard")
    assert status == 200 and hif.validate_hif(standard, "hif-standard") == []
    assert {n["node"] for n in standard["nodes"] if n["attrs"]["type"] == "concept"} == {"concept:c0", "concept:c1"}
