"""A trace of the worker's SHADOW_MODEL: valued through the model, verified by ablation, figures everywhere."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import hif
from explainer.models import Trace
from sae.config import dictionary_layer_folder
from sae.testing import write_saelens_dictionary
from tests.e2e.shadow_model import WIDTH

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAYER = 2  # the shadow model's last block; layers 1, 3, 5, 6, 7 and 9 belong to other e2e tests


@pytest.fixture
def shadow_dictionary(e2e_dirs):
    """A random tied ReLU dictionary (b_enc = 0, so real residuals switch features on) for the shadow's layer."""
    folder = dictionary_layer_folder(e2e_dirs["dict_root"], "sample", LAYER)
    if folder.exists():
        pytest.fail(f"{folder} exists: another test uses layer {LAYER}; give this test a layer of its own")
    rng = np.random.default_rng(LAYER)
    w_dec = rng.standard_normal((2 * WIDTH, WIDTH)).astype(np.float32)
    w_dec /= np.linalg.norm(w_dec, axis=1, keepdims=True)
    write_saelens_dictionary(folder, w_dec.T.copy(), np.zeros(2 * WIDTH, np.float32), w_dec,
                             np.zeros(WIDTH, np.float32), cfg_overrides={"activation_convention": "hf_raw"})
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


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
        capture_and_send(model, tokenizer, "the cells divide by mitosis and the nucleus holds the genome",
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
