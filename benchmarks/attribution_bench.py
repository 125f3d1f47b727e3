"""Attribution benchmark: a 256-token trace, 64 active features per token, d_model 768.

Prints, per method, the wall time of `attribute` with the default configuration (median of a few runs), the samples
it used, and the mean absolute error of its normalised weights against a reference run given 20x the samples (no
early stop, no time limit). Targets (issue 5, 2-core machine): sentence <= 900 ms, token <= 3,500 ms, MAE <= 0.02.

The synthetic trace is built like a real one: features drawn from a Zipf-like popularity (so they recur across
tokens and co-fire), activations exponential, x = b_dec + sum a_f W_dec[f] + error with the error about 20% of the
state's norm, and a final LayerNorm + W_U readout, so the logit value's non-linearity is exercised.

Run: .venv/bin/python benchmarks/attribution_bench.py
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attribution import AttributionConfig, LayerFeatures, Unembedding, attribute  # noqa: E402
from hif import HypergraphConfig  # noqa: E402

T, K, D, D_SAE, VOCAB, LAYER = 256, 64, 768, 16384, 8192, 6
REPEATS = 3
REFERENCE_FACTOR = 20


SCENARIOS = (
    # name, decoder-bias scale, SAE error as a fraction of the state's norm
    ("typical", 0.5, 0.2),
    # no decoder bias and a small error: the empty coalition's state is tiny, so the norm's non-linearity is extreme
    ("hard", 0.0, 0.05),
)


def synthetic_trace(bias: float, error: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    w_dec = (rng.standard_normal((D_SAE, D), dtype=np.float32) / np.sqrt(D)).astype(np.float32)
    b_dec = (bias * rng.standard_normal(D)).astype(np.float32)
    popularity = 1.0 / np.arange(1, D_SAE + 1) ** 0.8
    popularity /= popularity.sum()
    indices = np.stack([rng.choice(D_SAE, K, replace=False, p=popularity) for _ in range(T)]).astype(np.int64)
    values = rng.exponential(1.0, (T, K)).astype(np.float32)
    clean = b_dec + np.einsum("tk,tkd->td", values, w_dec[indices])
    noise = rng.standard_normal((T, D))
    noise *= error * np.linalg.norm(clean, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
    acts = (clean + noise).astype(np.float32)
    layer = LayerFeatures(LAYER, acts, indices, values, w_dec, b_dec)
    unembedding = Unembedding((rng.standard_normal((D, VOCAB)) / np.sqrt(D) * 8).astype(np.float32),
                              (1 + 0.1 * rng.standard_normal(D)).astype(np.float32),
                              (0.02 * rng.standard_normal(D)).astype(np.float32))
    token_ids = rng.integers(0, VOCAB, T).tolist()
    cuts = np.cumsum(rng.integers(8, 41, T))
    bounds = [0, *[int(c) for c in cuts if c < T], T]
    windows = list(zip(bounds[:-1], bounds[1:]))
    return layer, unembedding, token_ids, windows


def weights(result) -> dict[str, float]:
    incidences = result.graph.incidences
    return dict(zip(result.graph.incidence_ids(np.arange(len(incidences))), incidences.weight.tolist()))


def mean_abs_error(run: dict[str, float], reference: dict[str, float]) -> tuple[float, float]:
    keys = sorted(set(run) | set(reference))
    diff = np.abs(np.array([run.get(k, 0.0) for k in keys]) - np.array([reference.get(k, 0.0) for k in keys]))
    return float(diff.mean()), float(diff.max())


def samples_used(result) -> tuple[float, int]:
    incidences = result.graph.incidences
    per_window = np.full(len(incidences.windows), -1)
    np.maximum.at(per_window, incidences.window, incidences.samples)
    counts = per_window[per_window >= 0]
    return float(np.mean(counts)), int(max(counts))


def main() -> None:
    for name, bias, error in SCENARIOS:
        run_scenario(name, bias, error)


def run_scenario(name: str, bias: float, error: float) -> None:
    layer, unembedding, token_ids, windows = synthetic_trace(bias, error)
    print(f"[{name}] T={T} tokens, k={K} active features/token, d_model={D}, d_sae={D_SAE}, "
          f"{len(windows)} sentence windows, b_dec scale {bias}, SAE error {error:.0%} of |x|, "
          f"logit value through LayerNorm + W_U")
    base = AttributionConfig()
    for granularity, method, target in (("sentence", "acdc", 900.0), ("token", "shapley", 3500.0)):
        kwargs = dict(granularity=granularity, windows=windows, token_ids=token_ids, unembedding=unembedding)
        attribute([layer], config=base, **kwargs)  # warm-up: first-call allocations, BLAS threads
        times, result = [], None
        for _ in range(REPEATS):
            began = time.perf_counter()
            result = attribute([layer], config=base, **kwargs)
            times.append((time.perf_counter() - began) * 1000)
        mean_samples, max_samples = samples_used(result)
        converged = np.mean(result.graph.incidences.converged)
        # Errors are measured on every feature's weight (threshold and cap lifted): near the per-window cap a feature
        # can drop in or out on a tiny change, which says nothing about the estimate.
        lifted = HypergraphConfig(min_edge_weight=0.0, per_token_incident_cap=10**9)
        full = attribute([layer], config=base, graph_config=lifted, **kwargs)
        reference_config = replace(base, max_samples=REFERENCE_FACTOR * max_samples, early_stop_delta=0.0,
                                   sentence_budget_ms=1e9, token_budget_ms=1e9)
        began = time.perf_counter()
        reference = attribute([layer], config=reference_config, graph_config=lifted, **kwargs)
        reference_s = time.perf_counter() - began
        ref_mean, ref_max = samples_used(reference)
        mae, worst = mean_abs_error(weights(full), weights(reference))
        saliency_config = replace(base, method_sentence="saliency", method_token="saliency")
        began = time.perf_counter()
        attribute([layer], config=saliency_config, **kwargs)
        saliency_ms = (time.perf_counter() - began) * 1000
        print(f"{granularity:8s} {method:7s} time {statistics.median(times):7.1f} ms (median of {REPEATS}; "
              f"min {min(times):.1f}, max {max(times):.1f}; target {target:.0f})  method_used={result.method} "
              f"fell_back={result.fell_back}")
        print(f"{'':17s}samples/window mean {mean_samples:.1f} max {max_samples}  converged {converged:.1%}  "
              f"incidences {len(result.graph.incidences)}")
        print(f"{'':17s}reference: samples/window mean {ref_mean:.1f} max {ref_max} ({reference_s:.1f} s)  "
              f"MAE {mae:.4f} (max abs error {worst:.4f}; target 0.02) over all features' weights")
        print(f"{'':17s}saliency on the same trace: {saliency_ms:.1f} ms")


if __name__ == "__main__":
    main()
