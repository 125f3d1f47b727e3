"""Supernodes: sae_feature nodes whose labels share a prefix ("Biology: cells" → "Biology") collapse into one.

Hundreds of features about one topic make a graph unreadable; one "Biology (cluster)" node with the members
listed keeps the structure visible. Only prefixes with at least `supernode_min_group` members group, so a lone
"Biology: x" feature stays itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import ids as idscheme

MAX_LISTED_MEMBERS = 200


@dataclass
class Supernode:
    """One planned supernode: its v1 node dict and the node-table indices of its members."""

    record: dict
    members: np.ndarray  # [k] int64 node indices


def label_prefix(label: object, delim: str) -> str | None:
    """The text before the first delimiter, stripped; None when there is no delimiter or nothing before it."""
    if not isinstance(label, str) or delim not in label:
        return None
    prefix = label.split(delim, 1)[0].strip()
    return prefix or None


def plan_supernodes(
    candidates: np.ndarray, ids: list[str], labels: list[str | None], activation: np.ndarray, delim: str,
    min_group: int
) -> list[Supernode]:
    """Group the candidate feature nodes (rows of `ids` and `labels`) by label prefix.

    Ids are `super_<slug>` (`hif.ids.supernode`); when two prefixes slug alike, or a slug names an existing node,
    `_2`, `_3`, ... is appended in prefix order, so the id depends only on the set of labels, never on input order.
    Members are listed sorted by id (the first MAX_LISTED_MEMBERS of them); the supernode's activation_strength
    is its members' maximum, used to rank supernodes against each other under the node cap.
    """
    groups: dict[str, list[int]] = {}
    for i in candidates.tolist():
        prefix = label_prefix(labels[i], delim)
        if prefix is not None:
            groups.setdefault(prefix, []).append(i)
    taken = set(ids)
    planned = []
    for prefix in sorted(p for p, members in groups.items() if len(members) >= min_group):
        members = sorted(groups[prefix], key=ids.__getitem__)
        base = node_id = idscheme.supernode(prefix)
        suffix = 2
        while node_id in taken:
            node_id, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(node_id)
        record = {
            "id": node_id,
            "type": "circuit_supernode",
            "label": f"{prefix} (cluster)",
            "attributes": {
                "member_count": len(members),
                "members": [ids[i] for i in members[:MAX_LISTED_MEMBERS]],
            },
        }
        strongest = float(activation[members].max())
        if math.isfinite(strongest):
            record["activation_strength"] = strongest
        planned.append(Supernode(record, np.asarray(members, dtype=np.int64)))
    return planned
