from __future__ import annotations

from sae import load_labels, save_labels


def test_missing_labels_is_empty(tmp_path):
    assert load_labels(tmp_path) == {}


def test_roundtrip_and_exact_file_format(tmp_path):
    save_labels(tmp_path, {3: "Code: python keywords", 10: "Punctuation: commas"})
    assert load_labels(tmp_path) == {3: "Code: python keywords", 10: "Punctuation: commas"}
    import json
    assert json.loads((tmp_path / "labels.json").read_text()) == {"3": "Code: python keywords",
                                                                   "10": "Punctuation: commas"}


def test_corrupt_labels_are_ignored(tmp_path):
    (tmp_path / "labels.json").write_text("[1, 2")
    assert load_labels(tmp_path) == {}
