"""A trace's stage timeline: where its seconds went, stage by stage, as the admin draws it (a waterfall of bars)."""
from __future__ import annotations

from dataclasses import dataclass

from .models import Stage, Trace, TraceStatus


@dataclass(frozen=True)
class StageBar:
    """One stage: its seconds (None when it never finished) and its bar as percentages of the whole run."""

    name: str
    seconds: float | None
    state: str  # done, running, waiting, failed or pending
    offset_pct: float
    width_pct: float


def total_seconds(timings: dict) -> float | None:
    """The sum of the recorded stage times; None when no stage has finished."""
    values = [float(v) for v in timings.values() if isinstance(v, (int, float))]
    return sum(values) if values else None


def stage_timeline(trace: Trace) -> list[StageBar]:
    """Every pipeline stage in order. Stages run one after another, so each bar starts where the previous ended.

    The stage a trace is in (or failed in) has no time recorded yet; it is marked rather than drawn.
    """
    total = total_seconds(trace.timings) or 0.0
    bars, elapsed = [], 0.0
    for stage in Stage:
        seconds = trace.timings.get(stage.value)
        if isinstance(seconds, (int, float)):
            state = "done"
        elif stage.value == trace.stage and trace.status == TraceStatus.RUNNING:
            state = "running"
        elif stage.value == trace.stage and trace.status == TraceStatus.QUEUED:
            state = "waiting"  # published, not yet claimed by a worker
        elif stage.value == trace.stage and trace.status == TraceStatus.FAILED:
            state = "failed"
        else:
            state = "pending"
        width = 100.0 * seconds / total if state == "done" and total > 0 else 0.0
        bars.append(StageBar(name=stage.value, seconds=float(seconds) if state == "done" else None, state=state,
                             offset_pct=100.0 * elapsed / total if total > 0 else 0.0, width_pct=width))
        if state == "done":
            elapsed += float(seconds)
    return bars
