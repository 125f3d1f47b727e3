"""One test per pruning rule of issue 3, on graphs small enough to check by hand."""

from hif import HypergraphConfig, prune_and_group

from .graphs import feat, inc, tok_in, tok_out

NO_GROUPING = HypergraphConfig(grouping="none")


def ids(items):
    return [x["id"] for x in items]


def by_id(items):
    return {x["id"]: x for x in items}


def test_threshold_clamps_then_drops_below_min():
    nodes = [feat(f"feat_3_{i}") for i in range(5)] + [tok_out(0)]
    incs = [
        inc("a_over", ["feat_3_0", "token_out_0"], 1.7),
        inc("b_exact", ["feat_3_1", "token_out_0"], 0.01),
        inc("c_below", ["feat_3_2", "token_out_0"], 0.00999),
        inc("d_negative", ["feat_3_3", "token_out_0"], -0.5),
        inc("e_nan", ["feat_3_4", "token_out_0"], float("nan")),
    ]
    _, out, summary = prune_and_group(nodes, incs, NO_GROUPING)
    assert ids(out) == ["a_over", "b_exact"]
    assert by_id(out)["a_over"]["weight"] == 1.0
    dropped = summary["incidences_dropped"]
    assert dropped["below_min_weight"] == 2 and dropped["nan_weight"] == 1


def test_min_zero_keeps_clamped_negative_weights_at_zero():
    nodes = [feat("feat_3_0"), tok_out(0)]
    cfg = HypergraphConfig(min_edge_weight=0.0)
    _, out, _ = prune_and_group(nodes, [inc("a", ["feat_3_0", "token_out_0"], -3.0)], cfg)
    assert out[0]["weight"] == 0.0


def test_per_token_cap_keeps_top_n_with_ties_by_id():
    nodes = [feat(f"feat_3_{i}") for i in range(5)] + [tok_out(0), tok_out(1)]
    incs = [
        inc("att_c", ["feat_3_0", "token_out_0"], 0.5),
        inc("att_a", ["feat_3_1", "token_out_0"], 0.5),
        inc("att_b", ["feat_3_2", "token_out_0"], 0.5),
        inc("att_z", ["feat_3_3", "token_out_0"], 0.9),
        inc("att_q", ["feat_3_4", "token_out_1"], 0.1),
    ]
    cfg = HypergraphConfig(grouping="none", per_token_incident_cap=3)
    _, out, summary = prune_and_group(nodes, incs, cfg)
    # token_out_0: 0.9 first, then the three 0.5 ties in id order a, b, c -> c is the 4th and goes.
    assert ids(out) == ["att_z", "att_a", "att_b", "att_q"]
    assert summary["incidences_dropped"]["per_token_cap"] == 1


def test_per_token_cap_applies_to_input_tokens_and_every_token_of_an_incidence():
    nodes = [feat("feat_3_0"), feat("feat_3_1"), tok_in(0), tok_out(0)]
    incs = [
        inc("att_1", ["feat_3_0", "token_in_0", "token_out_0"], 0.4),
        inc("att_2", ["feat_3_1", "token_in_0"], 0.8),
    ]
    cfg = HypergraphConfig(grouping="none", per_token_incident_cap=1)
    _, out, _ = prune_and_group(nodes, incs, cfg)
    # att_1 is first at token_out_0 but second at token_in_0, so it goes.
    assert ids(out) == ["att_2"]


def test_supernode_needs_min_group_and_uses_label_prefix():
    nodes = [
        feat("feat_3_1", "Biology: cells", act=1.0),
        feat("feat_3_2", "Biology: DNA", act=3.0),
        feat("feat_4_3", "Biology : RNA", layer=4),
        feat("feat_3_4", "Law: courts"),
        feat("feat_3_5", "Law: judges"),
        feat("feat_3_6", "feature 6"),
        tok_out(0),
    ]
    incs = [inc(f"att_{i}", [f"feat_{n['id'][5:]}", "token_out_0"], 0.1 * i) for i, n in enumerate(nodes[:-1], 1)]
    out_nodes, out, summary = prune_and_group(nodes, incs, HypergraphConfig())
    nodes_by_id = by_id(out_nodes)
    assert set(nodes_by_id) == {"super_biology", "feat_3_4", "feat_3_5", "feat_3_6", "token_out_0"}
    sn = nodes_by_id["super_biology"]
    assert sn["type"] == "circuit_supernode" and sn["label"] == "Biology (cluster)"
    assert sn["attributes"] == {"member_count": 3, "members": ["feat_3_1", "feat_3_2", "feat_4_3"]}
    assert sn["activation_strength"] == 3.0
    assert summary["supernodes_formed"] == 1 and summary["nodes_dropped"]["grouped"] == 3


