"""Code written against the seed system's `hypergraph` module: prune_and_group, then build_hif, seed-style meta."""

import dataclasses
import json

import pytest

import hif.prune
from hif import HypergraphConfig, build_hif, dumps_canonical, prune_and_group, validate_hif

from .graphs import META, feat, inc, tok_out

SEED_META = {k: v for k, v in META.items() if k not in ("created_at", "model_hash")}


@pytest.fixture
def prunes(monkeypatch) -> list[int]:
    """Counts the pruning passes run."""
    calls = []
    real = hif.prune._prune

    def counted(graph, cfg):
        calls.append(1)
        return real(graph, cfg)

    monkeypatch.setattr(hif.prune, "_prune", counted)
    return calls


def _graph() -> tuple[list[dict], list[dict]]:
    nodes = [feat(f"feat_3_{i}", f"Bio: {i}", act=float(i)) for i in range(4)] + [tok_out(0), tok_out(1)]
    incidences = [inc(f"att_{i}", [f"feat_3_{i}", f"token_out_{i % 2}"], 0.2 * (i + 1)) for i in range(4)]
    return nodes, incidences


def test_build_after_prune_does_not_prune_again(prunes):
    nodes, incidences = _graph()
    cfg = HypergraphConfig()
    pruned_nodes, pruned_incidences, summary = prune_and_group(nodes, incidences, cfg)
    doc = build_hif(pruned_nodes, pruned_incidences, dict(SEED_META), cfg)
    assert len(prunes) == 1 and summary["supernodes_formed"] == 1
    assert validate_hif(doc) == [] and type(doc["nodes"]) is list and type(doc["incidences"]) is list
    direct = build_hif(nodes, incidences, dict(META), cfg)
    assert dumps_canonical({**doc, "meta": direct["meta"]}) == dumps_canonical(direct)
    json.dumps([pruned_nodes, pruned_incidences])  # still plain JSON lists to the caller


def test_a_changed_list_or_config_is_pruned_again(prunes):
    nodes, incidences = _graph()
    cfg = HypergraphConfig()
    pruned_nodes, pruned_incidences, _ = prune_and_group(nodes, incidences, cfg)
    build_hif(pruned_nodes, pruned_incidences, dict(SEED_META), dataclasses.replace(cfg, max_incidences=1))
    assert len(prunes) == 2
    pruned_incidences.append(inc("att_new", ["super_bio", "token_out_1"], 0.9, window="tok-9"))
    doc = build_hif(pruned_nodes, pruned_incidences, dict(SEED_META), cfg)
    assert len(prunes) == 3 and "att_new" in {i["id"] for i in doc["incidences"]}
    other_nodes, other_incidences, _ = prune_and_group(*_graph(), cfg)
    build_hif(pruned_nodes[:0] + other_nodes, other_incidences, dict(SEED_META), cfg)  # a new list: no stamp
    assert len(prunes) == 5
