import dataclasses

import pytest

from hif import HypergraphConfig


def test_defaults_match_the_issue():
    cfg = HypergraphConfig()
    limits = (cfg.min_edge_weight, cfg.per_token_incident_cap, cfg.max_nodes, cfg.max_incidences)
    assert limits == (0.01, 256, 5000, 20000)
    assert (cfg.grouping, cfg.supernode_min_group, cfg.supernode_label_delim) == ("supernode", 3, ":")


def test_from_env_reads_every_variable():
    env = {
        "HG_MIN_EDGE_WEIGHT": "0.05",
        "HG_PER_TOKEN_CAP": "10",
        "HG_MAX_NODES": "100",
        "HG_MAX_INCIDENCES": "200",
        "HG_GROUPING": "none",
        "HG_SUPERNODE_MIN_GROUP": "4",
        "HG_LABEL_DELIM": "/",
    }
    cfg = HypergraphConfig.from_env(env)
    assert cfg == HypergraphConfig(0.05, 10, 100, 200, "none", 4, "/")


def test_from_env_uses_os_environ(monkeypatch):
    monkeypatch.setenv("HG_MAX_NODES", "7")
    monkeypatch.delenv("HG_GROUPING", raising=False)
    cfg = HypergraphConfig.from_env()
    assert cfg.max_nodes == 7 and cfg.grouping == "supernode"


@pytest.mark.parametrize(
    "env",
    [{"HG_MAX_NODES": "many"}, {"HG_GROUPING": "clusters"}, {"HG_MAX_NODES": "-1"}, {"HG_MIN_EDGE_WEIGHT": "nan"}],
)
def test_bad_env_values_are_refused(env):
    with pytest.raises(ValueError):
        HypergraphConfig.from_env(env)


def test_empty_delimiter_is_refused():
    with pytest.raises(ValueError):
        HypergraphConfig(supernode_label_delim="")


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HypergraphConfig().max_nodes = 1
