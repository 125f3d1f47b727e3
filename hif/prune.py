"""`prune_and_group`: thresholds, per-token caps, supernodes and global caps, applied in that order.

Every rule works on the columns of a `Graph` (one row per incidence, one per (incidence, node) pair), so the cost
is a handful of sorts: O(n log n) in the number of incidences. Every ordering ends in a comparison of ids,
never of input positions, which is what makes the output identical for any permutation of the input.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from .config import HypergraphConfig
from .graph import KIND_FEATURE, KIND_INPUT, KIND_OUTPUT, KIND_SUPERNODE, Graph
from .records import TYPE_NAMES, normalize_node
from .supernodes import Supernode, plan_supernodes

log = logging.getLogger(__name__)

INCIDENCE_DROP_REASONS = (
    "duplicate_id",
    "unknown_node",
    "nan_weight",
    "below_min_weight",
    "fewer_than_two_nodes",
    "per_token_cap",
    "collapsed_by_grouping",
    "merged",
    "max_incidences",
    "lost_node",
)
NODE_DROP_REASONS = ("duplicate_id", "unreferenced", "grouped", "max_nodes", "orphaned")

# Node priority class under the node cap: tokens first, then supernodes, then features.
_CAP_CLASS = np.array([2, 1, 0, 0], dtype=np.int8)
# Position of a node's kind inside an incidence's node_ids: features (and supernodes) first, tokens last.
_MEMBER_CLASS = np.array([0, 0, 1, 2], dtype=np.int8)
# Order of nodes in the document: inputs, features, supernodes, outputs — the direction the graph reads.
_DISPLAY_CLASS = {KIND_INPUT: 0, KIND_FEATURE: 1, KIND_SUPERNODE: 2, KIND_OUTPUT: 3}


class PrunedRecords(list):
    """A node or incidence list `prune_and_group` returned, stamped so `build_hif` writes it as it is.

    Code written against the seed system prunes and then builds; `build_hif` recognises the pair (same stamp,
    same config, lengths unchanged) and does not prune a second time. Items edited in between are written as
    they are, as the seed's `build_hif` did.
    """

    __slots__ = ("stamp",)


@dataclass(frozen=True, eq=False)
class _Stamp:
    config: HypergraphConfig
    n_nodes: int
    n_incidences: int


def is_pruned(nodes: list[dict], incidences: list[dict], cfg: HypergraphConfig) -> bool:
    """Whether `nodes` and `incidences` are one unaltered-in-length pair `prune_and_group(..., cfg)` returned."""
    stamp = getattr(nodes, "stamp", None)
    return (stamp is not None and getattr(incidences, "stamp", None) is stamp and stamp.config == cfg
            and (len(nodes), len(incidences)) == (stamp.n_nodes, stamp.n_incidences))


@overload
def prune_and_group(graph: Graph, cfg: HypergraphConfig, /) -> tuple[list[dict], list[dict], dict[str, Any]]: ...
@overload
def prune_and_group(nodes: list[dict], incidences: list[dict], cfg: HypergraphConfig, /
                    ) -> tuple[list[dict], list[dict], dict[str, Any]]: ...
def prune_and_group(source: Graph | list[dict], *rest: Any) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Apply issue 3's pruning contract; return (nodes, incidences, summary) in canonical order.

    Takes a `Graph` or the seed's node and incidence dicts; the same graph in either form gives the same output.
    Order of rules: (1) clamp weights into [0, 1] and drop those below `min_edge_weight`; (2) per token, keep
    its top `per_token_incident_cap` incidences by (weight desc, id asc) — an incidence survives only if it is
    within the cap of every token it touches; (3) group features into supernodes, remap, merge incidences that
    became identical keeping the heaviest (its id, metadata and attributes); (4) cut incidences to
    `max_incidences`, then nodes to `max_nodes` by priority, then remove incidences that lost a node and
    nodes left without an incidence. Incidences with fewer than two distinct nodes are dropped throughout.
    Inputs are not mutated; outputs may share nested values (attributes, provenance) with them.
    The summary counts each dropped incidence under one reason; an incidence that both would merge and falls
    outside `max_incidences` counts as `max_incidences` (merges are only looked for within the cap's reach).
    """
    graph, cfg = graph_and_config(source, rest, "prune_and_group(graph, cfg) or prune_and_group(nodes, "
                                                "incidences, cfg)")
    nodes, incidences, summary = pruned_records(graph, cfg)
    stamp = _Stamp(cfg, len(nodes), len(incidences))
    out_nodes, out_incidences = PrunedRecords(nodes), PrunedRecords(incidences)
    out_nodes.stamp = out_incidences.stamp = stamp
    return out_nodes, out_incidences, summary


