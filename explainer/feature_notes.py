"""What a trace's SAE dictionary says about individual features: label, layer, index and top contexts.

A HIF document names features by id (`feat_<layer>_<index>`) and lists a supernode's members by id only; the
graph view asks for the rest when a person opens a feature. Labels come from the dictionary's `labels.json`,
contexts from the `feature_contexts.json` that `manage.py label_features` writes beside it; either may be
missing (the bundled sample has labels but no contexts), and then the view says so instead of failing.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from hif.ids import parse_feature_node
from sae.config import dictionary_layer_folder
from sae.labeling import CONTEXTS_FILE
from sae.labels import LABELS_FILE, load_labels

MAX_CONTEXTS = 8
MAX_FEATURES_PER_REQUEST = 200


def feature_notes(*, dict_root: str | Path, dictionary: str, feature_ids: list[str]) -> dict[str, dict]:
    """`{id: {"label", "layer", "index", "contexts"}}` for each well-formed id, at most MAX_FEATURES_PER_REQUEST.

    `dictionary` is the document's `meta.sae_dictionary`: one dictionary name, or several joined by commas when
    the trace's layers came from different sets; a layer's folder is looked up under each name in turn.
    """
    names = [name for name in dictionary.split(",") if name]
    notes: dict[str, dict] = {}
    for feature_id in feature_ids[:MAX_FEATURES_PER_REQUEST]:
        parsed = parse_feature_node(feature_id)
        if parsed is None:
            continue
        layer, index = parsed
        folder = _layer_folder(Path(dict_root), names, layer)
        labels, contexts = (_labels(folder), _contexts(folder)) if folder else ({}, {})
        notes[feature_id] = {
            "label": labels.get(index),
            "layer": layer,
            "index": index,
            "contexts": contexts.get(str(index), [])[:MAX_CONTEXTS],
        }
    return notes


def _layer_folder(dict_root: Path, names: list[str], layer: int) -> Path | None:
    for name in names:
        folder = dictionary_layer_folder(dict_root, name, layer)
        if folder.is_dir():
            return folder
    return None


def _labels(folder: Path) -> dict[int, str]:
    return _labels_at(str(folder), _mtime(folder / LABELS_FILE))


def _contexts(folder: Path) -> dict[str, list[dict]]:
    return _contexts_at(str(folder), _mtime(folder / CONTEXTS_FILE))


def _mtime(path: Path) -> float:
    """Part of the cache key, so relabelling a dictionary shows without restarting the web server."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=32)
def _labels_at(folder: str, mtime: float) -> dict[int, str]:
    return load_labels(folder)


@lru_cache(maxsize=8)
def _contexts_at(folder: str, mtime: float) -> dict[str, list[dict]]:
    """The contexts file of one layer folder, `{}` when absent or unreadable (contexts are optional)."""
    try:
        raw = json.loads((Path(folder) / CONTEXTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}