def test_min_group_counts_only_features_that_survived_threshold():
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(3)] + [tok_out(0)]
    incs = [inc(f"att_{i}", [f"feat_3_{i}", "token_out_0"], w) for i, w in enumerate([0.5, 0.5, 0.001])]
    out_nodes, _, summary = prune_and_group(nodes, incs, HypergraphConfig())
    assert summary["supernodes_formed"] == 0
    assert ids(out_nodes) == ["feat_3_0", "feat_3_1", "token_out_0"]


def test_merge_keeps_max_weight_and_its_id_metadata_and_attributes():
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(3)] + [tok_out(0), tok_out(1)]
    incs = [
        inc("att_b", ["feat_3_0", "token_out_0"], 0.3, attributes={"samples": 1}),
        inc("att_a", ["feat_3_1", "token_out_0"], 0.6, attributes={"samples": 2}),
        inc("att_c", ["feat_3_2", "token_out_0"], 0.6, attributes={"samples": 3}),
        inc("att_other_window", ["feat_3_2", "token_out_0"], 0.2, window="tok-1"),
        inc("att_d", ["feat_3_2", "token_out_1"], 0.4),
    ]
    _, out, summary = prune_and_group(nodes, incs, HypergraphConfig())
    assert [(x["id"], x["node_ids"], x["weight"]) for x in out] == [
        ("att_a", ["super_bio", "token_out_0"], 0.6),  # tie at 0.6 with att_c: smaller id wins
        ("att_d", ["super_bio", "token_out_1"], 0.4),
        ("att_other_window", ["super_bio", "token_out_0"], 0.2),  # another window is another incidence
    ]
    assert out[0]["attributes"] == {"samples": 2}
    assert summary["incidences_dropped"]["merged"] == 2


def test_incidence_cap_counts_only_survivors_of_merges():
    # The six heaviest incidences all merge into one (same supernode, token and window), so the cap of 3 must
    # reach past them to the lighter, distinct ones: the merge search has to look deeper than the cap.
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(6)] + [tok_out(0), tok_out(1), tok_out(2)]
    incs = [inc(f"att_m{i}", [f"feat_3_{i}", "token_out_0"], 0.9 - i / 100) for i in range(6)]
    incs += [inc(f"att_t{j}", ["feat_3_0", f"token_out_{j}"], 0.5 - j / 10) for j in (1, 2)]
    incs += [inc("att_w", ["feat_3_1", "token_out_0"], 0.2, window="tok-9")]
    _, out, summary = prune_and_group(nodes, incs, HypergraphConfig(max_incidences=3))
    assert [x["id"] for x in out] == ["att_m0", "att_t1", "att_t2"]
    dropped = summary["incidences_dropped"]
    assert dropped["merged"] == 5 and dropped["max_incidences"] == 1


def test_feature_only_incidence_collapsing_into_one_supernode_is_dropped():
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(3)] + [tok_out(0)]
    incs = [
        inc("att_ff", ["feat_3_0", "feat_3_1"], 0.9),
        inc("att_t", ["feat_3_2", "token_out_0"], 0.5),
    ]
    _, out, summary = prune_and_group(nodes, incs, HypergraphConfig())
    assert ids(out) == ["att_t"]
    assert summary["incidences_dropped"]["collapsed_by_grouping"] == 1


def test_repeated_and_single_node_incidences():
    nodes = [feat("feat_3_0"), tok_out(0)]
    incs = [
        inc("att_dup", ["feat_3_0", "feat_3_0", "token_out_0", "feat_3_0"], 0.5),
        inc("att_self", ["feat_3_0", "feat_3_0"], 0.9),
        inc("att_ghost", ["feat_3_0", "nonexistent"], 0.9),
    ]
    _, out, summary = prune_and_group(nodes, incs, NO_GROUPING)
    assert [(x["id"], x["node_ids"]) for x in out] == [("att_dup", ["feat_3_0", "token_out_0"])]
    assert summary["incidences_dropped"]["fewer_than_two_nodes"] == 1
    assert summary["incidences_dropped"]["unknown_node"] == 1


