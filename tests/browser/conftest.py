"""Browser fixtures: Debian's chromium driven by Playwright, plus the end-to-end live server and worker process.

Playwright cannot download a browser here, so it launches the system's `chromium` (scripts/test.sh installs it).
The worker is the end-to-end one, reused; only its dictionary differs: one topic's features are labelled without a
`Topic:` prefix, so a sample graph holds single SAE features beside the supernodes, and every feature has top
contexts, as `manage.py label_features` would write them.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from hypergraph_site.demo.samples import LAYER, NAMESPACES, make_dictionary
from sae.config import dictionary_layer_folder
from sae.labeling import CONTEXTS_FILE
from sae.labels import save_labels
from tests.e2e.conftest import (  # noqa: F401 - the end-to-end fixtures
    celery_worker_process, http, web_dictionaries, worker_metrics_port)

UNGROUPED_TOPIC = "Music"


def browser_labels() -> dict[int, str]:
    """The sample's labels, with the UNGROUPED_TOPIC's written `concept N (music)` so they stay single features."""
    labels = make_dictionary().labels
    return {f: (f"concept {f // len(NAMESPACES)} ({UNGROUPED_TOPIC.lower()})"
                if label.startswith(UNGROUPED_TOPIC + ":") else label) for f, label in labels.items()}


def feature_contexts(labels: dict[int, str]) -> dict[str, list[dict]]:
    return {str(f): [{"text": f"… an example where {label} fires …", "activation": round(4.0 - n, 2),
                      "topic": "sample"} for n in range(2)] for f, label in labels.items()}


@pytest.fixture(scope="session")
def e2e_dirs(tmp_path_factory):
    """The end-to-end folders (see tests/e2e/conftest.py) with the browser tests' labels and contexts."""
    from hypergraph_site.demo.samples import write_dictionary

    root = tmp_path_factory.mktemp("browser")
    dirs = {"dict_root": root / "dicts", "artifacts": root / "artifacts", "log": root / "worker.log",
            "shadow": root / "no-shadow-model",  # never written: the browser tests' worker runs without one
            "spans": root / "worker-spans.jsonl", "prometheus": root / "prometheus"}
    write_dictionary(dirs["dict_root"], name="sample")
    folder = dictionary_layer_folder(dirs["dict_root"], "sample", LAYER)
    labels = browser_labels()
    save_labels(folder, labels)
    (folder / CONTEXTS_FILE).write_text(json.dumps(feature_contexts(labels)))
    return dirs


@pytest.fixture(scope="package")
def chromium_browser():
    """Chromium for the browser tests. Playwright's sync API keeps an asyncio loop in this thread, which Django
    takes for an async context; the tests' own database calls are plain synchronous ones, so that check is lifted
    while the browser runs, and only then (https://docs.djangoproject.com/en/stable/topics/async/#async-safety)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed: `bash scripts/test.sh` installs it (apt-get install chromium)")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium_browser):
    context = chromium_browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
