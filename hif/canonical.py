"""One JSON encoding for HIF documents, so two runs can be compared byte for byte."""

from __future__ import annotations

import json
from typing import Any


def dumps_canonical(doc: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace.

    Sorted keys remove dict insertion order from the bytes; `allow_nan=False` refuses NaN/Infinity, which are
    not JSON and would make a document unreadable by strict parsers.
    """
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
