"""The trace browser: read-only pages, the list's columns, constant queries per list, downloads, dead letters."""
from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework_api_key.models import APIKey

import hif
from explainer.graph_documents import graph_load
from explainer.models import ApiKey, AuditEvent, DeadLetter, Explanation, Trace, TraceEvent
from sae.config import dictionary_layer_folder
from sae.labeling import CONTEXTS_FILE
from sae.labels import save_labels

from .admin_traces import complete_trace, failed_trace, small_document, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client, django_user_model):
    client.force_login(staff_user(django_user_model, "root", superuser=True))
    return client


@pytest.fixture
def trace(alice):
    return complete_trace(alice[0], "req-42")


def test_trace_list_shows_tenant_slug_counts_and_seconds_newest_first(root, alice):
    older = complete_trace(alice[0], "older-trace")
    Trace.objects.filter(pk=older.pk).update(created=older.created.replace(year=2020))
    complete_trace(alice[0], "newer-trace")
    body = root.get(reverse("admin:explainer_trace_changelist")).content.decode()
    assert body.index("newer-trace") < body.index("older-trace")
    row = body[body.index("newer-trace"):body.index("older-trace")]
    assert ">alice<" in row  # the tenant's slug, not its pk
    document = small_document()
    assert f">{len(document['nodes'])}<" in row and f">{len(document['incidences'])}<" in row
    assert ">0.84<" in row  # the five stage timings added up
    assert reverse("admin:explainer_trace_graph", args=[Trace.objects.get(trace_id="newer-trace").pk]) in row


def test_trace_is_named_by_tenant_slug(trace):
    assert str(trace) == "alice/req-42"


@pytest.mark.parametrize("superuser", [True, False])
def test_changelist_queries_do_not_grow_with_the_number_of_traces(client, django_user_model, alice, superuser):
    client.force_login(staff_user(django_user_model, "u", None if superuser else alice[0], superuser=superuser))
    url = reverse("admin:explainer_trace_changelist")
    complete_trace(alice[0], "t-0")
    client.get(url)  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    for n in range(1, 50):
        complete_trace(alice[0], f"t-{n}")
    with CaptureQueriesContext(connection) as fifty:
        body = client.get(url).content.decode()
    assert body.count('class="field-trace_id"') == 50
    assert len(fifty) == len(one), [q["sql"] for q in fifty.captured_queries]


@pytest.mark.parametrize("model", ["traceevent", "explanation", "deadletter"])
def test_other_lists_query_a_constant_number_of_times(root, alice, model):
    url = reverse(f"admin:explainer_{model}_changelist")
    complete_trace(alice[0], "t-0")
    failed_trace(alice[0], "f-0")
    root.get(url)
    with CaptureQueriesContext(connection) as one:
        root.get(url)
    for n in range(1, 20):
        complete_trace(alice[0], f"t-{n}")
        failed_trace(alice[0], f"f-{n}")
    with CaptureQueriesContext(connection) as many:
        root.get(url)
    assert len(many) == len(one)


def test_explanation_list_never_loads_documents(root, trace):
    with CaptureQueriesContext(connection) as queries:
        root.get(reverse("admin:explainer_explanation_changelist"))
    explanation_reads = [q["sql"] for q in queries.captured_queries if 'FROM "explainer_explanation"' in q["sql"]]
    assert explanation_reads and all('"explainer_explanation"."document",' not in sql for sql in explanation_reads)


def test_trace_page_is_read_only_with_timeline_events_and_graph_links(root, trace):
    url = reverse("admin:explainer_trace_change", args=[trace.pk])
    body = root.get(url).content.decode()
    for stage, seconds in (("load", "0.010"), ("sae_decode", "0.500"), ("attribute", "0.300"), ("build", "0.020"),
                           ("persist", "0.010")):
        assert f'data-stage="{stage}"' in body and f"{seconds} s" in body
    assert "sample-model: “Cells divide. Genes copy.”" in body  # the completion event, summarised
    assert reverse("admin:explainer_trace_graph", args=[trace.pk]) in body
    for fmt in ("hif-1", "hif-standard", "neuronpedia"):
        assert f'data-format="{fmt}"' in body
    assert "<textarea" not in body and 'name="status"' not in body and 'name="model_name"' not in body
    assert 'name="_save"' not in body and 'name="_continue"' not in body
    assert root.post(url, {"status": "failed"}).status_code == 403
    assert Trace.objects.get(pk=trace.pk).status == "complete"
    assert root.get(reverse("admin:explainer_trace_add")).status_code == 403


