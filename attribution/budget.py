"""A wall-clock deadline that methods consult before each bounded step of work."""
from __future__ import annotations

import time


class Deadline:
    """The end of the compute phase of one `attribute` call.

    `reserve_ms` is held back for what must happen after the methods stop (saliency for unfinished windows and
    building the graph), so the call as a whole returns within its budget. `allows(cost_s)` refuses a step
    that is expected to run past the end, which keeps the overshoot to well under one step.
    """

    def __init__(self, budget_ms: float, reserve_ms: float = 0.0, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.end = self.start + max(0.0, budget_ms - reserve_ms) / 1000.0

    def expired(self) -> bool:
        return time.perf_counter() >= self.end

    def allows(self, cost_s: float = 0.0) -> bool:
        return time.perf_counter() + cost_s < self.end
