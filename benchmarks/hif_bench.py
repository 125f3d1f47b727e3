"""Benchmark: prune, group and build a HIF v1 document from a large attribution graph, as columns and as dicts.

Workload (issues 3 and 12): 200k incidences over 20k SAE features and 2k tokens (1k input, 1k output), 30% of the
features labelled "<topic>: ..." across 100 topics so they form supernodes, default HypergraphConfig. One seeded
graph is timed in every form, the forms alternating run by run in one process so a busy machine slows them alike:

- columns: `build_hif(graph, meta, cfg)`, what the pipeline's build stage runs on the attribution artifact;
- dicts: `build_hif(nodes, incidences, meta, cfg)` on `graph.to_records()`, the seed system's form of that graph;
- `prune_and_group` alone and followed by `build_hif` on its output (the seed system's two calls);
- the seed system's pure-Python `prune_and_group` on the same dicts, when its module (`hypergraph`) is importable
  (`--seed-path DIR` puts DIR on sys.path); otherwise no seed figure is printed;
- with `--baseline DIR`, the `hif` package of another checkout (e.g. main) on the same dicts.

Then the whole prune_build stage (read the artifact, build, validate, write the document) on a 256-token, 4-layer
trace at both granularities, against the same stage fed the JSON list of dicts the artifact used to be.

Run: .venv/bin/python benchmarks/hif_bench.py [--runs 11] [--seed-path DIR] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

import hif  # noqa: E402
from attribution import AttributionConfig, LayerFeatures, attribute  # noqa: E402
from explainer.artifacts import FolderArtifactStore  # noqa: E402
from hif import Graph, HypergraphConfig, build_hif, dumps_canonical, prune_and_group, validate_hif  # noqa: E402
from hif.graph import KIND_FEATURE, KIND_INPUT, KIND_OUTPUT, Incidences, Nodes  # noqa: E402

N_FEATURES, N_INPUT, N_OUTPUT, N_LAYERS, N_TOPICS = 20_000, 1_000, 1_000, 12, 100
SHARED_PREFIX_FRACTION = 0.30
META = {"model_name": "bench-model", "model_hash": "", "sae_dictionary": "bench-sae", "granularity": "token",
        "created_at": "2025-01-01T00:00:00Z"}
TARGET_COLUMNS_MS, TARGET_DICTS_MS, TARGET_SEED_RATIO, TARGET_PRUNED_BUILD = 70.0, 250.0, 30.0, 1.15


def make_graph(n_incidences: int, seed: int = 0) -> Graph:
    """Seeded synthetic graph in the form attribution produces: each incidence attributes one output token's window
    to one feature (distinct pairs), 20% also touch an input token; rows by window, then weight descending."""
    rng = np.random.default_rng(seed)
    layer = rng.integers(0, N_LAYERS, N_FEATURES)
    topic = np.where(rng.random(N_FEATURES) < SHARED_PREFIX_FRACTION, rng.integers(0, N_TOPICS, N_FEATURES), -1)
    n_tokens = N_INPUT + N_OUTPUT
    nodes = Nodes(
        kind=np.r_[np.full(N_FEATURES, KIND_FEATURE), np.full(N_INPUT, KIND_INPUT),
                   np.full(N_OUTPUT, KIND_OUTPUT)].astype(np.int8),
        layer=np.r_[layer, np.full(n_tokens, -1)].astype(np.int64),
        feature=np.r_[np.arange(N_FEATURES), np.full(n_tokens, -1)].astype(np.int64),
        position=np.r_[np.full(N_FEATURES, -1), np.arange(N_INPUT), np.arange(N_OUTPUT)].astype(np.int64),
        activation=np.r_[rng.gamma(2.0, 1.0, N_FEATURES), np.full(n_tokens, np.nan)],
        label=[f"Topic {t}: detail {i}" if t >= 0 else f"feature {i}" for i, t in enumerate(topic.tolist())]
        + [f"in{i}" for i in range(N_INPUT)] + [f"out{i}" for i in range(N_OUTPUT)],
    )
    pairs = rng.choice(N_FEATURES * N_OUTPUT, n_incidences, replace=False)
    feature, window = pairs // N_OUTPUT, pairs % N_OUTPUT
    weight = np.round(rng.beta(0.6, 4.0, n_incidences), 6)
    with_input = rng.random(n_incidences) < 0.2
    input_row = N_FEATURES + rng.integers(0, N_INPUT, n_incidences)
    order = np.lexsort((feature, -weight, window))
    feature, window, weight, with_input, input_row = (a[order] for a in (feature, window, weight, with_input,
                                                                          input_row))
    lengths = 2 + with_input
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    members = np.empty(int(offsets[-1]), dtype=np.int64)
    members[offsets[:-1]] = feature  # members in row order: the feature, the input token if any, the output token
    members[offsets[1:] - 1] = N_FEATURES + N_INPUT + window
    members[offsets[:-1][with_input] + 1] = input_row[with_input]
    m = n_incidences
    incidences = Incidences(
        weight=weight, offsets=offsets, members=members, method=np.zeros(m, np.int8), window=window.astype(np.int64),
        value=np.zeros(m, np.int8), fallback=np.full(m, -1, np.int8), effect=weight.copy(), se=np.full(m, 0.01),
        samples=np.full(m, 64, dtype=np.int64), converged=np.ones(m, dtype=bool), methods=("acdc",),
        windows=tuple(hif.ids.window("token", j) for j in range(N_OUTPUT)), values=("logit",),
    )
    return Graph(nodes, incidences)


def alternate(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall milliseconds of each function over `runs` rounds, the functions taking turns within each round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def spread(ms: list[float]) -> str:
    return f"{statistics.median(ms):8.1f} ms (min {min(ms):.1f}, max {max(ms):.1f}, n={len(ms)})"


def load_seed(path: str | None):
    """The seed system's `hypergraph` module if it can be imported, else None."""
    if path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module("hypergraph")
    except ImportError:
        return None
    return module if hasattr(module, "prune_and_group") and hasattr(module, "HypergraphConfig") else None


