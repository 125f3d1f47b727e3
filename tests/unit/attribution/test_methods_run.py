"""Each method runs through `attribute` at the granularities it serves and labels its incidences honestly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attribution import AttributionConfig, attribute
from hif import ids

from .helpers import incidences_of, make_layer, make_unembedding


@pytest.mark.parametrize("granularity,method", [("sentence", "acdc"), ("token", "shapley"), ("token", "acdc")])
@pytest.mark.parametrize("with_unembedding", [True, False])
def test_method_produces_labelled_incidences(granularity, method, with_unembedding):
    layers = [make_layer(T=8, k=6, d=16, layer=2, seed=3), make_layer(T=8, k=6, d=16, layer=5, seed=4)]
    un = make_unembedding(d=16) if with_unembedding else None
    tokens = list(np.arange(8) % 11) if with_unembedding else None
    config = AttributionConfig(method_sentence=method if granularity == "sentence" else "acdc",
                               method_token=method if granularity == "token" else "shapley", max_samples=64)
    result = attribute(layers, granularity=granularity, windows=[(0, 3), (3, 8)], token_ids=tokens,
                       unembedding=un, config=config)
    assert result.method == method and not result.fell_back and result.reason is None
    assert result.value == ("logit" if with_unembedding else "cosine")
    incidences = incidences_of(result)
    assert incidences and result.samples > 0
    layers_seen = set()
    for inc in incidences:
        layer, index = ids.parse_feature_node(inc["node_ids"][0])
        assert inc["id"] == ids.incidence(method, inc["metadata"]["window"], layer, index)
        assert inc["metadata"]["method"] == method
        assert inc["attributes"]["value"] == result.value
        assert 0.0 < inc["weight"] <= 1.0
        assert isinstance(inc["attributes"]["converged"], bool) and inc["attributes"]["samples"] >= 1
        layers_seen.add(layer)
    assert layers_seen == {2, 5}
    json.dumps(result.graph.to_records(), allow_nan=False)


def test_each_window_and_layer_has_a_top_feature_of_weight_one():
    lf = make_layer(T=8, k=6, d=16, seed=5)
    result = attribute([lf], granularity="sentence", windows=[(0, 4), (4, 8)], token_ids=list(range(8)),
                       unembedding=make_unembedding(d=16), config=AttributionConfig())
    for window in ("sent-0", "sent-1"):
        weights = [i["weight"] for i in incidences_of(result) if i["metadata"]["window"] == window]
        assert max(weights) == 1.0
