"""Supernodes: sae_feature nodes whose labels share a prefix ("Biology: cells" → "Biology") collapse into one.

Hundreds of features about one topic make a graph unreadable; one "Biology (cluster)" node with the members
listed keeps the structure visible. Only prefixes with at least `supernode_min_group` members group, so a lone
"Biology: x" feature stays itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import ids as idscheme

MAX_LISTED_MEMBERS = 200


@dataclass
class Supernode:
    """One planned supernode: its v1 node dict and the node-table indices of its members."""

    record: dict
    members: np.ndarray  # [k] int64 node indices


def plan_supernodes(candidates: np.ndarray, labels: list[str | None],
                    sort_keys: Callable[[np.ndarray], np.ndarray], activation: np.ndarray, delim: str,
                    min_group: int, taken: set[str], ids_of: Callable[[np.ndarray], list[str]]) -> list[Supernode]:
    """Group the candidate feature nodes (rows of `labels` and `activation`) by label prefix.

    Ids are `super_<slug>` (`hif.ids.supernode`); when two prefixes slug alike, or a slug names an existing node
    (one of `taken`), `_2`, `_3`, ... is appended in prefix order, so the id depends only on the set of labels,
    never on input order. Members are listed sorted by id (`sort_keys(rows)` orders rows like their ids; only the
    first MAX_LISTED_MEMBERS are spelled out by `ids_of`); the supernode's activation_strength is its members'
    maximum, used to rank supernodes against each other under the node cap.
    """
    # A label's prefix is the text before its first delimiter, stripped; labels without one (most) or with nothing
    # before it have none.
    rows_list = candidates.tolist()
    heads = [(i, label.partition(delim)[0].strip()) for i, label in zip(rows_list, [labels[i] for i in rows_list])
             if label is not None and delim in label]
    rows = [i for i, head in heads if head]
    prefixes = [head for _, head in heads if head]
    code_of = {prefix: code for code, prefix in enumerate(sorted(set(prefixes)))}
    names = list(code_of)
    code = np.fromiter(map(code_of.__getitem__, prefixes), np.int64, len(prefixes))
    rows = np.asarray(rows, dtype=np.int64)
    big = np.bincount(code, minlength=len(names)) >= min_group
    rows, code = rows[big[code]], code[big[code]]
    order = np.lexsort((sort_keys(rows), code))  # by prefix, then by id within it
    rows, code = rows[order], code[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(code)].astype(np.int64)
    listed = np.concatenate([rows[a:min(b, a + MAX_LISTED_MEMBERS)] for a, b in zip(starts, ends)] or [rows[:0]])
    listed_ids = ids_of(listed)
    strongest = np.maximum.reduceat(activation[rows], starts).tolist() if len(rows) else []
    taken = set(taken)
    planned = []
    offset = 0
    for a, b, peak in zip(starts.tolist(), ends.tolist(), strongest):
        prefix = names[code[a]]
        base = node_id = idscheme.supernode(prefix)
        suffix = 2
        while node_id in taken:
            node_id, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(node_id)
        shown = min(b - a, MAX_LISTED_MEMBERS)
        record = {
            "id": node_id,
            "type": "circuit_supernode",
            "label": f"{prefix} (cluster)",
            "attributes": {"member_count": b - a, "members": listed_ids[offset:offset + shown]},
        }
        offset += shown
        if math.isfinite(peak):
            record["activation_strength"] = peak
        planned.append(Supernode(record, rows[a:b]))
    return planned
