"""Attribution settings, read from the environment once by the caller and passed down as one frozen value."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

SENTENCE_METHODS = ("auto", "acdc", "saliency")
TOKEN_METHODS = ("auto", "shapley", "acdc", "saliency")


@dataclass(frozen=True)
class AttributionConfig:
    """How hard attribution may work for one trace.

    `max_samples` bounds subset tests per feature (acdc) and permutations per token (shapley); the budgets bound the
    whole `attribute` call, so one slow trace cannot stall the pipeline behind it. How much of the graph is kept
    (minimum weight, per-token cap) is the hypergraph's configuration (`hif.HypergraphConfig`, HG_*), not this one.
    """

    method_sentence: str = "acdc"
    method_token: str = "shapley"
    sentence_budget_ms: float = 900.0
    token_budget_ms: float = 3500.0
    max_samples: int = 512
    early_stop_delta: float = 0.01
    random_seed: int = 0

    def __post_init__(self) -> None:
        if self.method_sentence not in SENTENCE_METHODS:
            raise ValueError(f"ATTR_METHOD_SENTENCE must be one of {SENTENCE_METHODS}, got {self.method_sentence!r}")
        if self.method_token not in TOKEN_METHODS:
            raise ValueError(f"ATTR_METHOD_TOKEN must be one of {TOKEN_METHODS}, got {self.method_token!r}")
        if self.sentence_budget_ms <= 0 or self.token_budget_ms <= 0:
            raise ValueError("attribution budgets must be positive")
        if self.max_samples < 1:
            raise ValueError("ATTR_MAX_SAMPLES must be at least 1")
        if self.early_stop_delta < 0:
            raise ValueError("ATTR_EARLY_STOP_DELTA must not be negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AttributionConfig":
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            method_sentence=env.get("ATTR_METHOD_SENTENCE", default.method_sentence).strip().lower(),
            method_token=env.get("ATTR_METHOD_TOKEN", default.method_token).strip().lower(),
            sentence_budget_ms=float(env.get("ATTR_SENTENCE_BUDGET_MS", default.sentence_budget_ms)),
            token_budget_ms=float(env.get("ATTR_TOKEN_BUDGET_MS", default.token_budget_ms)),
            max_samples=int(env.get("ATTR_MAX_SAMPLES", default.max_samples)),
            early_stop_delta=float(env.get("ATTR_EARLY_STOP_DELTA", default.early_stop_delta)),
            random_seed=int(env.get("ATTR_RANDOM_SEED", default.random_seed)),
        )

    def method_for(self, granularity: str) -> str:
        """The configured method for a granularity, with `auto` resolved to that granularity's default."""
        if granularity == "sentence":
            return "acdc" if self.method_sentence == "auto" else self.method_sentence
        if granularity == "token":
            return "shapley" if self.method_token == "auto" else self.method_token
        raise ValueError(f"granularity must be 'sentence' or 'token', got {granularity!r}")

    def budget_ms(self, granularity: str) -> float:
        return self.sentence_budget_ms if granularity == "sentence" else self.token_budget_ms


@dataclass(frozen=True)
class VerifyConfig:
    """How much checking by intervention one trace gets (`attribution.verify`), once a shadow model is loaded.

    `top_k` incidences (strongest predicted effect first) are ablated one by one; an incidence is verified when the
    target logit moves by at least `min_drop` (logits) in the direction its predicted effect says. `budget_ms`
    bounds all of the trace's ablation passes; `random_seed` draws the random features the top ones are compared to.
    """

    top_k: int = 16
    min_drop: float = 0.05
    budget_ms: float = 2000.0
    random_seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError("VERIFY_TOP_K must not be negative")
        if self.min_drop < 0:
            raise ValueError("VERIFY_MIN_DROP must not be negative")
        if self.budget_ms <= 0:
            raise ValueError("VERIFY_BUDGET_MS must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "VerifyConfig":
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            top_k=int(env.get("VERIFY_TOP_K", default.top_k)),
            min_drop=float(env.get("VERIFY_MIN_DROP", default.min_drop)),
            budget_ms=float(env.get("VERIFY_BUDGET_MS", default.budget_ms)),
            random_seed=int(env.get("ATTR_RANDOM_SEED", default.random_seed)),
        )


@dataclass(frozen=True)
class ConceptConfig:
    """How concepts are found in a prompt (`attribution.concepts`).

    `spacy_model` names an installed trained spaCy pipeline (a package name or a folder) whose entities are used;
    empty, a blank English pipeline with our rules runs instead, so nothing is ever downloaded. At most
    `max_concepts` are kept, the first in text order.
    """

    spacy_model: str = ""
    max_concepts: int = 128

    def __post_init__(self) -> None:
        if self.max_concepts < 1:
            raise ValueError("CONCEPT_MAX must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ConceptConfig":
        env = os.environ if environ is None else environ
        default = cls()
        return cls(spacy_model=env.get("SPACY_MODEL", default.spacy_model).strip(),
                   max_concepts=int(env.get("CONCEPT_MAX", default.max_concepts)))


@dataclass(frozen=True)
class InteractionConfig:
    """How hard the search for interacting concepts may work (`attribution.interactions`).

    `groups` rounds each draw `candidates` groups of 2..`group_size` concepts and keep the one whose joint masking
    shows the most synergy; an edge needs `min_synergy` (probability). The search stops after `low_gain_streak`
    rounds whose best synergy gains less than `min_gain`, at `max_calls` model evaluations (cache hits are free), at
    `max_edges` edges, or when `budget_ms` is spent. `cache_size` masked prompts' probabilities are remembered.
    """

    groups: int = 24
    group_size: int = 3
    candidates: int = 3
    min_synergy: float = 0.05
    max_edges: int = 16
    max_calls: int = 500
    low_gain_streak: int = 5
    min_gain: float = 0.01
    cache_size: int = 10_000
    budget_ms: float = 1500.0
    random_seed: int = 0

    def __post_init__(self) -> None:
        if self.group_size not in (2, 3):
            raise ValueError("INTERACTION_GROUP_SIZE must be 2 or 3")
        for name in ("groups", "candidates", "max_edges", "max_calls", "low_gain_streak", "cache_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"interaction setting {name} must be at least 1")
        if self.budget_ms <= 0:
            raise ValueError("INTERACTION_BUDGET_MS must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "InteractionConfig":
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            groups=int(env.get("INTERACTION_GROUPS", default.groups)),
            group_size=int(env.get("INTERACTION_GROUP_SIZE", default.group_size)),
            min_synergy=float(env.get("INTERACTION_MIN_SYNERGY", default.min_synergy)),
            max_edges=int(env.get("INTERACTION_MAX_EDGES", default.max_edges)),
            max_calls=int(env.get("COST_MAX_SHADOW_CALLS", default.max_calls)),
            low_gain_streak=int(env.get("LOW_GAIN_MAX_STREAK", default.low_gain_streak)),
            min_gain=float(env.get("COST_MIN_GAIN", default.min_gain)),
            cache_size=int(env.get("COST_CACHE_SIZE", default.cache_size)),
            budget_ms=float(env.get("INTERACTION_BUDGET_MS", default.budget_ms)),
            random_seed=int(env.get("ATTR_RANDOM_SEED", default.random_seed)),
        )
