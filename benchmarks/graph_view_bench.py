"""Benchmark: the admin graph view drawing a HIF document at the pruning caps in headless Chromium.

Workload (issue 11): a seeded HIF v1 document with exactly the default caps, 5,000 nodes (300 input tokens, 700
output tokens, 3,900 SAE features over 12 layers, 100 supernodes) and 20,000 incidences (60% feature → output token,
20% feature + input token + output token, 20% sentence windows of a feature and 4–8 output tokens, drawn as hubs),
a quarter of the effects negative; built with `hif.build_hif` (nothing pruned: it is already at the caps) and checked
with `hif.validate_hif`. The page is the graph view's own JavaScript (`explainer/static/explainer/graph/`) with the
stylesheets of the real page (Django admin's base.css and ours), served over HTTP on 127.0.0.1 to Debian's chromium
driven by Playwright, in a 1440×900 window like the screenshot's.

Every figure ends when the pixels exist: Chromium rasterizes on worker threads after the main thread's frame, so the
end of each action is the later of two animation frames on the page's clock and the end of the last raster task the
action caused, read from a Chromium trace (the tracing itself slows the browser a little). Median over `--runs`
fresh page loads:
- draw: JSON.parse of the document, layout, building the SVG, style, layout, paint and raster of all of it, i.e.
  what a person waits for once the bytes are in (fetch is printed beside it, main_frame_ms is the page's own clock).
- slider: `setMinWeight` for a sequence of thresholds (what the slider's input handler does), jumps from one end to
  the other included, each after the previous one settled; the median, 95th percentile and worst step over all
  steps of all runs, judged on the worst.
- select: clicking a token (light its incidences, dim the rest).

Run: .venv/bin/python benchmarks/graph_view_bench.py [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from hif import HypergraphConfig, build_hif, validate_hif  # noqa: E402

N_INPUT, N_OUTPUT, N_FEATURES, N_SUPERNODES, N_LAYERS, N_INCIDENCES = 300, 700, 3_900, 100, 12, 20_000
DRAW_TARGET_MS, SLIDER_TARGET_MS = 2000.0, 200.0
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 0.0, 0.5, 0.25, 0.0)
META = {
    "model_name": "bench-model",
    "model_hash": "",
    "sae_dictionary": "bench-sae",
    "granularity": "sentence",
    "created_at": "2025-01-01T00:00:00Z",
}


def make_document(seed: int = 0) -> dict:
    """A valid HIF v1 document with exactly 5,000 nodes and 20,000 incidences, every node joined to something."""
    rng = np.random.default_rng(seed)
    inputs = [{"id": f"token_in_{i}", "type": "input_token", "label": f" in{i}", "position": i} for i in range(N_INPUT)]
    outputs = [{"id": f"token_out_{i}", "type": "output_token", "label": f" word{i}", "position": i}
               for i in range(N_OUTPUT)]
    layers = rng.integers(0, N_LAYERS, N_FEATURES + N_SUPERNODES)
    features = [{"id": f"feat_{int(layers[i])}_{i}", "type": "sae_feature", "layer": int(layers[i]),
                 "label": f"Topic {i % 97} detail {i}", "activation_strength": float(rng.gamma(2.0, 1.0)),
                 "attributes": {"feature_index": i}} for i in range(N_FEATURES)]
    supernodes = []
    for s in range(N_SUPERNODES):
        layer = int(layers[N_FEATURES + s])
        members = [f"feat_{layer}_{100_000 + s * 40 + m}" for m in range(int(rng.integers(3, 40)))]
        supernodes.append({"id": f"super_{s}", "type": "circuit_supernode", "label": f"Cluster {s} (cluster)",
                           "activation_strength": float(rng.gamma(2.0, 1.0)),
                           "attributes": {"member_count": len(members), "members": members}})
    causes = [n["id"] for n in features + supernodes]
    kind = rng.choice(3, N_INCIDENCES, p=[0.6, 0.2, 0.2])
    # Every cause and every token appears at least once; the rest is random.
    cause = np.concatenate([rng.permutation(len(causes)), rng.integers(0, len(causes), N_INCIDENCES)])[:N_INCIDENCES]
    out = np.concatenate([rng.permutation(N_OUTPUT), rng.integers(0, N_OUTPUT, N_INCIDENCES)])[:N_INCIDENCES]
    inp = np.concatenate([rng.permutation(N_INPUT), rng.integers(0, N_INPUT, N_INCIDENCES)])[:N_INCIDENCES]
    kind[: N_INPUT] = 1  # the first incidences carry the input tokens' guaranteed appearance
    weight = np.clip(rng.beta(0.8, 3.0, N_INCIDENCES), 0.01, 1.0)
    sign = np.where(rng.random(N_INCIDENCES) < 0.25, -1.0, 1.0)
    incidences = []
    for k in range(N_INCIDENCES):
        if kind[k] == 2:
            start = int(min(out[k], N_OUTPUT - 8))
            tokens = [f"token_out_{t}" for t in range(start, start + int(rng.integers(4, 9)))]
        else:
            tokens = [f"token_out_{int(out[k])}"]
        node_ids = [causes[int(cause[k])], *([f"token_in_{int(inp[k])}"] if kind[k] == 1 else []), *tokens]
        incidences.append({
            "id": f"att_{k:05d}", "node_ids": node_ids, "weight": round(float(weight[k]), 6),
            "metadata": {"type": "causal_circuit", "method": "acdc", "window": f"win-{k % N_OUTPUT}"},
            "attributes": {"value": "logit", "effect": round(float(sign[k] * weight[k] * 0.4), 6)},
        })
    cfg = HypergraphConfig(min_edge_weight=0.0, per_token_incident_cap=100_000, grouping="none")
    document = build_hif(inputs + features + supernodes + outputs, incidences, META, cfg)
    errors = validate_hif(document)
    assert not errors, errors[:5]
    assert len(document["nodes"]) == 5000 and len(document["incidences"]) == 20000, (
        len(document["nodes"]), len(document["incidences"]))
    return document


PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/admin/css/base.css"><link rel="stylesheet" href="/static/explainer/admin.css">
<link rel="stylesheet" href="/static/explainer/graph.css">
<style>html, body { margin: 0 } .hg-canvas { width: 1070px; height: 640px; }</style></head>
<body><div class="hg-canvas" data-role="canvas"></div>
<script type="module">
import {GraphView} from "/static/explainer/graph/view.js";
const painted = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
let view = null;
window.draw = async () => {
  const t0 = performance.now();
  const text = await (await fetch("graph.json")).text();
  performance.mark("draw");
  const t1 = performance.now();
  view = new GraphView(document.querySelector(".hg-canvas"), JSON.parse(text));
  const t2 = performance.now();
  await painted();
  return {fetch: t1 - t0, build: t2 - t1, frame: performance.now() - t1,
          drawn: document.querySelectorAll("[data-node-id]").length,
          incidences: document.querySelectorAll("[data-incidence-id]").length};
};
window.act = async (name, threshold) => {
  performance.mark(name);
  const start = performance.now();
  if (threshold === null) view.selectNode(view.layout.index.get("token_out_350"));
  else { view.setMinWeight(threshold); view.counts(); }
  await painted();
  return performance.now() - start;
};
window.benchReady = true;
</script></body></html>
"""
TRACE_CATEGORIES = ["blink.user_timing", "devtools.timeline", "disabled-by-default-devtools.timeline"]
SETTLE_MS = 400


