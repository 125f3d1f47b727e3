"""The front door: `/` links where people go, static files are served by the app itself (gunicorn serves none)."""
from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_home_links_to_the_admin_the_api_docs_and_the_health_endpoints(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    for name in ("admin:index", "api-docs", "schema", "healthz", "readyz", "metrics"):
        assert f'href="{reverse(name)}"' in body, name


def test_api_docs_load_nothing_from_another_host(client):
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.content.decode())
    assert assets and all(url.startswith("/") for url in assets), assets


def test_static_files_are_served_by_the_application(client):
    """In dev mode straight from the apps' folders (whitenoise finders): what the demo's gunicorn gets too."""
    response = client.get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"--body-bg" in b"".join(response.streaming_content)
    assert client.get("/static/explainer/home.css").status_code == 200


def test_collected_static_files_are_served_without_the_finders(tmp_path):
    """Production: `collectstatic` (scripts/setup.sh) fills STATIC_ROOT, and the app serves it, compressed too."""
    with override_settings(STATIC_ROOT=tmp_path, WHITENOISE_USE_FINDERS=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        assert (tmp_path / "explainer" / "home.css.gz").exists()
        client = Client()
        response = client.get("/static/explainer/home.css", HTTP_ACCEPT_ENCODING="gzip")
        assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
        assert client.get("/static/admin/css/base.css").status_code == 200
        assert client.get("/static/explainer/no-such-file.js").status_code == 404
