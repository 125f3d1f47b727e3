"""The concepts view: concepts and the emitted token as nodes, one hyperedge per kept group, valid HIF standard."""
from __future__ import annotations

import hif

RECORD = {
    "concepts": [{"id": "c0", "text": "New York", "label": "PROPER_NOUN", "start": 6, "end": 14, "tokens": [2, 3]},
                 {"id": "c1", "text": "Paris", "label": "PROPER_NOUN", "start": 19, "end": 24, "tokens": [5]},
                 {"id": "c2", "text": "5 kg", "label": "QUANTITY", "start": 30, "end": 34, "tokens": [7, 8]}],
    "target": {"id": 42, "text": " city", "position": 10},
    "p0": 0.9, "drops": {"c0": 0.0, "c1": 0.0, "c2": 0.3},
    "edges": [{"members": ["c0", "c1"], "synergy": 0.7, "weight": 0.777778, "p_group": 0.2,
               "member_drops": [0.0, 0.0]}],
    "calls": 20, "cache_hits": 0, "rounds": 6, "stopped": "low_gain",
}


def test_a_group_is_a_hyperedge_from_its_members_to_the_emitted_token() -> None:
    doc = hif.concepts_document(RECORD, {"trace_id": "t"})
    assert hif.validate_hif(doc, "hif-standard") == []
    nodes = {n["node"]: n["attrs"] for n in doc["nodes"]}
    assert nodes["concept:c2"] == {"type": "concept", "label": "5 kg", "concept_label": "QUANTITY", "start": 30,
                                   "end": 34, "tokens": [7, 8], "drop": 0.3}
    assert nodes["target"]["type"] == "output_token" and nodes["target"]["p0"] == 0.9
    [edge] = doc["edges"]
    assert edge["edge"] == "group:c0+c1" and edge["attrs"]["synergy"] == 0.7
    assert sorted((i["node"], i["direction"]) for i in doc["incidences"]) == \
        [("concept:c0", "tail"), ("concept:c1", "tail"), ("target", "head")]
    assert doc["metadata"]["search"] == {"calls": 20, "cache_hits": 0, "rounds": 6, "stopped": "low_gain"}
    assert doc["metadata"]["view"] == "concepts" and doc["metadata"]["trace_id"] == "t"


def test_a_trace_without_concepts_gives_an_empty_document_that_says_why() -> None:
    doc = hif.concepts_document({"skipped": "the completion has no prompt"}, {})
    assert hif.validate_hif(doc, "hif-standard") == []
    assert (doc["nodes"], doc["edges"], doc["metadata"]["skipped"]) == ([], [], "the completion has no prompt")
    assert hif.concepts_document({}, {})["metadata"]["skipped"] == "not computed"


def test_the_standard_export_links_each_concept_to_the_features_firing_on_its_tokens() -> None:
    from tests.unit.hif.graphs import META, feat, inc, tok_in, tok_out

    doc = {"meta": META, "nodes": [feat("f1"), feat("f2"), feat("f3"), tok_in(2), tok_in(5), tok_out(9)],
           "incidences": [inc("a", ["f1", "token_in_2", "token_out_9"], 0.5),
                          inc("b", ["f2", "token_in_5", "token_out_9"], 0.4),
                          inc("c", ["f3", "token_out_9"], 0.3)]}
    standard = hif.with_concept_nodes(hif.to_hif_standard(doc), RECORD)
    assert hif.validate_hif(standard, "hif-standard") == []
    linked = {}
    for record in standard["incidences"]:
        if record["edge"].startswith("fires:"):
            linked.setdefault(record["edge"], []).append((record["node"], record["direction"]))
    assert linked == {"fires:c0": [("concept:c0", "tail"), ("f1", "head")],  # tokens 2, 3
                      "fires:c1": [("concept:c1", "tail"), ("f2", "head")]}  # token 5; c2's tokens have no features
    assert {n["node"] for n in standard["nodes"]} >= {"concept:c0", "concept:c1", "concept:c2"}
    assert hif.with_concept_nodes(hif.to_hif_standard(doc), {"skipped": "no prompt"}) == hif.to_hif_standard(doc)