def _until_pixels(trace_path: Path, marks: list[str]) -> dict[str, float]:
    """For each mark, ms from it to the end of the last raster task before the next mark (or the trace's end).

    Chromium rasterizes on worker threads after the main thread's frame, so a page's own clock (even after two
    animation frames) stops before the pixels exist; the trace says when the last tile of the change was done.
    """
    events = json.loads(trace_path.read_text())
    events = events["traceEvents"] if isinstance(events, dict) else events
    at = {e["name"]: e["ts"] for e in events if e.get("name") in marks and e.get("ph") in ("R", "I", "n")}
    rasters = sorted((e["ts"] + e["dur"], e["ts"]) for e in events if e.get("name") == "RasterTask" and e.get("ph") == "X")
    bounds = [at[m] for m in marks] + [float("inf")]
    out = {}
    for mark, lo, hi in zip(marks, bounds, bounds[1:]):
        ends = [end for end, begin in rasters if lo <= begin < hi]
        out[mark] = (max(ends) - lo) / 1000 if ends else 0.0
    return out


def serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import django
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    document = make_document()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "graph.json").write_text(json.dumps(document))
        (folder / "index.html").write_text(PAGE)
        (folder / "static").symlink_to(ROOT / "explainer" / "static")
        (folder / "admin").symlink_to(Path(django.__file__).parent / "contrib" / "admin" / "static" / "admin")
        server = serve(folder)
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        size_mb = (folder / "graph.json").stat().st_size / 1e6
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            print(f"graph_view_bench: {len(document['nodes'])} nodes, {len(document['incidences'])} incidences, "
                  f"{size_mb:.1f} MB JSON; Chromium {browser.version} headless; {os.cpu_count()} cores, "
                  f"load average at start {os.getloadavg()[0]:.2f}; median of {args.runs} page loads")
            results = [measure(browser, url, Path(tmp) / f"trace{n}.json") for n in range(args.runs)]
            browser.close()
        server.shutdown()
    assert all(r["drawn"] == 5000 and r["incidences"] == 20000 for r in results), results[0]
    med = {key: statistics.median(r[key] for r in results) for key in ("fetch", "build", "frame", "draw", "select")}
    steps = [ms for r in results for ms in r["slider"]]
    print(f"{'fetch_ms':>9} {'parse+layout+svg_ms':>19} {'main_frame_ms':>13} {'draw_ms':>8} {'select_ms':>9}")
    print(f"{med['fetch']:>9.1f} {med['build']:>19.1f} {med['frame']:>13.1f} {med['draw']:>8.1f} {med['select']:>9.1f}")
    p95 = statistics.quantiles(steps, n=20)[-1]
    print(f"slider steps ({len(THRESHOLDS)} thresholds x {args.runs} runs): median {statistics.median(steps):.1f} ms, "
          f"p95 {p95:.1f} ms, worst {max(steps):.1f} ms")
    print(f"target draw <= {DRAW_TARGET_MS:.0f} ms: {'MET' if med['draw'] <= DRAW_TARGET_MS else 'NOT MET'} "
          f"({med['draw']:.0f} ms); slider <= {SLIDER_TARGET_MS:.0f} ms: "
          f"{'MET' if max(steps) <= SLIDER_TARGET_MS else 'NOT MET'} (worst {max(steps):.0f} ms)")


