"""The id scheme of graph nodes, windows and incidences: minted here and parsed here, nowhere else.

An id says what a row is, never where it sits, so two runs over one trace give the same ids and an id can be read
back without a lookup table: `feat_<layer>_<index>` (an SAE feature), `token_in_<position>` / `token_out_<position>`
(prompt and output tokens), `super_<slug of a label prefix>` (a supernode), `sent-<j>` / `tok-<j>` (the j-th
sentence or token window) and `att_<method>_<window>_<layer>_<index>` (the incidence by which a method attributes a
window's output to a feature). Columnar graphs store no ids at all; these functions mint them for the few rows a
document shows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

FEATURE = "feat"
INPUT_TOKEN = "token_in"
OUTPUT_TOKEN = "token_out"
SUPERNODE = "super"
INCIDENCE = "att"
WINDOW_PREFIX = {"sentence": "sent", "token": "tok"}


def feature_node(layer: int, index: int) -> str:
    return f"{FEATURE}_{layer}_{index}"


def input_token(position: int) -> str:
    return f"{INPUT_TOKEN}_{position}"


def output_token(position: int) -> str:
    return f"{OUTPUT_TOKEN}_{position}"


def window(granularity: str, j: int) -> str:
    return f"{WINDOW_PREFIX[granularity]}-{j}"


def incidence(method: str, window_label: str, layer: int, index: int) -> str:
    return f"{INCIDENCE}_{method}_{window_label}_{layer}_{index}"


def supernode(prefix: str) -> str:
    """`super_<slug>`: lower-case ASCII words joined by "_"; a prefix with none (all symbols, other scripts)
    gets a short hash instead, so distinct prefixes rarely share an id (the caller still resolves clashes)."""
    slug = re.sub(r"[^0-9a-z]+", "_", prefix.lower()).strip("_")
    return f"{SUPERNODE}_{slug or 'h' + hashlib.sha1(prefix.encode('utf-8')).hexdigest()[:10]}"


def parse_feature_node(node_id: str) -> tuple[int, int] | None:
    """(layer, index) of a `feat_<layer>_<index>` id; None for any other id."""
    parts = node_id.split("_")
    if len(parts) != 3 or parts[0] != FEATURE or not (parts[1].isdecimal() and parts[2].isdecimal()):
        return None
    return int(parts[1]), int(parts[2])


def feature_nodes(layer: np.ndarray, index: np.ndarray) -> list[str]:
    """`feature_node` over two integer columns (one f-string per row: the cheapest way CPython builds them)."""
    return [f"{FEATURE}_{la}_{ix}" for la, ix in zip(layer.tolist(), index.tolist())]


def token_nodes(prefix: str, position: np.ndarray) -> list[str]:
    return [f"{prefix}_{p}" for p in position.tolist()]


def incidences(methods: Sequence[str], windows: Sequence[str], method: np.ndarray, window_index: np.ndarray,
               layer: np.ndarray, index: np.ndarray) -> list[str]:
    """`incidence` over columns: method codes into `methods`, window indices into `windows`."""
    return [f"{INCIDENCE}_{methods[m]}_{windows[w]}_{la}_{ix}"
            for m, w, la, ix in zip(method.tolist(), window_index.tolist(), layer.tolist(), index.tolist())]
