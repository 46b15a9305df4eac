"""Property-based checks (hypothesis) of the gradient identities over random cells, sizes,
densities, sequence lengths, losses and seeds (THEORY.md §2, §4).

Every comparison uses the derived float64 bounds of the deterministic tests — never a tolerance
chosen to pass: ``2·rounding_bound`` for two exact gradients (:func:`proofs_checks.gradcheck.rounding_bound`),
Richardson error estimates for finite differences (inside :func:`proofs_checks.gradcheck.check_cell`),
``2·E_T`` of :func:`simulations.estimators.masked.influence_rounding_bound` for two computations of
one influence recursion, and the enumeration bound of :mod:`simulations.estimators.enumeration`.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtrl_validation.proofs_checks.gradcheck import check_cell
from rtrl_validation.proofs_checks.unbiasedness import exact_expectation
from rtrl_validation.simulations.cells import CELLS, make_cell
from rtrl_validation.simulations.estimators import make_estimator
from rtrl_validation.simulations.estimators.masked import exact_order, influence_rounding_bound

try:
    from test_approx import run, trajectory
except ImportError:  # tests collected as a package
    from tests.test_approx import run, trajectory

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cells = st.sampled_from(list(CELLS))
hidden = st.integers(1, 4)
inputs = st.integers(1, 3)
density = st.one_of(st.just(1.0), st.floats(0.05, 1.0))
steps = st.integers(1, 8)
seeds = st.integers(0, 2**32 - 1)


def network(name, k, m, d, seed, batch=1):
    """A random cell (masks from ``seed``), ``θ`` and a data path ``T × B × m`` generator."""
    rng = np.random.default_rng(seed)
    cell = make_cell(name, k, m, density=d, mask_seed=int(rng.integers(2**31)))
    return cell, cell.init(rng, scale=1.5), rng


def influence(estimator, cell, theta, lins):
    """``J̃_T`` of ``estimator`` along the linearizations ``lins`` (``B × k × p``)."""
    return run(estimator, cell, theta, lins)[0]


@PROPERTY
@pytest.mark.slow
@given(name=cells, k=hidden, m=inputs, d=density, T=steps, loss=st.sampled_from(["mse", "xent"]), seed=seeds)
def test_rtrl_bptt_tbptt_and_finite_differences_agree(name, k, m, d, T, loss, seed):
    """RTRL = BPTT = TBPTT(T) within ``2·rounding_bound``; both = Richardson central differences
    within their error estimate; TBPTT(τ) = RTRL restarted every τ steps (THEORY §2)."""
    cell, _, rng = network(name, k, m, d, seed)
    checks = check_cell(cell, T, loss, rng)
    equalities = [c for c in checks if "!=" not in c["comparison"]]   # "!=" needs W to couple units
    assert len(equalities) == (4 if T == 1 else 5)
    bad = [(c["comparison"], c["ratio"]) for c in equalities if not c["passed"]]
    assert not bad, bad


@PROPERTY
@pytest.mark.slow
@given(name=cells, k=hidden, m=inputs, d=density, T=steps, batch=st.integers(1, 2), seed=seeds)
def test_snap_from_the_exact_order_is_rtrl(name, k, m, d, T, batch, seed):
    """SnAp-n = RTRL for ``n ≥ n*`` (:func:`exact_order`, the reachability closure; THEORY §4),
    within ``2·E_T``."""
    cell, theta, rng = network(name, k, m, d, seed)
    lins = trajectory(cell, theta, rng.standard_normal((T, batch, m)))
    J = influence(make_estimator("rtrl"), cell, theta, lins)
    bound = 2.0 * influence_rounding_bound(lins, cell.k)
    n_star = exact_order(cell)
    for n in (n_star, n_star + 1):
        err = np.abs(influence(make_estimator("snap", n=n), cell, theta, lins) - J)
        assert np.all(err <= bound), (n, float(err.max()))


@PROPERTY
@pytest.mark.slow
@given(name=st.sampled_from(["elman", "contractive-elman", "gru", "gru-reset-after"]), k=hidden, m=inputs,
       T=steps, seed=seeds)
def test_snap1_is_rtrl_when_the_recurrence_is_diagonal(name, k, m, T, seed):
    """Diagonal recurrent weights make ``D_t`` diagonal, so SnAp-1 keeps every nonzero of ``J_t``."""
    eye = np.eye(k, dtype=bool)
    masks = {b.name: eye for b in make_cell(name, k, m).blocks if b.recurrent}
    rng = np.random.default_rng(seed)
    cell = make_cell(name, k, m, masks=masks)
    theta = cell.init(rng, scale=1.5)
    lins = trajectory(cell, theta, rng.standard_normal((T, 1, m)))
    err = np.abs(influence(make_estimator("snap", n=1), cell, theta, lins)
                 - influence(make_estimator("rtrl"), cell, theta, lins))
    assert np.all(err <= 2.0 * influence_rounding_bound(lins, cell.k))


@PROPERTY
@pytest.mark.slow
@given(estimator=st.sampled_from(["uoro", "kf-rtrl"]), k=st.integers(1, 2), T=st.integers(1, 3), seed=seeds)
def test_uoro_and_kf_rtrl_are_unbiased_by_enumeration(estimator, k, T, seed):
    """The average of ``J̃_T`` over every sign sequence equals RTRL's ``J_T`` within the rounding
    bound of the enumeration (THEORY §4: unbiased for fixed ``θ``)."""
    e = exact_expectation(estimator, "elman", hidden=k, steps=T, seed=seed)
    assert e.sequences == (2 ** (k * T) if estimator == "uoro" else 4 ** T)
    assert e.ratio <= 1.0, (e.error, e.ratio)
