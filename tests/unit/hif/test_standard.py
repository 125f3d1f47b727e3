import json
import types

import pytest

from hif import from_hif_standard, to_hif_standard, validate_hif
from hif.validate import load_schema


def test_export_shape_and_directions(small_doc):
    std = to_hif_standard(small_doc)
    assert validate_hif(std, "hif-standard") == []
    assert std["network-type"] == "directed"
    assert {e["edge"] for e in std["edges"]} == {i["id"] for i in small_doc["incidences"]}
    records = {(r["edge"], r["node"]): r for r in std["incidences"]}
    assert len(records) == sum(len(i["node_ids"]) for i in small_doc["incidences"])
    assert records[("att_3", "super_biology")]["direction"] == "tail"
    assert records[("att_3", "token_in_1")]["direction"] == "tail"
    assert records[("att_3", "token_out_1")]["direction"] == "head"
    assert records[("att_1", "super_biology")]["weight"] == 0.8
    node_attrs = {n["node"]: n["attrs"] for n in std["nodes"]}
    assert node_attrs["super_biology"]["attributes"]["member_count"] == 3
    assert std["metadata"]["model_name"] == "gpt2"


def test_round_trip_preserves_the_document(small_doc):
    assert from_hif_standard(to_hif_standard(small_doc)) == small_doc
    assert validate_hif(from_hif_standard(to_hif_standard(small_doc))) == []


def test_reads_a_foreign_document_with_integer_ids_and_no_edge_records():
    foreign = {
        "network-type": "directed",
        "incidences": [
            {"edge": 1, "node": 10, "weight": 0.25},
            {"edge": 1, "node": 11, "weight": 0.5},
            {"edge": 2, "node": 11},
            {"edge": 2, "node": 12},
        ],
    }
    doc = from_hif_standard(foreign)
    assert [(i["id"], i["node_ids"], i["weight"]) for i in doc["incidences"]] == [
        ("1", ["10", "11"], 0.5),
        ("2", ["11", "12"], 1.0),
    ]
    assert {n["id"] for n in doc["nodes"]} == {"10", "11", "12"}
    assert any("model_name" in e for e in validate_hif(doc))


def test_validator_rejects_a_bad_standard_document(small_doc):
    std = to_hif_standard(small_doc)
    std["incidences"][0]["direction"] = "sideways"
    del std["incidences"][1]["node"]
    errors = validate_hif(std, "hif-standard")
    assert any("sideways" in e for e in errors) and any("'node' is a required property" in e for e in errors)


@pytest.fixture
def offline_hypernetx(monkeypatch):
    """HyperNetX's HIF reader downloads its schema; serve it the vendored copy instead (no network in tests)."""
    hnx = pytest.importorskip("hypernetx")
    import hypernetx.hif as hnx_hif

    schema_text = json.dumps(load_schema("hif-standard"))
    offline = types.SimpleNamespace(get=lambda url, **kw: types.SimpleNamespace(text=schema_text))
    monkeypatch.setattr(hnx_hif, "requests", offline)
    return hnx


def test_hypernetx_reads_the_export(small_doc, offline_hypernetx):
    hypergraph = offline_hypernetx.from_hif(to_hif_standard(small_doc))
    assert hypergraph is not None, "HyperNetX rejected the document against the HIF schema"
    expected_nodes = {n["id"] for n in small_doc["nodes"]}
    assert set(hypergraph.nodes) == expected_nodes
    assert set(hypergraph.edges) == {i["id"] for i in small_doc["incidences"]}
    assert hypergraph.shape == (len(expected_nodes), len(small_doc["incidences"]))
    cells = hypergraph.incidences.to_dataframe
    for incidence in small_doc["incidences"]:
        assert set(hypergraph.edges[incidence["id"]]) == set(incidence["node_ids"])
        for node_id in incidence["node_ids"]:
            assert cells.loc[(incidence["id"], node_id), "weight"] == incidence["weight"]
    edge_weights = hypergraph.edges.to_dataframe["weight"].to_dict()
    assert edge_weights == {i["id"]: i["weight"] for i in small_doc["incidences"]}
    assert cells.loc[("att_3", "token_out_1"), "direction"] == "head"
