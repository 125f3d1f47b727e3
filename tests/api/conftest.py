"""API tests see a dictionary set of the test's choosing, never whatever a demo left under var/."""
from __future__ import annotations

import pytest

from explainer import selectors


@pytest.fixture(autouse=True)
def dictionary_root(settings, tmp_path, monkeypatch):
    """An empty dictionary root: accept-time dictionary checks are skipped until a test installs one."""
    settings.DICT_ROOT = str(tmp_path / "dicts")
    settings.DICT_NAME = "sample"
    monkeypatch.setattr(selectors, "_catalog", None)
    return tmp_path / "dicts"


@pytest.fixture
def sample_dictionary(dictionary_root, monkeypatch):
    """The sample dictionary (layer 6, width 384) installed as the configured set."""
    from hypergraph_site.demo.samples import write_dictionary

    folder = write_dictionary(dictionary_root, name="sample")
    monkeypatch.setattr(selectors, "_catalog", None)
    return folder
