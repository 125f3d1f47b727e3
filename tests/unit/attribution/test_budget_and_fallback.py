"""Determinism under a seed, the time budget on huge inputs, fallback to saliency, metrics, unembedding loading."""
from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import REGISTRY
from safetensors.numpy import save_file

from attribution import AttributionConfig, LayerFeatures, attribute, load_unembedding
from attribution.acdc import AcdcWindow

from .helpers import incidences_of, make_layer, make_unembedding


def _run(granularity, seed, **kw):
    layers = [make_layer(T=10, k=6, d=16, seed=1, layer=1), make_layer(T=10, k=6, d=16, seed=2, layer=2)]
    return attribute(layers, granularity=granularity, windows=[(0, 4), (4, 10)], token_ids=list(range(10)),
                     unembedding=make_unembedding(d=16), config=AttributionConfig(random_seed=seed, **kw))


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_same_seed_gives_identical_output(granularity):
    first, again = incidences_of(_run(granularity, 3)), incidences_of(_run(granularity, 3))
    assert first == again
    other = incidences_of(_run(granularity, 4))
    assert [i["id"] for i in other] != [] and \
        [i["attributes"]["effect"] for i in other] != [i["attributes"]["effect"] for i in first]


def huge_layer(T=1024, k=64, d=1024, d_sae=8192, layer=0) -> LayerFeatures:
    rng = np.random.default_rng(0)
    w_dec = (rng.standard_normal((d_sae, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
    indices = np.argsort(rng.random((T, d_sae), dtype=np.float32), axis=1)[:, :k].astype(np.int64)
    values = rng.exponential(1.0, (T, k)).astype(np.float32)
    acts = rng.standard_normal((T, d), dtype=np.float32)
    return LayerFeatures(layer, acts, indices, values, w_dec, np.zeros(d, dtype=np.float32))


@pytest.mark.parametrize("granularity,budget", [("token", 300.0), ("sentence", 200.0)])
def test_budget_is_respected_on_huge_input(granularity, budget):
    layers = [huge_layer(layer=0), huge_layer(layer=1)]
    un = make_unembedding(d=1024, vocab=50)
    windows = [(s, min(s + 40, 1024)) for s in range(0, 1024, 40)]
    config = AttributionConfig(sentence_budget_ms=budget, token_budget_ms=budget)
    began = time.perf_counter()
    result = attribute(layers, granularity=granularity, windows=windows, token_ids=list(np.arange(1024) % 50),
                       unembedding=un, config=config)
    elapsed_ms = (time.perf_counter() - began) * 1000
    assert elapsed_ms <= budget + 50, elapsed_ms
    incidences = incidences_of(result)
    assert incidences and result.fell_back and "budget" in result.reason
    methods = {i["metadata"]["method"] for i in incidences}
    assert "saliency" in methods
    assert all(i["attributes"].get("fallback_from") for i in incidences if i["metadata"]["method"] == "saliency")


def test_no_first_estimate_in_budget_means_saliency_everywhere():
    before = REGISTRY.get_sample_value("attribution_early_stop_total", {"method": "acdc"}) or 0.0
    lf = make_layer(T=8, k=5, d=16)
    result = attribute([lf], granularity="sentence", windows=[(0, 8)], token_ids=None, unembedding=None,
                       config=AttributionConfig(sentence_budget_ms=0.001))
    assert result.method == "saliency" and result.fell_back and "first estimate" in result.reason
    assert {i["metadata"]["method"] for i in incidences_of(result)} == {"saliency"}
    assert REGISTRY.get_sample_value("attribution_early_stop_total", {"method": "acdc"}) == before + 1


def test_a_failing_method_falls_back_with_its_reason(monkeypatch):
    def broken(self, deadline):
        raise RuntimeError("boom")

    monkeypatch.setattr(AcdcWindow, "start", broken)
    before = REGISTRY.get_sample_value("attribution_method_total",
                                       {"method": "saliency", "granularity": "sentence"}) or 0.0
    result = attribute([make_layer(T=6)], granularity="sentence", windows=[(0, 3), (3, 6)], token_ids=None,
                       unembedding=None, config=AttributionConfig())
    assert result.method == "saliency" and result.fell_back and "boom" in result.reason
    incidences = incidences_of(result)
    assert incidences and all(i["metadata"]["method"] == "saliency" for i in incidences)
    assert REGISTRY.get_sample_value("attribution_method_total",
                                     {"method": "saliency", "granularity": "sentence"}) == before + 1
    assert REGISTRY.get_sample_value("attribution_latency_seconds_count",
                                     {"method": "saliency", "granularity": "sentence"}) >= 1


def test_load_unembedding(tmp_path):
    assert load_unembedding(tmp_path) is None
    un = make_unembedding(d=8, vocab=3)
    save_file({"W_U": un.W_U, "ln_f_weight": un.ln_f_weight, "ln_f_bias": un.ln_f_bias},
              str(tmp_path / "unembed.safetensors"), metadata={"eps": "1e-6"})
    loaded = load_unembedding(tmp_path)
    np.testing.assert_array_equal(loaded.W_U, un.W_U)
    np.testing.assert_array_equal(loaded.ln_f_bias, un.ln_f_bias)
    assert loaded.eps == 1e-6 and loaded.has_norm
    save_file({"W_U": un.W_U}, str(tmp_path / "unembed.safetensors"))
    bare = load_unembedding(tmp_path)
    assert bare.ln_f_weight is None and not bare.has_norm and bare.eps == 1e-5
