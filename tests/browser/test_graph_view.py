"""The trace browser in a real browser: log in, open a finished trace's graph, filter, select, expand, download.

The trace is explained by the end-to-end worker process from events posted over HTTP, exactly as in production;
the drawing is then read back through its `data-node-id` / `data-incidence-id` attributes and compared with the
stored document.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.urls import reverse

import hif
from explainer.graph_documents import graph_load
from explainer.models import StaffTenant, Tenant, Trace
from hypergraph_site.demo.samples import sample_events

from .conftest import UNGROUPED_TOPIC, browser_labels

pytestmark = pytest.mark.django_db(transaction=True)

TRACE_ID = "sample-biology"
SCREENSHOT = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "graph_view.png"
# Drawn and shown: an element hidden itself has no box, one in a hidden layer is fully transparent.
# (`checkVisibility()` answers true for an SVG group hidden by `display: none` in Chromium, hence the box.)
VISIBLE_IDS = """(selector) => Array.from(document.querySelectorAll(selector)).filter((el) => {
    const box = el.getBoundingClientRect();
    return (box.width > 0 || box.height > 0) && el.checkVisibility({opacityProperty: true});
  }).map((el) => el.dataset.nodeId || el.dataset.incidenceId)"""


def explain(http) -> dict:
    for event in (e for e in sample_events() if e["trace_id"] == TRACE_ID):
        status, body = http.post(event)
        assert status == 202, body
    summary = http.wait_terminal(TRACE_ID)
    assert summary["status"] == "complete", summary["error"]
    return graph_load(explanation=Trace.objects.get(trace_id=TRACE_ID).explanation)


def log_in(page, base_url: str, django_user_model) -> None:
    user = django_user_model.objects.create_user(username="alice-staff", password="correct horse", is_staff=True)
    StaffTenant.objects.create(user=user, tenant=Tenant.objects.get(slug="alice"))
    page.goto(base_url + reverse("admin:login") + "?next=" + reverse("admin:explainer_trace_changelist"))
    page.fill("#id_username", "alice-staff")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")


def visible(page, selector: str) -> set[str]:
    return set(page.evaluate(VISIBLE_IDS, selector))


def a_threshold_between(weights: list[float]) -> float:
    """A slider position (a multiple of 0.01) that hides some incidences and keeps some."""
    for step in range(1, 101):
        threshold = step / 100
        if 0 < sum(w >= threshold for w in weights) < len(weights):
            return threshold
    pytest.skip("all incidences have the same weight; no slider position splits them")


def test_graph_view_in_chromium(page, http, live_server, django_user_model):
    document = explain(http)  # `http` points the live server at the worker's dictionary: labels and contexts
    nodes = {n["id"]: n for n in document["nodes"]}
    incidences = document["incidences"]
    log_in(page, live_server.url, django_user_model)

    # From the trace list to the trace's page to its graph, by the links a person would follow.
    page.click(f"text={TRACE_ID}")
    page.click("text=Open graph view")
    page.wait_for_selector("[data-graph-root][data-state=ready]")
    assert visible(page, "[data-node-id]") == set(nodes)
    assert visible(page, "[data-incidence-id]") == {inc["id"] for inc in incidences}
    assert page.locator("[data-node-id]").count() == len(nodes)
    assert page.locator("[data-incidence-id]").count() == len(incidences)

    # The slider hides incidences below the weight and the nodes they leave alone.
    threshold = a_threshold_between([inc["weight"] for inc in incidences])
    page.fill("input[name=min_weight]", f"{threshold:.2f}")
    kept = [inc for inc in incidences if inc["weight"] >= threshold]
    assert visible(page, "[data-incidence-id]") == {inc["id"] for inc in kept}
    assert visible(page, "[data-node-id]") == {node_id for inc in kept for node_id in inc["node_ids"]}
    assert page.inner_text("[data-role=counts]").startswith(f"{len(kept)} of {len(incidences)} incidences")
    page.fill("input[name=min_weight]", "0")
    assert len(visible(page, "[data-incidence-id]")) == len(incidences)

    # A token: its incidences and their features stay lit.
    token = next(n for n in document["nodes"] if n["type"] == "output_token" and n["position"] == 3)
    page.click(f'[data-node-id="{token["id"]}"]')
    own = [inc for inc in incidences if token["id"] in inc["node_ids"]]
    lit = set(page.eval_on_selector_all(".is-hl[data-incidence-id]", "els => els.map(e => e.dataset.incidenceId)"))
    assert own and lit == {inc["id"] for inc in own}
    lit_nodes = set(page.eval_on_selector_all(".is-hl[data-node-id]", "els => els.map(e => e.dataset.nodeId)"))
    assert lit_nodes == {node_id for inc in own for node_id in inc["node_ids"]}
    assert "Output token" in page.inner_text("[data-role=panel]")

    # A feature: label, layer, index, activation and its top contexts from the dictionary.
    feature = next(n for n in document["nodes"] if n["type"] == "sae_feature")
    page.click(f'[data-node-id="{feature["id"]}"]')
    page.wait_for_selector("[data-role=panel] .hg-contexts")
    panel = page.inner_text("[data-role=panel]")
    index = feature["attributes"]["feature_index"]
    assert feature["label"] == browser_labels()[index] and UNGROUPED_TOPIC.lower() in feature["label"]
    assert feature["label"] in panel and f"an example where {feature['label']} fires" in panel
    assert f"layer\n{feature['layer']}" in panel and f"index\n{index}" in panel
    assert f"activation\n{feature['activation_strength']:.3f}" in panel

    # A supernode: drawn collapsed, a click expands it to its members; a member describes itself.
    supernode = nodes["super_biology"]
    members = supernode["attributes"]["members"]
    page.click('[data-node-id="super_biology"]')
    page.wait_for_selector('[data-members-of="super_biology"] [data-member-id]')
    drawn_members = page.eval_on_selector_all('[data-members-of="super_biology"] [data-member-id]',
                                              "els => els.map(e => e.dataset.memberId)")
    assert sorted(drawn_members) == sorted(members)
    member = members[0]
    page.click(f'[data-member-id="{member}"]')
    label = browser_labels()[int(member.rsplit("_", 1)[1])]
    page.wait_for_selector(f"[data-role=panel] h2:has-text('{label}')")
    page.wait_for_selector("[data-role=panel] .hg-contexts")
    page.click('[data-node-id="super_biology"]')
    assert page.locator('[data-members-of="super_biology"]').count() == 0
    page.click("[data-action=fit]")

    # Search over feature labels.
    page.fill("input[name=q]", UNGROUPED_TOPIC.lower())
    page.wait_for_selector("[data-role=search-results]")
    matching = {n["id"] for n in document["nodes"] if n["type"] in ("sae_feature", "circuit_supernode")
                and UNGROUPED_TOPIC.lower() in n["label"].lower()}
    assert set(page.eval_on_selector_all(".is-match", "els => els.map(e => e.dataset.nodeId)")) == matching
    page.fill("input[name=q]", "")

    # Downloads from the page, through the admin session.
    for fmt, schema in (("hif-1", "v1"), ("neuronpedia", "neuronpedia")):
        with page.expect_download() as download:
            page.click(f'a[data-format="{fmt}"]')
        assert download.value.suggested_filename == f"{TRACE_ID}.{fmt}.json"
        downloaded = json.loads(Path(download.value.path()).read_text())
        assert hif.validate_hif(downloaded, schema=schema) == []
    assert downloaded["metadata"]["slug"] == TRACE_ID

    page.click(f'[data-node-id="{token["id"]}"]')
    page.mouse.move(1, 1)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
