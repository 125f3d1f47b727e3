"""`attribute`: run the configured method over a trace inside its time budget, falling back window by window.

Budget plan for one call: (1) saliency for every window first — it is cheap, it is the fallback, and timing it tells
how busy the machine is; (2) the method's units get a first estimate each, then refine in turns, until a compute
deadline that holds back the expected cost of the output (scaled by that load factor; a tighter per-window cap, said
in `reason`, when the output alone would take too much of the budget); (3) the graph is built in columns.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import hif

from . import metrics
from .budget import Deadline
from .config import AttributionConfig
from .graph import build_graph, output_cost_ms
from .inputs import AttributionResult, Estimates, LayerFeatures, Unembedding, check_layers
from .registry import unit_builder
from .saliency import saliency_estimates
from .threads import single_threaded_blas
from .value import value_function

log = logging.getLogger(__name__)

SAFETY_MS = 10.0  # slack between the compute deadline and the output reserve
STEP_COST_MARGIN = 1.5  # a step may run slower than the last one did (cache, a busy machine)
OUTPUT_SHARE = 0.5  # most of the budget the output alone may take; bigger outputs keep each window's strongest
SALIENCY_SECONDS_PER_ENTRY = 1e-7  # saliency on an idle machine, per active (position, feature) entry
MAX_LOAD_FACTOR = 8.0


def attribute(layers: Sequence[LayerFeatures], *, granularity: str, windows: Sequence[tuple[int, int]],
              token_ids: Sequence[int] | None, unembedding: Unembedding | None, config: AttributionConfig,
              graph_config: hif.HypergraphConfig | None = None, labels: Mapping[int, Mapping[int, str]] | None = None,
              tokens: Sequence[str] | None = None) -> AttributionResult:
    """Attribute every window's output to the SAE features of every layer, within the granularity's budget.

    Sentence granularity uses `windows` (half-open position spans); token granularity makes one window per output
    position. Units (a window, or a block of token positions, of one layer) first each get a first estimate, then
    take turns refining until they converge, hit `max_samples`, or the deadline comes. Units without a first
    estimate by then, or whose method raised, are attributed by saliency and marked so.

    The result's graph already applies `graph_config`'s `min_edge_weight` and per-token cap (the HIF build applies
    them again, with ties by id); features are labelled from `labels[layer][index]`, output tokens by `tokens`.
    """
    started = time.perf_counter()
    with single_threaded_blas():
        return _attribute(layers, granularity, windows, token_ids, unembedding, config,
                          graph_config or hif.HypergraphConfig(), labels or {}, tokens, started)


def _attribute(layers: Sequence[LayerFeatures], granularity: str, windows: Sequence[tuple[int, int]],
               token_ids: Sequence[int] | None, unembedding: Unembedding | None, config: AttributionConfig,
               graph_config: hif.HypergraphConfig, labels: Mapping[int, Mapping[int, str]],
               tokens: Sequence[str] | None, started: float) -> AttributionResult:
    n_positions = check_layers(layers, token_ids, tokens)
    spans = window_spans(granularity, windows, n_positions)
    vf = value_function(unembedding, token_ids)
    requested = config.method_for(granularity)
    budget = config.budget_ms(granularity)

    began = time.perf_counter()
    saliency = {lf.layer: saliency_estimates(lf, spans, np.arange(len(spans))) for lf in layers}
    entries = sum(int(np.count_nonzero(np.asarray(lf.values) > 0)) for lf in layers)
    load = (time.perf_counter() - began) / max(1e-4, SALIENCY_SECONDS_PER_ENTRY * entries)
    plan = _plan_output(entries, spans, graph_config.per_token_incident_cap, budget,
                        min(MAX_LOAD_FACTOR, max(1.0, load)))

    if requested == "saliency":
        outcome, estimates = _Outcome(total=0), list(saliency.values())
    else:
        deadline = Deadline(budget, plan.reserve_ms, start=started)
        outcome = _run_units(unit_builder(requested, granularity)(layers, spans, vf, config), deadline)
        estimates = outcome.estimates + [
            est.select(np.isin(est.window, ids), fallback_from=requested)
            for layer, ids in outcome.fallback().items() for est in [saliency[layer]]]
    graph = build_graph(
        estimates, layers=layers, windows=spans, granularity=granularity, value=vf.name,
        min_edge_weight=graph_config.min_edge_weight, per_token_cap=plan.per_window_cap, labels=labels,
        tokens=[f"token {p}" for p in range(n_positions)] if tokens is None else tokens)

    used = "saliency" if requested == "saliency" or outcome.started == 0 else requested
    fell_back = requested != "saliency" and outcome.fallen > 0
    notes = [outcome.reason(requested, budget) if fell_back else None, plan.note]
    reason = "; ".join(n for n in notes if n) or None
    elapsed = time.perf_counter() - started
    metrics.record_call(method=used, requested=requested, granularity=granularity, seconds=elapsed,
                        cut_short=requested != "saliency" and (fell_back or outcome.cut_short))
    if reason:
        log.info("attribution (%s, %s): %s", requested, granularity, reason)
    return AttributionResult(graph=graph, method=used, value=vf.name, fell_back=fell_back, reason=reason,
                             samples=outcome.mean_samples(), elapsed_ms=elapsed * 1000.0)


def window_spans(granularity: str, windows: Sequence[tuple[int, int]], n_positions: int) -> list[tuple[int, int]]:
    """The windows attributed: one per position at token granularity, the checked sentence spans otherwise."""
    if granularity == "token":
        return [(i, i + 1) for i in range(n_positions)]
    if granularity != "sentence":
        raise ValueError(f"granularity must be 'sentence' or 'token', got {granularity!r}")
    spans = [(int(s), int(e)) for s, e in windows]
    for s, e in spans:
        if not 0 <= s < e <= n_positions:
            raise ValueError(f"sentence window [{s}, {e}) is empty or outside 0..{n_positions}")
    return spans


@dataclass(frozen=True)
class _OutputPlan:
    reserve_ms: float
    per_window_cap: int
    note: str | None


def _plan_output(entries: int, spans: list[tuple[int, int]], cap: int, budget: float, load: float) -> _OutputPlan:
    """Time to hold back for building the output at the measured load, and a tighter per-window cap if building
    it alone would take more than `OUTPUT_SHARE` of the budget (the hypergraph stage caps incidences far lower)."""
    mean_length = sum(e - s for s, e in spans) / max(1, len(spans))
    per_incidence = load * output_cost_ms(0, 1, mean_length)
    expected = min(entries, cap * len(spans))
    note = None
    if expected * per_incidence > OUTPUT_SHARE * budget:
        cap = max(1, min(cap, int(OUTPUT_SHARE * budget / per_incidence) // max(1, len(spans))))
        expected = min(entries, cap * len(spans))
        note = f"output limited to the {cap} strongest incidences per window to stay within the {budget:.0f} ms budget"
    sorting = load * output_cost_ms(entries, 0, mean_length)  # every estimate is sorted, whatever the cap keeps
    return _OutputPlan(sorting + expected * per_incidence + 2 * SAFETY_MS, cap, note)


class _Outcome:
    """What the scheduler achieved: per-unit estimates, and which units fell back and why."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = self.fallen = 0
        self.cut_short = False
        self.estimates: list[Estimates] = []
        self.failed: list = []
        self.unstarted: list = []
        self.errors: list[str] = []

    def fallback(self) -> dict[int, np.ndarray]:
        """Window ids per layer that saliency must cover."""
        out: dict[int, list] = {}
        for unit in self.failed + self.unstarted:
            out.setdefault(unit.layer, []).append(unit.windows)
        return {layer: np.unique(np.concatenate(ids)) for layer, ids in out.items()}

    def reason(self, method: str, budget: float) -> str | None:
        parts = []
        if self.unstarted:
            parts.append(f"{method} had no first estimate for {len(self.unstarted)} of {self.total} units within "
                         f"the {budget:.0f} ms budget")
        if self.failed:
            parts.append(f"{method} failed on {len(self.failed)} units: {self.errors[0]}")
        return "; ".join(parts) or None

    def mean_samples(self) -> int:
        counts = [float(np.mean(e.samples)) for e in self.estimates if len(e)]
        return int(round(float(np.mean(counts)))) if counts else 0


def _run_units(units: list, deadline: Deadline) -> _Outcome:
    outcome = _Outcome(total=len(units))
    running = []
    for unit in units:  # phase 1: a first estimate for every unit, as far as the budget goes
        if deadline.expired():
            outcome.unstarted.append(unit)
            continue
        try:
            (running if unit.start(deadline) else outcome.unstarted).append(unit)
        except Exception as exc:  # a method bug must not lose the trace: saliency takes over for this unit
            log.exception("attribution unit failed")
            outcome.failed.append(unit)
            outcome.errors.append(f"{type(exc).__name__}: {exc}")
    active = [u for u in running if not u.done]
    while active:  # phase 2: refine in turns until converged, out of samples, or out of time
        for unit in active:
            if not deadline.allows(STEP_COST_MARGIN * unit.step_cost):
                outcome.cut_short = True
                break
            try:
                unit.step(deadline)
            except Exception as exc:
                log.exception("attribution unit failed")
                running.remove(unit)
                outcome.failed.append(unit)
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            active = [u for u in running if not u.done]
            continue
        break
    outcome.estimates = [u.estimates() for u in running]
    outcome.started = len(running)
    outcome.fallen = len(outcome.failed) + len(outcome.unstarted)
    return outcome
