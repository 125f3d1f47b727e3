"""The public API's contract with the saliency method: shapes, ids, normalisation, thresholds, caps, fallback marks."""
from __future__ import annotations

import json

import pytest

from attribution import AttributionConfig, LayerFeatures, attribute
from hif import HypergraphConfig, ids

from .helpers import incidences_of, make_layer

SALIENCY = AttributionConfig(method_sentence="saliency", method_token="saliency")
KEEP_ALL = HypergraphConfig(min_edge_weight=0.0)


def test_token_saliency_is_normalised_activation():
    lf = make_layer(T=4, k=5)
    result = attribute([lf], granularity="token", windows=[], token_ids=None, unembedding=None, config=SALIENCY,
                       graph_config=KEEP_ALL)
    assert result.method == "saliency" and not result.fell_back and result.value == "cosine"
    incidences = incidences_of(result)
    got = {inc["id"]: inc["weight"] for inc in incidences}
    for p in range(4):
        expected = lf.values[p] / lf.values[p].max()
        for f, w in zip(lf.indices[p], expected):
            assert got[ids.incidence("saliency", ids.window("token", p), 3, int(f))] == pytest.approx(w, abs=1e-6)
    inc = incidences[0]  # rows come window by window
    assert ids.parse_feature_node(inc["node_ids"][0])[0] == 3 and inc["node_ids"][1:] == [ids.output_token(0)]
    assert inc["metadata"] == {"type": "causal_circuit", "method": "saliency", "window": ids.window("token", 0)}
    json.dumps(result.graph.to_records())  # JSON-serialisable


def test_sentence_saliency_uses_mean_activation_over_window():
    lf = make_layer(T=6, k=4)
    windows = [(0, 2), (2, 6)]
    result = attribute([lf], granularity="sentence", windows=windows, token_ids=None, unembedding=None,
                       config=SALIENCY, graph_config=KEEP_ALL)
    total = {}
    for p in range(2, 6):
        for f, a in zip(lf.indices[p], lf.values[p]):
            total[int(f)] = total.get(int(f), 0.0) + float(a)
    peak = max(total.values())
    incidences = incidences_of(result)
    second = [inc for inc in incidences if inc["metadata"]["window"] == ids.window("sentence", 1)]
    assert {inc["id"] for inc in second} == {ids.incidence("saliency", "sent-1", 3, f) for f in total}
    for inc in second:
        _, feature = ids.parse_feature_node(inc["node_ids"][0])
        assert inc["weight"] == pytest.approx(total[feature] / peak, abs=1e-6)
        assert inc["node_ids"][1:] == [ids.output_token(i) for i in range(2, 6)]
    for inc in incidences:
        layer, feature = ids.parse_feature_node(inc["node_ids"][0])
        assert inc["id"] == ids.incidence("saliency", inc["metadata"]["window"], layer, feature)


def test_threshold_and_per_token_cap_across_layers():
    a, b = make_layer(T=3, k=8, seed=1, layer=0), make_layer(T=3, k=8, seed=2, layer=7)
    result = attribute([a, b], granularity="token", windows=[], token_ids=None, unembedding=None, config=SALIENCY,
                       graph_config=HypergraphConfig(min_edge_weight=0.3, per_token_incident_cap=5))
    by_token: dict[str, list[float]] = {}
    incidences = incidences_of(result)
    for inc in incidences:
        by_token.setdefault(inc["metadata"]["window"], []).append(inc["weight"])
        assert 0.3 <= inc["weight"] <= 1.0
    assert all(len(ws) <= 5 for ws in by_token.values())
    assert all(ws == sorted(ws, reverse=True) for ws in by_token.values())
    assert len({inc["id"] for inc in incidences}) == len(incidences)


def test_padding_slots_are_ignored():
    lf = make_layer(T=2, k=4)
    values = lf.values.copy()
    values[0, 2:] = 0.0
    lf = LayerFeatures(lf.layer, lf.acts, lf.indices, values, lf.W_dec, lf.b_dec)
    result = attribute([lf], granularity="token", windows=[], token_ids=None, unembedding=None, config=SALIENCY,
                       graph_config=KEEP_ALL)
    tok0 = [inc for inc in incidences_of(result) if inc["metadata"]["window"] == "tok-0"]
    assert len(tok0) == 2


def test_invalid_inputs_raise():
    lf = make_layer(T=4)
    with pytest.raises(ValueError):
        attribute([lf], granularity="sentence", windows=[(0, 5)], token_ids=None, unembedding=None,
                  config=SALIENCY)
    with pytest.raises(ValueError):
        attribute([lf], granularity="token", windows=[], token_ids=[1, 2], unembedding=None, config=SALIENCY)
    with pytest.raises(ValueError):
        attribute([lf], granularity="token", windows=[], token_ids=None, unembedding=None, config=SALIENCY,
                  tokens=["a", "b"])
    with pytest.raises(ValueError):
        attribute([lf], granularity="paragraph", windows=[], token_ids=None, unembedding=None, config=SALIENCY)
