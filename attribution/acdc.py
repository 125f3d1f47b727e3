"""Sentence attribution, ACDC-style: ablate small groups of features from the full set and measure the value's drop.

For a window (its positions' mean value) and the set N of features active anywhere in it, each round gives every
feature f whose estimate is not settled yet one test (every feature, until each has a standard error): a group
R ∋ f of 1–3 features is removed and f's effect in that test is
δ_f(R) = v(N ∖ (R∖{f})) − v(N ∖ R), the drop caused by removing f on top of its partners. Partners are drawn by
co-activation: pick a position where f fires (∝ its activation there), then partners among the features firing at
that same position (∝ their activations). Features that fire together and may stand in for each other are thereby
ablated together, which a one-at-a-time ablation would miss (removing one of two redundant features changes little).

The estimate is stratified by group size: round 0 is the exact leave-one-out (size 1), later rounds alternate pairs
and triples, and a feature's effect is the mean of the three strata. Its standard error comes from the spread of its
sampled pair and triple tests. A window stops once max SE / range ≤ `early_stop_delta`, at `max_samples` rounds, or at
the deadline; a feature whose SE is already within delta × range gets no more tests meanwhile. Evaluation is sparse:
a test only touches the positions where its members fire (through per-position tables when the window is short), so
a round costs O(occurrences of the tested features), whatever the window's length.
"""
from __future__ import annotations

import time

import numpy as np

from .budget import Deadline
from .inputs import Estimates, LayerFeatures
from .value import ValueFunction, prepare_terms_within

MEMBERS = 3
MIN_TESTS = 4  # per sampled stratum before a standard error counts (fewer often underestimate it)
RECORDS_PER_STEP = 1 << 16  # member occurrences evaluated per step
ROUNDS_PER_STEP = 8  # sampled rounds a small window runs in one step (2 × MIN_TESTS: the first step can converge)
DENSE_LOOKUP_LIMIT = 1 << 22  # positions × features of a window up to which slots are looked up in a table
DENSE_EFFECTS_LIMIT = 1 << 21  # features² × positions of a window up to which group tests use dense tables


