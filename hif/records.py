"""The dict form of a graph: reading node and incidence dicts into columns, and writing rows back as v1 dicts.

Graphs given as lists of dicts (the seed system's form, tests, other producers) are read once: the columns the
pruner needs (kinds, activations, weights, membership) become arrays, and each input dict is kept so that the
few rows that survive pruning are written from it with every field it had. Any key the closed v1 schema does not
know moves into `attributes` instead of being dropped.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

# Node types of the v1 contract; a node's kind code is the index of its type name.
TYPE_NAMES = ("sae_feature", "circuit_supernode", "input_token", "output_token")
KIND_FEATURE, KIND_SUPERNODE, KIND_INPUT, KIND_OUTPUT = range(len(TYPE_NAMES))
_KIND_OF = {name: kind for kind, name in enumerate(TYPE_NAMES)}

NODE_KEYS = ("id", "type", "label", "layer", "position", "activation_strength", "attributes")
INCIDENCE_KEYS = ("id", "node_ids", "weight", "metadata", "attributes")
METADATA_KEYS = ("type", "method", "window", "description", "provenance")
_METADATA_KEY_SET = frozenset(METADATA_KEYS)
_INCIDENCE_KEY_SET = frozenset(INCIDENCE_KEYS)
_PLAIN_NUMBER_TYPES = frozenset((float, int, type(None)))
_PLAIN_INDEX_TYPES = frozenset((int, type(None)))
_NODE_KEY_SET = frozenset(NODE_KEYS)
_INDEX_KEYS = ("layer", "position")


@dataclass
class NodeRecords:
    """Unique nodes read from dicts: `records[i]` is the dict of node `ids[i]`; columns as in `hif.graph.Nodes`."""

    records: list[dict]
    ids: list[str]
    index: dict[str, int]
    kind: np.ndarray
    layer: np.ndarray
    position: np.ndarray
    activation: np.ndarray
    label: list[str | None]
    duplicates: int


@dataclass
class IncidenceRecords:
    """Unique incidences read from dicts; `members[offsets[i]:offsets[i + 1]]` are the node rows of `records[i]`
    in the order listed (-1 for an id that names no node)."""

    records: list[dict]
    ids: list[str]
    weight: np.ndarray
    offsets: np.ndarray
    members: np.ndarray
    duplicates: int


def finite_float(value: Any) -> float | None:
    """A real, finite number as float, else None (bools are not numbers here; an int too large for a float is
    not finite)."""
    plain = type(value) is float or type(value) is int
    if not plain and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _as_int(value: Any) -> int | None:
    """A non-bool integral value (int, numpy integer, or a finite real with no fraction) as int, else None.

    The exact-int test comes first because an ABC isinstance check costs ~25x more and layers are plain ints.
    """
    if type(value) is int:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    f = finite_float(value)
    return int(f) if f is not None and f.is_integer() else None


def normalize_node(raw: dict) -> dict:
    """The v1 form of one input node: unknown types become sae_feature, unknown keys move into `attributes`.

    Keys the schema does not know are kept (under `attributes`) rather than dropped so no information is lost,
    while the node itself still validates against the closed v1 schema.
    """
    node_type = raw.get("type")
    node_type = node_type if node_type in _KIND_OF else "sae_feature"
    label = raw.get("label")
    if type(label) is not str:
        label = str(raw["id"] if label is None else label)
    out: dict[str, Any] = {"id": raw["id"], "type": node_type, "label": label}
    # The common case (known keys, plain int indices) is tested first: this runs once per emitted node.
    extra = {} if _NODE_KEY_SET.issuperset(raw) else {k: v for k, v in raw.items() if k not in _NODE_KEY_SET}
    for key in _INDEX_KEYS:
        if key in raw:
            value = _as_int(raw[key])
            if value is not None and value >= 0:
                out[key] = value
            else:
                extra[key] = raw[key]
    strength = finite_float(raw.get("activation_strength"))
    if strength is not None:
        out["activation_strength"] = strength
    attributes = raw.get("attributes")
    if extra:
        attributes = {**extra, **(attributes if isinstance(attributes, dict) else {})}
    if attributes is not None:
        out["attributes"] = attributes
    return out


def emit_incidence(raw: dict, node_ids: list[str], weight: float) -> dict:
    """The v1 form of one incidence with the given members and weight.

    `metadata` keeps only the keys the schema names (type, method, window, description, provenance); any other
    metadata key, and any unknown top-level key, moves into `attributes` so it is preserved but cannot break
    the closed schema. Explicit `attributes` win over moved keys of the same name.
    """
    metadata = raw.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    out: dict[str, Any] = {"id": raw["id"], "node_ids": node_ids, "weight": weight}
    attributes = raw.get("attributes")
    if _METADATA_KEY_SET.issuperset(metadata.keys()) and _INCIDENCE_KEY_SET.issuperset(raw.keys()):
        out["metadata"] = metadata
    else:
        extra = {k: v for k, v in metadata.items() if k not in METADATA_KEYS}
        extra.update((k, v) for k, v in raw.items() if k not in INCIDENCE_KEYS)
        out["metadata"] = {k: metadata[k] for k in METADATA_KEYS if k in metadata}
        attributes = {**extra, **(attributes if isinstance(attributes, dict) else {})}
    if attributes is not None:
        out["attributes"] = attributes
    return out


def merge_key(record: dict) -> tuple:
    """(type, method, window) of one incidence's metadata; Nones where it has no metadata dict or key."""
    metadata = record.get("metadata")
    if not isinstance(metadata, dict):
        return (None, None, None)
    return (metadata.get("type"), metadata.get("method"), metadata.get("window"))


