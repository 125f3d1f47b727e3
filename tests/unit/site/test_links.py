"""A trace's link is built from the route resolved once: it must be exactly what resolving it each time gives."""
from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.urls import reverse, set_script_prefix
from hypothesis import given, settings
from hypothesis import strategies as st

from hypergraph_site.api.links import trace_url

# Ids the event schema allows, and ids it does not (a trace made some other way must still link correctly).
SCHEMA_IDS = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
OTHER_IDS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=40)


@pytest.fixture
def request_():
    return RequestFactory().get("/v1/traces", HTTP_HOST="localhost:8443")


@settings(deadline=None)  # the first link loads the URL configuration
@given(trace_id=SCHEMA_IDS | OTHER_IDS)
def test_a_trace_link_is_the_routed_url(trace_id):
    request = RequestFactory().get("/v1/traces", HTTP_HOST="localhost")
    assert trace_url(request, trace_id) == request.build_absolute_uri(reverse("trace-detail", args=[trace_id]))


def test_a_script_prefix_is_kept(request_):
    set_script_prefix("/sidecar/")
    try:
        assert trace_url(request_, "req-42") == "http://localhost:8443/sidecar/v1/traces/req-42"
    finally:
        set_script_prefix("/")
    assert trace_url(request_, "req-42") == "http://localhost:8443/v1/traces/req-42"
