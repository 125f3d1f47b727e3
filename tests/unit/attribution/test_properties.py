"""Invariants of `attribute` on arbitrary small traces (hypothesis)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attribution import AttributionConfig, LayerFeatures, attribute
from hif import HypergraphConfig, ids

from .helpers import incidences_of, make_layer, make_unembedding


@st.composite
def traces(draw):
    T = draw(st.integers(1, 7))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 10_000))
    lf = make_layer(T=T, k=k, d=12, d_sae=40, seed=seed, layer=draw(st.integers(0, 30)))
    padding = np.asarray(draw(st.lists(st.booleans(), min_size=T * k, max_size=T * k))).reshape(T, k)
    values = np.where(padding, 0.0, lf.values).astype(np.float32)
    lf = LayerFeatures(lf.layer, lf.acts, lf.indices, values, lf.W_dec, lf.b_dec)
    cuts = sorted(set(draw(st.lists(st.integers(1, T - 1), max_size=3)) if T > 1 else []))
    bounds = [0, *cuts, T]
    return lf, list(zip(bounds[:-1], bounds[1:]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces(), granularity=st.sampled_from(["sentence", "token"]), logit=st.booleans(),
       method=st.sampled_from(["auto", "saliency", "acdc"]), cap=st.integers(1, 5),
       min_weight=st.sampled_from([0.0, 0.01, 0.5]))
def test_incidences_are_well_formed(trace, granularity, logit, method, cap, min_weight):
    lf, windows = trace
    T = lf.n_positions
    config = AttributionConfig(method_sentence=method, method_token=method, max_samples=16)
    result = attribute([lf], granularity=granularity, windows=windows, token_ids=[1] * T if logit else None,
                       unembedding=make_unembedding(d=12) if logit else None, config=config,
                       graph_config=HypergraphConfig(min_edge_weight=min_weight, per_token_incident_cap=cap))
    assert not result.fell_back
    spans = windows if granularity == "sentence" else [(i, i + 1) for i in range(T)]
    per_window: dict[str, int] = {}
    active = {(p, int(f)) for p in range(T) for f, v in zip(lf.indices[p], lf.values[p]) if v > 0}
    graph = result.graph
    incidences = incidences_of(result)
    for row, inc in enumerate(incidences):
        assert 0.0 < inc["weight"] <= 1.0 and inc["weight"] >= min_weight
        window = inc["metadata"]["window"]
        j = int(graph.incidences.window[row])
        assert window == ids.window(granularity, j)
        s, e = spans[j]
        layer, feature = ids.parse_feature_node(inc["node_ids"][0])
        assert layer == lf.layer
        assert any((p, feature) in active for p in range(s, e))  # only features that fire in the window
        assert inc["node_ids"][1:] == [ids.output_token(i) for i in range(s, e)]
        per_window[window] = per_window.get(window, 0) + 1
    assert all(n <= cap for n in per_window.values())
    assert len({inc["id"] for inc in incidences}) == len(incidences)
    nodes = graph.to_records()[0]
    features = [n for n in nodes if n["type"] == "sae_feature"]
    assert {n["id"] for n in features} == {inc["node_ids"][0] for inc in incidences}  # exactly those named
    for node in features:
        peak = max(float(v) for row_i, row_v in zip(lf.indices, lf.values) for i, v in zip(row_i, row_v)
                   if i == node["attributes"]["feature_index"])
        assert node["activation_strength"] == peak and node["layer"] == lf.layer
    assert [n["position"] for n in nodes if n["type"] == "output_token"] == list(range(T))


def test_window_without_active_features_yields_nothing():
    lf = make_layer(T=4, k=3)
    values = lf.values.copy()
    values[2:] = 0.0
    lf = LayerFeatures(lf.layer, lf.acts, lf.indices, values, lf.W_dec, lf.b_dec)
    for granularity in ("sentence", "token"):
        result = attribute([lf], granularity=granularity, windows=[(0, 2), (2, 4)], token_ids=[0, 1, 2, 3],
                           unembedding=make_unembedding(d=16), config=AttributionConfig())
        assert not result.fell_back
        windows = {inc["metadata"]["window"] for inc in incidences_of(result)}
        assert windows == ({"sent-0"} if granularity == "sentence" else {"tok-0", "tok-1"})