def _content_key(record: dict) -> str:
    """Order-free tie-break between two records that share an id (so input order never decides)."""
    return json.dumps(record, sort_keys=True, default=repr)


def read_nodes(nodes: list[dict]) -> NodeRecords:
    """Index the nodes by id; of several nodes with one id the one with the smallest content key wins."""
    ids = [n["id"] for n in nodes]
    index = dict(zip(ids, range(len(ids))))
    duplicates = len(ids) - len(index)
    if duplicates:
        best: dict[str, tuple[str, dict]] = {}
        for raw in nodes:
            key = _content_key(normalize_node(raw))
            if raw["id"] not in best or key < best[raw["id"]][0]:
                best[raw["id"]] = (key, raw)
        nodes = [raw for _, raw in best.values()]
        ids = [n["id"] for n in nodes]
        index = dict(zip(ids, range(len(ids))))
    kind = np.fromiter(map(_KIND_OF.get, [n.get("type") for n in nodes], repeat(KIND_FEATURE)), np.int8, len(nodes))
    labels = [n.get("label") for n in nodes]
    return NodeRecords(
        records=list(nodes),
        ids=ids,
        index=index,
        kind=kind,
        layer=_index_column([n.get("layer") for n in nodes]),
        position=_index_column([n.get("position") for n in nodes]),
        activation=_activations([n.get("activation_strength") for n in nodes]),
        label=[label if type(label) is str else None for label in labels],
        duplicates=duplicates,
    )


def _index_column(values: list[Any]) -> np.ndarray:
    """Layers or positions as int64, -1 where absent or not a non-negative integer (what `normalize_node` keeps).

    Plain ints and Nones (what producers send) convert in one call, through float64 (None becomes NaN), which is
    exact below 2**53; anything else goes through `_as_int` one by one.
    """
    if _PLAIN_INDEX_TYPES.issuperset(map(type, values)):
        column = np.array(values, dtype=np.float64).reshape(len(values))
        if not (np.abs(column) >= 2**53).any():
            column[~(column >= 0)] = -1  # absent (NaN) or negative
            return column.astype(np.int64)
    ints = (_as_int(v) for v in values)
    return np.fromiter((-1 if i is None or i < 0 or i >= 2**63 else i for i in ints), np.int64, len(values))


