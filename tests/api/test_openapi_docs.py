"""The API's human docs, Swagger UI at /api/docs/ and Redoc at /api/redoc/: served by the app, nothing from a CDN."""
from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name, bundle", [
    ("api-docs", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
    ("api-redoc", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
])
def test_docs_pages_load_everything_from_this_server(client, name, bundle):
    response = client.get(reverse(name))
    assert response.status_code == 200
    page = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert bundle in assets, assets
    assert all(url.startswith("/") for url in assets), assets
    assert not re.search(r"https?://", page), "the page names another host"
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        served.close()


def test_redoc_may_not_fetch_what_its_bundle_names_on_a_cdn(client):
    """The bundle's "API docs by Redocly" logo is an image on a CDN: the page's policy lets images come from here only."""
    page = client.get(reverse("api-redoc")).content.decode()
    policy = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]+)"', page).group(1)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["img-src"] == "'self' data:"


def test_the_docs_read_the_schema_of_this_server(client):
    assert 'spec-url="/api/schema/"' in client.get(reverse("api-redoc")).content.decode()
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and schema.json()["openapi"] == "3.1.0"