class AcdcWindow:
    """Group-ablation effects of the features of one window of one layer."""

    method = "acdc"

    def __init__(self, lf: LayerFeatures, window_id: int, span: tuple[int, int], vf: ValueFunction, *,
                 max_samples: int, delta: float, rng: np.random.Generator) -> None:
        self.lf, self.vf, self.rng = lf, vf, rng
        self.layer = lf.layer
        self.window_id = window_id
        self.windows = np.array([window_id], dtype=np.int64)
        self.positions = np.arange(span[0], span[1], dtype=np.int64)
        self.max_rounds = max_samples
        self.delta = delta
        self.done = False
        self.step_cost = 0.0

    # --- set-up ---------------------------------------------------------------------------------------------

    def start(self, deadline: Deadline) -> bool:
        """Prepare the window and run the leave-one-out round; False if the deadline came first."""
        terms = prepare_terms_within(self.lf, self.positions, self.vf, deadline)
        if terms is None:
            return False
        self.terms = terms
        self._index_features()
        u = self.n_features
        self.loo = np.zeros(u)
        self.count = np.zeros((2, u), dtype=np.int64)  # pair and triple tests per feature
        self.total = np.zeros((2, u))
        self.total_sq = np.zeros((2, u))
        self.round, self.cursor = 0, 0
        self.pending = np.arange(u)  # round 0 tests every feature alone
        if u == 0:  # nothing fires in this window on this layer
            self.round, self.done = 1, True
            return True
        while self.round == 0:
            if not deadline.allows(self.step_cost):
                return False
            self.step(deadline)
        return True

    def _index_features(self) -> None:
        """Window-local feature ids, their occurrences grouped by feature, and a sorted (position, feature) key."""
        t = self.terms
        active = t.active
        p_idx, s_idx = np.nonzero(active)
        self.feature_ids, local = np.unique(t.features[active], return_inverse=True)
        local = local.ravel()
        self.n_features = u = len(self.feature_ids)
        self.local = np.full(active.shape, -1, dtype=np.int64)
        self.local[p_idx, s_idx] = local
        order = np.lexsort((p_idx, local))
        self.occ_p, self.occ_s = p_idx[order], s_idx[order]
        self.occ_ptr = np.concatenate([[0], np.cumsum(np.bincount(local, minlength=u))])
        self.occ_cum = np.cumsum(t.act[self.occ_p, self.occ_s])
        self.occ_base = np.concatenate([[0.0], self.occ_cum])[self.occ_ptr[:-1]]
        self.occ_mass = np.concatenate([[0.0], self.occ_cum])[self.occ_ptr[1:]] - self.occ_base
        if active.shape[0] * u <= DENSE_LOOKUP_LIMIT:
            self.slot_table = np.full((active.shape[0], u), -1, dtype=np.int64)
            self.slot_table[p_idx, local] = s_idx
        else:  # a very long window: a sorted (position, feature) key keeps memory linear in the occurrences
            self.slot_table = None
            keys = p_idx * u + local
            key_order = np.argsort(keys)
            self.key_sorted, self.key_slot = keys[key_order], s_idx[key_order]
        self.mean_occ = len(p_idx) / max(1, u)
        # Cumulative activation mass over (position, slot) in row-major order, for drawing partners by bisection.
        self.act_cum = np.cumsum(t.act.ravel())
        self.row_start = np.concatenate([[0.0], self.act_cum[t.act.shape[1] - 1::t.act.shape[1]]])
        self.act_flat, self.local_flat = t.act.ravel(), self.local.ravel()
        self.dense = self._dense_tables() if (u + 1) ** 2 * active.shape[0] <= DENSE_EFFECTS_LIMIT else None

    def _dense_tables(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Each feature's terms laid out by window position: alpha [u + 1, P]; own [u + 1, P] = c_f·c_f − 2 c_f·z_full
        (what removing f alone adds to the squared norm); cross [(u + 1)², P] = c_f·c_g, flattened so that a pair's
        row is one index. None for the linear value, which needs neither.

        Row u is all zeros and stands for "no member". A feature's entries are zero where it does not fire, so a
        group test becomes a handful of [B, P] row gathers and sums, which for a short window is far cheaper than
        the sparse evaluation (sorting the members' occurrences by group).
        """
        t, u = self.terms, self.n_features
        n_pos = t.act.shape[0]
        p_idx, s_idx = np.nonzero(t.active)
        f = self.local[p_idx, s_idx]
        alpha = np.zeros((u + 1, n_pos))
        alpha[f, p_idx] = t.alpha[p_idx, s_idx]
        if t.linear:
            return alpha, None, None
        own = np.zeros((u + 1, n_pos))
        own[f, p_idx] = t.gram[p_idx, s_idx, s_idx] - 2.0 * t.beta[p_idx, s_idx]
        cross = np.zeros(((u + 1) * (u + 1), n_pos))
        pp, s1, s2 = np.nonzero(t.active[:, :, None] & t.active[:, None, :])
        cross[self.local[pp, s1] * (u + 1) + self.local[pp, s2], pp] = t.gram[pp, s1, s2]
        return alpha, own, cross

    # --- sampling -------------------------------------------------------------------------------------------

    def step(self, deadline: Deadline) -> None:
        """Test the next chunk of this round's anchors; rounds alternate singletons → pairs → triples.

        Round 0 tests every feature; later rounds test only the features whose estimate is not settled yet (no
        standard error, or one above `delta` × the estimates' range), since only those stand between the window and
        its stopping rule. A round small enough to be far below `RECORDS_PER_STEP` runs together with the next ones
        in one vectorised step (up to `ROUNDS_PER_STEP`, never past `max_samples`): per-call overhead, not
        arithmetic, is what a small round costs; the stopping rule is checked at every step's round boundary.
        """
        began = time.perf_counter()
        u = self.n_features
        n = len(self.pending)
        chunk = max(1, int(RECORDS_PER_STEP // (MEMBERS * max(1.0, self.mean_occ))))
        if self.round > 0 and self.cursor == 0 and 0 < n <= chunk:
            rounds = int(min(ROUNDS_PER_STEP, chunk // n, self.max_rounds - self.round))
            anchors = np.tile(self.pending, rounds)
            sizes = np.repeat(2 + (self.round - 1 + np.arange(rounds)) % 2, n)
            self.round += rounds - 1
            self.cursor = n
        else:
            anchors = self.pending[self.cursor:self.cursor + chunk]
            sizes = np.full(len(anchors), 1 if self.round == 0 else 2 + (self.round - 1) % 2)
            self.cursor += len(anchors)
        effects = self._anchor_effects(self._draw_groups(anchors, sizes))
        if self.round == 0:
            self.loo[anchors] = effects
        else:
            flat = (sizes - 2) * u + anchors  # (stratum, anchor) as one index into the [2, u] tables
            self.count += np.bincount(flat, minlength=2 * u).reshape(2, u)
            self.total += np.bincount(flat, weights=effects, minlength=2 * u).reshape(2, u)
            self.total_sq += np.bincount(flat, weights=effects * effects, minlength=2 * u).reshape(2, u)
        if self.cursor >= n:
            self.round, self.cursor = self.round + 1, 0
            self.pending = self._unsettled()  # the next round's anchors, and what the stopping rule asks
            self._check_stop()
        self.step_cost = time.perf_counter() - began

    def _unsettled(self) -> np.ndarray:
        """Window-local ids of the features whose estimate still needs tests: no standard error yet, or one above
        `delta` × the range of the estimates (the stopping rule's test, feature by feature)."""
        phi, se = self._phi_se()
        spread = float(phi.max() - phi.min()) if len(phi) else 0.0
        return np.flatnonzero(np.isnan(se) | (se > self.delta * spread))

    def _draw_groups(self, anchors: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """[B, 3] window-local ids: each anchor, then up to `size - 1` partners drawn by co-activation (-1 = none).

        A partner is drawn ∝ activation among the slots of the chosen position that are not yet in the group: a
        uniform draw over the remaining mass steps over the excluded slots' intervals and is then found by bisection
        in the window's cumulative activations, so a draw costs O(log(P·k)), not a pass over the position's slots.
        """
        b = len(anchors)
        members = np.full((b, MEMBERS), -1, dtype=np.int64)
        members[:, 0] = anchors
        partners = int(sizes.max(initial=1)) - 1
        if partners == 0 or b == 0:
            return members
        k = self.terms.act.shape[1]
        target = self.occ_base[anchors] + self.rng.random(b) * self.occ_mass[anchors]
        occ = np.searchsorted(self.occ_cum, target, side="right")
        occ = np.clip(occ, self.occ_ptr[anchors], self.occ_ptr[anchors + 1] - 1)
        pos = self.occ_p[occ]
        row = pos * k  # flat index of the position's first slot
        base, mass = self.row_start[pos], self.row_start[pos + 1] - self.row_start[pos]
        # The group's slots so far as flat indices, in increasing order; -1 (weight 0) where there is none.
        low, high = row + self.occ_s[occ], np.full(b, -1)
        newest_w = self._slot_weight(low)  # weight of the slot most recently added to each group
        for j in range(1, partners + 1):
            low_w, high_w = self._slot_weight(low), self._slot_weight(high)
            mass = mass - newest_w  # the mass left once the group's slots are taken out
            draw = base + self.rng.random(b) * mass
            draw = draw + np.where(draw >= self.act_cum[low] - low_w, low_w, 0.0)
            draw = draw + np.where((high >= 0) & (draw >= self.act_cum[high] - high_w), high_w, 0.0)
            picked = row + np.clip(np.searchsorted(self.act_cum, draw, side="right") - row, 0, k - 1)
            ok = (mass > 0) & (sizes > j) & (picked != low) & (picked != high)
            members[:, j] = np.where(ok, self.local_flat[picked], -1)
            picked = np.where(ok, picked, -1)
            newest_w = self._slot_weight(picked)
            low, high = np.where(ok & (picked < low), picked, low), np.where(ok & (picked < low), low, picked)
        return members

    def _slot_weight(self, flat: np.ndarray) -> np.ndarray:
        """Activation at flat slot indices; 0 where the index is -1 (no slot)."""
        return np.where(flat >= 0, self.act_flat[np.maximum(flat, 0)], 0.0)

    def _anchor_effects(self, members: np.ndarray) -> np.ndarray:
        """δ_anchor = v(N ∖ partners) − v(N ∖ (partners ∪ anchor)) for each group, shape [B]."""
        return self._dense_effects(members) if self.dense is not None else self._sparse_effects(members)

    def _dense_effects(self, members: np.ndarray) -> np.ndarray:
        """`_anchor_effects` from the dense tables: every group at every window position, [B, P] at a time."""
        t, rows = self.terms, self.n_features + 1
        alpha, own, cross = self.dense
        a, m1, m2 = (np.where(members[:, j] >= 0, members[:, j], self.n_features) for j in range(MEMBERS))
        num_part = t.num_full - np.take(alpha, m1, axis=0) - np.take(alpha, m2, axis=0)
        num_all = num_part - np.take(alpha, a, axis=0)
        sq_part = sq_all = None
        if own is not None:
            sq_part = t.sq_full + np.take(own, m1, axis=0) + np.take(own, m2, axis=0) + \
                2.0 * np.take(cross, m1 * rows + m2, axis=0)
            sq_all = sq_part + np.take(own, a, axis=0) + \
                2.0 * (np.take(cross, a * rows + m1, axis=0) + np.take(cross, a * rows + m2, axis=0))
        drop = t.value(num_part.T, None if sq_part is None else sq_part.T) - \
            t.value(num_all.T, None if sq_all is None else sq_all.T)
        return drop.sum(axis=0) / len(self.positions)

    def _sparse_effects(self, members: np.ndarray) -> np.ndarray:
        """`_anchor_effects` touching only the positions where the members fire, for windows too long for tables."""
        t, n_pos = self.terms, len(self.positions)
        g_b, g_j = np.nonzero(members >= 0)
        feat = members[g_b, g_j]
        counts = self.occ_ptr[feat + 1] - self.occ_ptr[feat]
        owner = np.repeat(np.arange(len(feat)), counts)
        occ = np.repeat(self.occ_ptr[feat], counts) + np.arange(counts.sum()) - \
            np.repeat(np.cumsum(counts) - counts, counts)
        p, s = self.occ_p[occ], self.occ_s[occ]
        b, j = g_b[owner], g_j[owner]
        partner = j > 0
        alpha, beta = t.alpha[p, s], t.beta[p, s]
        group, inverse = np.unique(b * n_pos + p, return_inverse=True)
        inverse = inverse.ravel()
        gp, gb = group % n_pos, group // n_pos

        def per_group(weights: np.ndarray) -> np.ndarray:
            return np.bincount(inverse, weights=weights, minlength=len(group))

        num_all = t.num_full[gp] - per_group(alpha)
        num_part = t.num_full[gp] - per_group(np.where(partner, alpha, 0.0))
        sq_all = sq_part = None
        if not t.linear:
            own = t.gram[p, s, s]
            cross_all = np.zeros(len(p))
            cross_part = np.zeros(len(p))
            for other in range(MEMBERS):
                slot = self._slot_of(p, members[b, other], valid=(other != j) & (members[b, other] >= 0))
                cross = np.where(slot >= 0, t.gram[p, s, np.maximum(slot, 0)], 0.0)
                cross_all += cross
                if other > 0:
                    cross_part += np.where(partner, cross, 0.0)
            sq_all = t.sq_full[gp] - 2.0 * per_group(beta) + per_group(own + cross_all)
            sq_part = t.sq_full[gp] - 2.0 * per_group(np.where(partner, beta, 0.0)) + \
                per_group(np.where(partner, own, 0.0) + cross_part)
        drop = t.value(num_part, sq_part, gp) - t.value(num_all, sq_all, gp)
        return np.bincount(gb, weights=drop, minlength=len(members)) / n_pos

    def _slot_of(self, p: np.ndarray, feat: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Slot of window-local feature `feat` at window position `p`, or -1 where it does not fire there."""
        if self.slot_table is not None:
            return np.where(valid, self.slot_table[p, np.maximum(feat, 0)], -1)
        keys = p * self.n_features + np.maximum(feat, 0)
        at = np.minimum(np.searchsorted(self.key_sorted, keys), len(self.key_sorted) - 1)
        found = valid & (self.key_sorted[at] == keys)
        return np.where(found, self.key_slot[at], -1)

    # --- stopping and results -------------------------------------------------------------------------------

    def _phi_se(self) -> tuple[np.ndarray, np.ndarray]:
        """Stratified estimate (mean over sizes 1, 2, 3 of the per-size mean effect) and its standard error."""
        n = np.maximum(self.count, 1)
        mean = self.total / n
        var = np.maximum(self.total_sq / n - mean * mean, 0.0) * n / np.maximum(n - 1, 1)
        sampled = self.count > 0
        strata = 1 + sampled.sum(axis=0)
        phi = (self.loo + np.where(sampled, mean, 0.0).sum(axis=0)) / strata
        known = (self.count >= MIN_TESTS).all(axis=0)
        se = np.where(known, np.sqrt((var / n).sum(axis=0)) / strata, np.nan)
        return phi, se

    def _check_stop(self) -> None:
        self.done = self.round >= self.max_rounds or (self.round >= 1 + 2 * MIN_TESTS and len(self.pending) == 0)

    @property
    def converged(self) -> bool:
        """Every feature has a standard error and the largest is within `delta` of the estimates' range."""
        return self.round >= 1 + 2 * MIN_TESTS and len(self._unsettled()) == 0

    def estimates(self) -> Estimates:
        phi, se = self._phi_se()
        u = self.n_features
        return Estimates(
            method=self.method, window=np.full(u, self.window_id, dtype=np.int64),
            layer=np.full(u, self.layer, dtype=np.int64), feature=self.feature_ids.astype(np.int64), effect=phi,
            se=se, samples=1 + self.count.sum(axis=0), converged=np.full(u, self.converged),
        )
