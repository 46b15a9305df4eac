"""UORO and KF-RTRL are unbiased (THEORY.md §4), proved two ways.

Exactly: the sympy one-step identity, and the average over every sign sequence (k = 2, T ≤ 4)
equal to exact RTRL's influence within the derived float64 rounding bound.  Statistically: over R
replicates batched at fixed θ and data, the mean gradient and influence lie within a
Bonferroni-corrected number of Monte Carlo standard errors (family level α = 0.01, i.e. the
threshold Φ⁻¹(1 − α/(2N)) over N entries), with fixed seeds; the same test rejects UORO whose
signs have mean 0.5, which shows that R gives the test power.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from rtrl_validation.proofs_checks.unbiasedness import exact_expectation, kf_step_residual, uoro_step_residual, verdicts
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import make_estimator
from rtrl_validation.simulations.estimators.enumeration import expected_influence
from rtrl_validation.simulations.estimators.signs import ShiftedSigns, SignReplay, all_sign_sequences, rademacher
from rtrl_validation.simulations.experiments.bias_variance import mean_z_test, measure
from rtrl_validation.simulations.readouts import LinearReadout

ALPHA = 0.01


@pytest.mark.parametrize("residual", [uoro_step_residual, kf_step_residual])
def test_one_step_is_unbiased_symbolically(residual):
    res = residual()
    assert res == sp.zeros(*res.shape)


@pytest.mark.parametrize("name", ["uoro", "kf-rtrl"])
@pytest.mark.parametrize("steps", [1, 2, 3, 4])
@pytest.mark.parametrize("cell", ["elman", "contractive-elman"])
def test_average_over_all_sign_sequences_is_rtrl(name, steps, cell):
    e = exact_expectation(name, cell=cell, steps=steps, seed=steps)
    assert e.sequences == 4 ** steps           # two signs per step: ν ∈ {±1}² (UORO, k=2) or (c₁, c₂)
    assert e.ratio <= 1.0, (e.error, e.bound.max())


@pytest.mark.parametrize("name", ["uoro", "kf-rtrl"])
def test_enumeration_on_a_masked_network(name):
    rng = np.random.default_rng(3)
    cell = make_cell("elman", 2, 1, masks={"W": np.array([[True, False], [True, True]])})
    theta = cell.init(rng, scale=1.5)
    e = expected_influence(make_estimator(name), cell, theta, rng.standard_normal((4, 1)))
    assert e.ratio <= 1.0


@pytest.mark.parametrize("name", ["uoro", "kf-rtrl"])
def test_shifted_signs_are_biased(name):
    e = exact_expectation(name, steps=3, shift=0.3)
    assert e.ratio > 1e6


def test_proof_verdicts_all_pass():
    assert all(v.passed for v in verdicts(steps=3))


def test_sign_sources():
    signs = all_sign_sequences(2, 3)
    assert signs.shape == (3, 64, 2) and len({tuple(s.ravel()) for s in signs.transpose(1, 0, 2)}) == 64
    replay = SignReplay(signs)
    np.testing.assert_array_equal(rademacher(replay, (64, 2)), signs[0])
    with pytest.raises(ValueError, match="shape"):
        replay.rademacher((64, 3))
    draws = rademacher(np.random.default_rng(0), (4000, 5))
    assert set(np.unique(draws)) == {-1.0, 1.0} and abs(draws.mean()) < 0.05
    assert abs(ShiftedSigns(np.random.default_rng(0), 0.5).rademacher((20000,)).mean() - 0.5) < 0.03
    with pytest.raises(ValueError):
        all_sign_sequences(3, 8)


@pytest.mark.parametrize("groups", [0, 32])
def test_z_test_accepts_the_truth_and_rejects_a_shift(groups):
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((5000, 40)) * 3.0 + 1.0
    z, q, n = mean_z_test(samples, np.ones(40), ALPHA, groups)
    assert n == 40 and z <= q
    z, q, _ = mean_z_test(samples, np.full(40, 1.3), ALPHA, groups)     # 0.3 off = 7 standard errors
    assert z > q


def test_batch_means_keep_heavy_tails_in_check():
    """Products of random scalars (like UORO's s̃θ̃ᵀ) have heavy, skewed tails; over 200 repetitions
    at R = 256 the batch-means test rejects a true mean no more often than its level allows
    (binomial upper 99.9% bound for 200 trials at level 0.01: 7 rejections)."""
    rng = np.random.default_rng(1)
    rejections = 0
    for _ in range(200):
        x = rng.standard_normal((256, 20)) * rng.standard_normal((256, 20)) * rng.standard_normal((256, 1))
        z, q, _ = mean_z_test(x ** 3, np.zeros(20), ALPHA)
        rejections += z > q
    assert rejections <= 7
    const = np.ones((10, 3))
    assert mean_z_test(const, np.ones(3), ALPHA)[0] == 0.0
    assert mean_z_test(const, np.ones(3) + 1e-9, ALPHA)[0] > 1e3


def _problem(name, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(name, 3, 2)
    theta = cell.init(rng)
    ro = LinearReadout(cell.k, 2)
    return cell, theta, ro, ro.init(rng), rng.standard_normal((6, 2)), rng.standard_normal((6, 2))


@pytest.mark.parametrize("cell,est", [("contractive-elman", "uoro"), ("contractive-elman", "kf-rtrl"),
                                      ("gru", "uoro"), ("lstm", "uoro")])
def test_monte_carlo_mean_is_exact(cell, est):
    """R = 10000 replicates batched; gradient at the last step and influence within the Bonferroni bound."""
    cell, theta, ro, phi, xs, ys = _problem(cell, 11)
    _, _, fin = measure(cell, theta, ro, phi, xs, ys, {est: make_estimator(est)}, 10000, np.random.default_rng(5),
                        influences=True)
    for samples, exact in ((fin[est][1], fin["g"]), (fin[est][0], fin["J"])):
        z, q, _ = mean_z_test(samples, exact, ALPHA)
        assert z <= q, (z, q)


def test_monte_carlo_test_has_power():
    """The same test and R reject UORO with signs of mean 0.5."""
    cell, theta, ro, phi, xs, ys = _problem("contractive-elman", 11)
    src = ShiftedSigns(np.random.default_rng(5), 0.5)
    _, _, fin = measure(cell, theta, ro, phi, xs, ys, {"uoro": make_estimator("uoro")}, 10000, src)
    z, q, _ = mean_z_test(fin["uoro"][1], fin["g"], ALPHA)
    assert z > q, (z, q)
