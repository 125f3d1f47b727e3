from __future__ import annotations

import pytest

from attribution import AttributionConfig


def test_defaults_match_the_issue():
    c = AttributionConfig.from_env({})
    assert (c.method_sentence, c.method_token) == ("acdc", "shapley")
    assert (c.sentence_budget_ms, c.token_budget_ms, c.max_samples) == (900, 3500, 512)
    assert (c.early_stop_delta, c.random_seed) == (0.01, 0)


def test_from_env_reads_every_variable():
    c = AttributionConfig.from_env({
        "ATTR_METHOD_SENTENCE": "auto", "ATTR_METHOD_TOKEN": "AUTO", "ATTR_SENTENCE_BUDGET_MS": "100",
        "ATTR_TOKEN_BUDGET_MS": "200", "ATTR_MAX_SAMPLES": "64", "ATTR_EARLY_STOP_DELTA": "0.05",
        "ATTR_RANDOM_SEED": "7",
    })
    assert c.method_for("sentence") == "acdc" and c.method_for("token") == "shapley"
    assert (c.sentence_budget_ms, c.token_budget_ms, c.max_samples, c.early_stop_delta) == (100, 200, 64, 0.05)
    assert c.random_seed == 7


def test_rejects_unknown_method():
    with pytest.raises(ValueError):
        AttributionConfig.from_env({"ATTR_METHOD_SENTENCE": "shapley"})
