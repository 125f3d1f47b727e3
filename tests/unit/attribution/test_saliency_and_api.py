"""The public API's contract with the saliency method: shapes, ids, normalisation, thresholds, caps, fallback marks."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attribution import AttributionConfig, LayerFeatures, attribute

from .helpers import make_layer

ID = re.compile(r"^att_(saliency|acdc|shapley)_(sent|tok)-\d+_\d+_\d+$")


def _config(**kw) -> AttributionConfig:
    return AttributionConfig(method_sentence="saliency", method_token="saliency", **kw)


def test_token_saliency_is_normalised_activation():
    lf = make_layer(T=4, k=5)
    result = attribute([lf], granularity="token", windows=[], token_ids=None, unembedding=None,
                       config=_config(min_edge_weight=0.0))
    assert result.method == "saliency" and not result.fell_back and result.value == "cosine"
    got = {inc["id"]: inc["weight"] for inc in result.incidences}
    for p in range(4):
        expected = lf.values[p] / lf.values[p].max()
        for f, w in zip(lf.indices[p], expected):
            assert got[f"att_saliency_tok-{p}_3_{f}"] == pytest.approx(w, abs=1e-6)
    inc = result.incidences[0]
    assert inc["node_ids"][0].startswith("feat_3_") and inc["node_ids"][1:] == [inc["metadata"]["window"].replace(
        "tok-", "token_out_")]
    assert inc["metadata"] == {"type": "causal_circuit", "method": "saliency", "window": inc["metadata"]["window"]}
    json.dumps(result.incidences)  # JSON-serialisable as stored by the pipeline


def test_sentence_saliency_uses_mean_activation_over_window():
    lf = make_layer(T=6, k=4)
    windows = [(0, 2), (2, 6)]
    result = attribute([lf], granularity="sentence", windows=windows, token_ids=None, unembedding=None,
                       config=_config(min_edge_weight=0.0))
    total = {}
    for p in range(2, 6):
        for f, a in zip(lf.indices[p], lf.values[p]):
            total[int(f)] = total.get(int(f), 0.0) + float(a)
    peak = max(total.values())
    second = [inc for inc in result.incidences if inc["metadata"]["window"] == "sent-1"]
    assert {inc["id"] for inc in second} == {f"att_saliency_sent-1_3_{f}" for f in total}
    for inc in second:
        feature = int(inc["id"].rsplit("_", 1)[1])
        assert inc["weight"] == pytest.approx(total[feature] / peak, abs=1e-6)
        assert inc["node_ids"][1:] == [f"token_out_{i}" for i in range(2, 6)]
    assert all(ID.match(inc["id"]) for inc in result.incidences)


def test_threshold_and_per_token_cap_across_layers():
    a, b = make_layer(T=3, k=8, seed=1, layer=0), make_layer(T=3, k=8, seed=2, layer=7)
    result = attribute([a, b], granularity="token", windows=[], token_ids=None, unembedding=None,
                       config=_config(min_edge_weight=0.3, per_token_cap=5))
    by_token: dict[str, list[float]] = {}
    for inc in result.incidences:
        by_token.setdefault(inc["metadata"]["window"], []).append(inc["weight"])
        assert 0.3 <= inc["weight"] <= 1.0
    assert all(len(ws) <= 5 for ws in by_token.values())
    assert all(ws == sorted(ws, reverse=True) for ws in by_token.values())
    assert len({inc["id"] for inc in result.incidences}) == len(result.incidences)


def test_padding_slots_are_ignored():
    lf = make_layer(T=2, k=4)
    values = lf.values.copy()
    values[0, 2:] = 0.0
    lf = LayerFeatures(lf.layer, lf.acts, lf.indices, values, lf.W_dec, lf.b_dec)
    result = attribute([lf], granularity="token", windows=[], token_ids=None, unembedding=None,
                       config=_config(min_edge_weight=0.0))
    tok0 = [inc for inc in result.incidences if inc["metadata"]["window"] == "tok-0"]
    assert len(tok0) == 2


def test_invalid_inputs_raise():
    lf = make_layer(T=4)
    with pytest.raises(ValueError):
        attribute([lf], granularity="sentence", windows=[(0, 5)], token_ids=None, unembedding=None,
                  config=_config())
    with pytest.raises(ValueError):
        attribute([lf], granularity="token", windows=[], token_ids=[1, 2], unembedding=None, config=_config())
    with pytest.raises(ValueError):
        attribute([lf], granularity="paragraph", windows=[], token_ids=None, unembedding=None, config=_config())
