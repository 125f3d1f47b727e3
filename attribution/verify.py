"""Verification by intervention: ablate the graph's strongest features in real forward passes and compare.

An attribution graph predicts, per incidence, how much a feature moves its window's target (the mean logit of the
tokens emitted in the window). Here the shadow model checks that claim: the feature's decoder contribution
a_f(p) · W_dec[f] is subtracted from the residual at its layer at the window's positions, everything else is kept
(the SAE error included), and the target logit and probability are read again. The observed effect is the clean
target minus the ablated one, so it has the predicted effect's sign when the prediction is right.

Per incidence (the `top_k` strongest): `observed` (logits), `observed_prob` and `verified` (|observed| ≥ `min_drop`
and the same sign as predicted); per trace: the Spearman rank correlation of predicted and observed effects, and how
much more the target drops when a window's top-8 predicted features are ablated together than when 8 random active
features of the same layers are (seeded per window). Every pass runs inside `budget_ms`; incidences it does not
reach are marked `budget_exhausted` and carry no numbers.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import hif

from .budget import Deadline
from .config import VerifyConfig
from .inputs import LayerFeatures
from .shadow import ModelInputs, ShadowModel, window_objectives

VERIFIERS = ("ablation", "budget_exhausted")
COMPARE = 8  # features ablated together in the top versus random comparison
PASSES_PER_BATCH = 8  # ablated copies of the sequence per forward pass

Edit = dict[int, np.ndarray]  # layer -> [T, d] added to the block's output


@dataclass(frozen=True)
class Verification:
    """The graph with its verification columns filled, and the trace's figures (JSON-ready)."""

    graph: hif.Graph
    summary: dict


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (ties get their mean rank); None for fewer than 3 pairs or a constant side."""
    if len(a) < 3:
        return None
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra @ ra) * (rb @ rb))
    return float(ra @ rb / denominator) if denominator > 0 else None


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.ravel(), weights=ranks)
    return (sums / counts)[inverse.ravel()]


def ablation(lf: LayerFeatures, features: np.ndarray, span: tuple[int, int], n_positions: int) -> np.ndarray:
    """[T, d]: minus the decoder contributions Σ_f a_f(p) · W_dec[f] of `features` at the span's positions."""
    start, end = span
    idx = np.asarray(lf.indices[start:end], dtype=np.int64)
    val = np.asarray(lf.values[start:end], dtype=np.float64)
    chosen = np.isin(idx, np.asarray(features, dtype=np.int64)) & (val > 0)
    rows = np.asarray(lf.W_dec[idx[chosen]], dtype=np.float64)
    delta = np.zeros((n_positions, lf.W_dec.shape[1]), dtype=np.float64)
    np.add.at(delta, start + np.nonzero(chosen)[0], -val[chosen][:, None] * rows)
    return delta.astype(np.float32)


def verify(graph: hif.Graph, layers: Sequence[LayerFeatures], shadow: ShadowModel, inputs: ModelInputs,
           windows: Sequence[tuple[int, int]], config: VerifyConfig,
           compare_windows: np.ndarray | None = None) -> Verification:
    """Check the graph's `top_k` strongest incidences and its top-8 features per window by ablation.

    `windows` are the spans the graph's window codes index (what attribution used). The top versus random comparison
    runs on the windows of the checked incidences, or on `compare_windows` when given (a benchmark comparing several
    graphs of one trace uses the same windows for all). Deterministic: the incidences are ranked by |predicted
    effect| with ties by row, the random features drawn from a generator seeded by (`random_seed`, window).
    """
    started = time.perf_counter()
    runner = _Runner(shadow, inputs, windows, Deadline(config.budget_ms, start=started))
    by_layer = {lf.layer: lf for lf in layers}
    inc = graph.incidences
    lead = inc.members[inc.offsets[:-1]]
    layer, feature = graph.nodes.layer[lead], graph.nodes.feature[lead]
    chosen = _strongest(graph)[:config.top_k]
    edits = [{int(layer[i]): ablation(by_layer[int(layer[i])], feature[i:i + 1], windows[inc.window[i]],
                                      runner.n_positions)} for i in chosen.tolist()]
    done, logit_drop, prob_drop = runner.run(edits, inc.window[chosen])

    observed = np.full(len(inc), np.nan)
    observed_prob = np.full(len(inc), np.nan)
    verifier = np.full(len(inc), -1, dtype=np.int8)
    measured = chosen[:done]
    observed[measured], observed_prob[measured] = logit_drop, prob_drop
    verifier[measured] = VERIFIERS.index("ablation")
    verifier[chosen[done:]] = VERIFIERS.index("budget_exhausted")
    predicted = inc.effect[measured]
    verified = np.zeros(len(inc), dtype=bool)
    verified[measured] = (np.abs(logit_drop) >= config.min_drop) & (np.sign(logit_drop) == np.sign(predicted))

    compare = np.unique(inc.window[measured]) if compare_windows is None else np.asarray(compare_windows)
    top, random_, compared = _compare(graph, by_layer, windows, runner, compare, config)
    summary = {
        "verifier": "ablation", "top_k": config.top_k, "checked": int(done), "verified": int(verified.sum()),
        "budget_exhausted": int(len(chosen) - done),
        "spearman": _rounded(spearman(predicted, logit_drop)),
        "top8_drop": _rounded(float(np.mean(top)) if compared else None),
        "random8_drop": _rounded(float(np.mean(random_)) if compared else None),
        "drop_ratio": _rounded(ratio(top, random_)), "compared_windows": compared,
        "min_drop": config.min_drop, "seed": config.random_seed,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
    }
    checked = dataclasses.replace(inc, observed=observed, observed_prob=observed_prob, verified=verified,
                                  verifier=verifier, verifiers=VERIFIERS)
    return Verification(hif.Graph(graph.nodes, checked), summary)


