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
MINTED_NODE_PREFIXES = (f"{FEATURE}_", f"{INPUT_TOKEN}_", f"{OUTPUT_TOKEN}_")


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
    """`incidence` over columns: method codes into `methods`, window indices into `windows` (each distinct
    method and window spelled once)."""
    code = method.astype(np.int64) * len(windows) + window_index
    present = np.flatnonzero(np.bincount(code, minlength=1)).tolist()
    spelled = dict(zip(present, (f"{INCIDENCE}_{methods[c // len(windows)]}_{windows[c % len(windows)]}_"
                                 for c in present)))
    return [f"{spelled[c]}{la}_{ix}" for c, la, ix in zip(code.tolist(), layer.tolist(), index.tolist())]


# Sorting ids without minting them. An id is a few names and decimal numbers, each followed by "_" except the last
# number. Two ids compare as their first differing field, provided no field value (with its "_") is a proper prefix
# of another value of that field; numbers compare as text ("10" < "9"). So a key per field, packed into one integer,
# sorts like the ids: what the pruner needs to break ties by id across 10⁵ rows without building 10⁵ strings.


def incidence_order(methods: Sequence[str], windows: Sequence[str], method: np.ndarray, window_index: np.ndarray,
                    layer: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """Integers that sort like the ids `incidences` mints for these rows; None when a method or window name makes
    the shortcut unsafe (one name with its "_" beginning another, as `acdc_` and `acdc_x_`) or keys overflow."""
    method_rank, window_rank = _name_ranks(methods), _name_ranks(windows)
    if method_rank is None or window_rank is None:
        return None
    return _pack([(method_rank[method], len(methods)), (window_rank[window_index], len(windows)),
                  _number_field(layer, separated=True), _number_field(index, separated=False)])


def node_order(is_feature: np.ndarray, is_input: np.ndarray, layer: np.ndarray, index: np.ndarray,
               position: np.ndarray) -> np.ndarray | None:
    """Integers that sort like the minted ids of these nodes: features (`feature_node` of layer and index), input
    tokens (`input_token` of position) and the rest output tokens (`feat_` < `token_in_` < `token_out_`); None
    when the numbers are too long to pack."""
    kind = np.where(is_feature, 0, np.where(is_input, 1, 2))
    layer_key, layer_size = _number_field(np.where(is_feature, layer, 0), separated=True)
    return _pack([(kind, 3), (np.where(is_feature, layer_key, 0), layer_size),
                  _number_field(np.where(is_feature, index, position), separated=False)])


def _name_ranks(names: Sequence[str]) -> np.ndarray | None:
    """Rank of each name followed by "_" among the others; None if one of them begins another."""
    spelled = [f"{name}_" for name in names]
    order = sorted(range(len(spelled)), key=spelled.__getitem__)
    if any(spelled[b].startswith(spelled[a]) for a, b in zip(order, order[1:])):
        return None
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[order] = np.arange(len(names))
    return ranks


def _number_field(values: np.ndarray, *, separated: bool) -> tuple[np.ndarray, int]:
    """Keys (and their bound) that sort non-negative integers as their decimal text sorts, followed by "_" when
    `separated`, else ending the id.

    Each number becomes its digits read in base 11, padded to a common width: padding that stands for "_" is 10,
    above every digit ("11_" < "1_"); at the end of an id it is 0, below every digit shifted up by one ("1" < "10").
    """
    values = values.astype(np.int64)
    width = len(str(int(values.max(initial=0))))
    if width > 18:  # 11**19 overflows int64
        return np.zeros(len(values), dtype=np.int64), 2**63
    length = 1 + np.searchsorted(10 ** np.arange(1, width + 1, dtype=np.int64), values, side="right")
    key = np.zeros(len(values), dtype=np.int64)
    for place in range(width):
        shift = length - 1 - place
        digit = values // 10 ** np.maximum(shift, 0) % 10
        code = np.where(shift >= 0, digit, 10) if separated else np.where(shift >= 0, digit + 1, 0)
        key = key * 11 + code
    return key, 11**width


def _pack(fields: list[tuple[np.ndarray, int]]) -> np.ndarray | None:
    """One int64 per row ordering rows by the fields in turn (each given with a bound of its keys); None when the
    bounds multiply past int64."""
    key = np.zeros(len(fields[0][0]), dtype=np.int64)
    bound = 1
    for values, size in fields:
        bound *= max(size, 1)
        if bound >= 2**63:
            return None
        key = key * max(size, 1) + values
    return key
