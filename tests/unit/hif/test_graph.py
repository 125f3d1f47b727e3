"""`hif.Graph`: the dict form read into columns and written back, the artifact form, and what a graph must hold."""

import dataclasses
import math

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hif import Graph
from hif.graph import KIND_FEATURE, KIND_OUTPUT, Incidences, Nodes

from .graphs import feat, inc, tok_in, tok_out


def columnar() -> Graph:
    """Two features (layers 3 and 5) and three output tokens; three incidences, two methods, two windows."""
    nodes = Nodes(
        kind=np.array([KIND_FEATURE, KIND_FEATURE, KIND_OUTPUT, KIND_OUTPUT, KIND_OUTPUT], np.int8),
        layer=np.array([3, 5, -1, -1, -1]), feature=np.array([7, 2, -1, -1, -1]),
        position=np.array([-1, -1, 0, 1, 2]), activation=np.array([1.5, math.nan, math.nan, math.nan, math.nan]),
        label=["Biology: cells", "L5 feature 2", "The", "", " ó"],
    )
    incidences = Incidences(
        weight=np.array([1.0, 0.5, 0.25]), offsets=np.array([0, 3, 5, 7]), members=np.array([0, 2, 3, 1, 2, 0, 4]),
        method=np.array([0, 1, 1], np.int8), window=np.array([0, 0, 1]), value=np.array([0, 1, 1], np.int8),
        fallback=np.array([-1, 0, 0], np.int8), effect=np.array([-2.0, 1.0, 0.5]), se=np.array([0.1, 0.0, np.nan]),
        samples=np.array([9, 0, 0]), converged=np.array([True, True, False]), methods=("acdc", "saliency"),
        windows=("sent-0", "sent-1"), values=("logit", "activation"),
    )
    return Graph(nodes, incidences)


def test_columns_write_v1_dicts_with_minted_ids():
    nodes, incidences = columnar().to_records()
    assert nodes[0] == {"id": "feat_3_7", "type": "sae_feature", "label": "Biology: cells", "layer": 3,
                        "activation_strength": 1.5, "attributes": {"feature_index": 7}}
    assert nodes[1] == {"id": "feat_5_2", "type": "sae_feature", "label": "L5 feature 2", "layer": 5,
                        "attributes": {"feature_index": 2}}
    assert nodes[4] == {"id": "token_out_2", "type": "output_token", "label": " ó", "position": 2}
    assert incidences[1] == {
        "id": "att_saliency_sent-0_5_2", "node_ids": ["feat_5_2", "token_out_0"], "weight": 0.5,
        "metadata": {"type": "causal_circuit", "method": "saliency", "window": "sent-0"},
        "attributes": {"value": "activation", "samples": 0, "converged": True, "se": 0.0, "effect": 1.0,
                       "fallback_from": "acdc"},
    }
    assert incidences[2]["attributes"]["se"] is None and incidences[0]["node_ids"][1:] == ["token_out_0",
                                                                                          "token_out_1"]


def test_arrays_round_trip_through_safetensors(tmp_path):
    graph = columnar()
    save_file(graph.to_arrays(), str(tmp_path / "g.safetensors"))
    again = Graph.from_arrays(load_file(str(tmp_path / "g.safetensors")))
    assert again.to_records() == graph.to_records()
    assert again.nodes.label == ["Biology: cells", "L5 feature 2", "The", "", " ó"]
    assert (again.incidences.methods, again.incidences.windows) == (("acdc", "saliency"), ("sent-0", "sent-1"))


def test_records_read_back_in_v1_form():
    nodes = [feat("f1", "Bio: a", act=2.0, score=3), tok_in(0), tok_out(0), feat("f1", "Bio: b")]
    incidences = [inc("a", ["f1", "token_out_0", "ghost"], 0.5, extra=1), inc("a", ["f1", "token_in_0"], 0.7)]
    graph = Graph.from_records(nodes, incidences)
    assert (graph.nodes.duplicates, graph.incidences.duplicates) == (1, 1)
    assert graph.nodes.ids == ["f1", "token_in_0", "token_out_0"] and graph.nodes.layer.tolist() == [3, -1, -1]
    assert graph.nodes.activation[0] == 2.0 and graph.nodes.label[0] == "Bio: a"
    out_nodes, out_incidences = graph.to_records()
    assert out_nodes[0]["attributes"] == {"score": 3}  # unknown keys kept, under attributes
    assert out_incidences == [{"id": "a", "node_ids": ["f1", "token_in_0"], "weight": 0.7,
                               "metadata": {"type": "causal_circuit", "method": "acdc", "window": "tok-0"}}]
    with pytest.raises(ValueError, match="only a columnar graph"):
        graph.to_arrays()


@pytest.mark.parametrize("change, message", [
    (lambda g: dataclasses.replace(g.nodes, layer=g.nodes.layer.astype(np.int32)), "column layer"),
    (lambda g: dataclasses.replace(g.incidences, offsets=np.array([0, 3, 5, 6])), "partition"),
    (lambda g: dataclasses.replace(g.incidences, members=np.array([0, 2, 3, 1, 2, 0, 9])), "do not exist"),
    (lambda g: dataclasses.replace(g.incidences, members=np.array([2, 0, 3, 1, 2, 0, 4])), "starts with"),
    (lambda g: dataclasses.replace(g.incidences, window=np.array([0, 0, 2])), "window codes"),
    (lambda g: dataclasses.replace(g.incidences, fallback=np.array([-1, 2, 0], np.int8)), "fallback codes"),
    (lambda g: dataclasses.replace(g.incidences, method=np.array([1, 1, 1], np.int8), window=np.array([0, 0, 0]),
                                   members=np.array([0, 2, 3, 0, 2, 0, 4])), "two incidences"),
    (lambda g: dataclasses.replace(g.nodes, feature=np.array([7, 7, -1, -1, -1]), layer=np.array([3, 3, -1, -1, -1])),
     "two node rows"),
    (lambda g: dataclasses.replace(g.nodes, position=np.array([-1, -1, 0, 1, -1])), "positions"),
    (lambda g: dataclasses.replace(g.nodes, label=["a", None, "b", "c", "d"]), "label"),
])
def test_a_graph_that_breaks_its_contract_is_refused(change, message):
    graph = columnar()
    changed = change(graph)
    parts = (changed, graph.incidences) if isinstance(changed, Nodes) else (graph.nodes, changed)
    with pytest.raises(ValueError, match=message):
        Graph(*parts)


def test_damaged_arrays_are_refused():
    arrays = columnar().to_arrays()
    with pytest.raises(ValueError, match="lack"):
        Graph.from_arrays({k: v for k, v in arrays.items() if k != "incidences.effect"})
    with pytest.raises(ValueError, match="column members"):
        Graph.from_arrays({**arrays, "incidences.members": arrays["incidences.members"].astype(np.int32)})
