"""Feature notes for the graph view: labels and top contexts from the dictionary folders, when they exist."""
from __future__ import annotations

import json
import os

from explainer.feature_notes import MAX_CONTEXTS, MAX_FEATURES_PER_REQUEST, feature_notes
from sae.config import dictionary_layer_folder
from sae.labeling import CONTEXTS_FILE
from sae.labels import save_labels


def write_layer(root, name, layer, labels, contexts=None):
    folder = dictionary_layer_folder(root, name, layer)
    folder.mkdir(parents=True)
    save_labels(folder, labels)
    if contexts is not None:
        (folder / CONTEXTS_FILE).write_text(json.dumps(contexts))
    return folder


def test_labels_layers_indices_and_top_contexts(tmp_path):
    contexts = {"7": [{"text": f"ctx {n}", "activation": 9 - n, "topic": "re"} for n in range(12)]}
    write_layer(tmp_path, "minilm", 3, {7: "Keyword: def", 8: "Word: cell"}, contexts)
    notes = feature_notes(dict_root=tmp_path, dictionary="minilm", feature_ids=["feat_3_7", "feat_3_8"])
    assert notes["feat_3_7"]["label"] == "Keyword: def" and notes["feat_3_7"]["layer"] == 3
    assert notes["feat_3_7"]["index"] == 7
    assert [c["text"] for c in notes["feat_3_7"]["contexts"]] == [f"ctx {n}" for n in range(MAX_CONTEXTS)]
    assert notes["feat_3_8"] == {"label": "Word: cell", "layer": 3, "index": 8, "contexts": []}


def test_layers_are_found_under_any_of_the_documents_dictionaries(tmp_path):
    write_layer(tmp_path, "first", 1, {5: "from first"})
    write_layer(tmp_path, "second", 2, {5: "from second"})
    notes = feature_notes(dict_root=tmp_path, dictionary="first,second", feature_ids=["feat_1_5", "feat_2_5"])
    assert notes["feat_1_5"]["label"] == "from first" and notes["feat_2_5"]["label"] == "from second"


def test_missing_dictionaries_and_foreign_ids_give_no_label_instead_of_an_error(tmp_path):
    notes = feature_notes(dict_root=tmp_path, dictionary="gone", feature_ids=["feat_4_2", "super_biology", "x"])
    assert notes == {"feat_4_2": {"label": None, "layer": 4, "index": 2, "contexts": []}}


def test_relabelling_shows_without_a_restart(tmp_path):
    folder = write_layer(tmp_path, "d", 0, {1: "old"})
    assert feature_notes(dict_root=tmp_path, dictionary="d", feature_ids=["feat_0_1"])["feat_0_1"]["label"] == "old"
    save_labels(folder, {1: "new"})
    os.utime(folder / "labels.json", (1, 1))
    assert feature_notes(dict_root=tmp_path, dictionary="d", feature_ids=["feat_0_1"])["feat_0_1"]["label"] == "new"


def test_requests_are_bounded():
    ids = [f"feat_0_{i}" for i in range(MAX_FEATURES_PER_REQUEST + 50)]
    assert len(feature_notes(dict_root="/nonexistent", dictionary="d", feature_ids=ids)) == MAX_FEATURES_PER_REQUEST
