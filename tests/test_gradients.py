"""Gradient correctness of every cell (THEORY.md §2, §3): sympy, RTRL, BPTT, TBPTT, finite differences.

Every comparison uses a bound derived from the method (float64 rounding bounds, Richardson error
estimates), never a hand-set tolerance; the mutation tests show each check fails on a wrong Jacobian.
"""
import copy
import types

import numpy as np
import pytest
import sympy as sp

from rtrl_validation.proofs_checks.gradcheck import check_cell, linearization_ops, rounding_bound, run_gradcheck
from rtrl_validation.proofs_checks.symbolic import SymbolicCell, check_jacobians, unrolled_gradient
from rtrl_validation.simulations import CELLS, LinearReadout, make_cell, make_estimator, run_sequence
from rtrl_validation.simulations.cells.base import Cell
from rtrl_validation.simulations.jacobians import GateJacobian

ALL = list(CELLS)


def small(name, density=1.0, seed=3, inputs=1):
    return make_cell(name, 1 if name == "lstm" else 2, inputs, density=density, mask_seed=seed)


@pytest.mark.parametrize("density", [1.0, 0.6])
@pytest.mark.parametrize("name", ALL)
def test_symbolic_jacobians(name, density):
    """sympy's D = ∂F/∂s and I = ∂F/∂θ of THEORY §3's equations equal ``linearize`` (k = 2–3)."""
    for hidden in (2, 3) if name != "lstm" else (1, 2):
        cell = make_cell(name, hidden, 2, density=density, mask_seed=hidden)
        comps = check_jacobians(cell, np.random.default_rng(hidden))
        assert [c.name for c in comps] == ["sympy F", "sympy D", "sympy I"]
        for c in comps:
            assert c.passed, (name, hidden, c)


@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("name", ALL)
def test_unrolled_chain_rule(name, loss):
    """For T = 3, sympy's total derivative of the unrolled L_T equals RTRL and the BPTT adjoint."""
    rng = np.random.default_rng(7)
    cell = small(name)
    readout = LinearReadout(cell.k, 2, loss)
    theta, phi = cell.init(rng), readout.init(rng)
    xs = rng.standard_normal((3, 1, 1))
    ys = rng.integers(0, 2, (3, 1)) if loss == "xent" else rng.standard_normal((3, 1, 2))
    ref = unrolled_gradient(cell, readout, phi, theta, xs[:, 0], ys[:, 0])
    bound = 2 * rounding_bound(cell, theta, readout, phi, xs, ys)[0]
    for est in ("rtrl", "bptt"):
        g = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator(est)).grad_theta[0]
        assert np.all(np.abs(g - ref) <= bound), (est, np.max(np.abs(g - ref) / bound))
    assert np.max(np.abs(ref)) > 1e3 * np.max(bound)   # the check is far from vacuous


def test_unrolled_chain_rule_sparse():
    rng = np.random.default_rng(8)
    for name in ("elman", "gru"):
        cell = small(name, density=0.6)
        readout = LinearReadout(cell.k, 2, "mse")
        theta, phi = cell.init(rng), readout.init(rng)
        xs, ys = rng.standard_normal((3, 1, 1)), rng.standard_normal((3, 1, 2))
        ref = unrolled_gradient(cell, readout, phi, theta, xs[:, 0], ys[:, 0])
        g = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator("rtrl")).grad_theta[0]
        assert np.all(np.abs(g - ref) <= 2 * rounding_bound(cell, theta, readout, phi, xs, ys)[0])


