"""Benchmark: prune, group and build a HIF v1 document from a large synthetic attribution hypergraph.

Workload (issue 3): 200k incidences over 20k SAE features and 2k tokens (1k input, 1k output), 30% of the
features labelled "<topic>: ..." across 100 topics so they form supernodes, default HypergraphConfig. Times are the
median of several runs of `build_hif` (input already in memory, in creation order, as the prune_build stage
receives it from attribution); the same graph shape is timed at 50k, 100k and 200k incidences so the growth rate
can be read off side by side. A last row times the 200k list shuffled: same work, but the dicts are then visited
in random memory order, which shows how much of the cost is memory traffic rather than computation.

Run: .venv/bin/python benchmarks/hif_bench.py [--runs 7]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from hif import HypergraphConfig, build_hif, dumps_canonical, validate_hif  # noqa: E402

N_FEATURES, N_INPUT, N_OUTPUT, N_LAYERS, N_TOPICS = 20_000, 1_000, 1_000, 12, 100
SHARED_PREFIX_FRACTION = 0.30
META = {
    "model_name": "bench-model",
    "model_hash": "",
    "sae_dictionary": "bench-sae",
    "granularity": "token",
    "created_at": "2025-01-01T00:00:00Z",
}


def make_graph(n_incidences: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Seeded synthetic graph; 20% of incidences also touch an input token (3-node hyperedges)."""
    rng = np.random.default_rng(seed)
    layers = rng.integers(0, N_LAYERS, N_FEATURES)
    topic = np.where(rng.random(N_FEATURES) < SHARED_PREFIX_FRACTION, rng.integers(0, N_TOPICS, N_FEATURES), -1)
    activation = rng.gamma(2.0, 1.0, N_FEATURES)
    feature_ids = [f"feat_{layer}_{i}" for i, layer in enumerate(layers.tolist())]
    nodes = [
        {
            "id": fid,
            "type": "sae_feature",
            "label": f"Topic {t}: detail {i}" if t >= 0 else f"feature {i}",
            "layer": layer,
            "activation_strength": act,
        }
        for i, (fid, t, layer, act) in enumerate(zip(feature_ids, topic.tolist(), layers.tolist(), activation.tolist()))
    ]
    nodes += [{"id": f"token_in_{i}", "type": "input_token", "label": f"in{i}", "position": i} for i in range(N_INPUT)]
    nodes += [
        {"id": f"token_out_{i}", "type": "output_token", "label": f"out{i}", "position": i} for i in range(N_OUTPUT)
    ]

    # A producer builds node_ids from its lists of node ids, so the strings are shared with the node dicts.
    in_ids = [n["id"] for n in nodes if n["type"] == "input_token"]
    out_ids = [n["id"] for n in nodes if n["type"] == "output_token"]
    feat = rng.integers(0, N_FEATURES, n_incidences).tolist()
    out = rng.integers(0, N_OUTPUT, n_incidences).tolist()
    inp = rng.integers(0, N_INPUT, n_incidences).tolist()
    with_input = (rng.random(n_incidences) < 0.2).tolist()
    weight = rng.beta(0.6, 4.0, n_incidences).tolist()
    incidences = []
    for k in range(n_incidences):
        node_ids = [feature_ids[feat[k]], out_ids[out[k]]]
        if with_input[k]:
            node_ids.append(in_ids[inp[k]])
        incidences.append(
            {
                "id": f"att_{k:07d}",
                "node_ids": node_ids,
                "weight": weight[k],
                "metadata": {"type": "causal_circuit", "method": "acdc", "window": f"tok-{out[k]}"},
                "attributes": {"value": "logit", "samples": 64, "converged": True, "se": 0.01},
            }
        )
    return nodes, incidences


def median_ms(fn, runs: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms). CPU time is printed too because this 2-core machine is shared with other
    jobs: wall time then includes time spent descheduled, CPU time does not."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    cfg = HypergraphConfig()
    print(f"hif_bench: {N_FEATURES} features, {N_INPUT + N_OUTPUT} tokens, {SHARED_PREFIX_FRACTION:.0%} shared "
          f"prefixes over {N_TOPICS} topics; median of {args.runs} runs; {cfg}")
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}")
    print(f"{'incidences':>10} {'build_ms':>9} {'cpu_ms':>7} {'us/inc':>7} {'nodes_out':>9} {'incs_out':>8} "
          f"{'json_MB':>7} {'validate_ms':>11}")
    results = {}
    for n in (50_000, 100_000, 200_000):
        nodes, incidences = make_graph(n)
        build_hif(nodes, incidences, META, cfg)  # warm-up
        ms, cpu_ms = median_ms(lambda: build_hif(nodes, incidences, META, cfg), args.runs)
        doc = build_hif(nodes, incidences, META, cfg)
        validate, _ = median_ms(lambda: validate_hif(doc), 3)
        errors = validate_hif(doc)
        assert not errors, errors[:5]
        size_mb = len(dumps_canonical(doc)) / 1e6
        results[n] = ms
        print(f"{n:>10} {ms:>9.1f} {cpu_ms:>7.1f} {ms * 1000 / n:>7.2f} {len(doc['nodes']):>9} "
              f"{len(doc['incidences']):>8} {size_mb:>7.2f} {validate:>11.1f}")
    nodes, incidences = make_graph(200_000)
    shuffled = [incidences[i] for i in np.random.default_rng(1).permutation(len(incidences)).tolist()]
    shuffled_ms, shuffled_cpu = median_ms(lambda: build_hif(nodes, shuffled, META, cfg), args.runs)
    same = dumps_canonical(build_hif(nodes, shuffled, META, cfg)) == dumps_canonical(
        build_hif(nodes, incidences, META, cfg)
    )
    print(f"{'200000 shuffled':>10} {shuffled_ms:>9.1f} {shuffled_cpu:>7.1f}  (byte-identical to in-order: {same})")
    nlogn = (200_000 * math.log(200_000)) / (100_000 * math.log(100_000))
    print(f"growth 100k->200k: x{results[200_000] / results[100_000]:.2f} (n log n would be x{nlogn:.2f}); "
          f"50k->200k: x{results[200_000] / results[50_000]:.2f}")
    print(f"target <= 300 ms at 200k: {'MET' if results[200_000] <= 300 else 'MISSED'} ({results[200_000]:.1f} ms)")


if __name__ == "__main__":
    main()
