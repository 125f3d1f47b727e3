import copy

from hif import HypergraphConfig, build_hif, to_neuronpedia_graph, validate_hif

from .graphs import META, feat, inc, tok_out


def test_export_validates_and_maps_nodes(small_doc):
    graph = to_neuronpedia_graph(small_doc, slug="demo-1", prompt="The cat")
    assert validate_hif(graph, "neuronpedia") == []
    meta = graph["metadata"]
    assert (meta["slug"], meta["scan"], meta["prompt"]) == ("demo-1", "gpt2", "The cat")
    assert meta["prompt_tokens"] == ["The", " cat", " sat", " down"]
    assert meta["pruning_settings"]["max_nodes"] == 5000
    nodes = {n["node_id"]: n for n in graph["nodes"]}
    # feat_5_9 links most strongly (0.4) to token_out_0, which sits after the 2 prompt tokens: ctx 2.
    assert nodes["5_9_2"]["clerp"] == "feature 9" and nodes["5_9_2"]["feature"] == 9
    assert nodes["5_9_2"]["activation"] == 0.2 and nodes["5_9_2"]["layer"] == "5"
    assert nodes["E_1_1"]["feature_type"] == "embedding" and nodes["E_1_1"]["ctx_idx"] == 1
    # logits sit one layer above the highest feature layer (5)
    assert nodes["6_0_2"]["feature_type"] == "logit" and nodes["6_1_3"]["clerp"] == 'Output " down"'
    assert nodes["super_biology"]["clerp"] == "Biology (cluster)" and nodes["super_biology"]["layer"] == "3"
    assert graph["qParams"]["supernodes"] == [["Biology (cluster)", "super_biology"]]


def test_links_follow_hyperedges_from_causes_to_effects(small_doc):
    graph = to_neuronpedia_graph(small_doc, slug="s")
    links = {(link["source"], link["target"]): link["weight"] for link in graph["links"]}
    assert links == {
        ("super_biology", "6_0_2"): 0.8,
        ("super_biology", "6_1_3"): 0.6,  # att_3 (0.6) and att_2 (0.3) both give this pair; the max is kept
        ("E_1_1", "6_1_3"): 0.6,
        ("5_9_2", "6_0_2"): 0.4,
        ("E_0_0", "2_7_0"): 0.2,
        ("2_7_0", "5_9_2"): 0.1,
    }


def test_given_prompt_tokens_shift_output_positions(small_doc):
    graph = to_neuronpedia_graph(small_doc, slug="s", prompt_tokens=["<bos>", "The", " cat"])
    assert graph["metadata"]["prompt_tokens"] == ["<bos>", "The", " cat", " sat", " down"]
    assert {n["node_id"] for n in graph["nodes"] if n["feature_type"] == "logit"} == {"6_0_3", "6_1_4"}
    assert validate_hif(graph, "neuronpedia") == []


def test_neuronpedia_validator_catches_dangling_links(small_doc):
    graph = copy.deepcopy(to_neuronpedia_graph(small_doc, slug="s"))
    graph["links"][0]["target"] = "nowhere"
    del graph["metadata"]["scan"]
    assert any("'scan' is a required property" in e for e in validate_hif(graph, "neuronpedia"))
    graph["metadata"]["scan"] = "gpt2"
    assert validate_hif(graph, "neuronpedia") == ["$.links[0].target: unknown node_id 'nowhere'"]


def test_a_feature_to_feature_incidence_after_a_token_one_is_anchored_by_tokens_only():
    # feat_3_1 gets its context from att_1; att_2 joins it to feat_4_2 and no token: the export used to take
    # feat_3_1 for a token there and fail on its missing position.
    nodes = [feat("feat_3_1", "a"), feat("feat_4_2", "b", layer=4), tok_out(0, " x")]
    incs = [inc("att_1", ["feat_3_1", "token_out_0"], 0.9), inc("att_2", ["feat_3_1", "feat_4_2"], 0.5)]
    doc = build_hif(nodes, incs, dict(META), HypergraphConfig())
    graph = to_neuronpedia_graph(doc, slug="s")
    assert validate_hif(graph, "neuronpedia") == []
    assert {(link["source"], link["target"]) for link in graph["links"]} == {("3_1_0", "5_0_0"), ("3_1_0", "4_2_0")}
