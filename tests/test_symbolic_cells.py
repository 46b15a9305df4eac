"""Cells from their equations (``simulations/cells/symbolic.py``): the five built-in cells written
as sympy equations agree with the hand-written ones in ``step``, ``linearize`` and ``patterns``."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.cells.examples import EQUATIONS as BUILT_IN
from rtrl_validation.simulations.cells.examples import gru as gru_equations
from rtrl_validation.simulations.cells.symbolic import Equations

EPS = np.finfo(float).eps


def _close(a, b, ulps):
    """``|a − b| ≤ ulps · ε · max(1, |b|)`` entrywise: agreement to float64 rounding (the two
    evaluate the same formulas in different association orders)."""
    a, b = np.asarray(a), np.asarray(b)
    bound = ulps * EPS * np.maximum(1.0, np.abs(b))
    assert np.all(np.abs(a - b) <= bound), float(np.max(np.abs(a - b) / bound))


@pytest.mark.parametrize("name", sorted(BUILT_IN))
@pytest.mark.parametrize("density", [1.0, 0.5])
@pytest.mark.parametrize("shared", [True, False])
def test_built_in_cells_re_expressed(name, density, shared):
    hidden, m, B = 5, 3, 4
    ref = make_cell(name, hidden, m, density=density, mask_seed=3)
    sym = BUILT_IN[name]()(hidden, m, density=density, mask_seed=3)
    assert (sym.k, sym.p) == (ref.k, ref.p)
    assert [(b.name, b.gate, b.n_out, b.n_in, b.recurrent) for b in sym.blocks] == \
        [(b.name, b.gate, b.n_out, b.n_in, b.recurrent) for b in ref.blocks]
    for b, c in zip(sym.blocks, ref.blocks):
        assert np.array_equal(b.idx_i, c.idx_i) and np.array_equal(b.idx_j, c.idx_j)
    rng = np.random.default_rng(7)
    theta = ref.init(rng) if shared else ref.init(rng, batch=B)
    s = rng.uniform(-0.9, 0.9, (B, ref.k))
    x = rng.standard_normal((B, m))
    # The same formulas: a few roundings apart (k-term products, sums of four D terms).
    ulps = 8 * (ref.k + m)
    _close(sym.step(theta, s, x), ref.step(theta, s, x), ulps)
    a, b = sym.linearize(theta, s, x), ref.linearize(theta, s, x)
    _close(a.state, b.state, ulps)
    _close(a.D, b.D, ulps)
    _close(a.I.dense(), b.I.dense(), ulps)
    Dp, Ip = sym.patterns()
    Dq, Iq = ref.patterns()
    assert np.array_equal(Dp, Dq) and np.array_equal(Ip, Iq)
    assert sym.kronecker_form == ref.kronecker_form


def test_patterns_contain_the_nonzeros():
    """The derived patterns cover every nonzero of D and I at random points (and are not all-true)."""
    cell = gru_equations()(6, 2, density=0.4, mask_seed=1)
    rng = np.random.default_rng(2)
    Dp, Ip = cell.patterns()
    for _ in range(3):
        lin = cell.linearize(cell.init(rng), rng.uniform(-1, 1, (1, cell.k)), rng.standard_normal((1, 2)))
        assert not np.any((lin.D[0] != 0) & ~Dp)
        assert not np.any((lin.I.dense()[0] != 0) & ~Ip)
    assert not Dp.all() and not Ip.all()


def test_equations_reject_bad_input():
    eq = Equations("bad")
    with pytest.raises(ValueError, match="not state fields"):
        eq.gate("a", W=sp.Symbol("y"))
    with pytest.raises(ValueError, match="input x"):
        eq.gate("a", W=2 * eq.x)
    a = eq.gate("a", W=eq.s)
    with pytest.raises(ValueError, match="one per field"):
        eq.update(a, a)
    with pytest.raises(ValueError, match="not state fields or gates"):
        eq.update(a + eq.x)


@pytest.mark.parametrize("name", ["elman", "gru", "lstm"])
def test_every_estimator_runs_on_an_equation_cell(name):
    """Each estimator's gradient on the equation cell equals its gradient on the built-in cell
    (same θ, data and random draws), to rounding accumulated over T steps."""
    from rtrl_validation.simulations import ESTIMATORS, LinearReadout, make_estimator, run_sequence
    hidden, m, T, B = 4, 2, 6, 2
    ref = make_cell(name, hidden, m, density=0.5, mask_seed=1)
    sym = BUILT_IN[name]()(hidden, m, density=0.5, mask_seed=1)
    rng = np.random.default_rng(3)
    theta, readout = ref.init(rng), LinearReadout(ref.k, 2, "mse")
    phi = readout.init(rng)
    xs, ys = rng.standard_normal((T, B, m)), rng.standard_normal((T, B, 2))
    for est in ESTIMATORS:
        if est == "kf-rtrl" and not ref.kronecker_form:
            continue
        opts = {"n": 2} if est == "snap" else {"tau": 3} if est == "tbptt" else {}
        g = [run_sequence(c, theta, readout, phi, xs, ys, make_estimator(est, **opts),
                          rng=np.random.default_rng(5)).grad_theta for c in (sym, ref)]
        _close(g[0], g[1], 64 * T * (ref.k + m))


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_expanded_equations_match_sympy_jacobians(name):
    """The factored D and I against sympy's Jacobian of the whole-cell expression (no units, no gates)."""
    from rtrl_validation.proofs_checks.symbolic import check_jacobians
    cell = BUILT_IN[name]()(2, 2, density=0.5, mask_seed=2)
    comps = check_jacobians(cell, np.random.default_rng(4))
    assert [c.name for c in comps] == ["sympy F", "sympy D", "sympy I"]
    assert all(c.passed for c in comps), comps
