import copy
import gzip
from datetime import datetime, timezone
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hif import Graph, HypergraphConfig, build_hif, dumps_canonical, validate_hif
from hif.cli import main

from .graphs import META, feat, inc, tok_in, tok_out

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def doc():
    nodes = [
        feat("feat_3_1", "Biology: cells", act=1.5),
        feat("feat_3_2", "Biology: DNA"),
        feat("feat_4_3", "Biology: RNA", layer=4),
        feat("feat_5_9", "feature 9", layer=5, act=0.2),
        tok_in(0, "The"),
        tok_out(0, " cell"),
    ]
    incs = [
        inc("att_1", ["feat_3_1", "token_out_0"], 0.8),
        inc("att_2", ["feat_3_2", "token_out_0"], 0.3),
        inc("att_3", ["feat_4_3", "token_in_0", "token_out_0"], 0.6),
        inc("att_4", ["feat_5_9", "token_out_0"], 0.4),
    ]
    incs[3]["metadata"]["provenance"] = {"capture_layers": [3, 4, 5], "sae_version": "v1", "model_hash": ""}
    return build_hif(nodes, incs, dict(META), HypergraphConfig())


def test_build_produces_a_valid_v1_document(doc):
    assert doc["network-type"] == "directed"
    assert doc["meta"] == {
        **META,
        "version": "hif-1",
        "limits": {"min_edge_weight": 0.01, "max_nodes": 5000, "max_incidences": 20000, "per_token_incident_cap": 256},
    }
    assert [n["id"] for n in doc["nodes"]] == ["token_in_0", "feat_5_9", "super_biology", "token_out_0"]
    assert validate_hif(doc) == []


def test_build_records_the_limits_actually_applied():
    cfg = HypergraphConfig(max_nodes=10, min_edge_weight=0.5)
    built = build_hif([feat("feat_3_0"), tok_out(0)], [inc("a", ["feat_3_0", "token_out_0"], 0.4)], dict(META), cfg)
    assert built["meta"]["limits"]["max_nodes"] == 10 and built["meta"]["limits"]["min_edge_weight"] == 0.5
    assert built["incidences"] == [] and built["nodes"] == []
    assert validate_hif(built) == []


def test_build_refuses_extra_or_missing_meta():
    with pytest.raises(ValueError, match="supernodes"):
        build_hif([], [], {**META, "supernodes": 3}, HypergraphConfig())
    partial = {k: v for k, v in META.items() if k not in ("granularity", "model_hash")}
    with pytest.raises(ValueError, match="granularity"):
        build_hif([], [], partial, HypergraphConfig())


def test_build_defaults_model_hash_and_created_at_like_the_seed():
    seed_meta = {k: v for k, v in META.items() if k not in ("model_hash", "created_at")}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    meta = build_hif([], [], seed_meta, HypergraphConfig())["meta"]
    created = datetime.fromisoformat(meta["created_at"])
    assert meta["model_hash"] == "" and created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert before <= created <= datetime.now(timezone.utc)
    assert meta["created_at"] == created.isoformat(timespec="seconds")  # ISO 8601, whole seconds
    assert build_hif([], [], {**seed_meta, "created_at": None}, HypergraphConfig())["meta"]["created_at"]
    given = datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    built = build_hif([], [], {**seed_meta, "created_at": given}, HypergraphConfig())
    assert built["meta"]["created_at"] == "2025-05-06T07:08:09+00:00"


def test_build_takes_a_graph_or_the_seed_form_and_refuses_other_arities():
    with pytest.raises(TypeError, match="build_hif"):
        build_hif([], dict(META), HypergraphConfig())
    with pytest.raises(TypeError, match="build_hif"):
        build_hif(Graph.from_records([], []), [], dict(META), HypergraphConfig())


def test_dumps_canonical_is_key_order_free_and_refuses_nan():
    assert dumps_canonical({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    assert dumps_canonical({"a": 1, "b": 2}) == dumps_canonical({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        dumps_canonical({"w": float("nan")})


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["meta"].update(grouping="x"), "$.meta: Additional properties are not allowed"),
        (lambda d: d["meta"].pop("sae_dictionary"), "'sae_dictionary' is a required property"),
        (lambda d: d.update({"network-type": "undirected"}), "$['network-type']"),
        (lambda d: d["nodes"][0].update(type="neuron"), "$.nodes[0].type"),
        (lambda d: d["nodes"][0].pop("position"), "'position' is a required property"),
        (lambda d: d["incidences"][0].update(weight=1.5), "$.incidences[0].weight"),
        (lambda d: d["incidences"][0]["metadata"].update(score=1), "$.incidences[0].metadata"),
        (lambda d: d["incidences"][0].update(node_ids=["token_out_0"]), "$.incidences[0].node_ids"),
        (lambda d: d["incidences"][0].update(node_ids=["token_out_0", "token_out_0"]), "non-unique"),
        (lambda d: d["incidences"][0]["node_ids"].append("feat_404"), "unknown node id 'feat_404'"),
        (lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][1])), "duplicate node id 'feat_5_9'"),
        (lambda d: d["incidences"].append(copy.deepcopy(d["incidences"][1])), "duplicate incidence id"),
        (lambda d: d["meta"]["limits"].update(max_nodes=2), "exceed meta.limits.max_nodes"),
        (lambda d: d["meta"]["limits"].update(max_incidences=1), "exceed meta.limits.max_incidences"),
        (lambda d: d["meta"]["limits"].update(min_edge_weight=0.5), "below meta.limits.min_edge_weight"),
        (lambda d: d["meta"]["limits"].update(per_token_incident_cap=1), "over per_token_incident_cap 1"),
        (lambda d: d["nodes"][2]["attributes"].pop("member_count"), "'member_count' is a required property"),
    ],
)
def test_validate_reports_readable_errors(doc, mutate, expected):
    mutate(doc)
    errors = validate_hif(doc)
    assert errors and any(expected in e for e in errors), errors


def test_validate_rejects_unknown_schema_name(doc):
    with pytest.raises(ValueError):
        validate_hif(doc, "v2")


def test_validate_caps_the_number_of_messages(doc):
    doc["incidences"] = [{"id": i} for i in range(80)]
    errors = validate_hif(doc)
    assert len(errors) == 51 and errors[-1].startswith("... and")


def test_cli_validates_json_and_gzip(doc, tmp_path, capsys):
    plain = tmp_path / "doc.json"
    plain.write_text(json.dumps(doc))
    packed = tmp_path / "doc.json.gz"
    packed.write_bytes(gzip.compress(dumps_canonical(doc)))
    assert main(["validate", str(plain)]) == 0
    assert main(["validate", str(packed), "--schema", "v1"]) == 0
    doc["meta"]["extra"] = 1
    packed.write_bytes(gzip.compress(dumps_canonical(doc)))
    assert main(["validate", str(packed)]) == 1
    assert "Additional properties are not allowed" in capsys.readouterr().err
    plain.write_text("{not json")
    assert main(["validate", str(plain)]) == 1


def test_python_dash_m_entry_point(doc, tmp_path):
    bad = tmp_path / "bad.json"
    doc["nodes"][0]["type"] = "neuron"
    bad.write_text(json.dumps(doc))
    run = subprocess.run(
        [sys.executable, "-m", "hif", "validate", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1 and "$.nodes[0].type" in run.stderr