def _activations(values: list[Any]) -> np.ndarray:
    """Activation strengths as float64, NaN where absent or not a finite real number.

    When every value is a plain float, int or None (what producers send), one np.array call converts them all
    (None becomes NaN); anything else (bools, numpy scalars, strings) goes through `finite_float` one by one,
    because np.array would silently accept bools and numeric strings.
    """
    if _PLAIN_NUMBER_TYPES.issuperset(map(type, values)):
        try:
            activation = np.array(values, dtype=np.float64).reshape(len(values))
        except OverflowError:
            pass
        else:
            activation[~np.isfinite(activation)] = math.nan
            return activation
    strengths = map(finite_float, values)
    return np.fromiter((math.nan if s is None else s for s in strengths), np.float64, len(values))


def _node_indices(flat: list[str], index: dict[str, int]) -> np.ndarray:
    """Index of each node id, -1 for ids that name no node.

    `itemgetter(*ids)(index)` looks all ids up in one C call (a third faster than a Python-level map at 400k
    ids); it raises on the first unknown id, and only then is the slower lookup with a default needed. The
    resulting tuple of ints goes through np.fromiter with a known count, which skips np.array's shape
    discovery (a quarter faster).
    """
    if len(flat) > 1:
        try:
            return np.fromiter(itemgetter(*flat)(index), np.int64, len(flat))
        except KeyError:
            pass
    return np.fromiter(map(index.get, flat, repeat(-1)), np.int64, len(flat))


def read_incidences(incidences: list[dict], index: dict[str, int]) -> IncidenceRecords:
    """Flatten incidences into member arrays; of several with one id the heaviest (then smallest content) wins.

    One Python pass touches each incidence dict once: at 200k dicts the cost is memory traffic, so reading
    id, weight and node_ids together beats one comprehension per field. The lengths list becomes an array
    through np.fromiter with a known count, which skips np.array's shape discovery (about 1.5x faster).
    """
    ids: list[str] = []
    raw_weights: list[Any] = []
    lengths: list[int] = []
    flat: list[str] = []
    add_id, add_weight, add_length, add_nodes = ids.append, raw_weights.append, lengths.append, flat.extend
    for inc in incidences:
        add_id(inc["id"])
        add_weight(inc["weight"])
        node_ids = inc["node_ids"]
        add_length(len(node_ids))
        add_nodes(node_ids)
    try:
        weight = np.array(raw_weights, dtype=np.float64).reshape(len(raw_weights))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"every incidence weight must be a number: {exc}") from exc
    members = _node_indices(flat, index)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(lengths, np.int64, len(lengths)), out=offsets[1:])
    duplicates = len(ids) - len(set(ids))
    records = incidences
    if duplicates:
        clamped = np.clip(weight, 0.0, 1.0)
        best: dict[str, tuple[float, str, int]] = {}
        for i, inc in enumerate(incidences):
            w = -1.0 if math.isnan(clamped[i]) else float(clamped[i])
            cand = (-w, _content_key(inc), i)
            if inc["id"] not in best or cand[:2] < best[inc["id"]][:2]:
                best[inc["id"]] = cand
        kept = sorted(entry[2] for entry in best.values())
        lengths_kept = np.diff(offsets)[kept]
        starts = offsets[kept]
        members = members[np.repeat(starts - np.cumsum(lengths_kept) + lengths_kept, lengths_kept)
                          + np.arange(int(lengths_kept.sum()))]
        offsets = np.r_[0, np.cumsum(lengths_kept)].astype(np.int64)
        records, ids, weight = [incidences[i] for i in kept], [ids[i] for i in kept], weight[kept]
    return IncidenceRecords(list(records), ids, weight, offsets, members, duplicates)
