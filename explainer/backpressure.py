"""Backpressure decisions: from measured load to a level, from a level to the ladder's actions.

Pure functions of numbers (no Django, no Redis), so the whole decision table is tested directly; the numbers come
from `explainer.load_reading`, and `explainer.degrade` turns the actions into the smaller configs a stage runs with.

soft = the granularity's max backlog, hard = soft × burst. Soft when the backlog is over soft or the tenant's
queue over its max; hard when the backlog is over hard or the global queue over its max; drop only when the backlog
is over 1.5 × hard or the global queue over 1.2 × its max, and never for a tenant running fewer than its guaranteed
traces while the global queue is under its max (one tenant's flood must not starve a quiet one).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

TOKEN_TO_SENTENCE = "token->sentence"
REDUCE_SAMPLES = "reduce-samples"
REDUCE_TOPK = "reduce-topk"
REDUCE_LAYERS = "reduce-layers"
SALIENCY_FALLBACK = "saliency-fallback"
DROP = "drop"
ACTIONS = (TOKEN_TO_SENTENCE, REDUCE_SAMPLES, REDUCE_TOPK, REDUCE_LAYERS, SALIENCY_FALLBACK, DROP)
# The actions a level applies (the ladder keeps its own order and may leave some out).
_SOFT_ACTIONS = frozenset({TOKEN_TO_SENTENCE, REDUCE_SAMPLES, REDUCE_TOPK, REDUCE_LAYERS})
_HARD_ACTIONS = _SOFT_ACTIONS | {SALIENCY_FALLBACK}
# Not a ladder step: a trace put back behind other tenants' waiting work (`defers`).
DEFER = "defer"
# Drop begins this far past the hard limits.
DROP_BACKLOG_FACTOR = 1.5
DROP_QUEUE_FACTOR = 1.2


class Level(IntEnum):
    NONE = 0
    SOFT = 1
    HARD = 2
    DROP = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, label: str) -> "Level":
        """The level a stored label names; an empty label (never decided) is NONE."""
        return cls[label.upper()] if label else cls.NONE


def parse_ladder(text: str) -> tuple[str, ...]:
    """`BP_DEGRADE_LADDER` as a tuple of known actions, in the order given."""
    ladder = tuple(step.strip() for step in text.split(",") if step.strip())
    unknown = [step for step in ladder if step not in ACTIONS]
    if unknown:
        raise ValueError(f"BP_DEGRADE_LADDER: unknown actions {unknown}; known: {list(ACTIONS)}")
    return ladder


@dataclass(frozen=True)
class Limits:
    """The BP_* settings, in one value."""

    max_backlog_sentence: float = 1.5
    max_backlog_token: float = 3.0
    max_queue_tenant: int = 200
    max_queue_global: int = 5000
    tenant_min_guarantee: int = 2
    burst_multiplier: float = 1.5
    ladder: tuple[str, ...] = ACTIONS

    def soft_backlog(self, granularity: str) -> float:
        return self.max_backlog_token if granularity == "token" else self.max_backlog_sentence

    def hard_backlog(self, granularity: str) -> float:
        return self.soft_backlog(granularity) * self.burst_multiplier

    @property
    def tenant_queue_cap(self) -> int:
        """Active traces a tenant may hold before its finalizes are refused (429): its max × the burst multiplier."""
        return math.ceil(self.max_queue_tenant * self.burst_multiplier)


@dataclass(frozen=True)
class Load:
    """What the controller measured, as one tenant and one granularity see it.

    `backlog_s`: the granularity's queued work ÷ its measured throughput (0 while no throughput was measured yet).
    `tenant_active`/`global_active`: traces queued or running; `tenant_running`: the tenant's running ones.
    """

    backlog_s: float
    tenant_active: int
    tenant_running: int
    global_active: int


def level_of(limits: Limits, load: Load, granularity: str) -> Level:
    """The backpressure level for work of `granularity` from a tenant that sees `load`."""
    soft, hard = limits.soft_backlog(granularity), limits.hard_backlog(granularity)
    level = Level.NONE
    if load.backlog_s > soft or load.tenant_active > limits.max_queue_tenant:
        level = Level.SOFT
    if load.backlog_s > hard or load.global_active > limits.max_queue_global:
        level = Level.HARD
    if load.backlog_s > DROP_BACKLOG_FACTOR * hard or load.global_active > DROP_QUEUE_FACTOR * limits.max_queue_global:
        guaranteed = (load.tenant_running < limits.tenant_min_guarantee
                      and load.global_active < limits.max_queue_global)
        level = Level.HARD if guaranteed else Level.DROP
    return level


def actions_for(limits: Limits, level: Level, granularity: str) -> list[str]:
    """The ladder's actions at `level`, in ladder order: soft and hard degrade (hard adds saliency); drop only drops.

    `token->sentence` applies to token traces only. A ladder without `drop` degrades at the hard level instead.
    """
    if level == Level.DROP and DROP in limits.ladder:
        return [DROP]
    applied = _HARD_ACTIONS if level >= Level.HARD else _SOFT_ACTIONS if level == Level.SOFT else frozenset()
    return [step for step in limits.ladder
            if step in applied and (step != TOKEN_TO_SENTENCE or granularity == "token")]


def effective_level(limits: Limits, level: Level) -> Level:
    """The level whose values the actions use: drop without `drop` on the ladder degrades as hard."""
    return Level.HARD if level == Level.DROP and DROP not in limits.ladder else level


def refuses_admission(limits: Limits, loads: dict[str, Load]) -> bool:
    """Global overload: every granularity is at drop (with `drop` on the ladder), so /ingest answers 503."""
    return DROP in limits.ladder and all(level_of(limits, load, g) == Level.DROP for g, load in loads.items())


def defers(limits: Limits, *, tenant_id: int, tenant_active: dict[int, int], tenant_queued: dict[int, int]) -> bool:
    """Whether a tenant's trace, about to start, should go back behind the queue: its tenant is over its queue max
    while another tenant within its max has traces waiting. FIFO queues would otherwise make a quiet tenant's trace
    wait behind every trace of a flooding one."""
    if tenant_active.get(tenant_id, 0) <= limits.max_queue_tenant:
        return False
    return any(queued > 0 and tenant_active.get(other, 0) <= limits.max_queue_tenant
               for other, queued in tenant_queued.items() if other != tenant_id)