def graph_and_config(source: Graph | list[dict], rest: tuple, usage: str) -> tuple[Graph, HypergraphConfig]:
    """The graph and config of a call in either form: `(graph, cfg)` or `(nodes, incidences, cfg)`."""
    if isinstance(source, Graph) and len(rest) == 1:
        return source, rest[0]
    if not isinstance(source, Graph) and len(rest) == 2:
        return Graph.from_records(source, rest[0]), rest[1]
    raise TypeError(f"expected {usage}")


def pruned_records(graph: Graph, cfg: HypergraphConfig) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Prune `graph` and write the survivors as v1 dicts: the only dicts a columnar graph ever becomes."""
    with paused_collector():
        kept = _prune(graph, cfg)
        nodes, incidences = _write(graph, kept)
    log.info("hif prune_and_group %s", json.dumps(kept.summary, sort_keys=True))
    return nodes, incidences, kept.summary


@contextmanager
def paused_collector() -> Iterator[None]:
    """Pause the cyclic garbage collector while a graph is read or written as dicts.

    Reading 200k incidence dicts allocates hundreds of thousands of lists and tuples, which triggers repeated
    collections that each traverse the caller's whole input graph (~10% of the run time at 200k); nothing
    allocated here forms reference cycles, so there is nothing for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def weight_id_order(weight: np.ndarray, ids_of: Callable[[np.ndarray], list[str]],
                    candidates: np.ndarray) -> np.ndarray:
    """`candidates` sorted by weight descending, then id ascending.

    A numeric sort does almost all the work; only runs of exactly equal weights (rare for real attributions,
    common after clamping to 1.0) are then re-sorted by id, so ids are needed (or minted) for those rows alone.
    """
    order = candidates[np.argsort(-weight[candidates])]
    sorted_w = weight[order]
    tie = sorted_w[1:] == sorted_w[:-1]
    if not tie.any():
        return order
    run = np.cumsum(np.r_[True, ~tie]) - 1
    in_tied_run = np.bincount(run)[run] > 1
    tied = order[in_tied_run]
    tied_ids = np.array(ids_of(tied))
    order[in_tied_run] = tied[np.lexsort((tied_ids, run[in_tied_run]))]
    return order