def test_global_incidence_cap_by_weight_then_id():
    nodes = [feat(f"feat_3_{i}") for i in range(4)] + [tok_out(0)]
    weights = {"att_d": 0.2, "att_c": 0.5, "att_b": 0.5, "att_a": 0.9}
    incs = [inc(iid, [f"feat_3_{i}", "token_out_0"], w) for i, (iid, w) in enumerate(weights.items())]
    out_nodes, out, _ = prune_and_group(nodes, incs, HypergraphConfig(grouping="none", max_incidences=2))
    assert ids(out) == ["att_a", "att_b"]
    assert ids(out_nodes) == ["feat_3_2", "feat_3_3", "token_out_0"]


def test_node_cap_keeps_tokens_first_then_supernodes_then_strongest_edge():
    # feat_3_0 has a huge activation but a weak edge; feat_3_1 carries the graph's strongest edge.
    nodes = [
        feat("feat_3_0", act=100.0),
        feat("feat_3_1", act=0.1),
        feat("feat_3_2", act=5.0),
        feat("feat_3_3", "Bio: a"),
        feat("feat_3_4", "Bio: b"),
        feat("feat_3_5", "Bio: c"),
        tok_out(0),
        tok_in(0),
    ]
    incs = [
        inc("att_0", ["feat_3_0", "token_out_0"], 0.2),
        inc("att_1", ["feat_3_1", "token_out_0"], 0.95),
        inc("att_2", ["feat_3_2", "token_out_0"], 0.2),
        inc("att_3", ["feat_3_3", "token_out_0"], 0.05),
        inc("att_4", ["feat_3_4", "token_in_0"], 0.05),
        inc("att_5", ["feat_3_5", "token_in_0"], 0.06),
    ]
    out_nodes, out, summary = prune_and_group(nodes, incs, HypergraphConfig(max_nodes=5))
    # tokens (2) + supernode (1) + two features: feat_3_1 for its 0.95 edge (ranking by activation alone would
    # drop it), then feat_3_0 over feat_3_2 — both have a 0.2 edge, so activation breaks the tie.
    assert ids(out_nodes) == ["token_in_0", "feat_3_0", "feat_3_1", "super_bio", "token_out_0"]
    assert ids(out) == ["att_1", "att_0", "att_5", "att_3"]
    assert summary["nodes_dropped"]["max_nodes"] == 1


def test_node_cap_cascades_removing_incidences_and_orphaned_tokens():
    nodes = [feat("feat_3_0"), feat("feat_3_1"), tok_out(0), tok_out(1), tok_out(2)]
    incs = [
        inc("att_0", ["feat_3_0", "token_out_0"], 0.9),
        inc("att_1", ["feat_3_1", "token_out_1", "token_out_2"], 0.5),
    ]
    out_nodes, out, summary = prune_and_group(nodes, incs, HypergraphConfig(grouping="none", max_nodes=4))
    # Tokens take 3 places, feat_3_0 (strongest edge) the 4th; att_1 loses feat_3_1, then token_out_1/2 are orphans.
    assert ids(out_nodes) == ["feat_3_0", "token_out_0"]
    assert ids(out) == ["att_0"]
    assert summary["incidences_dropped"]["lost_node"] == 1
    assert summary["nodes_dropped"]["orphaned"] == 2


def test_node_ids_features_first_then_input_then_output_tokens():
    nodes = [feat("feat_9_1"), feat("feat_1_2"), tok_in(3), tok_out(0)]
    incs = [inc("att", ["token_out_0", "token_in_3", "feat_9_1", "feat_1_2"], 0.5)]
    _, out, _ = prune_and_group(nodes, incs, NO_GROUPING)
    assert out[0]["node_ids"] == ["feat_1_2", "feat_9_1", "token_in_3", "token_out_0"]


