"""Which concepts of a prompt act together on the answer: synergy by group masking, with exact probabilities.

P0 is the model's probability of the emitted token given the prompt. Masking a concept replaces the prompt tokens it
covers by one mask token (on the tokenised prompt: the concept's own positions, never the first place its text
happens to occur); P_x is the probability then. A concept's drop is max(P0 − P_x, 0). For a group G masked at once,

    synergy(G) = Drop_G − Σ_{x ∈ G} Drop_x

is positive when the members stand in for one another (each alone can carry the answer, so masking one changes
little and masking all changes much), which single-concept drops cannot show. A group is an edge when its synergy
reaches `min_synergy` and masking it lowers P at all; its weight is synergy / P0, clipped to [0, 1].

Groups are searched, not enumerated (there are C(n, 3) of them): each round draws a few candidate groups never drawn
before, uniformly (stand-ins are exactly the concepts whose own drop is small, so favouring large drops would miss
them), and keeps the best. Probabilities come from the model's logits in-process (no
sampling), through a `TargetModel`, and are cached by (model, target, masked prompt) across rounds and traces.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .budget import Deadline
from .concepts import Concept
from .config import InteractionConfig


class TargetModel(Protocol):
    """A model asked one thing: how likely `target` is as the next token after each prompt."""

    name: str

    def next_token_probabilities(self, prompts: Sequence[np.ndarray], target: int) -> np.ndarray:
        """P(target | prompt) for each prompt of token ids: `[len(prompts)]`."""


class ProbabilityCache:
    """A least-recently-used map from (model, target, masked prompt) to a probability, shared across traces."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[tuple, float] = OrderedDict()

    def get(self, key: tuple) -> float | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: tuple, value: float) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.size:
            self._values.popitem(last=False)


@dataclass(frozen=True)
class InteractionEdge:
    """A group of concepts whose joint masking lowers P(target) by more than their separate maskings add up to."""

    members: tuple[str, ...]
    synergy: float
    weight: float
    p_group: float
    member_drops: tuple[float, ...]


@dataclass(frozen=True)
class Interactions:
    """The search's result and its evidence: what it cost and why it stopped."""

    target: int
    p0: float
    drops: dict[str, float]
    edges: tuple[InteractionEdge, ...]
    calls: int
    cache_hits: int
    rounds: int
    stopped: str  # rounds | low_gain | max_edges | max_calls | budget_ms | exhausted | too_few_concepts


def mask_positions(ids: np.ndarray, masked: np.ndarray, mask_id: int) -> np.ndarray:
    """`ids [T]` with each run of `masked [T] bool` positions replaced by a single `mask_id`."""
    ids = np.asarray(ids)
    run_start = masked & ~np.concatenate(([False], masked[:-1]))
    return np.where(run_start, mask_id, ids)[~masked | run_start]


@dataclass
class _Prober:
    """Evaluates masked prompts through the cache, counting model calls against the budget."""

    model: TargetModel
    prompt: np.ndarray
    target: int
    mask_id: int
    cache: ProbabilityCache
    max_calls: int
    calls: int = 0
    cache_hits: int = 0

    def probabilities(self, maskings: Sequence[np.ndarray]) -> list[float | None]:
        """P(target) for each masking (`[T] bool`); None where the call budget ran out first."""
        prompts = [mask_positions(self.prompt, m, self.mask_id) for m in maskings]
        keys = [(self.model.name, self.target, p.tobytes()) for p in prompts]
        found = [self.cache.get(key) for key in keys]
        self.cache_hits += sum(value is not None for value in found)
        missing = [i for i, value in enumerate(found) if value is None][:max(0, self.max_calls - self.calls)]
        if missing:
            computed = self.model.next_token_probabilities([prompts[i] for i in missing], self.target)
            self.calls += len(missing)
            for i, value in zip(missing, computed):
                found[i] = float(value)
                self.cache.put(keys[i], float(value))
        return found