def _distinct_pairs(pair_inc: np.ndarray, pair_node: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sorted by (incidence, node) with repeats removed: a node listed twice in one incidence counts once.

    A plain sort of one packed key plus a neighbour comparison: np.unique's hash path is several times slower.
    Callers pass pairs already grouped by incidence (only the few nodes within each are out of order), which
    the stable sort (timsort) exploits: about 3x faster than quicksort on such nearly sorted keys.
    """
    bits = max(int(n_nodes - 1).bit_length(), 1)  # shifts and masks, not a division, unpack the key
    key = np.sort((pair_inc << bits) | pair_node, kind="stable")
    key = key[np.r_[np.ones(min(len(key), 1), dtype=bool), key[1:] != key[:-1]]]
    return key >> bits, key & ((1 << bits) - 1)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of small non-negative integers (node indices, arities).

    A bincount is one linear pass over the values plus one over the range, where np.unique or a sort pays
    n log n on the ~400k pairs; every caller passes values bounded by the node count.
    """
    return np.flatnonzero(np.bincount(values))


def _first_in_group(*keys: np.ndarray) -> np.ndarray:
    """For rows already sorted by `keys`, True where a new group of equal keys begins."""
    n = len(keys[0])
    change = np.zeros(max(n - 1, 0), dtype=bool)
    for key in keys:
        change |= key[1:] != key[:-1]
    return np.r_[np.ones(min(n, 1), dtype=bool), change]


def _row_order(rows: np.ndarray, n_nodes: int) -> np.ndarray:
    """Permutation sorting the rows of `rows` [n, k] lexicographically.

    Rows of up to a few node indices are packed into one int64 key (one argsort instead of a k-key lexsort);
    wider rows, which would overflow, fall back to lexsort.
    """
    k = rows.shape[1]
    if n_nodes ** k < 2**62:
        key = np.zeros(len(rows), dtype=np.int64)
        for column in rows.T:
            key = key * n_nodes + column
        return np.argsort(key)
    return np.lexsort(rows.T[::-1])


def _identical_losers(pi: np.ndarray, pn: np.ndarray, rank: np.ndarray,
                      merge_codes: Callable[[np.ndarray], np.ndarray], m: int, n_nodes: int) -> np.ndarray:
    """Incidences identical to a better-ranked one: the same node set and the same (type, method, window).

    Node sets are compared exactly, per arity, as rows of a [n_k, k] matrix; metadata is read only for the
    incidences whose node set is shared, which keeps Python work proportional to the merges, not the input.
    """
    arity = np.bincount(pi, minlength=m)[pi]
    losers = []
    for k in _unique(arity).tolist():
        sel = arity == k
        incs = pi[sel][::k]
        rows = pn[sel].reshape(-1, k)
        o = _row_order(rows, n_nodes)
        gid = np.cumsum(_first_in_group(*rows[o].T)) - 1
        shared = np.bincount(gid)[gid] > 1
        if not shared.any():
            continue
        cand, cand_gid = incs[o][shared], gid[shared]
        codes = merge_codes(cand)
        n_codes = int(codes.max()) + 1
        if len(cand) * n_codes * (m + 1) < 2**62:  # pack (group, code, rank) into one sortable int64
            s = np.argsort((cand_gid * n_codes + codes) * (m + 1) + rank[cand])
        else:
            s = np.lexsort((rank[cand], codes, cand_gid))
        losers.append(cand[s][~_first_in_group(cand_gid[s], codes[s])])
    return np.concatenate(losers) if losers else np.zeros(0, dtype=np.int64)


def _losers_within_cap(pi: np.ndarray, pn: np.ndarray, order: np.ndarray, rank: np.ndarray,
                       merge_codes: Callable[[np.ndarray], np.ndarray], n_nodes: int, cap: int) -> np.ndarray:
    """Merge losers among the incidences the incidence cap can still reach.

    Whether an incidence loses a merge depends only on better-ranked ones, and the cap keeps the first `cap`
    non-losers in rank order, so only a prefix of `order` needs checking: it starts at `cap` incidences and
    grows until it holds `cap` non-losers (usually once). Incidences past the prefix are counted as cut by
    `max_incidences`, not as merged. At 200k incidences this reads a tenth of the metadata a full pass would.
    """
    m = len(rank)
    depth = min(cap, len(order))
    while True:
        in_prefix = rank[pi] <= rank[order[depth - 1]] if depth else np.zeros(len(pi), dtype=bool)
        losers = _identical_losers(pi[in_prefix], pn[in_prefix], rank, merge_codes, m, n_nodes)
        missing = cap - (depth - len(losers))
        if missing <= 0 or depth == len(order):
            return losers
        depth = min(len(order), depth + 2 * missing)


def _id_ranks(ids: list[str]) -> np.ndarray:
    """Position of each id in lexicographic order."""
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    return ranks


def _over_token_cap(pi: np.ndarray, pn: np.ndarray, kind: np.ndarray, order: np.ndarray, rank: np.ndarray,
                    cap: int) -> np.ndarray:
    """Incidences beyond the top `cap` (by rank) of at least one token they touch.

    Pairs are sorted by one packed key (token, rank). A token lists each incidence once, so the pair at sorted
    position j is beyond its token's cap exactly when the pair `cap` places earlier belongs to the same token.
    """
    bits = max(len(rank).bit_length(), 1)
    tok = kind[pn] >= KIND_INPUT
    token_key = np.sort((pn[tok] << bits) | rank[pi[tok]])
    token = token_key >> bits
    over = np.ones(len(token_key), dtype=bool)
    if cap > 0:
        over[:cap] = False
        over[cap:] = token[cap:] == token[:-cap]
    return order[token_key[over] & ((1 << bits) - 1)]


def _node_priority(referenced: np.ndarray, pi: np.ndarray, pn: np.ndarray, w: np.ndarray, ids: list[str],
                   kind: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """`referenced` nodes in the order the node cap keeps them.

    Tokens, then supernodes, then features; within each class by strongest incident weight, then activation,
    then id. The strongest edge comes before activation so a cap can never drop the graph's strongest edge
    in favour of a node that is merely very active.
    """
    strongest = np.full(len(ids), -np.inf)
    np.maximum.at(strongest, pn, w[pi])
    id_rank = _id_ranks([ids[i] for i in referenced.tolist()])
    return referenced[
        np.lexsort((id_rank, -activation[referenced], -strongest[referenced], _CAP_CLASS[kind[referenced]]))
    ]


@dataclass
class _Kept:
    """What survives pruning, as rows: node rows index `ids` (graph rows, then supernodes)."""

    ids: list[str]
    supernodes: list[Supernode]
    node_rows: np.ndarray  # final nodes, in no particular order
    incidence_rows: np.ndarray  # final incidences, in rank order
    member_rows: np.ndarray  # their members, grouped by incidence, in document order
    member_ends: list[int]
    weights: list[float]
    summary: dict[str, Any]


def _prune(graph: Graph, cfg: HypergraphConfig) -> _Kept:
    nodes, inc = graph.nodes, graph.incidences
    m = len(inc)
    ids, kind = list(graph.node_ids), nodes.kind
    activation = np.where(np.isnan(nodes.activation), -np.inf, nodes.activation)
    w = np.clip(inc.weight, 0.0, 1.0)  # NaN passes through clip unchanged
    alive = np.ones(m, dtype=bool)
    inc_dropped = dict.fromkeys(INCIDENCE_DROP_REASONS, 0)
    inc_dropped["duplicate_id"] = inc.duplicates

    def drop(reason: str, which: np.ndarray) -> None:
        mask = np.zeros(m, dtype=bool)
        mask[which] = True
        mask &= alive
        inc_dropped[reason] += int(mask.sum())
        alive[mask] = False

    pair_inc, pair_node = inc.owners(), inc.members
    drop("unknown_node", pair_inc[pair_node < 0])
    nan = np.isnan(w)
    drop("nan_weight", nan)
    drop("below_min_weight", ~nan & (w < cfg.min_edge_weight))

    keep = alive[pair_inc]
    pi, pn = _distinct_pairs(pair_inc[keep], pair_node[keep], len(ids))
    drop("fewer_than_two_nodes", np.bincount(pi, minlength=m) < 2)
    keep = alive[pi]
    pi, pn = pi[keep], pn[keep]

    order = weight_id_order(w, graph.incidence_ids, np.flatnonzero(alive))
    rank = np.full(m, m, dtype=np.int64)
    rank[order] = np.arange(len(order))

    drop("per_token_cap", _over_token_cap(pi, pn, kind, order, rank, cfg.per_token_incident_cap))
    keep = alive[pi]
    pi, pn = pi[keep], pn[keep]

    grouped = 0
    supernodes: list[Supernode] = []
    if cfg.grouping == "supernode":
        features = _unique(pn[kind[pn] == KIND_FEATURE])
        supernodes = plan_supernodes(
            features, ids, nodes.label, activation, cfg.supernode_label_delim, cfg.supernode_min_group
        )
    if supernodes:
        base = len(ids)
        representative = np.arange(base + len(supernodes), dtype=np.int64)
        for j, sn in enumerate(supernodes):
            representative[sn.members] = base + j
            grouped += len(sn.members)
        ids += [sn.record["id"] for sn in supernodes]
        kind = np.r_[kind, np.full(len(supernodes), KIND_SUPERNODE, dtype=np.int8)]
        activation = np.r_[activation, [sn.record.get("activation_strength", -np.inf) for sn in supernodes]]
        pi, pn = _distinct_pairs(pi, representative[pn], len(ids))
        drop("collapsed_by_grouping", np.bincount(pi, minlength=m) < 2)
        keep = alive[pi]
        pi, pn = pi[keep], pn[keep]
    order = order[alive[order]]
    drop("merged", _losers_within_cap(pi, pn, order, rank, graph.merge_codes, len(ids), cfg.max_incidences))
    order = order[alive[order]]
    drop("max_incidences", order[cfg.max_incidences :])
    keep = alive[pi]
    pi, pn = pi[keep], pn[keep]

    referenced = _unique(pn)
    node_alive = np.zeros(len(ids), dtype=bool)
    node_alive[_node_priority(referenced, pi, pn, w, ids, kind, activation)[: cfg.max_nodes]] = True
    drop("lost_node", pi[~node_alive[pn]])
    keep = alive[pi]
    pi, pn = pi[keep], pn[keep]
    final_nodes = _unique(pn)

    final_incs = order[alive[order]]
    member_key = np.zeros(len(ids), dtype=np.int64)
    member_key[final_nodes] = _MEMBER_CLASS[kind[final_nodes]].astype(np.int64) * len(ids) + _id_ranks(
        [ids[i] for i in final_nodes.tolist()]
    )
    s = np.lexsort((member_key[pn], rank[pi]))
    n_unique = len(nodes)
    node_dropped = {
        "duplicate_id": nodes.duplicates,
        "grouped": grouped,
        "unreferenced": n_unique + len(supernodes) - grouped - len(referenced),
        "max_nodes": int(max(len(referenced) - cfg.max_nodes, 0)),
        "orphaned": int(min(len(referenced), cfg.max_nodes) - len(final_nodes)),
    }
    summary = {
        "nodes_in": n_unique + nodes.duplicates,
        "incidences_in": m + inc.duplicates,
        "nodes_out": len(final_nodes),
        "incidences_out": len(final_incs),
        "supernodes_formed": len(supernodes),
        "incidences_dropped": inc_dropped,
        "nodes_dropped": node_dropped,
    }
    return _Kept(ids, supernodes, final_nodes, final_incs, pn[s],
                 np.cumsum(np.bincount(pi, minlength=m)[final_incs]).tolist(), w[final_incs].tolist(), summary)


def _write(graph: Graph, kept: _Kept) -> tuple[list[dict], list[dict]]:
    """The surviving nodes (in display order) and incidences (in rank order) as v1 dicts."""
    ids, n = kept.ids, len(graph.nodes)
    flat = [ids[j] for j in kept.member_rows.tolist()]
    ends = kept.member_ends
    member_ids = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    incidences = graph.emit_incidences(kept.incidence_rows, member_ids, kept.weights)
    own = kept.node_rows[kept.node_rows < n]
    nodes = graph.emit_nodes(own)
    nodes += [normalize_node(kept.supernodes[j - n].record) for j in kept.node_rows[kept.node_rows >= n].tolist()]
    nodes.sort(key=_display_key)
    return nodes, incidences


def _display_key(node: dict) -> tuple:
    kind = TYPE_NAMES.index(node["type"])
    return (_DISPLAY_CLASS[kind], node.get("position" if kind >= KIND_INPUT else "layer", -1), node["id"])
