"""Property tests: the pruning invariants of issue 3 on random small graphs, agreement with the naive reference
implementation in reference.py, and one output whichever form (columns, dicts, arrays) a graph comes in."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hif import Graph, HypergraphConfig, build_hif, dumps_canonical, prune_and_group
from hif.graph import KIND_FEATURE, KIND_INPUT, KIND_OUTPUT, Incidences, Nodes

from .graphs import META
from .reference import reference_prune

LABELS = ["Bio: cells", "Bio: dna", "Bio:rna", "bio : x", "Law: a", "Law: b", "Ω: z", " : empty", "feature 7", "x:y"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw, allow_duplicates: bool = False):
    nodes = []
    for i in range(draw(st.integers(0, 9))):
        layer = draw(st.integers(0, 3))
        node = {"id": f"feat_{layer}_{i}", "type": draw(st.sampled_from(["sae_feature"] * 4 + ["mystery"])),
                "label": draw(st.sampled_from(LABELS)), "layer": layer}
        strength = draw(st.none() | st.sampled_from([0.0, 1.0, 2.5]) | st.floats(0, 10))
        if strength is not None:
            node["activation_strength"] = strength
        nodes.append(node)
    for kind, prefix in (("input_token", "token_in"), ("output_token", "token_out")):
        nodes += [{"id": f"{prefix}_{i}", "type": kind, "label": f"t{i}", "position": i}
                  for i in range(draw(st.integers(0, 3)))]
    pool = [n["id"] for n in nodes] or ["ghost"]
    incidences = []
    for i in range(draw(st.integers(0, 24))):
        weight = draw(st.sampled_from([0.5, 0.5, 1.0, 0.01, 0.3, math.nan]) | st.floats(-0.5, 1.5))
        node_ids = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
        if draw(st.integers(0, 9)) == 0:
            node_ids.append("ghost")
        incidences.append({
            "id": f"att_{draw(st.sampled_from('abc'))}{i}",
            "node_ids": node_ids,
            "weight": weight,
            "metadata": {"type": "causal_circuit", "method": draw(st.sampled_from(["acdc", "acdc", "acdc", "shapley"])),
                         "window": draw(st.sampled_from(["tok-0", "tok-1"]))},
        })
    if allow_duplicates and incidences and draw(st.booleans()):
        twin = dict(incidences[draw(st.integers(0, len(incidences) - 1))])
        twin["weight"] = draw(st.floats(0, 1))
        incidences.append(twin)
    if allow_duplicates and nodes and draw(st.booleans()):
        nodes.append({**nodes[draw(st.integers(0, len(nodes) - 1))], "label": draw(st.sampled_from(LABELS))})
    return nodes, incidences, draw(configs())


def configs() -> st.SearchStrategy[HypergraphConfig]:
    return st.builds(
        HypergraphConfig,
        min_edge_weight=st.sampled_from([0.0, 0.01, 0.3]),
        per_token_incident_cap=st.integers(0, 5),
        max_nodes=st.integers(0, 12),
        max_incidences=st.integers(0, 20),
        grouping=st.sampled_from(["supernode", "none"]),
        supernode_min_group=st.integers(1, 3),
    )


METHODS, WINDOWS, VALUES = ("acdc", "saliency", "shapley"), ("tok-0", "tok-1", "sent-0"), ("logit", "activation")


@st.composite
def columnar_graphs(draw) -> Graph:
    """Random graphs in the form attribution produces: features and tokens by number, incidences led by a feature."""
    keys = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30)), unique=True, max_size=9))
    n_in, n_out = draw(st.integers(0, 2)), draw(st.integers(0, 4))
    n_feat = len(keys)
    n = n_feat + n_in + n_out
    activation = [draw(st.just(math.nan) | st.sampled_from([0.0, 1.0, 2.5]) | st.floats(0, 10)) for _ in range(n)]
    nodes = Nodes(
        kind=np.array([KIND_FEATURE] * n_feat + [KIND_INPUT] * n_in + [KIND_OUTPUT] * n_out, dtype=np.int8),
        layer=np.array([layer for layer, _ in keys] + [-1] * (n_in + n_out), dtype=np.int64),
        feature=np.array([index for _, index in keys] + [-1] * (n_in + n_out), dtype=np.int64),
        position=np.array([-1] * n_feat + list(range(n_in)) + list(range(n_out)), dtype=np.int64),
        activation=np.array(activation, dtype=np.float64),
        label=[draw(st.sampled_from(LABELS)) for _ in range(n)],
    )
    combos = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, max(n_feat - 1, 0))),
                           unique=True, max_size=24)) if n_feat else []
    members, offsets = [], [0]
    for _, _, lead in combos:
        others = draw(st.lists(st.sampled_from(range(n)), unique=True, max_size=3))
        members += [lead] + [j for j in others if j != lead]
        offsets.append(len(members))
    m = len(combos)
    weight = [draw(st.sampled_from([0.5, 0.5, 1.0, 0.01, 0.3, math.nan]) | st.floats(-0.5, 1.5)) for _ in range(m)]
    incidences = Incidences(
        weight=np.array(weight, dtype=np.float64), offsets=np.array(offsets, dtype=np.int64),
        members=np.array(members, dtype=np.int64),
        method=np.array([c[0] for c in combos], dtype=np.int8), window=np.array([c[1] for c in combos], dtype=np.int64),
        value=np.array(draw(st.lists(st.integers(0, 1), min_size=m, max_size=m)), dtype=np.int8),
        fallback=np.array(draw(st.lists(st.integers(-1, 2), min_size=m, max_size=m)), dtype=np.int8),
        effect=np.array(draw(st.lists(st.floats(-3, 3), min_size=m, max_size=m)), dtype=np.float64),
        se=np.array(draw(st.lists(st.just(math.nan) | st.floats(0, 1), min_size=m, max_size=m)), dtype=np.float64),
        samples=np.array(draw(st.lists(st.integers(0, 512), min_size=m, max_size=m)), dtype=np.int64),
        converged=np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)), dtype=bool),
        methods=METHODS, windows=WINDOWS, values=VALUES,
    )
    return Graph(nodes, incidences)


@SETTINGS
@given(columnar_graphs(), configs())
def test_a_graph_prunes_and_builds_the_same_as_columns_dicts_or_arrays(graph, cfg):
    nodes, incidences = graph.to_records()
    from_columns = prune_and_group(graph, cfg)
    assert dumps_canonical(prune_and_group(nodes, incidences, cfg)) == dumps_canonical(from_columns)
    from_arrays = Graph.from_arrays(graph.to_arrays())
    assert dumps_canonical(prune_and_group(from_arrays, cfg)) == dumps_canonical(from_columns)
    assert dumps_canonical(build_hif(graph, dict(META), cfg)) == dumps_canonical(
        build_hif(nodes, incidences, dict(META), cfg))
    expected_nodes, expected_incs = reference_prune(nodes, incidences, cfg)
    assert [n["id"] for n in from_columns[0]] == expected_nodes
    assert [(i["id"], i["node_ids"], i["weight"]) for i in from_columns[1]] == expected_incs


@SETTINGS
@given(graphs(allow_duplicates=True))
def test_building_what_prune_and_group_returned_gives_the_same_document(graph):
    nodes, incidences, cfg = graph
    pruned_nodes, pruned_incidences, _ = prune_and_group(nodes, incidences, cfg)
    assert dumps_canonical(build_hif(pruned_nodes, pruned_incidences, dict(META), cfg)) == dumps_canonical(
        build_hif(nodes, incidences, dict(META), cfg))


@SETTINGS
@given(graphs())
def test_matches_the_naive_reference(graph):
    nodes, incidences, cfg = graph
    out_nodes, out_incs, _ = prune_and_group(nodes, incidences, cfg)
    expected_nodes, expected_incs = reference_prune(nodes, incidences, cfg)
    assert [n["id"] for n in out_nodes] == expected_nodes
    assert [(i["id"], i["node_ids"], i["weight"]) for i in out_incs] == expected_incs


@SETTINGS
@given(graphs(allow_duplicates=True))
def test_no_dangling_ids_and_every_cap_respected(graph):
    nodes, incidences, cfg = graph
    out_nodes, out_incs, _ = prune_and_group(nodes, incidences, cfg)
    node_ids = [n["id"] for n in out_nodes]
    assert len(set(node_ids)) == len(node_ids)
    assert len({i["id"] for i in out_incs}) == len(out_incs)
    referenced = [x for inc in out_incs for x in inc["node_ids"]]
    assert set(referenced) == set(node_ids)  # nothing dangling, nothing orphaned
    assert len(out_nodes) <= cfg.max_nodes and len(out_incs) <= cfg.max_incidences
    types = {n["id"]: n["type"] for n in out_nodes}
    per_token = Counter(x for x in referenced if types[x] in ("input_token", "output_token"))
    assert all(count <= cfg.per_token_incident_cap for count in per_token.values())
    for inc in out_incs:
        assert cfg.min_edge_weight <= inc["weight"] <= 1.0
        assert len(set(inc["node_ids"])) == len(inc["node_ids"]) >= 2
        is_token = [types[x] in ("input_token", "output_token") for x in inc["node_ids"]]
        assert is_token == sorted(is_token)  # features first, tokens last
    if cfg.grouping == "supernode":
        prefixes = Counter(
            n["label"].split(":", 1)[0].strip() for n in out_nodes if n["type"] == "sae_feature" and ":" in n["label"]
        )
        prefixes.pop("", None)
        assert all(count < cfg.supernode_min_group for count in prefixes.values())


@SETTINGS
@given(graphs(allow_duplicates=True))
def test_pruning_is_idempotent(graph):
    nodes, incidences, cfg = graph
    once_nodes, once_incs, _ = prune_and_group(nodes, incidences, cfg)
    twice_nodes, twice_incs, summary = prune_and_group(once_nodes, once_incs, cfg)
    assert dumps_canonical([twice_nodes, twice_incs]) == dumps_canonical([once_nodes, once_incs])
    assert not any(summary["incidences_dropped"].values()) and summary["supernodes_formed"] == 0


@SETTINGS
@given(graphs(allow_duplicates=True), st.randoms(use_true_random=False))
def test_any_input_order_gives_byte_identical_output(graph, rnd: random.Random):
    nodes, incidences, cfg = graph
    shuffled_nodes = rnd.sample(nodes, len(nodes))
    shuffled_incs = [{**inc, "node_ids": rnd.sample(inc["node_ids"], len(inc["node_ids"]))}
                     for inc in rnd.sample(incidences, len(incidences))]
    first = prune_and_group(nodes, incidences, cfg)[:2]
    second = prune_and_group(shuffled_nodes, shuffled_incs, cfg)[:2]
    assert dumps_canonical(second) == dumps_canonical(first)