def load_baseline(root: str):
    """The `hif` package of another checkout, imported under another name so both run in this process."""
    spec = importlib.util.spec_from_file_location("hif_baseline", Path(root) / "hif" / "__init__.py",
                                                  submodule_search_locations=[str(Path(root) / "hif")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["hif_baseline"] = module
    spec.loader.exec_module(module)
    return module


def bench_build(args: argparse.Namespace) -> None:
    cfg = HypergraphConfig()
    graph = make_graph(args.incidences)
    nodes, incidences = graph.to_records()
    print(f"graph: {len(graph.incidences)} incidences, {N_FEATURES} features, {N_INPUT + N_OUTPUT} tokens, "
          f"{SHARED_PREFIX_FRACTION:.0%} of features in {N_TOPICS} label prefixes; {cfg}")
    columns, dicts = build_hif(graph, META, cfg), build_hif(nodes, incidences, META, cfg)
    same = dumps_canonical(columns) == dumps_canonical(dicts)
    errors = validate_hif(columns)
    print(f"document: {len(columns['nodes'])} nodes, {len(columns['incidences'])} incidences, "
          f"{len(dumps_canonical(columns)) / 1e6:.2f} MB; valid v1: {not errors}; "
          f"byte-identical from columns and from dicts: {same}")
    fns: dict[str, Callable[[], object]] = {
        "build_hif(graph)": lambda: build_hif(graph, META, cfg),
        "build_hif(dicts)": lambda: build_hif(nodes, incidences, META, cfg),
        "prune_and_group(dicts)": lambda: prune_and_group(nodes, incidences, cfg),
        "prune_and_group + build_hif": lambda: build_hif(*prune_and_group(nodes, incidences, cfg)[:2], META, cfg),
    }
    if args.baseline:
        baseline = load_baseline(args.baseline)
        fns[f"baseline build_hif(dicts) [{args.baseline}]"] = lambda: baseline.build_hif(nodes, incidences, META, cfg)
    for fn in fns.values():
        fn()  # warm-up
    times = alternate(fns, args.runs)
    for name, ms in times.items():
        print(f"  {name:48s} {spread(ms)}")
    med = {name: statistics.median(ms) for name, ms in times.items()}
    ratio = med["prune_and_group + build_hif"] / med["prune_and_group(dicts)"]
    print(f"  prune_and_group + build_hif = x{ratio:.3f} prune_and_group alone (target <= {TARGET_PRUNED_BUILD})")
    if args.baseline:
        base = med[next(name for name in med if name.startswith("baseline"))]
        print(f"  dicts: x{base / med['build_hif(dicts)']:.2f} faster than the baseline; "
              f"columns: x{base / med['build_hif(graph)']:.2f}")

    seed = load_seed(args.seed_path)
    if seed is None:
        print("  seed system: its module `hypergraph` is not importable here, so no seed figure was measured "
              "(--seed-path DIR names a folder holding hypergraph.py)")
        seed_ms = None
    else:
        seed_cfg = seed.HypergraphConfig()
        seed_times = alternate({"seed": lambda: seed.prune_and_group(nodes, incidences, seed_cfg),
                                "ours": lambda: build_hif(graph, META, cfg)}, max(3, args.runs // 3))
        seed_ms = statistics.median(seed_times["seed"])
        print(f"  seed system prune_and_group ({seed.__file__}) {spread(seed_times['seed'])}")
        print(f"  build_hif(graph) alternating with it             {spread(seed_times['ours'])}")
    checks = [("columns", med["build_hif(graph)"], TARGET_COLUMNS_MS), ("dicts", med["build_hif(dicts)"],
                                                                       TARGET_DICTS_MS)]
    verdicts = [f"{name} {ms:.1f} <= {target:.0f} ms: {'MET' if ms <= target else 'MISSED'}"
                for name, ms, target in checks]
    verdicts.append(f"prune+build x{ratio:.3f} <= {TARGET_PRUNED_BUILD}: "
                    f"{'MET' if ratio <= TARGET_PRUNED_BUILD else 'MISSED'}")
    if seed_ms is not None:
        speedup = seed_ms / statistics.median(seed_times["ours"])
        verdicts.append(f"columns x{speedup:.1f} the seed (target >= {TARGET_SEED_RATIO:.0f}): "
                        f"{'MET' if speedup >= TARGET_SEED_RATIO else 'MISSED'}")
    verdicts.append(f"byte-identical: {'MET' if same and not errors else 'MISSED'}")
    print("targets: " + "; ".join(verdicts))


def stage_trace(granularity: str, seed: int = 0) -> Graph:
    """The attribution graph of a 256-token, 4-layer trace (64 active features per token, d_sae 16384; saliency,
    so the graph has the size a converged method gives: the per-token cap of 256 over the four layers)."""
    rng = np.random.default_rng(seed)
    t, k, d, d_sae = 256, 64, 64, 16384
    layers = []
    for layer in (2, 4, 6, 8):
        indices = np.argsort(rng.random((t, d_sae)), axis=1)[:, :k].astype(np.int64)
        values = rng.exponential(1.0, (t, k)).astype(np.float32)
        layers.append(LayerFeatures(layer, rng.standard_normal((t, d)).astype(np.float32), indices, values,
                                    np.zeros((d_sae, d), np.float32), np.zeros(d, np.float32)))
    cuts = np.cumsum(rng.integers(8, 41, t))
    bounds = [0, *[int(c) for c in cuts if c < t], t]
    labels = {layer: {i: f"Topic {i % 97}: feature {i}" for i in range(0, d_sae, 3)} for layer in (2, 4, 6, 8)}
    result = attribute(layers, granularity=granularity, windows=list(zip(bounds[:-1], bounds[1:])), token_ids=None,
                       unembedding=None, config=AttributionConfig(method_sentence="saliency", method_token="saliency"),
                       labels=labels, tokens=[f"tok{i}" for i in range(t)])
    return result.graph


def bench_stage(args: argparse.Namespace) -> None:
    """explainer.pipeline.build_stage's work without Django: artifact in, document out (with `--baseline`, also the
    stage as it was: the JSON-list artifact built by the baseline's hif)."""
    cfg = HypergraphConfig()
    baseline = load_baseline(args.baseline) if args.baseline else None
    with tempfile.TemporaryDirectory() as root:
        store = FolderArtifactStore(root)
        for granularity in ("token", "sentence"):
            graph = stage_trace(granularity)
            store.save_arrays(1, "attribution", graph.to_arrays())
            nodes, incidences = graph.to_records()
            store.save_json(2, "attribution", {"nodes": nodes, "incidences": incidences})
            meta = {**META, "granularity": granularity}

            def arrays_stage() -> None:
                document = build_hif(Graph.from_arrays(store.load_arrays(1, "attribution")), meta, cfg)
                assert not validate_hif(document)
                store.save_json(1, "graph", document)

            def json_stage(build: Callable[..., dict] = build_hif) -> None:
                artifact = store.load_json(2, "attribution")
                document = build(artifact["nodes"], artifact["incidences"], meta, cfg)
                assert not validate_hif(document)
                store.save_json(2, "graph", document)

            arrays_stage(), json_stage()
            same = (Path(root) / "1" / "graph.json").read_bytes() == (Path(root) / "2" / "graph.json").read_bytes()
            sizes = [os.path.getsize(Path(root) / str(pk) / name) for pk, name in
                     ((1, "attribution.safetensors"), (2, "attribution.json"))]
            built = build_hif(graph, meta, cfg)
            parts = {
                "read arrays": lambda: Graph.from_arrays(store.load_arrays(1, "attribution")),
                "build_hif(graph)": lambda: build_hif(graph, meta, cfg),
                "validate_hif(document)": lambda: validate_hif(built),
                "write document": lambda: store.save_json(3, "graph", built),
            }
            stages: dict[str, Callable[[], object]] = {"stage, arrays artifact": arrays_stage,
                                                       "stage, JSON-list artifact": json_stage}
            if baseline:
                stages["stage, JSON-list artifact, baseline hif"] = lambda: json_stage(baseline.build_hif)
            times = alternate({**stages, **parts}, args.runs)
            doc = json.loads((Path(root) / "1" / "graph.json").read_text())
            print(f"prune_build stage, 256 tokens x 4 layers, {granularity}: {len(graph.incidences)} incidences in, "
                  f"{len(doc['incidences'])} out; artifact {sizes[0] / 1e6:.2f} MB arrays vs {sizes[1] / 1e6:.2f} "
                  f"MB JSON; same document: {same}")
            for name, ms in times.items():
                indent = "  " if name.startswith("stage") else "    part: "
                print(f"{indent}{name:40s} {spread(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--incidences", type=int, default=200_000)
    parser.add_argument("--seed-path", help="folder holding the seed system's hypergraph.py")
    parser.add_argument("--baseline", help="root of another checkout whose hif package is timed on the dicts")
    parser.add_argument("--skip-stage", action="store_true", help="only the 200k build")
    args = parser.parse_args()
    print(f"hif_bench: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}; "
          f"medians of {args.runs} alternating runs")
    bench_build(args)
    if not args.skip_stage:
        bench_stage(args)


if __name__ == "__main__":
    main()
