"""Feature labels stored beside a dictionary: `labels.json` = `{"<feature index>": "Namespace: detail"}`.

The namespace before the colon is the grouping key for circuit supernodes; the detail is for people.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LABELS_FILE = "labels.json"


def load_labels(folder: str | Path) -> dict[int, str]:
    """Labels of one layer folder, or {} when it has none (or the file is unreadable: labels are optional)."""
    path = Path(folder) / LABELS_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    labels: dict[int, str] = {}
    for key, value in raw.items():
        try:
            labels[int(key)] = str(value)
        except (TypeError, ValueError):
            continue
    return labels


def save_labels(folder: str | Path, labels: dict[int, str]) -> Path:
    """Write labels atomically (tmp file + rename) so a reader never sees half a file."""
    path = Path(folder) / LABELS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({str(int(k)): v for k, v in sorted(labels.items())}, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    return path
