"""Adding an estimator and a cell the documented way (docs/architecture.md "Adding an estimator",
"Adding a cell"): a module and one registry line (for a cell also its sympy twin), then every
consumer finds it by name: ``parse_estimator`` / ``make_cell``, ``run_sequence``, the gradient
checks, the FLOP count and the online trainer.

The toy estimator is dense forward-mode RTRL, ``J_t = D_t J_{t−1} + I_t`` with both Jacobians
formed densely (THEORY.md §2.1); the toy cell is a sine RNN ``s' = sin(W s + U x + b)``.  Both
must agree with the references to the rounding bounds of the gradient checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import sympy as sp

from rtrl_validation.proofs_checks import symbolic
from rtrl_validation.proofs_checks.gradcheck import check_cell, rounding_bound
from rtrl_validation.proofs_checks.symbolic import Comparison, check_jacobians
from rtrl_validation.simulations import cells, estimators
from rtrl_validation.simulations.cells.base import Cell, matvec
from rtrl_validation.simulations.estimators.base import Capabilities, Estimator
from rtrl_validation.simulations.flops import step_flops
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence
from rtrl_validation.simulations.training import OnlineTrainer, Schedule

try:
    from helpers import Replay
except ImportError:  # pragma: no cover - run from the repository root
    from tests.helpers import Replay


# --------------------------------------------------------------------------- the estimator's module
@dataclass
class DenseState:
    J: np.ndarray        # B × k × p
    batch: int
    p: int


class DenseRTRL(Estimator):
    """``J_t = D_t J_{t−1} + I_t`` with dense ``D_t`` and ``I_t``; ``ĝ_t = c_t J_t``."""

    name = "dense-rtrl"
    capabilities = Capabilities()

    def init(self, cell, theta, batch, rng=None):
        return DenseState(np.zeros((batch, cell.k, cell.p)), batch, cell.p)

    def update(self, state, lin, rng=None):
        state.J = np.matmul(lin.D, state.J) + lin.I.dense()
        return state

    def gradient(self, state, credit):
        return state, np.einsum("bk,bkp->bp", credit, state.J)

    def influence(self, state):
        return state.J

    def flops(self, cell) -> float:
        k, p = cell.k, cell.p
        return 2.0 * k * k * p + k * p + 2.0 * k * p

    def memory(self, cell) -> float:
        return float(cell.k * cell.p)


# --------------------------------------------------------------------------- the cell's module
class SineRNN(Cell):
    """``s' = sin(W s + U x + b)``: ``D = diag(cos z) W``, ``I = diag(cos z) (â ᵀ ⊗ I)``."""

    name = "sine-rnn"

    def _specs(self):
        k, m = self.hidden, self.m
        return [("W", "a", "s", k, k, True), ("U", "a", "x", k, m, False), ("b", "a", "one", k, 1, False)]

    def _forward(self, P, s, x, jac):
        z = matvec(P["W"], s) + matvec(P["U"], x) + P["b"][..., 0]
        if not jac:
            return (np.sin(z),)
        gates = {"a": self._stacked(np.cos(z))}
        sources = {"s": s, "x": x, "one": np.ones((s.shape[0], 1))}
        return np.sin(z), self._dynamics((gates["a"], P["W"])), gates, sources

    def _structure(self):
        return self.mask("W"), {"a": np.eye(self.k, dtype=bool)}


# --------------------------------------------------------------------------- its sympy twin
def sine_twin(cell, P, s, x):
    return (P["W"] * s + P["U"] * x + P["b"]).applyfunc(sp.sin)


@pytest.fixture
def registered(monkeypatch):
    """The registry lines: one for the estimator, one for the cell and two for its twin (the update
    and the parameter layout, both written from the equations)."""
    monkeypatch.setitem(estimators.ESTIMATORS, "dense-rtrl", DenseRTRL)
    monkeypatch.setitem(cells.CELLS, "sine-rnn", SineRNN)
    monkeypatch.setitem(symbolic.SYMBOLIC_CELLS, "sine-rnn", sine_twin)
    monkeypatch.setitem(symbolic.PARAMETERS, "sine-rnn", [("W", "s", "s"), ("U", "s", "x"), ("b", "s", 1)])


def problem(cell_name="sine-rnn", density=1.0, T=9, B=2, seed=0):
    rng = np.random.default_rng(seed)
    cell = cells.make_cell(cell_name, 3, 2, density=density, mask_seed=1)
    readout = LinearReadout(cell.k, 2)
    theta, phi = cell.init(rng), readout.init(rng)
    xs, ys = rng.standard_normal((T, B, cell.m)), rng.standard_normal((T, B, 2))
    return cell, readout, theta, phi, xs, ys


@pytest.mark.parametrize("cell_name,density", [("sine-rnn", 1.0), ("sine-rnn", 0.5), ("gru", 1.0), ("lstm", 0.5)])
def test_toy_estimator_runs_through_run_sequence_and_matches_bptt(registered, cell_name, density):
    cell, readout, theta, phi, xs, ys = problem(cell_name, density)
    est = estimators.parse_estimator("dense-rtrl")
    assert isinstance(est, DenseRTRL) and est.applies_to(cell)
    g = run_sequence(cell, theta, readout, phi, xs, ys, est).grad_theta
    g_bptt = run_sequence(cell, theta, readout, phi, xs, ys, estimators.parse_estimator("bptt")).grad_theta
    bound = 2 * rounding_bound(cell, theta, readout, phi, xs, ys)
    c = Comparison.of("dense-rtrl vs bptt", g, g_bptt, np.maximum(bound, np.finfo(float).tiny))
    assert c.passed, c
    # the check can fail: a gradient off by one part in 10^6 is rejected
    assert not Comparison.of("perturbed", g * (1 + 1e-6), g_bptt, bound).passed
    assert step_flops(cell, est, 2)["estimator"] == est.flops(cell)


@pytest.mark.parametrize("T", [1, 7])
def test_toy_cell_passes_the_gradient_checks(registered, T):
    cell = cells.make_cell("sine-rnn", 3, 2)
    rows = check_cell(cell, T, "mse", np.random.default_rng(3))
    assert rows and all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    comps = check_jacobians(cell, np.random.default_rng(4))
    assert [c.name for c in comps] == ["sympy F", "sympy D", "sympy I"] and all(c.passed for c in comps)


def test_a_wrong_twin_is_caught(registered, monkeypatch):
    """The sympy comparison must be able to fail: a twin with cos for sin is rejected."""
    monkeypatch.setitem(symbolic.SYMBOLIC_CELLS, "sine-rnn",
                        lambda cell, P, s, x: (P["W"] * s + P["U"] * x + P["b"]).applyfunc(sp.cos))
    comps = check_jacobians(cells.make_cell("sine-rnn", 3, 2), np.random.default_rng(4))
    assert not any(c.passed for c in comps)


def test_toy_estimator_and_cell_train_online(registered):
    """The trainer reads the declared capabilities: the toy estimator's influence is checked for
    divergence, and its online updates equal those of the registered exact RTRL."""
    cell, readout, theta, phi, xs, ys = problem(T=40, B=2)
    runs = []
    for spec in ("dense-rtrl", "rtrl"):
        tr = OnlineTrainer(cell, readout, estimators.parse_estimator(spec), Replay(xs, ys), Schedule(0.05),
                           record_every=10, chunk=8)
        state, traj = tr.run(tr.init(np.tile(theta, (2, 1)), np.tile(phi, (2, 1)), np.random.default_rng(0)),
                             40, np.random.default_rng(0), checkpoint=False)
        assert traj.diverged_at is None
        runs.append(state.theta)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10, atol=1e-13)