def test_unknown_type_is_a_feature_and_extra_keys_move_to_attributes():
    nodes = [
        {"id": "x_1", "type": "mystery", "label": "Bio: a", "layer": 2, "colour": "red"},
        feat("feat_3_0", "Bio: b"),
        feat("feat_3_1", "Bio: c"),
        tok_out(0),
    ]
    incs = [
        inc("att_0", ["x_1", "token_out_0"], 0.5, score=3),
        inc("att_1", ["feat_3_0", "token_out_0"], 0.4, window="tok-1"),
        inc("att_2", ["feat_3_1", "token_out_0"], 0.3, window="tok-2"),
    ]
    incs[0]["metadata"]["value"] = "logit"
    incs[0]["attributes"] = {"samples": 4}
    out_nodes, out, _ = prune_and_group(nodes, incs, HypergraphConfig())
    # the unknown-type node groups like any feature
    assert by_id(out_nodes)["super_bio"]["attributes"]["members"] == ["feat_3_0", "feat_3_1", "x_1"]
    first = by_id(out)["att_0"]
    assert first["metadata"] == {"type": "causal_circuit", "method": "acdc", "window": "tok-0"}
    assert first["attributes"] == {"value": "logit", "score": 3, "samples": 4}

    out_nodes, _, _ = prune_and_group(nodes, incs, NO_GROUPING)
    assert by_id(out_nodes)["x_1"] == {
        "id": "x_1", "type": "sae_feature", "label": "Bio: a", "layer": 2, "attributes": {"colour": "red"}
    }


def test_inputs_are_not_mutated():
    import copy

    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(3)] + [tok_out(0)]
    incs = [inc(f"att_{i}", ["token_out_0", f"feat_3_{i}"], 2.0, attributes={"k": i}) for i in range(3)]
    incs[0]["metadata"]["extra"] = 1
    before = copy.deepcopy((nodes, incs))
    prune_and_group(nodes, incs, HypergraphConfig())
    assert (nodes, incs) == before


def test_empty_input():
    assert prune_and_group([], [], HypergraphConfig())[:2] == ([], [])


def test_duplicate_ids_resolve_the_same_way_in_any_order():
    nodes = [feat("feat_3_0", "first"), feat("feat_3_0", "second"), tok_out(0)]
    incs = [inc("att_x", ["feat_3_0", "token_out_0"], 0.2), inc("att_x", ["feat_3_0", "token_out_0"], 0.7)]
    for n_order, i_order in ((nodes, incs), (nodes[::-1], incs[::-1])):
        out_nodes, out, summary = prune_and_group(n_order, i_order, NO_GROUPING)
        assert [(x["id"], x["weight"]) for x in out] == [("att_x", 0.7)]  # the heavier twin wins
        assert by_id(out_nodes)["feat_3_0"]["label"] == "first"  # smallest content wins
        assert summary["incidences_dropped"]["duplicate_id"] == 1 and summary["nodes_dropped"]["duplicate_id"] == 1


def test_only_finite_real_activations_rank_features():
    # Under a one-feature node cap with equal edges, activation decides; a bool, a numeric string, NaN and
    # infinity are not activations and rank below any real number, whether or not all values are plain floats.
    for odd in (True, "9", float("nan"), float("inf"), 10**400):
        nodes = [feat("feat_3_a", act=odd), feat("feat_3_b", act=0.5), tok_out(0)]
        incs = [inc("att_a", ["feat_3_a", "token_out_0"], 0.4), inc("att_b", ["feat_3_b", "token_out_0"], 0.4)]
        out_nodes, _, _ = prune_and_group(nodes, incs, HypergraphConfig(grouping="none", max_nodes=2))
        assert ids(out_nodes) == ["feat_3_b", "token_out_0"], odd


def test_unhashable_metadata_still_merges_by_value():
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}") for i in range(3)] + [tok_out(0)]
    incs = [inc(f"att_{i}", [f"feat_3_{i}", "token_out_0"], 0.5 + i / 10) for i in range(3)]
    incs[0]["metadata"]["window"] = incs[1]["metadata"]["window"] = ["tok", 0]
    incs[2]["metadata"]["window"] = ["tok", 1]
    _, out, summary = prune_and_group(nodes, incs, HypergraphConfig())
    assert ids(out) == ["att_2", "att_1"] and summary["incidences_dropped"]["merged"] == 1