@pytest.mark.parametrize("density", [1.0, 0.5])
@pytest.mark.parametrize("name", ALL)
def test_three_ways_agree(name, density):
    """RTRL = BPTT = FD; TBPTT(T) = BPTT; TBPTT(τ<T) = reset-RTRL(τ) ≠ BPTT; T ∈ {1, 7, 60}, both losses."""
    result = run_gradcheck([name], hidden=4, inputs=3, steps=(1, 7, 60), density=density, seed=11)
    failed = [c for c in result["checks"] if not c["passed"]]
    assert not failed, failed
    names = {c["comparison"] for c in result["checks"]}
    assert {"rtrl vs bptt", "rtrl vs fd", "bptt vs fd", "tbptt(T) vs bptt", "tbptt(20) != bptt",
            "tbptt(20) vs rtrl-reset(20)"} <= names
    assert len(result["checks"]) == 2 * (4 + 6 + 6)


def test_linearization_op_count_bound():
    """The operation-count bound in the rounding bound covers sympy's count for every cell."""
    for name in ALL:
        for hidden, m in ((1, 1), (2, 2)):
            cell = make_cell(name, hidden, m)
            sym = SymbolicCell.of(cell)
            D, I = sym.jacobians()
            ops = max(sp.count_ops(e) for e in list(D) + list(I) + list(sym.F))
            assert ops <= linearization_ops(cell.k, m), (name, hidden, ops)


# ------------------------------------------------------------------ mutation: wrong Jacobians are caught
def mutated(cell, where, factor=-1.0):
    """A copy of ``cell`` whose linearize multiplies one block of D or one gate of I by ``factor``
    (−1: a sign flip; 1.01: a subtle 1% error in one derivative)."""
    bad = copy.copy(cell)
    forward = cell._forward

    def _forward(P, s, x, jac):
        out = forward(P, s, x, jac)
        if not jac:
            return out
        s_new, D, gates, sources = out
        D = D.copy()
        if where == "D":
            D[:, 0, :] *= factor                        # the first row block of D
        else:
            gate = sorted(gates)[0]
            G = gates[gate]
            gates = dict(gates, **{gate: GateJacobian(factor * G.vals, G.rows)})
        return s_new, D, gates, sources

    bad._forward = _forward
    # through the factored objects that _forward returns (a cell's own linearize, e.g. Elman's with
    # its Kronecker factors, would not see the mutation; the factors have their own tests)
    bad.linearize = types.MethodType(Cell.linearize, bad)
    return bad


@pytest.mark.parametrize("where", ["D", "I"])
@pytest.mark.parametrize("name", ALL)
def test_wrong_jacobian_is_caught(name, where):
    rng = np.random.default_rng(5)
    bad = mutated(small(name, inputs=2), where)
    comps = {c.name: c for c in check_jacobians(bad, rng)}
    assert not comps[f"sympy {where}"].passed
    checks = {c["comparison"]: c for c in check_cell(mutated(make_cell(name, 3, 2), where), 7, "mse", rng)}
    assert not checks["rtrl vs fd"]["passed"]
    assert not checks["bptt vs fd"]["passed"]


@pytest.mark.parametrize("where", ["D", "I"])
@pytest.mark.parametrize("name", ALL)
def test_subtle_jacobian_error_is_caught(name, where):
    """One gate derivative (or one row block of D) scaled by 1.01: the bounds resolve a 1% error
    in a single derivative, not only sign flips."""
    rng = np.random.default_rng(6)
    comps = {c.name: c for c in check_jacobians(mutated(small(name, inputs=2), where, 1.01), rng)}
    assert not comps[f"sympy {where}"].passed
    checks = {c["comparison"]: c for c in check_cell(mutated(make_cell(name, 3, 2), where, 1.01), 7, "mse", rng)}
    assert not checks["rtrl vs fd"]["passed"], checks["rtrl vs fd"]
    assert not checks["bptt vs fd"]["passed"], checks["bptt vs fd"]


