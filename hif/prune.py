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
from . import ids as idscheme
from .graph import KIND_FEATURE, KIND_INPUT, KIND_SUPERNODE, Graph
from .records import normalize_node
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
_DISPLAY_CLASS = np.array([1, 2, 0, 3], dtype=np.int8)


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
        with paused_collector():
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


def weight_id_order(weight: np.ndarray, candidates: np.ndarray,
                    sort_keys: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`candidates` sorted by weight descending, then id ascending (`sort_keys` orders rows as their ids).

    A numeric sort does most of the work; only runs of exactly equal weights (common: attribution rounds weights
    to 6 decimals, and each window's strongest feature has weight 1) are then re-sorted by id.
    """
    order = candidates[np.argsort(-weight[candidates])]
    sorted_w = weight[order]
    tie = sorted_w[1:] == sorted_w[:-1]
    if not tie.any():
        return order
    run = np.concatenate(([0], np.cumsum(~tie)))
    in_tied_run = np.bincount(run)[run] > 1
    tied = order[in_tied_run]
    order[in_tied_run] = tied[np.lexsort((sort_keys(tied), run[in_tied_run]))]
    return order


def _ranked_prefix(weight: np.ndarray, alive: np.ndarray, depth: int,
                   sort_keys: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The first `depth` alive incidences in rank order (all of them, when fewer).

    Selecting by weight is linear (a partition); only the selection, widened to every incidence that ties the
    last one's weight, is sorted. Pruning needs no more: each rule decides an incidence from better-ranked ones.
    """
    if depth >= len(alive):
        return weight_id_order(weight, alive, sort_keys)
    if depth <= 0:
        return alive[:0]
    candidate = weight[alive]
    boundary = np.partition(candidate, len(candidate) - depth)[len(candidate) - depth]
    return weight_id_order(weight, alive[candidate >= boundary], sort_keys)[:depth]


def _distinct_pairs(pair_inc: np.ndarray, pair_node: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sorted by (incidence, node) with repeats removed: a node listed twice in one incidence counts once.

    A plain sort of one packed key plus a neighbour comparison: np.unique's hash path is several times slower.
    Callers pass pairs grouped by incidence in increasing order (only the few nodes within each may be out of
    order), which the stable sort (timsort) exploits: about 3x faster than quicksort on such nearly sorted keys;
    pairs already in order (members listed in row order, as attribution lists them) are not sorted at all.
    """
    if np.all((pair_node[1:] > pair_node[:-1]) | (pair_inc[1:] != pair_inc[:-1])):
        return pair_inc, pair_node
    bits = max(int(n_nodes - 1).bit_length(), 1)  # shifts and masks, not a division, unpack the key
    key = np.sort((pair_inc << bits) | pair_node, kind="stable")
    key = key[_first_in_group(key)]
    return key >> bits, key & ((1 << bits) - 1)


def _remapped_pairs(pi: np.ndarray, pn: np.ndarray, representative: np.ndarray, m: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with each node replaced by its representative, still grouped by incidence, without repeats.

    A node can repeat only in an incidence that names two grouped features; only those (none, in attribution
    graphs: one feature per incidence) are sorted again, and they move behind the others. Nodes within an
    incidence are no longer in order; `_identical_losers` sorts the few rows it compares.
    """
    remapped = representative[pn]
    several = np.bincount(pi[remapped != pn], minlength=m) > 1
    if not several.any():
        return pi, remapped
    several = several[pi]
    again = _distinct_pairs(pi[several], remapped[several], len(representative))
    kept = ~several
    return np.concatenate((pi[kept], again[0])), np.concatenate((remapped[kept], again[1]))


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
    return np.concatenate((np.ones(min(n, 1), dtype=bool), change))


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

    Node sets are compared exactly, per arity, as sorted rows of a [n_k, k] matrix (`pi` groups each incidence's
    pairs together, in any order); metadata is read only for the
    incidences whose node set is shared, which keeps Python work proportional to the merges, not the input.
    """
    arity = np.bincount(pi, minlength=m)[pi]
    losers = []
    for k in _unique(arity).tolist():
        sel = arity == k
        incs = pi[sel][::k]
        rows = np.sort(pn[sel].reshape(-1, k), axis=1)
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


def _losers_within_cap(pi: np.ndarray, pn: np.ndarray, alive: np.ndarray, weight: np.ndarray,
                       sort_keys: Callable[[np.ndarray], np.ndarray], merge_codes: Callable[[np.ndarray], np.ndarray],
                       n_nodes: int, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge losers among the incidences the incidence cap can still reach, that reach in rank order, and its pairs.

    Whether an incidence loses a merge depends only on better-ranked ones, and the cap keeps the first `cap`
    non-losers in rank order, so only a prefix of the rank order is needed: it starts at `cap` incidences and
    grows until it holds `cap` non-losers (usually at once). Incidences past the prefix are counted as cut by
    `max_incidences`, not as merged. The prefix is ranked and searched with room to grow by half, so growing
    rarely ranks anything again; at 200k incidences this ranks and reads a sixth of what a full pass would.
    """
    m = len(weight)
    depth = min(cap, len(alive))
    reach = -1
    while True:
        if depth > reach:
            reach = min(len(alive), depth + depth // 2)
            order = _ranked_prefix(weight, alive, reach, sort_keys)
            rank = np.full(m, m, dtype=np.int64)
            rank[order] = np.arange(len(order))
            in_reach = rank[pi] < len(order)
            reach_pi, reach_pn = pi[in_reach], pn[in_reach]
            losers = _identical_losers(reach_pi, reach_pn, rank, merge_codes, m, n_nodes)
            loser_ranks = np.sort(rank[losers])
        missing = cap - (depth - int(np.searchsorted(loser_ranks, depth)))
        if missing <= 0 or depth == len(alive):
            return losers[rank[losers] < depth], order[:depth], reach_pi, reach_pn
        depth = min(len(alive), depth + 2 * missing)


def _id_ranks(ids: list[str]) -> np.ndarray:
    """Position of each id in lexicographic order."""
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    return ranks


def _over_token_cap(pi: np.ndarray, pn: np.ndarray, kind: np.ndarray, degree: np.ndarray, weight: np.ndarray,
                    sort_keys: Callable[[np.ndarray], np.ndarray], cap: int) -> np.ndarray:
    """Incidences beyond the top `cap` (by rank) of at least one token they touch.

    Only tokens with more than `cap` incidences can cut any, so only their incidences are ranked (usually few:
    attribution already applies the cap). Their pairs are sorted by one packed key (token, rank); a token lists
    each incidence once, so the pair at sorted position j is beyond its token's cap exactly when the pair `cap`
    places earlier belongs to the same token.
    """
    busy = (degree > cap) & (kind >= KIND_INPUT)
    if not busy.any():
        return pi[:0]
    tok = busy[pn]
    order = weight_id_order(weight, _unique(pi[tok]), sort_keys)
    rank = np.zeros(len(weight), dtype=np.int64)
    rank[order] = np.arange(len(order))
    bits = max(len(order).bit_length(), 1)
    token_key = np.sort((pn[tok] << bits) | rank[pi[tok]])
    token = token_key >> bits
    over = np.ones(len(token_key), dtype=bool)
    if cap > 0:
        over[:cap] = False
        over[cap:] = token[cap:] == token[:-cap]
    return order[token_key[over] & ((1 << bits) - 1)]


def _node_priority(referenced: np.ndarray, pi: np.ndarray, pn: np.ndarray, w: np.ndarray, node_key: np.ndarray,
                   kind: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """`referenced` nodes in the order the node cap keeps them.

    Tokens, then supernodes, then features; within each class by strongest incident weight, then activation,
    then id (`node_key[i]` sorts `referenced[i]` among them like the ids). The strongest edge comes before
    activation so a cap can never drop the graph's strongest edge in favour of a node that is merely very active.
    """
    strongest = np.full(len(kind), -np.inf)
    np.maximum.at(strongest, pn, w[pi])
    return referenced[np.lexsort((node_key, -activation[referenced], -strongest[referenced],
                                  _CAP_CLASS[kind[referenced]]))]


@dataclass
class _Kept:
    """What survives pruning. Node indices are graph rows, then `supernodes` (index n + j)."""

    supernodes: list[Supernode]
    node_rows: np.ndarray  # final nodes, in document order
    node_ids: list[str]  # their ids
    incidence_rows: np.ndarray  # final incidences, in rank order
    member_ids: list[list[str]]  # their members' ids, in document order
    weights: list[float]
    summary: dict[str, Any]


def _prune(graph: Graph, cfg: HypergraphConfig) -> _Kept:
    nodes, inc = graph.nodes, graph.incidences
    m, n = len(inc), len(nodes)
    kind = nodes.kind
    activation = np.where(np.isnan(nodes.activation), -np.inf, nodes.activation)
    w = np.clip(inc.weight, 0.0, 1.0)  # NaN passes through clip unchanged
    alive = np.ones(m, dtype=bool)
    inc_dropped = dict.fromkeys(INCIDENCE_DROP_REASONS, 0)
    inc_dropped["duplicate_id"] = inc.duplicates

    def drop(reason: str, which: np.ndarray) -> int:
        mask = np.zeros(m, dtype=bool)
        mask[which] = True
        mask &= alive
        count = int(mask.sum())
        inc_dropped[reason] += count
        alive[mask] = False
        return count

    def survivors(pi: np.ndarray, pn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = alive[pi]
        return pi[keep], pn[keep]

    pair_inc, pair_node = inc.owners(), inc.members
    drop("unknown_node", pair_inc[pair_node < 0])
    nan = np.isnan(w)
    drop("nan_weight", nan)
    drop("below_min_weight", ~nan & (w < cfg.min_edge_weight))

    pi, pn = _distinct_pairs(*survivors(pair_inc, pair_node), n)
    if drop("fewer_than_two_nodes", np.bincount(pi, minlength=m) < 2):
        pi, pn = survivors(pi, pn)

    degree = np.bincount(pn, minlength=n)
    if drop("per_token_cap", _over_token_cap(pi, pn, kind, degree, w, graph.incidence_sort_keys,
                                             cfg.per_token_incident_cap)):
        pi, pn = survivors(pi, pn)
        degree = np.bincount(pn, minlength=n)

    grouped = 0
    supernodes: list[Supernode] = []
    if cfg.grouping == "supernode":
        supernodes = plan_supernodes(np.flatnonzero((degree > 0) & (kind == KIND_FEATURE)), nodes.label,
                                     graph.node_sort_keys, activation, cfg.supernode_label_delim,
                                     cfg.supernode_min_group, graph.node_ids_starting(f"{idscheme.SUPERNODE}_"),
                                     graph.node_ids)
    supernode_ids = [sn.record["id"] for sn in supernodes]
    if supernodes:
        representative = np.arange(n + len(supernodes), dtype=np.int64)
        for j, sn in enumerate(supernodes):
            representative[sn.members] = n + j
            grouped += len(sn.members)
        kind = np.r_[kind, np.full(len(supernodes), KIND_SUPERNODE, dtype=np.int8)]
        activation = np.r_[activation, [sn.record.get("activation_strength", -np.inf) for sn in supernodes]]
        pi, pn = _remapped_pairs(pi, pn, representative, m)
        if drop("collapsed_by_grouping", np.bincount(pi, minlength=m) < 2):
            pi, pn = survivors(pi, pn)
    losers, order, pi, pn = _losers_within_cap(pi, pn, np.flatnonzero(alive), w, graph.incidence_sort_keys,
                                               graph.merge_codes, len(kind), cfg.max_incidences)
    drop("merged", losers)
    order = order[alive[order]][: cfg.max_incidences]
    beyond = alive.copy()
    beyond[order] = False
    drop("max_incidences", beyond)
    pi, pn = survivors(pi, pn)  # the pairs of the ranked reach: every incidence still alive is in it

    referenced = _unique(pn)
    node_alive = np.zeros(len(kind), dtype=bool)
    node_key = _node_keys(graph, referenced, supernode_ids)
    node_alive[_node_priority(referenced, pi, pn, w, node_key, kind, activation)[: cfg.max_nodes]] = True
    if drop("lost_node", pi[~node_alive[pn]]):
        pi, pn = survivors(pi, pn)
    final_nodes = _unique(pn)
    final_incs = order[alive[order]]

    node_dropped = {
        "duplicate_id": nodes.duplicates,
        "grouped": grouped,
        "unreferenced": n + len(supernodes) - grouped - len(referenced),
        "max_nodes": int(max(len(referenced) - cfg.max_nodes, 0)),
        "orphaned": int(min(len(referenced), cfg.max_nodes) - len(final_nodes)),
    }
    summary = {
        "nodes_in": n + nodes.duplicates,
        "incidences_in": m + inc.duplicates,
        "nodes_out": len(final_nodes),
        "incidences_out": len(final_incs),
        "supernodes_formed": len(supernodes),
        "incidences_dropped": inc_dropped,
        "nodes_dropped": node_dropped,
    }
    return _Kept(supernodes, *_document_order(graph, kind, supernode_ids, final_nodes, final_incs, pi, pn),
                 w[final_incs].tolist(), summary)


def _node_keys(graph: Graph, referenced: np.ndarray, supernode_ids: list[str]) -> np.ndarray:
    """Keys sorting the `referenced` nodes like their ids where `_node_priority` compares them: graph rows among
    themselves, supernodes (a class of their own) among themselves, after the rows."""
    n = len(graph.nodes)
    keys = graph.node_sort_keys(referenced[referenced < n])
    sn_ids = [supernode_ids[j - n] for j in referenced[referenced >= n].tolist()]
    return np.concatenate((keys, keys.max(initial=0) + 1 + _id_ranks(sn_ids)))


def _document_order(graph: Graph, kind: np.ndarray, supernode_ids: list[str], final_nodes: np.ndarray,
                    final_incs: np.ndarray, pi: np.ndarray, pn: np.ndarray
                    ) -> tuple[np.ndarray, list[str], np.ndarray, list[list[str]]]:
    """The final nodes in display order with their ids, and the final incidences' member ids in document order.

    Nodes read inputs, features (by layer), supernodes, outputs (by position), then id; an incidence lists its
    features and supernodes, then input tokens, then output tokens, each by id. Ids are spelled for these nodes
    only.
    """
    nodes, n, m = graph.nodes, len(graph.nodes), len(graph.incidences)
    own = final_nodes < n
    final_ids = graph.node_ids(final_nodes[own]) + [supernode_ids[j - n] for j in final_nodes[~own].tolist()]
    id_rank = np.zeros(len(kind), dtype=np.int64)
    id_rank[final_nodes] = _id_ranks(final_ids)
    id_of = np.empty(len(kind), dtype=object)
    id_of[final_nodes] = final_ids
    rank = np.zeros(m, dtype=np.int64)
    rank[final_incs] = np.arange(len(final_incs))
    member_key = _MEMBER_CLASS[kind[pn]].astype(np.int64) * len(kind) + id_rank[pn]
    flat = id_of[pn[np.argsort(rank[pi] * (3 * len(kind)) + member_key)]].tolist()
    ends = np.cumsum(np.bincount(pi, minlength=m)[final_incs]).tolist()
    absent = np.full(len(kind) - n, -1, dtype=np.int64)  # supernodes have neither layer nor position
    where = np.where(kind >= KIND_INPUT, np.r_[nodes.position, absent], np.r_[nodes.layer, absent])[final_nodes]
    display = np.lexsort((id_rank[final_nodes], where, _DISPLAY_CLASS[kind[final_nodes]]))
    return (final_nodes[display], [final_ids[i] for i in display.tolist()], final_incs,
            [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)])


def _write(graph: Graph, kept: _Kept) -> tuple[list[dict], list[dict]]:
    """The surviving nodes (in display order) and incidences (in rank order) as v1 dicts."""
    n = len(graph.nodes)
    own = kept.node_rows < n
    rows = kept.node_rows[own]
    written = iter(graph.emit_nodes(rows, [i for i, mine in zip(kept.node_ids, own.tolist()) if mine]))
    nodes = [next(written) if mine else normalize_node(kept.supernodes[j - n].record)
             for j, mine in zip(kept.node_rows.tolist(), own.tolist())]
    return nodes, graph.emit_incidences(kept.incidence_rows, kept.member_ids, kept.weights)
