"""The graph page's concept row: the prompt's concepts in text order and the groups that act together, in Chromium."""
from __future__ import annotations

import pytest
from django.urls import reverse

import hif
from explainer.models import Explanation, Trace, TraceStatus
from tests.browser.test_graph_view import log_in
from tests.unit.hif.test_concepts_document import RECORD

pytestmark = pytest.mark.django_db(transaction=True)


def small_document() -> dict:
    nodes = [{"id": "token_in_2", "type": "input_token", "label": "New", "position": 2},
             {"id": "token_out_10", "type": "output_token", "label": " city", "position": 10},
             {"id": "feat_1_7", "type": "sae_feature", "label": "places", "layer": 1, "activation_strength": 1.0}]
    incidences = [{"id": "att_0", "node_ids": ["feat_1_7", "token_in_2", "token_out_10"], "weight": 0.8,
                   "metadata": {"type": "causal_circuit", "method": "acdc", "window": "tok-10"},
                   "attributes": {"effect": 0.8}}]
    meta = {"model_name": "m", "sae_dictionary": "d", "granularity": "token", "created_at": "2026-01-01T00:00:00Z"}
    return hif.build_hif(nodes, incidences, meta, hif.HypergraphConfig(min_edge_weight=0.0, grouping="none"))


def test_the_graph_page_shows_the_concepts_and_the_groups_that_act_together(page, live_server, alice,
                                                                            django_user_model, tmp_path):
    document = small_document()
    trace = Trace.objects.create(tenant=alice[0], trace_id="concepts-page", status=TraceStatus.COMPLETE,
                                 model_name="m", concepts=RECORD)
    Explanation.objects.create(trace=trace, document=document, size_bytes=1, node_count=len(document["nodes"]),
                               incidence_count=len(document["incidences"]))
    log_in(page, live_server.url, django_user_model)
    page.goto(live_server.url + reverse("admin:explainer_trace_graph", args=[trace.pk]))
    page.wait_for_selector('[data-graph-root][data-state="ready"]')
    row = page.locator('[data-role="concepts"]')
    assert row.locator(".hg-concept").all_inner_texts() == ["New York", "Paris", "5 kg"]
    assert row.locator(".hg-concept-group").all_inner_texts() == ["New York + Paris synergy 0.700"]
    assert row.locator(".hg-concept").first.get_attribute("title") == "PROPER_NOUN · tokens 2, 3 · drop 0.000"
    page.screenshot(path=str(tmp_path / "concept_row.png"))
