"""Tenant-scoped staff: a staff user linked to a tenant sees only that tenant's traces, events, explanations and
dead letters, in every admin list, detail page, search, filter, autocomplete, graph page and download."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from explainer.models import DeadLetter, Explanation, TraceEvent

from .admin_traces import complete_trace, failed_trace, staff_user

pytestmark = pytest.mark.django_db

CHANGELISTS = ("trace", "traceevent", "explanation", "deadletter")


@pytest.fixture
def two_tenants(alice, bob):
    """Alice and Bob each have a complete and a failed (dead-lettered) trace, with telling ids and model names."""
    alice_tenant, bob_tenant = alice[0], bob[0]
    return {
        "alice": alice_tenant, "bob": bob_tenant,
        "alice_trace": complete_trace(alice_tenant, "alice-visible", model_name="alice-model"),
        "alice_failed": failed_trace(alice_tenant, "alice-broken"),
        "bob_trace": complete_trace(bob_tenant, "bob-secret", model_name="bob-model"),
        "bob_failed": failed_trace(bob_tenant, "bob-broken"),
    }


@pytest.fixture
def alice_staff(client, django_user_model, two_tenants):
    client.force_login(staff_user(django_user_model, "alice-staff", two_tenants["alice"]))
    return client


def objects_of(trace) -> dict[str, int]:
    """The pk of the trace's row in each scoped admin."""
    return {
        "trace": trace.pk,
        "traceevent": TraceEvent.objects.filter(trace=trace).values_list("pk", flat=True).first(),
        "explanation": Explanation.objects.filter(trace=trace).values_list("pk", flat=True).first(),
        "deadletter": DeadLetter.objects.filter(trace=trace).values_list("pk", flat=True).first(),
    }


@pytest.mark.parametrize("model", CHANGELISTS)
def test_lists_show_only_the_staff_users_tenant(alice_staff, model):
    body = alice_staff.get(reverse(f"admin:explainer_{model}_changelist")).content.decode()
    assert "alice-" in body
    assert "bob-" not in body


@pytest.mark.parametrize("model", CHANGELISTS)
def test_another_tenants_object_by_url_is_a_404(alice_staff, two_tenants, model):
    own = objects_of(two_tenants["alice_failed"] if model == "deadletter" else two_tenants["alice_trace"])[model]
    other = objects_of(two_tenants["bob_failed"] if model == "deadletter" else two_tenants["bob_trace"])[model]
    assert alice_staff.get(reverse(f"admin:explainer_{model}_change", args=[own])).status_code == 200
    assert alice_staff.get(reverse(f"admin:explainer_{model}_change", args=[other])).status_code == 404
    assert alice_staff.get(reverse(f"admin:explainer_{model}_history", args=[other])).status_code == 404


@pytest.mark.parametrize("model", CHANGELISTS)
def test_search_finds_nothing_of_another_tenant(alice_staff, model):
    url = reverse(f"admin:explainer_{model}_changelist")
    assert "bob-" not in alice_staff.get(url, {"q": "bob"}).content.decode()
    assert "alice-" in alice_staff.get(url, {"q": "alice"}).content.decode()


def test_filters_offer_and_match_only_the_staff_users_tenant(alice_staff, two_tenants):
    url = reverse("admin:explainer_trace_changelist")
    body = alice_staff.get(url).content.decode()
    assert "alice-model" in body and "bob-model" not in body  # the model filter's choices
    assert "By tenant" not in body  # one tenant: nothing to choose, and no other tenant's slug shown
    filtered = alice_staff.get(url, {"model_name": "bob-model"}).content.decode()
    assert "bob-secret" not in filtered
    forged = alice_staff.get(url, {"tenant__id__exact": two_tenants["bob"].pk})
    assert forged.status_code in (200, 302, 400) and b"bob-secret" not in forged.content


def test_autocomplete_offers_only_the_staff_users_traces(alice_staff):
    url = reverse("admin:autocomplete")
    params = {"app_label": "explainer", "model_name": "deadletter", "field_name": "trace", "term": ""}
    results = alice_staff.get(url, params).json()["results"]
    assert sorted(r["text"] for r in results) == ["alice/alice-broken", "alice/alice-visible"]
    assert alice_staff.get(url, {**params, "term": "bob"}).json()["results"] == []
    tenants = {"app_label": "explainer", "model_name": "trace", "field_name": "tenant", "term": ""}
    assert alice_staff.get(url, tenants).status_code == 403  # tenants are for superusers only


@pytest.mark.parametrize("view", ["graph", "graph_document", "graph_features", "download"])
def test_graph_pages_and_downloads_of_another_tenant_are_404(alice_staff, two_tenants, view):
    url = reverse(f"admin:explainer_trace_{view}", args=[two_tenants["bob_trace"].pk])
    assert alice_staff.get(url, {"format": "hif-1"}).status_code == 404
    own = reverse(f"admin:explainer_trace_{view}", args=[two_tenants["alice_trace"].pk])
    assert alice_staff.get(own, {"format": "hif-1"}).status_code == 200


def test_superuser_sees_every_tenant(client, django_user_model, two_tenants):
    client.force_login(staff_user(django_user_model, "root", superuser=True))
    for model in CHANGELISTS:
        body = client.get(reverse(f"admin:explainer_{model}_changelist")).content.decode()
        assert "alice-" in body and "bob-" in body, model
    body = client.get(reverse("admin:explainer_trace_changelist")).content.decode()
    assert "By tenant" in body
    url = reverse("admin:explainer_trace_graph", args=[two_tenants["bob_trace"].pk])
    assert client.get(url).status_code == 200


def test_staff_without_a_tenant_sees_no_traces(client, django_user_model, two_tenants):
    client.force_login(staff_user(django_user_model, "nobody"))
    assert b"Traces" not in client.get(reverse("admin:index")).content
    for model in CHANGELISTS:
        assert client.get(reverse(f"admin:explainer_{model}_changelist")).status_code == 403
    url = reverse("admin:explainer_trace_graph", args=[two_tenants["alice_trace"].pk])
    assert client.get(url).status_code == 404


def test_anonymous_visitors_are_sent_to_the_login(client, two_tenants):
    url = reverse("admin:explainer_trace_download", args=[two_tenants["alice_trace"].pk])
    response = client.get(url)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_tenants_keys_and_tenant_links_are_for_superusers_only(alice_staff, django_user_model):
    for name in ("tenant", "apikey"):
        assert alice_staff.get(reverse(f"admin:explainer_{name}_changelist")).status_code == 403
    alice_user = django_user_model.objects.get(username="alice-staff")
    alice_user.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user"]))
    page = alice_staff.get(reverse("admin:auth_user_change", args=[alice_user.pk])).content.decode()
    assert "staff_tenant" not in page  # a staff user cannot widen their own view
