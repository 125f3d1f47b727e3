"""`Graph`: an attribution hypergraph as numpy columns, the form it has from attribution until the document is built.

Attribution produces ~10⁵ incidences; as dicts with string ids they cost more to build, store, read back and
parse than the pruning that follows. As columns they travel as a handful of arrays (`to_arrays` / `from_arrays`
for the stage artifact), the pruner works on them directly, and dicts are written only for the rows the HIF
document keeps. Ids are not stored: `hif.ids` mints them from the columns for the rows that need one.

A graph read from dicts (`Graph.from_records`, the seed system's form) has the same structural columns and keeps
each input dict to write the survivors from, so both forms prune to the same document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ids as idscheme
from .records import (
    KIND_FEATURE,
    KIND_INPUT,
    KIND_OUTPUT,
    KIND_SUPERNODE,
    TYPE_NAMES,
    emit_incidence,
    merge_key,
    normalize_node,
    read_incidences,
    read_nodes,
)

__all__ = ["Graph", "Incidences", "Nodes", "KIND_FEATURE", "KIND_SUPERNODE", "KIND_INPUT", "KIND_OUTPUT"]

INCIDENCE_TYPE = "causal_circuit"  # metadata.type of every incidence attribution produces


@dataclass(frozen=True, eq=False)
class Nodes:
    """[N] nodes. Integer columns hold -1 and `activation` NaN where a node has no such field.

    `feature` is the SAE feature index of a feature node (its `layer` the dictionary layer); tokens have a
    `position`. `label` is None only for a dict whose label is not a string. `ids` and `records` are set by
    `Graph.from_records` alone (then `feature` is -1: the index lives in the id); otherwise ids are minted.
    """

    kind: np.ndarray  # [N] int8, KIND_*
    layer: np.ndarray  # [N] int64
    feature: np.ndarray  # [N] int64
    position: np.ndarray  # [N] int64
    activation: np.ndarray  # [N] float64
    label: list[str | None]
    ids: list[str] | None = None
    records: list[dict] | None = None
    duplicates: int = 0  # input dicts dropped for sharing an id with a better one

    def __len__(self) -> int:
        return len(self.kind)


@dataclass(frozen=True, eq=False)
class Incidences:
    """[M] incidences; the members of incidence i are node rows `members[offsets[i]:offsets[i + 1]]`.

    Attribution fills every column: each incidence says that `method` attributes window `window` (an index into
    `windows`, whose output tokens are members) to a feature, its first member; `weight` is |effect| normalised
    per window and layer, `se` NaN where unknown, `fallback` the code of the method saliency stands in for (-1:
    none). Codes index `methods` and `values`. The verification columns are None until a verifier checked some
    incidences by intervention (`attribution.verify`); then `verifier` codes index `verifiers`. `Graph.from_records` fills weight and membership only (a member
    is -1 where a dict names no node) and keeps the dicts in `records`; its attribution columns are None.
    """

    weight: np.ndarray  # [M] float64
    offsets: np.ndarray  # [M + 1] int64
    members: np.ndarray  # [P] int64
    method: np.ndarray | None = None  # [M] int8
    window: np.ndarray | None = None  # [M] int64
    value: np.ndarray | None = None  # [M] int8
    fallback: np.ndarray | None = None  # [M] int8
    effect: np.ndarray | None = None  # [M] float64
    se: np.ndarray | None = None  # [M] float64
    samples: np.ndarray | None = None  # [M] int64
    converged: np.ndarray | None = None  # [M] bool
    observed: np.ndarray | None = None  # [M] float64, observed change of the target logit when ablated (NaN: none)
    observed_prob: np.ndarray | None = None  # [M] float64, the same for the target's probability
    verified: np.ndarray | None = None  # [M] bool
    verifier: np.ndarray | None = None  # [M] int8, code into `verifiers` (-1: not checked)
    methods: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    verifiers: tuple[str, ...] = ()
    ids: list[str] | None = None
    records: list[dict] | None = None
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.weight)

    def owners(self) -> np.ndarray:
        """[P] the incidence row each member belongs to."""
        return np.repeat(np.arange(len(self.weight), dtype=np.int64), np.diff(self.offsets))


_NODE_COLUMNS = ("kind", "layer", "feature", "position", "activation")
_INCIDENCE_COLUMNS = ("weight", "offsets", "members", "method", "window", "value", "fallback", "effect", "se",
                      "samples", "converged")
_VERIFICATION_COLUMNS = ("observed", "observed_prob", "verified", "verifier")  # all four, or none
_VOCABULARIES = ("methods", "windows", "values")


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes and the incidences that join them; checked on construction (`_check`), never mutated."""

    nodes: Nodes
    incidences: Incidences

    def __post_init__(self) -> None:
        _check(self)

    # --- the dict form ------------------------------------------------------------------------------------

    @classmethod
    def from_records(cls, nodes: list[dict], incidences: list[dict]) -> Graph:
        """A graph of node and incidence dicts in the v1 shape (the seed system's `prune_and_group` input).

        Nodes or incidences sharing an id keep one (the node with the smallest normalised content, the heaviest
        incidence), so any input order reads the same. Unknown node ids in incidences are kept as -1 members for
        the pruner to count.
        """
        nr = read_nodes(nodes)
        ir = read_incidences(incidences, nr.index)
        unset = np.full(len(nr.ids), -1, dtype=np.int64)
        return cls(
            Nodes(nr.kind, nr.layer, unset, nr.position, nr.activation, nr.label, nr.ids, nr.records,
                  nr.duplicates),
            Incidences(ir.weight, ir.offsets, ir.members, ids=ir.ids, records=ir.records, duplicates=ir.duplicates),
        )

    def to_records(self) -> tuple[list[dict], list[dict]]:
        """Every node and incidence as a v1 dict (unpruned; members in stored order, unknown ones left out)."""
        inc, node_ids = self.incidences, self.node_ids()
        known = inc.members >= 0
        flat = [node_ids[j] for j in inc.members[known].tolist()]
        ends = np.cumsum(np.bincount(inc.owners()[known], minlength=len(inc))).tolist()
        lists = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        rows = np.arange(len(inc))
        nodes = self.emit_nodes(np.arange(len(self.nodes)), node_ids)
        return nodes, self.emit_incidences(rows, lists, inc.weight.tolist())

    # --- ids and writing rows ---------------------------------------------------------------------------

    def node_ids(self, rows: np.ndarray | None = None) -> list[str]:
        """The ids of node `rows` (of every node when None): given, or minted by `hif.ids`."""
        nodes = self.nodes
        if nodes.ids is not None:
            return list(nodes.ids) if rows is None else [nodes.ids[i] for i in rows.tolist()]
        rows = np.arange(len(nodes)) if rows is None else rows
        kind = nodes.kind[rows]
        out = np.empty(len(rows), dtype=object)
        feature = rows[kind == KIND_FEATURE]
        out[kind == KIND_FEATURE] = idscheme.feature_nodes(nodes.layer[feature], nodes.feature[feature])
        for token_kind, prefix in ((KIND_INPUT, idscheme.INPUT_TOKEN), (KIND_OUTPUT, idscheme.OUTPUT_TOKEN)):
            out[kind == token_kind] = idscheme.token_nodes(prefix, nodes.position[rows[kind == token_kind]])
        return out.tolist()

    def incidence_ids(self, rows: np.ndarray) -> list[str]:
        """Ids of incidence `rows`: given, or minted from method, window and the first member's feature."""
        inc = self.incidences
        if inc.ids is not None:
            return [inc.ids[i] for i in rows.tolist()]
        feature = inc.members[inc.offsets[rows]]
        return idscheme.incidences(inc.methods, inc.windows, inc.method[rows], inc.window[rows],
                                   self.nodes.layer[feature], self.nodes.feature[feature])

    def node_sort_keys(self, rows: np.ndarray) -> np.ndarray:
        """Integers that sort node `rows` among themselves as their ids sort (computed, not minted, for a columnar
        graph)."""
        nodes = self.nodes
        if nodes.ids is None:
            keys = idscheme.node_order(nodes.kind[rows] == KIND_FEATURE, nodes.kind[rows] == KIND_INPUT,
                                       nodes.layer[rows], nodes.feature[rows], nodes.position[rows])
            if keys is not None:
                return keys
        ids = self.node_ids(rows)
        ranks = np.empty(len(ids), dtype=np.int64)
        ranks[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
        return ranks

    def node_ids_starting(self, prefix: str) -> set[str]:
        """The node ids that begin with `prefix` (none, without minting any, when minted ids cannot)."""
        if self.nodes.ids is None and not any(minted.startswith(prefix) or prefix.startswith(minted)
                                              for minted in idscheme.MINTED_NODE_PREFIXES):
            return set()
        ids = self.nodes.ids if self.nodes.ids is not None else self.node_ids()
        return {node_id for node_id in ids if node_id.startswith(prefix)}

    def incidence_sort_keys(self, rows: np.ndarray) -> np.ndarray:
        """Keys that sort incidence `rows` as their ids sort: numbers for a columnar graph (no id is minted),
        the ids themselves otherwise."""
        inc = self.incidences
        if inc.ids is None:
            lead = inc.members[inc.offsets[rows]]
            keys = idscheme.incidence_order(inc.methods, inc.windows, inc.method[rows], inc.window[rows],
                                            self.nodes.layer[lead], self.nodes.feature[lead])
            if keys is not None:
                return keys
        return np.array(self.incidence_ids(rows))

    def merge_codes(self, rows: np.ndarray) -> np.ndarray:
        """An integer per row of `rows`, equal exactly when the incidences' (type, method, window) are equal."""
        inc = self.incidences
        if inc.records is None:
            return inc.method[rows].astype(np.int64) * max(len(inc.windows), 1) + inc.window[rows]
        keys: list[Any] = [merge_key(inc.records[i]) for i in rows.tolist()]
        try:
            distinct = dict.fromkeys(keys)
        except TypeError:  # an unhashable value (list, dict): compare reprs instead
            keys = list(map(repr, keys))
            distinct = dict.fromkeys(keys)
        codes_of = dict(zip(distinct, range(len(distinct))))
        return np.fromiter(map(codes_of.__getitem__, keys), np.int64, len(keys))

    def emit_nodes(self, rows: np.ndarray, ids: list[str]) -> list[dict]:
        """Node `rows`, whose ids are `ids`, as v1 dicts."""
        nodes = self.nodes
        if nodes.records is not None:
            return [normalize_node(nodes.records[i]) for i in rows.tolist()]
        out = []
        columns = zip(ids, rows.tolist(), nodes.kind[rows].tolist(), nodes.layer[rows].tolist(),
                      nodes.position[rows].tolist(), nodes.activation[rows].tolist(), nodes.feature[rows].tolist())
        labels = nodes.label
        for node_id, i, kind, layer, position, activation, feature in columns:
            node: dict[str, Any] = {"id": node_id, "type": TYPE_NAMES[kind], "label": labels[i]}
            if layer >= 0:
                node["layer"] = layer
            if position >= 0:
                node["position"] = position
            if activation == activation:  # not NaN
                node["activation_strength"] = activation
            if feature >= 0:
                node["attributes"] = {"feature_index": feature}
            out.append(node)
        return out

    def emit_incidences(self, rows: np.ndarray, node_ids: list[list[str]], weights: list[float]) -> list[dict]:
        """Incidence `rows` as v1 dicts, with the given member ids and weights (what pruning made of them)."""
        inc = self.incidences
        if inc.records is not None:
            return [emit_incidence(inc.records[i], members, w)
                    for i, members, w in zip(rows.tolist(), node_ids, weights)]
        se = inc.se[rows].astype(object)
        se[np.isnan(inc.se[rows])] = None
        methods, windows, values = inc.methods, inc.windows, inc.values
        columns = zip(self.incidence_ids(rows), node_ids, weights, inc.method[rows].tolist(),
                      inc.window[rows].tolist(), inc.value[rows].tolist(), inc.samples[rows].tolist(),
                      inc.converged[rows].tolist(), se.tolist(), inc.effect[rows].tolist())
        out = [{
            "id": iid, "node_ids": members, "weight": w,
            "metadata": {"type": INCIDENCE_TYPE, "method": methods[m], "window": windows[win]},
            "attributes": {"value": values[v], "samples": samples, "converged": converged, "se": err, "effect": effect},
        } for iid, members, w, m, win, v, samples, converged, err, effect in columns]
        fallback = inc.fallback[rows]
        for position in np.flatnonzero(fallback >= 0).tolist():
            out[position]["attributes"]["fallback_from"] = methods[fallback[position]]
        if inc.verifier is not None:
            self._emit_verification(rows, out)
        return out

    def _emit_verification(self, rows: np.ndarray, out: list[dict]) -> None:
        """`verifier` on every checked incidence; the observed changes and `verified` where a real forward pass ran
        (an incidence the budget left unchecked says so and carries no numbers: they would be guesses)."""
        inc = self.incidences
        checked = np.flatnonzero(inc.verifier[rows] >= 0)
        for position, row in zip(checked.tolist(), rows[checked].tolist()):
            attributes = out[position]["attributes"]
            attributes["verifier"] = inc.verifiers[inc.verifier[row]]
            if inc.observed[row] == inc.observed[row]:  # not NaN
                attributes["observed_effect"] = round(float(inc.observed[row]), 9)
                attributes["observed_prob_change"] = round(float(inc.observed_prob[row]), 9)
                attributes["verified"] = bool(inc.verified[row])

    # --- the artifact form ------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat named arrays (safetensors or npz) holding the whole graph; strings as UTF-8 bytes plus offsets."""
        if self.nodes.records is not None or self.incidences.records is not None:
            raise ValueError("a graph read from dicts keeps them; only a columnar graph converts to arrays")
        arrays = {f"nodes.{name}": getattr(self.nodes, name) for name in _NODE_COLUMNS}
        arrays.update(_strings("nodes.label", self.nodes.label))
        arrays.update({f"incidences.{name}": getattr(self.incidences, name) for name in _INCIDENCE_COLUMNS})
        for name in _VOCABULARIES:
            arrays.update(_strings(f"incidences.{name}", getattr(self.incidences, name)))
        if self.incidences.verifier is not None:
            arrays.update({f"incidences.{name}": getattr(self.incidences, name) for name in _VERIFICATION_COLUMNS})
            arrays.update(_strings("incidences.verifiers", self.incidences.verifiers))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Graph:
        """The graph `to_arrays` wrote (checked as any graph is, so a damaged artifact fails here)."""
        try:
            nodes = Nodes(*(np.asarray(arrays[f"nodes.{name}"]) for name in _NODE_COLUMNS),
                          label=_unstrings(arrays, "nodes.label"))
            incidences = Incidences(
                **{name: np.asarray(arrays[f"incidences.{name}"]) for name in _INCIDENCE_COLUMNS},
                **{name: tuple(_unstrings(arrays, f"incidences.{name}")) for name in _VOCABULARIES},
                **_verification_of(arrays),
            )
        except KeyError as exc:
            raise ValueError(f"graph arrays lack {exc}") from None
        return cls(nodes, incidences)


def _verification_of(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The verification columns `to_arrays` wrote, if the graph had them."""
    if "incidences.verifier" not in arrays:
        return {}
    columns: dict[str, Any] = {name: np.asarray(arrays[f"incidences.{name}"]) for name in _VERIFICATION_COLUMNS}
    columns["verifiers"] = tuple(_unstrings(arrays, "incidences.verifiers"))
    return columns


def _strings(name: str, strings: Sequence[str]) -> dict[str, np.ndarray]:
    encoded = [s.encode("utf-8") for s in strings]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    return {f"{name}.utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            f"{name}.offsets": np.r_[0, np.cumsum(lengths)].astype(np.int64)}


def _unstrings(arrays: dict[str, np.ndarray], name: str) -> list[str]:
    data = np.asarray(arrays[f"{name}.utf8"], dtype=np.uint8).tobytes()
    ends = np.asarray(arrays[f"{name}.offsets"]).tolist()
    return [data[a:b].decode("utf-8") for a, b in zip(ends[:-1], ends[1:])]


_DTYPES = {"kind": np.int8, "layer": np.int64, "feature": np.int64, "position": np.int64,
           "activation": np.float64, "weight": np.float64, "offsets": np.int64, "members": np.int64,
           "method": np.int8, "window": np.int64, "value": np.int8, "fallback": np.int8,
           "effect": np.float64, "se": np.float64, "samples": np.int64, "converged": np.bool_,
           "observed": np.float64, "observed_prob": np.float64, "verified": np.bool_, "verifier": np.int8}


def _check(graph: Graph) -> None:
    """Shapes, dtypes and references that every use of a graph relies on; a violation is a producer's bug."""
    nodes, inc = graph.nodes, graph.incidences
    n, m = len(nodes.kind), len(inc.weight)
    columns = [(name, getattr(nodes, name), n) for name in _NODE_COLUMNS]
    columns.append(("offsets", inc.offsets, m + 1))
    columns += [(name, getattr(inc, name), m) for name in _INCIDENCE_COLUMNS + _VERIFICATION_COLUMNS
                if name not in ("offsets", "members") and getattr(inc, name) is not None]
    present = [getattr(inc, name) is not None for name in _VERIFICATION_COLUMNS]
    if any(present) and not all(present):
        raise ValueError(f"graph verification columns come together: {_VERIFICATION_COLUMNS}")
    if all(present) and m and (inc.verifier.min() < -1 or inc.verifier.max() >= len(inc.verifiers)):
        raise ValueError(f"graph incidence verifier codes exceed its {len(inc.verifiers)} names")
    columns.append(("members", inc.members, len(inc.members)))
    for name, column, length in columns:
        if column.dtype != _DTYPES[name] or column.shape != (length,):
            raise ValueError(f"graph column {name}: expected {length} values of {np.dtype(_DTYPES[name])}, "
                             f"got shape {column.shape} of {column.dtype}")
    if len(nodes.label) != n:
        raise ValueError(f"graph has {len(nodes.label)} labels for {n} nodes")
    if inc.offsets[0] != 0 or inc.offsets[-1] != len(inc.members) or np.any(np.diff(inc.offsets) < 0):
        raise ValueError("graph incidence offsets do not partition the members")
    if len(inc.members) and (inc.members.min() < -1 or inc.members.max() >= n):
        raise ValueError("graph incidences name node rows that do not exist")
    if np.any((nodes.kind < 0) | (nodes.kind >= len(TYPE_NAMES))):
        raise ValueError("graph nodes have an unknown kind")
    if nodes.ids is None:
        _check_mintable(nodes, inc)
    elif len(nodes.ids) != n or (inc.ids is not None and len(inc.ids) != m):
        raise ValueError("graph ids do not match its rows")


def _check_mintable(nodes: Nodes, inc: Incidences) -> None:
    """A graph without ids needs every column its ids are minted from, and distinct rows must mint distinct ids
    (the dict form keeps one row per id, so a repeat would make the two forms differ)."""
    feature, token = nodes.kind == KIND_FEATURE, (nodes.kind == KIND_INPUT) | (nodes.kind == KIND_OUTPUT)
    if np.any(nodes.kind == KIND_SUPERNODE) or np.any(feature & ((nodes.layer < 0) | (nodes.feature < 0))) or \
            np.any(token & (nodes.position < 0)):
        raise ValueError("a graph without ids needs features with layer and index and tokens with positions")
    if any(label is None for label in nodes.label):
        raise ValueError("every node of a columnar graph needs a label")
    span = int(max(nodes.feature.max(initial=0), nodes.position.max(initial=0))) + 1
    token_key = -1 - nodes.kind.astype(np.int64) * span - nodes.position
    key = np.where(feature, nodes.layer * span + nodes.feature, token_key)
    if _repeats(key):
        raise ValueError("a columnar graph names one feature or token position in two node rows")
    if inc.method is None:
        raise ValueError("a graph without ids needs the attribution columns of its incidences")
    if not len(inc.weight):
        return
    if np.any(inc.offsets[1:] == inc.offsets[:-1]) or inc.members.min() < 0 or \
            np.any(nodes.kind[inc.members[inc.offsets[:-1]]] != KIND_FEATURE):
        raise ValueError("every incidence of a columnar graph starts with the feature it attributes")
    for name, codes, vocabulary in (("method", inc.method, inc.methods), ("window", inc.window, inc.windows),
                                    ("value", inc.value, inc.values), ("fallback", inc.fallback + 1,
                                                                       ("", *inc.methods))):
        if codes.min() < 0 or codes.max() >= len(vocabulary):
            raise ValueError(f"graph incidence {name} codes exceed its {len(vocabulary)} names")
    key = (inc.method.astype(np.int64) * len(inc.windows) + inc.window) * len(nodes) + inc.members[inc.offsets[:-1]]
    if _repeats(key):
        raise ValueError("two incidences of a columnar graph attribute one window to one feature by one method")


def _repeats(key: np.ndarray) -> bool:
    """Whether some value occurs twice (a sort: np.unique's hash table is slower at these sizes)."""
    key = np.sort(key)
    return bool(np.any(key[1:] == key[:-1]))