def test_failed_trace_page_shows_the_error_and_where_it_stopped(root, alice):
    failed = failed_trace(alice[0], "broken")
    body = root.get(reverse("admin:explainer_trace_change", args=[failed.pk])).content.decode()
    assert "activation shards expired" in body
    assert 'hg-timeline__row--failed" data-stage="load"' in body
    assert "No graph: the trace is failed." in body


def test_explanation_page_shows_meta_not_the_document(root, trace):
    explanation = Explanation.objects.get(trace=trace)
    body = root.get(reverse("admin:explainer_explanation_change", args=[explanation.pk])).content.decode()
    assert "<textarea" not in body and 'name="node_count"' not in body and "<select" not in body
    assert "att_feat_6_1_0" not in body  # no raw document
    assert "sample-model" in body and "sentence" in body
    assert root.post(reverse("admin:explainer_explanation_change", args=[explanation.pk]), {}).status_code == 403


def test_one_api_key_admin(root):
    assert not admin.site.is_registered(APIKey)
    body = root.get(reverse("admin:index")).content.decode()
    assert body.count(">API keys<") == 1


@pytest.mark.parametrize("fmt,schema", [("hif-1", "v1"), ("hif-standard", "hif-standard"),
                                        ("neuronpedia", "neuronpedia")])
def test_downloads_are_valid_documents_as_attachments(root, trace, fmt, schema):
    response = root.get(reverse("admin:explainer_trace_download", args=[trace.pk]), {"format": fmt})
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="req-42.{fmt}.json"'
    document = json.loads(response.content)
    assert hif.validate_hif(document, schema=schema) == []
    if fmt == "hif-1":
        assert document == graph_load(explanation=Explanation.objects.get(trace=trace))


def test_download_refuses_unknown_formats_and_traces_without_graphs(root, trace, alice):
    url = reverse("admin:explainer_trace_download", args=[trace.pk])
    assert root.get(url, {"format": "graphml"}).status_code == 400
    failed = failed_trace(alice[0], "broken")
    assert root.get(reverse("admin:explainer_trace_download", args=[failed.pk])).status_code == 409
    page = root.get(reverse("admin:explainer_trace_graph", args=[failed.pk])).content.decode()
    assert "No graph yet" in page and "data-document-url" not in page


def test_graph_page_points_the_drawing_at_its_document(root, trace):
    page = root.get(reverse("admin:explainer_trace_graph", args=[trace.pk])).content.decode()
    document_url = reverse("admin:explainer_trace_graph_document", args=[trace.pk])
    assert f'data-document-url="{document_url}"' in page
    assert 'name="min_weight"' in page and 'name="q"' in page
    assert "dictionary <strong>sample</strong>" in page and "<strong>8</strong> nodes" in page
    assert "explainer/graph/page.js" in page
    assert json.loads(root.get(document_url).content) == graph_load(explanation=Explanation.objects.get(trace=trace))
    root.get(reverse("admin:explainer_trace_download", args=[trace.pk]), {"format": "neuronpedia"})
    views = AuditEvent.objects.filter(action__startswith="admin.").values_list("action", "actor", "tenant", "target")
    assert list(views) == [("admin.graph_viewed", "admin:root", "alice", "req-42"),
                           ("admin.graph_document_read", "admin:root", "alice", "req-42"),
                           ("admin.graph_downloaded", "admin:root", "alice", "req-42")]


