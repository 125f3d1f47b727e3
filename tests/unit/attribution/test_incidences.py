"""Incidence building: normalisation per window and layer, ordering, and the strongest-first cut at the deadline."""
from __future__ import annotations

import numpy as np

from attribution.incidences import build_incidences
from attribution.inputs import Estimates


def _estimates(method="acdc", fallback_from=None) -> Estimates:
    window = np.array([0, 0, 0, 1, 1, 1, 1])
    layer = np.array([2, 2, 5, 2, 2, 2, 5])
    feature = np.array([10, 11, 12, 10, 13, 14, 15])
    effect = np.array([2.0, -1.0, 0.5, 4.0, 3.0, -1.0, 0.0])
    n = len(window)
    return Estimates(method, window, layer, feature, effect, np.full(n, 0.1), np.full(n, 9), np.ones(n, bool),
                     fallback_from)


def _build(stop_at=None, **kw):
    return build_incidences([_estimates(**kw)], windows=[(0, 2), (2, 3)], labels=["sent-0", "sent-1"],
                            value="logit", min_edge_weight=0.01, per_token_cap=10, stop_at=stop_at)


def test_weights_are_normalised_per_window_and_layer_and_ordered():
    out, cut = _build()
    assert cut is None
    got = [(i["id"], i["weight"]) for i in out]
    assert got == [
        ("att_acdc_sent-0_2_10", 1.0), ("att_acdc_sent-0_5_12", 1.0), ("att_acdc_sent-0_2_11", 0.5),
        ("att_acdc_sent-1_2_10", 1.0), ("att_acdc_sent-1_2_13", 0.75), ("att_acdc_sent-1_2_14", 0.25),
    ]  # the zero-effect feature 15 has no incidence
    assert out[2]["attributes"]["effect"] == -1.0 and out[2]["attributes"]["se"] == 0.1
    assert out[0]["node_ids"] == ["feat_2_10", "token_out_0", "token_out_1"]


def test_cut_at_deadline_keeps_each_windows_strongest():
    out, cut = _build(stop_at=0.0)  # already past: only the guaranteed first rank is built
    assert cut == 1
    assert [i["id"] for i in out] == ["att_acdc_sent-0_2_10", "att_acdc_sent-1_2_10"]


def test_fallback_incidences_say_what_they_stand_in_for():
    out, _ = _build(method="saliency", fallback_from="acdc")
    assert all(i["metadata"]["method"] == "saliency" and i["attributes"]["fallback_from"] == "acdc" and
               i["attributes"]["value"] == "activation" for i in out)