def concept_interactions(concepts: Sequence[Concept], prompt_ids: np.ndarray, target: int, model: TargetModel, *,
                         mask_id: int, config: InteractionConfig | None = None,
                         cache: ProbabilityCache | None = None) -> Interactions:
    """Search groups of `concepts` (positions in `prompt_ids`) for synergy on P(`target` | prompt)."""
    config = config or InteractionConfig()
    deadline = Deadline(config.budget_ms)
    prompt = np.asarray(prompt_ids, dtype=np.int64)
    usable = [c for c in concepts if c.tokens and max(c.tokens) < len(prompt)]
    masks = np.zeros((len(usable), len(prompt)), dtype=bool)
    for row, concept in enumerate(usable):
        masks[row, list(concept.tokens)] = True
    prober = _Prober(model, prompt, target, mask_id, cache or ProbabilityCache(config.cache_size), config.max_calls)
    p0, *singles = prober.probabilities([np.zeros(len(prompt), dtype=bool), *masks])
    if p0 is None or any(p is None for p in singles):
        return _result(config, p0 or 0.0, usable, [], [], prober, 0, "max_calls")
    drops = np.maximum(p0 - np.asarray(singles, dtype=np.float64), 0.0)
    if len(usable) < 2:
        return _result(config, p0, usable, drops, [], prober, 0, "too_few_concepts")
    return _search(config, deadline, prober, masks, p0, drops, usable)


def _search(config: InteractionConfig, deadline: Deadline, prober: _Prober, masks: np.ndarray, p0: float,
            drops: np.ndarray, usable: Sequence[Concept]) -> Interactions:
    rng = np.random.default_rng(config.random_seed)
    seen: set[frozenset[int]] = set()
    edges: list[InteractionEdge] = []
    streak, rounds, stopped = 0, 0, "rounds"
    for rounds in range(1, config.groups + 1):
        if deadline.expired():
            stopped = "budget_ms"
            break
        groups = _draw(rng, len(usable), min(config.group_size, len(usable)), config.candidates, seen)
        if not groups:
            stopped = "exhausted"
            break
        probabilities = prober.probabilities([masks[list(g)].any(axis=0) for g in groups])
        best = 0.0
        for group, p_group in zip(groups, probabilities):
            if p_group is None:
                continue
            members = sorted(group)
            drop_group = max(p0 - p_group, 0.0)
            synergy = drop_group - float(drops[members].sum())
            best = max(best, synergy)
            if synergy >= config.min_synergy and drop_group > 0:
                edges.append(InteractionEdge(
                    members=tuple(usable[i].id for i in members), synergy=round(synergy, 6),
                    weight=round(float(np.clip(synergy / p0, 0.0, 1.0)), 6), p_group=round(p_group, 6),
                    member_drops=tuple(round(float(drops[i]), 6) for i in members)))
        if None in probabilities:
            stopped = "max_calls"
            break
        if len(edges) >= config.max_edges:
            stopped = "max_edges"
            break
        streak = streak + 1 if best < config.min_gain else 0
        if streak >= config.low_gain_streak:
            stopped = "low_gain"
            break
    return _result(config, p0, usable, drops, edges, prober, rounds, stopped)


def _draw(rng: np.random.Generator, n: int, max_size: int, count: int,
          seen: set[frozenset[int]]) -> list[frozenset[int]]:
    """Up to `count` groups of 2..max_size of `n` concepts, not drawn before (a bounded number of tries)."""
    groups: list[frozenset[int]] = []
    for _ in range(count * 8):
        size = int(rng.integers(2, max_size + 1))
        group = frozenset(int(i) for i in rng.choice(n, size=size, replace=False))
        if group not in seen:
            seen.add(group)
            groups.append(group)
            if len(groups) == count:
                break
    return groups


def _result(config: InteractionConfig, p0: float, usable: Sequence[Concept], drops, edges: list[InteractionEdge],
            prober: _Prober, rounds: int, stopped: str) -> Interactions:
    """The edges strongest first, at most `max_edges` (a round may find several)."""
    ranked = sorted(edges, key=lambda e: -e.synergy)[:config.max_edges]
    return Interactions(target=prober.target, p0=round(float(p0), 6),
                        drops={c.id: round(float(d), 6) for c, d in zip(usable, drops)},
                        edges=tuple(ranked), calls=prober.calls, cache_hits=prober.cache_hits, rounds=rounds,
                        stopped=stopped)