def test_keys_created_and_revoked_in_the_admin_are_audited(root, alice):
    tenant, _ = alice
    add = root.post(reverse("admin:explainer_apikey_add"), {"name": "ci", "tenant": tenant.pk,
                                                              "scopes": '["traces:read"]'})
    assert add.status_code == 302, add.content.decode()[:2000]
    key = ApiKey.objects.get(name="ci")
    change = root.post(reverse("admin:explainer_apikey_change", args=[key.pk]),
                       {"name": "ci", "tenant": tenant.pk, "scopes": '["traces:read"]', "revoked": "on"})
    assert change.status_code == 302, change.content.decode()[:2000]
    rows = AuditEvent.objects.filter(actor="admin:root").values_list("action", "target")
    assert list(rows) == [("api_key.created", f"key:{key.prefix}"), ("api_key.revoked", f"key:{key.prefix}")]
    assert ApiKey.objects.get(pk=key.pk).revoked


def test_dead_letters_keep_their_rerun_action(client, django_user_model, alice):
    failed = failed_trace(alice[0], "broken")
    client.force_login(staff_user(django_user_model, "alice-staff", alice[0]))
    letter = DeadLetter.objects.get(trace=failed)
    response = client.post(reverse("admin:explainer_deadletter_changelist"),
                           {"action": "rerun", "index": 0, "_selected_action": [letter.pk]}, follow=True)
    assert "Re-running 1 trace." in response.content.decode()
    letter.refresh_from_db()
    assert letter.replayed_at is not None
    assert Trace.objects.get(pk=failed.pk).status == "queued"
    assert AuditEvent.objects.filter(action="trace.replayed", actor="admin:alice-staff").count() == 1


def test_feature_notes_come_from_the_traces_dictionary(root, trace, settings, tmp_path):
    folder = dictionary_layer_folder(tmp_path, "sample", 6)
    folder.mkdir(parents=True)
    save_labels(folder, {1: "Biology: cells", 2: "plain feature two"})
    (folder / CONTEXTS_FILE).write_text(json.dumps({"1": [{"text": "the cell divides", "activation": 3.5}]}))
    settings.DICT_ROOT = str(tmp_path)
    url = reverse("admin:explainer_trace_graph_features", args=[trace.pk])
    notes = root.get(url, {"id": ["feat_6_1", "feat_6_2"]}).json()["features"]
    assert notes["feat_6_1"] == {"label": "Biology: cells", "layer": 6, "index": 1,
                                 "contexts": [{"text": "the cell divides", "activation": 3.5}]}
    assert notes["feat_6_2"]["label"] == "plain feature two" and notes["feat_6_2"]["contexts"] == []


def test_an_activations_event_page_shows_layer_and_shape_and_the_list_does_not_read_them(root, trace):
    event = TraceEvent.objects.create(trace=trace, event_type="activations", event_hash="acts",
                                      payload={"layer": 6, "shape": [6, 384], "encoding": "f16-base64", "data": "AA"})
    page = root.get(reverse("admin:explainer_traceevent_change", args=[event.pk])).content.decode()
    assert "layer 6, 6×384 rows, f16-base64" in page and '"data"' not in page
    with CaptureQueriesContext(connection) as queries:
        listing = root.get(reverse("admin:explainer_traceevent_changelist")).content.decode()
    assert "layer and shape on the event&#x27;s page" in listing
    assert not any("'layer'" in q["sql"] for q in queries.captured_queries)  # no payload ->> 'layer'


def test_dead_letters_filter_by_whether_they_were_re_run(root, alice):
    failed_trace(alice[0], "waiting-one")
    done = failed_trace(alice[0], "done-one")
    DeadLetter.objects.filter(trace=done).update(replayed_at=done.created)
    url = reverse("admin:explainer_deadletter_changelist")
    assert "waiting-one" in root.get(url, {"rerun": "waiting"}).content.decode()
    assert "done-one" not in root.get(url, {"rerun": "waiting"}).content.decode()
    assert "done-one" in root.get(url, {"rerun": "done"}).content.decode()
    assert "waiting-one" not in root.get(url, {"rerun": "done"}).content.decode()