def ratio(top: np.ndarray, random_: np.ndarray) -> float | None:
    """Mean top drop over mean random drop; None when nothing was compared or random ablation did not lower the
    target (a ratio over a non-positive drop says nothing)."""
    if not len(top) or float(np.mean(random_)) <= 0:
        return None
    return float(np.mean(top)) / float(np.mean(random_))


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _strongest(graph: hif.Graph) -> np.ndarray:
    """Incidence rows by |predicted effect|, those valued in activation units (saliency stand-ins) last."""
    inc = graph.incidences
    in_activation = np.array([name == "activation" for name in inc.values], dtype=bool)[inc.value] \
        if len(inc) else np.zeros(0, dtype=bool)
    return np.lexsort((np.arange(len(inc)), -np.abs(inc.effect), in_activation))


def _compare(graph: hif.Graph, by_layer: Mapping[int, LayerFeatures], windows: Sequence[tuple[int, int]],
             runner: "_Runner", window_ids: np.ndarray, config: VerifyConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Per window: the drop from ablating its top-8 predicted features together, and from 8 random active ones of
    the same layers (as many per layer as the top set has). Returns both drops [n] and n, the windows compared."""
    inc = graph.incidences
    lead = inc.members[inc.offsets[:-1]]
    edits, owners = [], []
    for w in window_ids.tolist():
        rows = np.flatnonzero(inc.window == w)
        rows = rows[np.lexsort((rows, -inc.effect[rows]))][:COMPARE]
        layer, feature = graph.nodes.layer[lead[rows]], graph.nodes.feature[lead[rows]]
        rng = np.random.default_rng([config.random_seed, w])
        top, random_ = {}, {}
        for la in np.unique(layer).tolist():
            lf, span = by_layer[la], windows[w]
            active = np.unique(np.asarray(lf.indices[span[0]:span[1]])[np.asarray(lf.values[span[0]:span[1]]) > 0])
            count = int(np.sum(layer == la))
            drawn = rng.choice(active, size=min(count, len(active)), replace=False)
            top[la] = ablation(lf, feature[layer == la], span, runner.n_positions)
            random_[la] = ablation(lf, drawn, span, runner.n_positions)
        edits += [top, random_]
        owners += [w, w]
    done, logit_drop, _ = runner.run(edits, np.asarray(owners, dtype=np.int64))
    pairs = done // 2
    return logit_drop[0:2 * pairs:2], logit_drop[1:2 * pairs:2], pairs


class _Runner:
    """Batched ablation passes against one clean pass, inside the verification deadline."""

    def __init__(self, shadow: ShadowModel, inputs: ModelInputs, windows: Sequence[tuple[int, int]],
                 deadline: Deadline) -> None:
        self.shadow, self.inputs, self.deadline = shadow, inputs, deadline
        self.n_positions = len(inputs.input_ids)
        self.objectives = window_objectives(windows, self.n_positions).astype(np.float64)
        self.clean: tuple[np.ndarray, np.ndarray] | None = None
        self.cost = 0.0

    def run(self, edits: list[Edit], window_of: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """Run `edits` in order until the deadline would pass; (how many ran, their target drops in logits and in
        probability, each on its window `window_of[i]`)."""
        logits, probs = [], []
        for lo in range(0, len(edits), PASSES_PER_BATCH):
            if not self.deadline.allows(self.cost):
                break
            began = time.perf_counter()
            batch = edits[lo:lo + PASSES_PER_BATCH]
            if self.clean is None:
                batch = [{}] + batch
            out_logits, out_probs = self.shadow.target_logits(self.inputs.input_ids, self.inputs.targets, batch)
            if self.clean is None:
                self.clean = (out_logits[0], out_probs[0])
                out_logits, out_probs = out_logits[1:], out_probs[1:]
            logits.append(out_logits)
            probs.append(out_probs)
            self.cost = time.perf_counter() - began
        done = sum(len(x) for x in logits)
        if not done:
            return 0, np.zeros(0), np.zeros(0)
        weights = self.objectives[window_of[:done]]  # [n, T]
        clean_logit, clean_prob = self.clean
        logit_drop = weights @ clean_logit - np.einsum("nt,nt->n", weights, np.concatenate(logits))
        prob_drop = weights @ clean_prob - np.einsum("nt,nt->n", weights, np.concatenate(probs))
        return done, logit_drop, prob_drop
