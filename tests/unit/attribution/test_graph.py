"""Graph building: normalisation per window and layer, ordering, caps, nodes with labels and peaks, fallback marks."""
from __future__ import annotations

import numpy as np

import hif
from attribution.graph import build_graph
from attribution.inputs import Estimates, LayerFeatures
from hif import ids


def _estimates(method="acdc", fallback_from=None) -> Estimates:
    window = np.array([0, 0, 0, 1, 1, 1, 1])
    layer = np.array([2, 2, 5, 2, 2, 2, 5])
    feature = np.array([10, 11, 12, 10, 13, 14, 15])
    effect = np.array([2.0, -1.0, 0.5, 4.0, 3.0, -1.0, 0.0])
    n = len(window)
    se = np.r_[np.full(n - 1, 0.1), np.nan]
    return Estimates(method, window, layer, feature, effect, se, np.full(n, 9), np.ones(n, bool), fallback_from)


def _layer(layer: int, indices: list[list[int]], values: list[list[float]]) -> LayerFeatures:
    t = len(indices)
    return LayerFeatures(layer, np.zeros((t, 2), np.float32), np.array(indices, np.int64),
                         np.array(values, np.float32), np.zeros((20, 2), np.float32), np.zeros(2, np.float32))


LAYERS = [_layer(2, [[10, 11], [10, 13], [14, 0]], [[1.5, 0.5], [2.5, 1.0], [0.25, 0.0]]),
          _layer(5, [[12, 15], [12, 15], [15, 1]], [[0.75, 0.1], [0.5, 0.2], [0.3, 0.4]])]


def _build(estimates=None, cap=10, **kw) -> hif.Graph:
    return build_graph([_estimates(**kw) if estimates is None else estimates], layers=LAYERS, windows=[(0, 2), (2, 3)],
                       granularity="sentence", value="logit", min_edge_weight=0.01, per_token_cap=cap,
                       labels={2: {10: "Biology: cells", 13: ""}}, tokens=["The", " cell", " divides"])


def test_weights_are_normalised_per_window_and_layer_and_ordered():
    nodes, incidences = _build().to_records()
    got = [(i["id"], i["weight"]) for i in incidences]
    assert got == [
        ("att_acdc_sent-0_2_10", 1.0), ("att_acdc_sent-0_5_12", 1.0), ("att_acdc_sent-0_2_11", 0.5),
        ("att_acdc_sent-1_2_10", 1.0), ("att_acdc_sent-1_2_13", 0.75), ("att_acdc_sent-1_2_14", 0.25),
    ]  # the zero-effect feature 15 has no incidence
    assert incidences[2]["attributes"] == {"value": "logit", "samples": 9, "converged": True, "se": 0.1,
                                           "effect": -1.0}
    assert incidences[0]["node_ids"] == [ids.feature_node(2, 10), ids.output_token(0), ids.output_token(1)]
    assert incidences[0]["metadata"] == {"type": "causal_circuit", "method": "acdc", "window": "sent-0"}


def test_nodes_are_the_named_features_with_labels_and_peaks_then_every_output_token():
    nodes, _ = _build().to_records()
    assert nodes == [
        {"id": "feat_2_10", "type": "sae_feature", "label": "Biology: cells", "layer": 2, "activation_strength": 2.5,
         "attributes": {"feature_index": 10}},
        {"id": "feat_2_11", "type": "sae_feature", "label": "L2 feature 11", "layer": 2, "activation_strength": 0.5,
         "attributes": {"feature_index": 11}},
        {"id": "feat_2_13", "type": "sae_feature", "label": "", "layer": 2, "activation_strength": 1.0,
         "attributes": {"feature_index": 13}},
        {"id": "feat_2_14", "type": "sae_feature", "label": "L2 feature 14", "layer": 2, "activation_strength": 0.25,
         "attributes": {"feature_index": 14}},
        {"id": "feat_5_12", "type": "sae_feature", "label": "L5 feature 12", "layer": 5, "activation_strength": 0.75,
         "attributes": {"feature_index": 12}},
        {"id": "token_out_0", "type": "output_token", "label": "The", "position": 0},
        {"id": "token_out_1", "type": "output_token", "label": " cell", "position": 1},
        {"id": "token_out_2", "type": "output_token", "label": " divides", "position": 2},
    ]


def test_per_window_cap_keeps_the_strongest_over_all_layers():
    _, incidences = _build(cap=2).to_records()
    assert [i["id"] for i in incidences] == ["att_acdc_sent-0_2_10", "att_acdc_sent-0_5_12", "att_acdc_sent-1_2_10",
                                             "att_acdc_sent-1_2_13"]


def test_columns_need_no_ids_and_survive_the_artifact_form():
    graph = _build()
    assert graph.nodes.ids is None and graph.incidences.ids is None
    assert graph.incidences.offsets.tolist() == [0, 3, 6, 9, 11, 13, 15]
    again = hif.Graph.from_arrays(graph.to_arrays())
    assert again.to_records() == graph.to_records()


def test_fallback_incidences_say_what_they_stand_in_for():
    _, incidences = _build(method="saliency", fallback_from="acdc").to_records()
    assert all(i["metadata"]["method"] == "saliency" and i["attributes"]["fallback_from"] == "acdc" and
               i["attributes"]["value"] == "activation" for i in incidences)


def test_nothing_to_attribute_gives_the_token_nodes_alone():
    graph = _build(estimates=Estimates.empty("acdc"))
    nodes, incidences = graph.to_records()
    assert incidences == [] and [n["type"] for n in nodes] == ["output_token"] * 3
