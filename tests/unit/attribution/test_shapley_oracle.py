"""Sampled Shapley against the exact enumeration oracle, plus efficiency, symmetry and null-player checks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attribution import LayerFeatures
from attribution.budget import Deadline
from attribution.shapley import ShapleyBlock, size_scale_table, surrogate_shapley
from attribution.value import prepare_terms, value_function

from .helpers import exact_shapley, make_layer, make_unembedding, reference_value

TOKENS = [3, 7, 1, 9, 0, 5]


def sampled(lf: LayerFeatures, un, tokens, samples: int, seed: int = 0):
    block = ShapleyBlock(lf, np.arange(lf.n_positions), value_function(un, tokens), max_samples=samples, delta=0.0,
                         rng=np.random.default_rng(seed))
    deadline = Deadline(1e9)
    assert block.start(deadline)
    while not block.done:
        block.step(deadline)
    return block.phi_se()


@pytest.mark.parametrize("value", ["logit", "cosine"])
def test_sampled_estimates_converge_to_exact_shapley(value):
    lf = make_layer(T=4, k=8, d=16, seed=11, bias=0.05, error=0.05)
    un, tokens = (make_unembedding(d=16), TOKENS[:4]) if value == "logit" else (None, None)
    exact = np.stack([exact_shapley(lf, p, un, tokens[p] if tokens else None) for p in range(4)])
    errors = {}
    for samples in (16, 1024):
        runs = [np.abs(sampled(lf, un, tokens, samples, seed)[0] - exact).mean() for seed in range(3)]
        errors[samples] = float(np.mean(runs))
    scale = np.abs(exact).max()
    assert errors[1024] < errors[16] / 3  # error shrinks roughly like 1/sqrt(samples)
    assert errors[1024] < 0.01 * scale
    phi, se = sampled(lf, un, tokens, 1024, seed=5)
    assert np.all(np.abs(phi - exact) <= 5 * se + 1e-6 * scale)  # the reported SE is honest


def test_efficiency_sum_equals_full_minus_empty():
    lf = make_layer(T=3, k=7, d=16, seed=2)
    un = make_unembedding(d=16)
    phi, _ = sampled(lf, un, TOKENS[:3], 8)
    for p in range(3):
        full = reference_value(lf, p, np.ones(7), un, TOKENS[p])
        empty = reference_value(lf, p, np.zeros(7), un, TOKENS[p])
        assert phi[p].sum() == pytest.approx(full - empty, rel=1e-4, abs=1e-4)


def test_identical_features_get_equal_values():
    lf = make_layer(T=2, k=6, d=16, seed=4)
    w_dec = lf.W_dec.copy()
    indices, values = lf.indices.copy(), lf.values.copy()
    w_dec[indices[:, 1]] = w_dec[indices[:, 0]]
    values[:, 1] = values[:, 0]
    twin = LayerFeatures(lf.layer, lf.acts, indices, values, w_dec, lf.b_dec)
    phi, se = sampled(twin, make_unembedding(d=16), TOKENS[:2], 512)
    assert np.all(np.abs(phi[:, 0] - phi[:, 1]) <= 4 * np.hypot(se[:, 0], se[:, 1]) + 1e-9)
    exact = exact_shapley(twin, 0, make_unembedding(d=16), TOKENS[0])
    assert exact[0] == pytest.approx(exact[1], abs=1e-9)


def test_zero_decoder_row_gets_zero():
    lf = make_layer(T=3, k=6, d=16, seed=6)
    w_dec = lf.W_dec.copy()
    w_dec[lf.indices[:, 2]] = 0.0
    dead = LayerFeatures(lf.layer, lf.acts, lf.indices, lf.values, w_dec, lf.b_dec)
    for un, tokens in ((make_unembedding(d=16), TOKENS[:3]), (None, None)):
        phi, se = sampled(dead, un, tokens, 64)
        assert np.all(np.abs(phi[:, 2]) < 1e-9) and np.all(se[:, 2] < 1e-9)


def test_without_a_norm_the_logit_shapley_is_the_direct_contribution():
    lf = make_layer(T=3, k=6, d=16, seed=8)
    un = make_unembedding(d=16, norm=False)
    phi, se = sampled(lf, un, TOKENS[:3], 64)
    for p in range(3):
        direct = lf.values[p, :, None] * lf.W_dec[lf.indices[p]] @ un.W_U[:, TOKENS[p]]
        np.testing.assert_allclose(phi[p], direct, rtol=1e-5, atol=1e-6)
    assert np.all(se == 0)


def test_surrogate_closed_form_matches_enumeration():
    """The control variate's Shapley values are exact: check them against enumerating the surrogate game."""
    lf = make_layer(T=2, k=6, d=16, seed=9)
    values = lf.values.copy()
    values[1, 4:] = 0.0  # padding slots must come out as null players
    lf = LayerFeatures(lf.layer, lf.acts, lf.indices, values, lf.W_dec, lf.b_dec)
    terms = prepare_terms(lf, np.arange(2), value_function(make_unembedding(d=16), TOKENS[:2]))
    h = size_scale_table(terms)
    closed = surrogate_shapley(terms, h)
    for p in range(2):
        active = np.flatnonzero(terms.active[p])
        n = len(active)

        def game(coalition):
            return (terms.num_empty[p] + terms.alpha[p, list(coalition)].sum()) * h[p, len(coalition)]

        for f in active:
            others = [g for g in active if g != f]
            total = 0.0
            for size in range(n):
                for subset in itertools.combinations(others, size):
                    weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                    total += weight * (game(subset + (f,)) - game(subset))
            assert closed[p, f] == pytest.approx(total, rel=1e-9, abs=1e-9)
        assert np.all(closed[p, ~terms.active[p]] == 0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 9), cosine=st.booleans())
def test_efficiency_holds_for_any_trace(seed, k, cosine):
    lf = make_layer(T=2, k=k, d=12, d_sae=30, seed=seed)
    un, tokens = (None, None) if cosine else (make_unembedding(d=12), [2, 4])
    phi, _ = sampled(lf, un, tokens, 8, seed=seed)
    for p in range(2):
        full = reference_value(lf, p, np.ones(k), un, tokens[p] if tokens else None)
        empty = reference_value(lf, p, np.zeros(k), un, tokens[p] if tokens else None)
        assert phi[p].sum() == pytest.approx(full - empty, rel=1e-3, abs=1e-3)
