"""The minimum-weight filter on a graph large enough to be drawn in several bands (layers), in Chromium.

The sample traces fit in one band, so this graph is made here: 6,000 incidences and 1,900 nodes, three incidence
bands and two node bands. Whatever the threshold, the shown incidences must be exactly those at or above it and the
shown nodes exactly those one of them joins, whether a band is hidden whole (by its opacity) or in part.
"""
from __future__ import annotations

import numpy as np
import pytest

import hif

pytestmark = pytest.mark.django_db

N_TOKENS, N_FEATURES, N_INCIDENCES = 300, 1_600, 6_000
SHOWN = """(selector) => Array.from(document.querySelectorAll(selector)).filter((el) => {
    const box = el.getBoundingClientRect();
    return (box.width > 0 || box.height > 0) && el.checkVisibility({opacityProperty: true});
  }).map((el) => el.dataset.nodeId || el.dataset.incidenceId)"""
MOUNT = """async (doc) => {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/explainer/graph.css";
  document.head.appendChild(link);
  await new Promise((resolve) => { link.onload = resolve; });
  document.body.innerHTML = '<div class="hg-canvas" style="width: 1200px; height: 800px"></div>';
  const {GraphView} = await import("/static/explainer/graph/view.js");
  window.view = new GraphView(document.querySelector(".hg-canvas"), doc);
  return {edgeBands: document.querySelectorAll(".hg-band.hg-edges").length,
          nodeBands: document.querySelectorAll(".hg-band.hg-nodes").length};
}"""


def banded_document() -> dict:
    rng = np.random.default_rng(7)
    nodes = [{"id": f"token_out_{i}", "type": "output_token", "label": f" w{i}", "position": i} for i in range(N_TOKENS)]
    nodes += [{"id": f"feat_2_{i}", "type": "sae_feature", "label": f"feature {i}", "layer": 2,
               "activation_strength": 1.0} for i in range(N_FEATURES)]
    feature = np.concatenate([np.arange(N_FEATURES), rng.integers(0, N_FEATURES, N_INCIDENCES - N_FEATURES)])
    token = rng.integers(0, N_TOKENS, N_INCIDENCES)
    weight = np.round(rng.uniform(0.01, 1.0, N_INCIDENCES), 4)
    incidences = [{"id": f"att_{k}", "node_ids": [f"feat_2_{feature[k]}", f"token_out_{token[k]}"],
                   "weight": float(weight[k]), "metadata": {"type": "causal_circuit", "method": "acdc",
                                                           "window": f"tok-{token[k]}"},
                   "attributes": {"effect": float(weight[k]) * (1 if k % 3 else -1)}} for k in range(N_INCIDENCES)]
    meta = {"model_name": "m", "sae_dictionary": "d", "granularity": "token", "created_at": "2026-01-01T00:00:00Z"}
    cfg = hif.HypergraphConfig(min_edge_weight=0.0, per_token_incident_cap=100_000, grouping="none")
    return hif.build_hif(nodes, incidences, meta, cfg)


def test_bands_hide_exactly_the_incidences_below_the_threshold_and_the_nodes_they_leave(page, live_server):
    document = banded_document()
    assert len(document["incidences"]) > 4_000  # the pruner merges the few repeated (feature, token) pairs
    page.goto(live_server.url + "/")
    bands = page.evaluate(MOUNT, document)
    assert bands == {"edgeBands": 3, "nodeBands": 2}
    # Up, down, to the ends and back: whole bands hide and show again, the band holding the cut hides in part.
    for threshold in (0.2, 0.5, 0.9, 1.0, 0.0, 0.7, 0.1):
        page.evaluate("(t) => view.setMinWeight(t)", threshold)
        kept = [inc for inc in document["incidences"] if inc["weight"] >= threshold]
        assert set(page.evaluate(SHOWN, "[data-incidence-id]")) == {inc["id"] for inc in kept}, threshold
        assert set(page.evaluate(SHOWN, "[data-node-id]")) == {n for inc in kept for n in inc["node_ids"]}, threshold
        assert page.evaluate("() => view.counts()")["incidences"] == len(kept)
