"""What a trace's recorded degradation changes in the work of each stage.

The stages never read backpressure settings or mutate global configs: they run with a `StagePlan`, built from the
process's configs and the trace's stored actions with `dataclasses.replace`, so a re-run does the same work.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import attribution
import hif

from .backpressure import (REDUCE_LAYERS, REDUCE_SAMPLES, REDUCE_TOPK, SALIENCY_FALLBACK, TOKEN_TO_SENTENCE,
                           Level)

# Per level (soft, hard): the most SAE features kept per token, layers kept, incidences kept per token, and the
# least incidence weight kept.
TOPK = {Level.SOFT: 128, Level.HARD: 64}
LAYERS = {Level.SOFT: 2, Level.HARD: 1}
PER_TOKEN_CAP = {Level.SOFT: 128, Level.HARD: 64}
MIN_EDGE_WEIGHT = {Level.SOFT: 0.02, Level.HARD: 0.05}


@dataclass(frozen=True)
class StagePlan:
    """How one trace's stages work: its granularity, configs, the most SAE features per token (None: the service's
    top-k) and the most layers kept (None: all)."""

    granularity: str
    attribution: "attribution.AttributionConfig"
    graph: "hif.HypergraphConfig"
    topk: int | None = None
    max_layers: int | None = None

    def kept_layers(self, layers: list[int]) -> list[int]:
        """The deepest `max_layers` of the trace's layers (those nearest the output explain it most directly)."""
        ordered = sorted(layers)
        return ordered if self.max_layers is None else ordered[-self.max_layers:]


def stage_plan(*, granularity: str, actions: list[str] | None, level: Level,
               attribution_config: "attribution.AttributionConfig", graph_config: "hif.HypergraphConfig"
               ) -> StagePlan:
    """The plan of a trace with `actions` recorded at `level` (soft or hard values); no actions: the configs as
    they are.

    `reduce-topk` also prunes harder (per-token cap, minimum weight): fewer features per token, fewer incidences.
    """
    actions = actions or []
    level = min(level, Level.HARD)
    plan = StagePlan(granularity=granularity, attribution=attribution_config, graph=graph_config)
    if level == Level.NONE:
        return plan
    if TOKEN_TO_SENTENCE in actions and granularity == "token":
        plan = replace(plan, granularity="sentence")
    if REDUCE_SAMPLES in actions:
        plan = replace(plan, attribution=replace(plan.attribution,
                                                 max_samples=max(1, plan.attribution.max_samples // 2)))
    if REDUCE_TOPK in actions:
        plan = replace(plan, topk=TOPK[level], graph=replace(
            plan.graph, per_token_incident_cap=min(plan.graph.per_token_incident_cap, PER_TOKEN_CAP[level]),
            min_edge_weight=max(plan.graph.min_edge_weight, MIN_EDGE_WEIGHT[level])))
    if REDUCE_LAYERS in actions:
        plan = replace(plan, max_layers=LAYERS[level])
    if SALIENCY_FALLBACK in actions:
        plan = replace(plan, attribution=replace(plan.attribution, method_sentence="saliency",
                                                 method_token="saliency"))
    return plan
