"""Cells from whole-vector equations with dense Jacobians (``simulations/cells/dense.py``)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from rtrl_validation.proofs_checks.assertions import assert_gradients_correct
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.cells.dense import DenseEquations

EPS = np.finfo(float).eps


def elman_update(P, s, x):
    return (P["W"] * s + P["U"] * x + P["b"]).applyfunc(sp.tanh)


def softmax_update(P, s, x):
    """A state that is a probability vector: every unit reads every other through the softmax."""
    e = (P["W"] * s + P["U"] * x + P["b"]).applyfunc(sp.exp)
    return e / sum(e)


DENSE_ELMAN = DenseEquations("dense-elman", {"W": ("k", "k"), "U": ("k", "m"), "b": ("k", 1)}, elman_update)
SOFTMAX = DenseEquations("softmax-rnn", {"W": ("k", "k"), "U": ("k", "m"), "b": ("k", 1)}, softmax_update)


@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize("shared", [True, False])
def test_dense_elman_equals_the_built_in(density, shared):
    ref = make_cell("elman", 4, 3, density=density, mask_seed=2)
    cell = DENSE_ELMAN(4, 3, density=density, mask_seed=2)
    assert cell.p == ref.p and np.array_equal(cell.mask("W")[:, 0], ref.mask("W").T.ravel())
    rng = np.random.default_rng(1)
    theta = ref.init(rng) if shared else ref.init(rng, batch=3)
    s, x = rng.uniform(-1, 1, (3, 4)), rng.standard_normal((3, 3))
    a, b = cell.linearize(theta, s, x), ref.linearize(theta, s, x)
    bound = 16 * (ref.k + ref.m) * EPS
    for u, v in ((cell.step(theta, s, x), ref.step(theta, s, x)), (a.state, b.state), (a.D, b.D),
                 (a.I.dense(), b.I.dense())):
        assert np.all(np.abs(u - v) <= bound * np.maximum(1.0, np.abs(v)))
    Dp, Ip = cell.patterns()
    Dq, Iq = ref.patterns()
    assert np.array_equal(Dp, Dq) and np.array_equal(Ip, Iq)
    P, Q = cell.matrices(theta), ref.unpack(theta)
    assert all(np.array_equal(P[n], Q[n]) for n in Q)


def test_softmax_cell_passes_the_checks():
    result = assert_gradients_correct(SOFTMAX(3, 2, density=0.7, mask_seed=1), seed=3, steps=(1, 6))
    assert result["passed"]
    Dp, _ = SOFTMAX(3, 2).patterns()
    assert Dp.all()                                        # the softmax mixes every unit


def test_bad_update_shape():
    bad = DenseEquations("bad", {"W": ("k", "k")}, lambda P, s, x: P["W"])
    with pytest.raises(ValueError, match="3 × 1"):
        bad(3, 1)


def test_every_estimator_and_the_gradients_experiment(tmp_path):
    from rtrl_validation.reports.cli import main
    from rtrl_validation.simulations import ESTIMATORS, LinearReadout, make_estimator, run_sequence
    from rtrl_validation.simulations.cells import CELLS
    from rtrl_validation.simulations.registry import register_cell
    cell = SOFTMAX(3, 2)
    rng = np.random.default_rng(0)
    theta, readout = cell.init(rng), LinearReadout(3, 2)
    phi = readout.init(rng)
    xs, ys = rng.standard_normal((5, 2, 2)), rng.standard_normal((5, 2, 2))
    exact = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator("bptt")).grad_theta
    for est in ESTIMATORS:
        if est == "kf-rtrl":
            continue
        g = run_sequence(cell, theta, readout, phi, xs, ys, make_estimator(est), rng=1).grad_theta
        assert g.shape == exact.shape and np.all(np.isfinite(g)), est
    register_cell("softmax-rnn", SOFTMAX)
    try:
        (tmp_path / "c.toml").write_text('[gradients]\ncells = ["softmax-rnn"]\nhidden = 3\ninputs = 2\n'
                                         'steps = [1, 4]\ndensities = [1.0]\n')
        assert main(["run", "gradients", "--config", str(tmp_path / "c.toml"), "--workers", "1",
                     "--out", str(tmp_path / "out"), "--quiet"]) == 0
    finally:
        dict.pop(CELLS, "softmax-rnn")
