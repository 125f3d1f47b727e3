"""Pruning and grouping limits for HIF documents, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

GROUPINGS = ("supernode", "none")

_ENV = {
    "min_edge_weight": ("HG_MIN_EDGE_WEIGHT", float),
    "per_token_incident_cap": ("HG_PER_TOKEN_CAP", int),
    "max_nodes": ("HG_MAX_NODES", int),
    "max_incidences": ("HG_MAX_INCIDENCES", int),
    "grouping": ("HG_GROUPING", str),
    "supernode_min_group": ("HG_SUPERNODE_MIN_GROUP", int),
    "supernode_label_delim": ("HG_LABEL_DELIM", str),
}

# Limits where a larger value keeps more of the graph.
_UPPER_LIMITS = ("per_token_incident_cap", "max_nodes", "max_incidences")


@dataclass(frozen=True)
class HypergraphConfig:
    """How much of an attribution hypergraph survives into the HIF document: the one pruning configuration.

    Attribution applies `min_edge_weight` and `per_token_incident_cap` already, to keep its graph small; the
    build applies all of it. Frozen so one instance can be shared by every Celery task.
    """

    min_edge_weight: float = 0.01
    per_token_incident_cap: int = 256
    max_nodes: int = 5000
    max_incidences: int = 20000
    grouping: str = "supernode"
    supernode_min_group: int = 3
    supernode_label_delim: str = ":"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_edge_weight:
            raise ValueError(f"min_edge_weight must be >= 0, got {self.min_edge_weight}")
        for name in _UPPER_LIMITS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {self.grouping!r}")
        if self.supernode_min_group < 1:
            raise ValueError(f"supernode_min_group must be >= 1, got {self.supernode_min_group}")
        if not self.supernode_label_delim:
            raise ValueError("supernode_label_delim must not be empty")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> HypergraphConfig:
        """Build from HG_* variables; unset ones keep their defaults. Call once per process and pass it around."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, (var, cast) in _ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[field] = cast(raw)
            except ValueError as exc:
                raise ValueError(f"{var}={raw!r} is not a valid {cast.__name__}") from exc
        return cls(**values)
