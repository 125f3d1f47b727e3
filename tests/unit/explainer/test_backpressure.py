"""The backpressure decision table (levels from load, actions from levels) and what each action does to the work."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import attribution
import hif
from explainer.backpressure import (ACTIONS, DROP, Level, Limits, Load, actions_for, defers, effective_level,
                                    level_of, parse_ladder, refuses_admission)
from explainer.degrade import stage_plan

LIMITS = Limits()  # the documented defaults: 1.5 / 3.0 s, 200 / 5000 queued, guarantee 2, burst 1.5


def load(backlog_s=0.0, tenant_active=0, tenant_running=5, global_active=0) -> Load:
    return Load(backlog_s=backlog_s, tenant_active=tenant_active, tenant_running=tenant_running,
                global_active=global_active)


@pytest.mark.parametrize("granularity, seen, expected", [
    ("sentence", load(), Level.NONE),
    ("sentence", load(backlog_s=1.5), Level.NONE),  # at the limit is not over it
    ("sentence", load(backlog_s=1.6), Level.SOFT),
    ("token", load(backlog_s=1.6), Level.NONE),  # token traces have 3.0 s
    ("token", load(backlog_s=3.1), Level.SOFT),
    ("sentence", load(tenant_active=201), Level.SOFT),
    ("sentence", load(backlog_s=2.3), Level.HARD),  # hard = 1.5 × 1.5 = 2.25
    ("token", load(backlog_s=4.6), Level.HARD),  # hard = 4.5
    ("sentence", load(global_active=5001), Level.HARD),
    ("sentence", load(backlog_s=3.4), Level.DROP),  # 1.5 × hard = 3.375
    ("token", load(backlog_s=6.8), Level.DROP),  # 6.75
    ("sentence", load(global_active=6000), Level.HARD),  # 1.2 × max is not over it
    ("sentence", load(global_active=6001), Level.DROP),
    # The guarantee: a tenant running fewer than 2 is not dropped while the global queue is under its max...
    ("sentence", load(backlog_s=10, tenant_running=1, global_active=100), Level.HARD),
    # ...but is once the global queue is over it.
    ("sentence", load(global_active=6001, tenant_running=0), Level.DROP),
    ("sentence", load(backlog_s=10, tenant_running=2, global_active=100), Level.DROP),
])
def test_levels_follow_the_documented_table(granularity, seen, expected):
    assert level_of(LIMITS, seen, granularity) == expected


@pytest.mark.parametrize("level, granularity, expected", [
    (Level.NONE, "token", []),
    (Level.SOFT, "sentence", ["reduce-samples", "reduce-topk", "reduce-layers"]),
    (Level.SOFT, "token", ["token->sentence", "reduce-samples", "reduce-topk", "reduce-layers"]),
    (Level.HARD, "sentence", ["reduce-samples", "reduce-topk", "reduce-layers", "saliency-fallback"]),
    (Level.HARD, "token", ["token->sentence", "reduce-samples", "reduce-topk", "reduce-layers",
                           "saliency-fallback"]),
    (Level.DROP, "token", ["drop"]),
])
def test_actions_follow_the_ladder(level, granularity, expected):
    assert actions_for(LIMITS, level, granularity) == expected


def test_a_shorter_ladder_applies_only_its_steps_and_without_drop_degrades_as_hard():
    limits = Limits(ladder=parse_ladder("reduce-layers, reduce-samples"))
    assert actions_for(limits, Level.HARD, "token") == ["reduce-layers", "reduce-samples"]
    assert actions_for(limits, Level.DROP, "token") == ["reduce-layers", "reduce-samples"]
    assert effective_level(limits, Level.DROP) == Level.HARD
    assert not refuses_admission(limits, {"sentence": load(global_active=10**6)})


def test_an_unknown_ladder_step_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown actions \\['faster'\\]"):
        parse_ladder("reduce-topk,faster")


def test_admission_is_refused_only_when_every_granularity_is_at_drop():
    overloaded = load(global_active=6001)
    assert refuses_admission(LIMITS, {"sentence": overloaded, "token": overloaded})
    assert not refuses_admission(LIMITS, {"sentence": load(backlog_s=3.4), "token": load(backlog_s=3.4)})


@pytest.mark.parametrize("active, queued, expected", [
    ({1: 201, 2: 1}, {1: 200, 2: 1}, True),  # over its max while a tenant within its max waits
    ({1: 200, 2: 1}, {1: 199, 2: 1}, False),  # at its max is within it
    ({1: 201, 2: 1}, {1: 200}, False),  # the other tenant waits for nothing
    ({1: 201, 2: 250}, {1: 200, 2: 250}, False),  # the other tenant is over its max too: queue order
    ({1: 201, 2: 0, 3: 4}, {1: 200, 3: 2}, True),
])
def test_a_tenant_over_its_max_goes_behind_tenants_within_theirs(active, queued, expected):
    assert defers(LIMITS, tenant_id=1, tenant_active=active, tenant_queued=queued) == expected


loads = st.builds(Load, backlog_s=st.floats(0, 100, allow_nan=False), tenant_active=st.integers(0, 10_000),
                  tenant_running=st.integers(0, 10), global_active=st.integers(0, 20_000))


@given(seen=loads, more_backlog=st.floats(0, 50, allow_nan=False), more_queued=st.integers(0, 5000),
       granularity=st.sampled_from(["sentence", "token"]))
def test_more_load_never_lowers_the_level_unless_the_tenant_runs_less(seen, more_backlog, more_queued, granularity):
    heavier = Load(backlog_s=seen.backlog_s + more_backlog, tenant_active=seen.tenant_active + more_queued,
                   tenant_running=seen.tenant_running, global_active=seen.global_active + more_queued)
    assert level_of(LIMITS, heavier, granularity) >= level_of(LIMITS, seen, granularity)


@given(seen=loads, granularity=st.sampled_from(["sentence", "token"]))
def test_drop_only_past_its_thresholds_and_never_against_the_guarantee(seen, granularity):
    level = level_of(LIMITS, seen, granularity)
    if level == Level.DROP:
        assert (seen.backlog_s > 1.5 * LIMITS.hard_backlog(granularity)
                or seen.global_active > 1.2 * LIMITS.max_queue_global)
        assert not (seen.tenant_running < 2 and seen.global_active < LIMITS.max_queue_global)
    assert (DROP in actions_for(LIMITS, level, granularity)) == (level == Level.DROP)
    assert all(a in ACTIONS for a in actions_for(LIMITS, level, granularity))


BASE_ATTRIBUTION = attribution.AttributionConfig(max_samples=512)
BASE_GRAPH = hif.HypergraphConfig(min_edge_weight=0.01, per_token_incident_cap=256)


def plan(level: Level, granularity: str = "token"):
    return stage_plan(granularity=granularity, actions=actions_for(LIMITS, level, granularity), level=level,
                      attribution_config=BASE_ATTRIBUTION, graph_config=BASE_GRAPH)


def test_no_degradation_leaves_the_configs_as_they_are():
    undegraded = stage_plan(granularity="token", actions=None, level=Level.NONE,
                            attribution_config=BASE_ATTRIBUTION, graph_config=BASE_GRAPH)
    assert (undegraded.attribution, undegraded.graph, undegraded.topk, undegraded.max_layers) == (
        BASE_ATTRIBUTION, BASE_GRAPH, None, None)
    assert undegraded.granularity == "token" and undegraded.kept_layers([9, 3, 6]) == [3, 6, 9]


def test_soft_halves_samples_caps_topk_layers_and_pruning():
    soft = plan(Level.SOFT)
    assert soft.granularity == "sentence"
    assert soft.attribution.max_samples == 256
    assert soft.attribution.method_for("sentence") == "acdc"  # sampling still, at soft
    assert (soft.topk, soft.max_layers) == (128, 2)
    assert (soft.graph.per_token_incident_cap, soft.graph.min_edge_weight) == (128, 0.02)
    assert soft.kept_layers([3, 9, 6]) == [6, 9]


def test_hard_goes_further_and_replaces_sampling_by_saliency():
    hard = plan(Level.HARD, granularity="sentence")
    assert hard.attribution.method_for("sentence") == hard.attribution.method_for("token") == "saliency"
    assert (hard.topk, hard.max_layers) == (64, 1)
    assert (hard.graph.per_token_incident_cap, hard.graph.min_edge_weight) == (64, 0.05)
    assert hard.kept_layers([3, 9, 6]) == [9]


def test_degrading_never_loosens_a_stricter_configuration():
    strict = hif.HypergraphConfig(min_edge_weight=0.2, per_token_incident_cap=8)
    hard = stage_plan(granularity="sentence", actions=actions_for(LIMITS, Level.HARD, "sentence"),
                      level=Level.HARD, attribution_config=attribution.AttributionConfig(max_samples=1),
                      graph_config=strict)
    assert (hard.graph.min_edge_weight, hard.graph.per_token_incident_cap) == (0.2, 8)
    assert hard.attribution.max_samples == 1