def measure(browser, url: str, trace_path: Path) -> dict:
    """One page load: draw, let it settle, step the slider through THRESHOLDS, select a token; all traced."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(url)
    page.wait_for_function("window.benchReady === true")
    browser.start_tracing(page=page, path=str(trace_path), categories=TRACE_CATEGORIES)
    result = page.evaluate("() => window.draw()")
    page.wait_for_timeout(SETTLE_MS * 3)
    marks, frames = ["draw"], {"draw": result["frame"]}
    for n, threshold in enumerate(THRESHOLDS):
        frames[f"step{n}"] = page.evaluate("([name, t]) => window.act(name, t)", [f"step{n}", threshold])
        marks.append(f"step{n}")
        page.wait_for_timeout(SETTLE_MS)
    frames["select"] = page.evaluate("([name, t]) => window.act(name, t)", ["select", None])
    marks.append("select")
    page.wait_for_timeout(SETTLE_MS)
    browser.stop_tracing()
    page.close()
    pixels = _until_pixels(trace_path, marks)
    done = {mark: max(frames[mark], pixels[mark]) for mark in marks}
    return {**result, "draw": done["draw"], "select": done["select"],
            "slider": [done[f"step{n}"] for n in range(len(THRESHOLDS))]}


if __name__ == "__main__":
    main()