def test_gradcheck_catches_wrong_readout_credit(monkeypatch):
    """A wrong credit (c_t with a flipped sign) fails the FD comparisons."""
    orig = LinearReadout.evaluate

    def bad(self, phi, s, y):
        loss, credit, dphi = orig(self, phi, s, y)
        return loss, -credit, dphi

    monkeypatch.setattr(LinearReadout, "evaluate", bad)
    checks = {c["comparison"]: c for c in check_cell(make_cell("elman", 3, 2), 5, "xent", np.random.default_rng(0))}
    assert not checks["rtrl vs fd"]["passed"]


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize("name", ALL)
def test_structural_patterns(name, density):
    """``patterns()`` (from the masks) equals the nonzeros of D and I at generic random points."""
    rng = np.random.default_rng(1)
    cell = make_cell(name, 5, 3, density=density, mask_seed=2)
    Dp, Ip = cell.patterns()
    theta = cell.init(rng, batch=4)
    lin = cell.linearize(theta, rng.uniform(-0.9, 0.9, (4, cell.k)), rng.standard_normal((4, 3)))
    assert np.array_equal(Dp, np.any(lin.D != 0, axis=0))
    assert np.array_equal(Ip, np.any(lin.I.dense() != 0, axis=0))


def test_masked_entries_are_not_parameters():
    cell = make_cell("gru", 6, 2, density=0.25, mask_seed=4)
    dense = make_cell("gru", 6, 2)
    n_rec = 3 * 36
    assert dense.p - cell.p == n_rec - 3 * round(0.25 * 36)
    mats = cell.unpack(cell.init(np.random.default_rng(0)))
    for name in ("W_z", "W_r", "W_h"):
        assert np.all(mats[name][~cell.mask(name)] == 0.0)


def test_batched_replicates_equal_separate_runs():
    """A leading replicate axis with per-replicate θ gives the same numbers as separate runs."""
    rng = np.random.default_rng(2)
    cell = make_cell("lstm", 3, 2)
    readout = LinearReadout(cell.k, 2)
    theta, phi = cell.init(rng, batch=3), readout.init(rng)
    xs, ys = rng.standard_normal((9, 3, 2)), rng.standard_normal((9, 3, 2))
    together = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator("rtrl")).grad_theta
    for b in range(3):
        alone = run_sequence(cell, theta[b], readout, phi, xs[:, b:b + 1], ys[:, b:b + 1],
                             make_estimator("rtrl")).grad_theta[0]
        bound = 2 * rounding_bound(cell, theta[b], readout, phi, xs[:, b:b + 1], ys[:, b:b + 1])[0]
        assert np.all(np.abs(together[b] - alone) <= bound)


def test_contraction_projection():
    rng = np.random.default_rng(3)
    cell = make_cell("contractive-elman", 8, 2, rho=0.7)
    theta = make_cell("elman", 8, 2).init(rng, scale=3.0, batch=5)
    proj = cell.project(theta)
    assert np.all(cell.contraction(proj) <= 0.7 * (1 + 1e-12))
    assert np.allclose(cell.project(proj), proj, rtol=0, atol=1e-13)   # a projection is idempotent
    sparse = make_cell("contractive-elman", 8, 2, density=0.3, rho=0.5)
    th = sparse.project(3 * sparse.init(rng))
    assert sparse.contraction(th) <= 0.5 * (1 + 1e-12)
    assert np.all(sparse.unpack(th)["W"][~sparse.mask("W")] == 0.0)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(name="nope", hidden=2, inputs=1), "unknown cell"),
    (dict(name="elman", hidden=0, inputs=1), "hidden"),
    (dict(name="elman", hidden=2, inputs=-1), "inputs"),
    (dict(name="elman", hidden=2, inputs=1, density=0.0), "density"),
    (dict(name="gru", hidden=2, inputs=1, density=1.5), "density"),
    (dict(name="contractive-elman", hidden=2, inputs=1, rho=1.0), "rho"),
    (dict(name="elman", hidden=2, inputs=1, activation="relu"), "activation"),
])
def test_bad_cell_input(kwargs, msg):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=msg):
        make_cell(name, **kwargs)


def test_bad_estimator_input():
    with pytest.raises(ValueError, match="unknown estimator"):
        make_estimator("nope")
    with pytest.raises(ValueError, match="tau"):
        make_estimator("tbptt", tau=0)
