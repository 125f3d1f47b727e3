"""ACDC-style group ablation: planted and orthogonal features, exact leave-one-out, co-activation draws."""
from __future__ import annotations

import numpy as np
import pytest

from attribution import AttributionConfig, LayerFeatures, Unembedding, attribute
from attribution.acdc import AcdcWindow
from attribution.budget import Deadline
from attribution.value import value_function
from hif import HypergraphConfig, ids

from .helpers import incidences_of, make_layer, make_unembedding, reference_value

D, VOCAB, TOKEN = 24, 5, 2


def planted_trace(*, norm: bool, seed: int = 0):
    """Feature 100 writes exactly along the readout of token 2; feature 200 is orthogonal to everything else."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, D)))
    readout, orthogonal, rest = basis[:, 0], basis[:, 1], basis[:, 2:]
    w_u = np.zeros((D, VOCAB), dtype=np.float32)
    w_u[:, TOKEN] = readout
    w_dec = np.zeros((300, D), dtype=np.float32)
    w_dec[:100] = rng.standard_normal((100, D - 2)) @ rest.T / np.sqrt(D)  # no component on the readout
    w_dec[100] = readout
    w_dec[200] = orthogonal
    T, k = 6, 5
    indices = np.stack([np.r_[100, 200, rng.choice(100, k - 2, replace=False)] for _ in range(T)]).astype(np.int64)
    values = rng.uniform(0.5, 2.0, (T, k)).astype(np.float32)
    acts = np.einsum("tk,tkd->td", values, w_dec[indices]).astype(np.float32)
    lf = LayerFeatures(4, acts, indices, values, w_dec, np.zeros(D, dtype=np.float32))
    un = Unembedding(w_u, np.ones(D, np.float32), np.zeros(D, np.float32)) if norm else Unembedding(w_u)
    return lf, un, [TOKEN] * T


@pytest.mark.parametrize("norm", [False, True])
def test_planted_feature_gets_top_weight(norm):
    lf, un, tokens = planted_trace(norm=norm)
    result = attribute([lf], granularity="sentence", windows=[(0, 3), (3, 6)], token_ids=tokens, unembedding=un,
                       config=AttributionConfig(), graph_config=HypergraphConfig(min_edge_weight=0.0))
    assert result.method == "acdc" and result.value == "logit"
    for window in ("sent-0", "sent-1"):
        incs = [i for i in incidences_of(result) if i["metadata"]["window"] == window]
        top = max(incs, key=lambda i: i["weight"])
        assert top["node_ids"][0] == ids.feature_node(4, 100) and top["weight"] == 1.0
        others = [i["weight"] for i in incs if i is not top]
        assert max(others) < 0.5


def test_orthogonal_feature_gets_no_incidence():
    lf, un, tokens = planted_trace(norm=False)
    result = attribute([lf], granularity="sentence", windows=[(0, 6)], token_ids=tokens, unembedding=un,
                       config=AttributionConfig())
    features = {ids.parse_feature_node(i["node_ids"][0]) for i in incidences_of(result)}
    assert (4, 100) in features and (4, 200) not in features
    assert not any(layer == 4 and index < 100 for layer, index in features)


def _window(lf, un, tokens, span, **kw) -> AcdcWindow:
    unit = AcdcWindow(lf, 0, span, value_function(un, tokens), rng=np.random.default_rng(0), **kw)
    assert unit.start(Deadline(1e9))
    return unit


def test_leave_one_out_round_is_exact():
    lf = make_layer(T=5, k=4, d=16, seed=3)
    un, tokens = make_unembedding(d=16), [1, 2, 3, 4, 5]
    unit = _window(lf, un, tokens, (1, 5), max_samples=1, delta=0.0)
    feature_ids = unit.feature_ids
    for u, f in enumerate(feature_ids):
        drops = []
        for p in range(1, 5):
            present = (lf.indices[p] != f).astype(float)
            drops.append(reference_value(lf, p, np.ones(4), un, tokens[p]) -
                         reference_value(lf, p, present, un, tokens[p]))
        assert unit.loo[u] == pytest.approx(np.mean(drops), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("tables", [True, False], ids=["dense", "sparse"])
def test_group_tests_match_direct_ablation(tables, monkeypatch):
    """δ_f(R) from either evaluator (dense tables for short windows, sparse occurrences for long ones) equals the
    drop computed from the definition for drawn pairs and triples."""
    if not tables:
        monkeypatch.setattr("attribution.acdc.DENSE_EFFECTS_LIMIT", 0)
    lf = make_layer(T=4, k=5, d=16, seed=7)
    un, tokens = make_unembedding(d=16), [0, 1, 2, 3]
    unit = _window(lf, un, tokens, (0, 4), max_samples=1, delta=0.0)
    assert (unit.dense is not None) == tables
    for size in (2, 3):
        members = unit._draw_groups(np.arange(unit.n_features), np.full(unit.n_features, size))
        effects = unit._anchor_effects(members)
        assert (members[:, 1] >= 0).all()
        for row, effect in zip(members, effects):
            group = [unit.feature_ids[m] for m in row if m >= 0]
            drops = []
            for p in range(4):
                without_partners = (~np.isin(lf.indices[p], group[1:])).astype(float)
                without_all = (~np.isin(lf.indices[p], group)).astype(float)
                drops.append(reference_value(lf, p, without_partners, un, tokens[p]) -
                             reference_value(lf, p, without_all, un, tokens[p]))
            assert effect == pytest.approx(np.mean(drops), rel=1e-4, abs=1e-5)


def test_partners_are_drawn_from_features_firing_at_the_same_position():
    lf = make_layer(T=6, k=3, d=16, d_sae=60, seed=2)
    unit = _window(lf, None, None, (0, 6), max_samples=1, delta=0.0)
    members = unit._draw_groups(np.repeat(np.arange(unit.n_features), 20), np.full(20 * unit.n_features, 3))
    fires = {int(f): set(np.flatnonzero((lf.indices == f).any(axis=1))) for f in unit.feature_ids}
    for row in members:
        anchor = int(unit.feature_ids[row[0]])
        partners = [int(unit.feature_ids[m]) for m in row[1:] if m >= 0]
        assert len(set(partners)) == len(partners) and anchor not in partners
        shared = set.intersection(fires[anchor], *(fires[p] for p in partners)) if partners else fires[anchor]
        assert shared  # all members fire together at some position


@pytest.mark.parametrize("unembedded", [True, False], ids=["logit", "cosine"])
def test_dense_and_sparse_evaluators_agree(unembedded, monkeypatch):
    lf = make_layer(T=6, k=5, d=16, d_sae=30, seed=5)
    un, tokens = (make_unembedding(d=16), [0, 1, 2, 3, 4, 0]) if unembedded else (None, None)
    unit = _window(lf, un, tokens, (0, 6), max_samples=1, delta=0.0)
    u = unit.n_features
    members = unit._draw_groups(np.tile(np.arange(u), 3), np.repeat([2, 3, 3], u))
    np.testing.assert_allclose(unit._dense_effects(members), unit._sparse_effects(members), rtol=1e-9, atol=1e-12)


def test_one_draw_mixes_pairs_and_triples_row_by_row():
    """A multi-round step draws pairs and triples together: a pair row never gets a third member."""
    lf = make_layer(T=6, k=5, d=16, d_sae=40, seed=3)
    unit = _window(lf, None, None, (0, 6), max_samples=1, delta=0.0)
    u = unit.n_features
    sizes = np.repeat([2, 3, 2, 3], u)
    members = unit._draw_groups(np.tile(np.arange(u), 4), sizes)
    assert (members[sizes == 2, 2] == -1).all()
    assert (members[:, 1] >= 0).all() and (members[sizes == 3, 2] >= 0).any()


def test_small_windows_run_several_rounds_per_step_and_count_each_test():
    lf = make_layer(T=6, k=4, d=16, seed=1)
    unit = _window(lf, make_unembedding(d=16), [0] * 6, (0, 6), max_samples=512, delta=0.0)
    assert unit.round == 1
    unit.step(Deadline(1e9))
    rounds = unit.round - 1
    assert rounds > 1  # several sampled rounds in one step
    assert unit.count.sum(axis=0).tolist() == [rounds] * unit.n_features  # one test per feature per round
    assert unit.count[0].sum() == unit.n_features * ((rounds + 1) // 2)  # pairs in rounds 1, 3, ...


def test_stops_early_when_standard_error_is_small():
    lf = make_layer(T=6, k=4, d=16, seed=1)
    unit = _window(lf, make_unembedding(d=16), [0] * 6, (0, 6), max_samples=512, delta=0.5)
    while not unit.done:
        unit.step(Deadline(1e9))
    assert unit.converged and unit.round < 512


def test_sorted_key_lookup_for_long_windows_matches_the_table(monkeypatch):
    lf = make_layer(T=6, k=5, d=16, d_sae=20, seed=12)
    un, tokens = make_unembedding(d=16), [0, 1, 2, 3, 4, 5]
    table = _window(lf, un, tokens, (0, 6), max_samples=1, delta=0.0)
    monkeypatch.setattr("attribution.acdc.DENSE_LOOKUP_LIMIT", 0)
    keyed = _window(lf, un, tokens, (0, 6), max_samples=1, delta=0.0)
    assert table.slot_table is not None and keyed.slot_table is None
    members = table._draw_groups(np.arange(table.n_features), np.full(table.n_features, 3))
    np.testing.assert_allclose(keyed._anchor_effects(members), table._anchor_effects(members), rtol=1e-12)
