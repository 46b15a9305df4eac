"""Closed-form ergodic loss and gradient of the linear RNN (simulations/linear_theory.py)."""
import numpy as np
import pytest
from scipy import stats

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.estimators.rtrl import RTRL
from rtrl_validation.simulations.linear_theory import LinearTheory
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import sequence_loss
from rtrl_validation.simulations.training import frozen_windows


def setup(hidden=3, density=1.0, seed=1, teacher_hidden=None):
    proc = VAR1Teacher(hidden=teacher_hidden or hidden, inputs=2, activation="identity", teacher_rho=0.6, ar=0.5,
                       noise=0.1, seed=seed)
    cell = make_cell("contractive-elman", hidden, 2, activation="identity", rho=0.8, density=density, mask_seed=2)
    ro = LinearReadout(cell.k, 1)
    rng = np.random.default_rng(0)
    theta, phi = cell.init(rng), ro.init(rng)
    phi[-1] = 0.3
    theta[-cell.k:] = rng.normal(0, 0.3, cell.k)
    return proc, cell, ro, theta, phi, LinearTheory(cell, proc)


@pytest.mark.parametrize("density,teacher_hidden", [(1.0, None), (0.5, None), (1.0, 6)])
def test_gradient_matches_finite_differences_of_closed_form(density, teacher_hidden):
    # The closed form is deterministic and smooth: central differences with steps h and 2h give
    # g_h − g = O(h²); |g_h − g_2h| bounds that term (×4/3), and rounding adds ~ε·L/h.
    proc, cell, ro, theta, phi, lt = setup(density=density, teacher_hidden=teacher_hidden)
    x = np.concatenate([theta, phi])
    p = cell.p

    def f(v):
        return lt.loss(v[:p], v[p:])

    def fd(h):
        out = np.empty_like(x)
        for i in range(x.size):
            e = np.zeros_like(x)
            e[i] = h
            out[i] = (f(x + e) - f(x - e)) / (2 * h)
        return out

    g_h, g_2h = fd(1e-4), fd(2e-4)
    analytic = np.concatenate(lt.gradient(theta, phi))
    bound = 2 * np.abs(g_h - g_2h) + 10 * np.finfo(float).eps * abs(f(x)) / 1e-4 + 1e-12
    assert np.all(np.abs(analytic - g_h) <= bound)
    assert np.abs(analytic).max() > 1e-2          # a non-trivial point


def test_wrong_gradient_is_detected():
    proc, cell, ro, theta, phi, lt = setup()
    g = np.concatenate(lt.gradient(theta, phi))
    wrong = g.copy()
    wrong[3] *= 1.01                               # a 1% error in one entry
    x = np.concatenate([theta, phi])
    e = np.zeros_like(x)
    e[3] = 1e-4
    fd3 = (lt.loss((x + e)[:cell.p], (x + e)[cell.p:]) - lt.loss((x - e)[:cell.p], (x - e)[cell.p:])) / 2e-4
    assert abs(fd3 - g[3]) < 1e-6 < abs(fd3 - wrong[3])


def test_teacher_is_a_global_minimiser():
    proc, cell, ro, theta, phi, lt = setup()
    student = make_cell("elman", proc.hidden, 2, activation="identity")
    lt2 = LinearTheory(student, proc)
    assert lt2.loss(proc.teacher_theta, proc.teacher_phi) == pytest.approx(0.5 * 0.1 ** 2, rel=1e-12)
    assert lt2.gradient_norm(proc.teacher_theta, proc.teacher_phi) < 1e-12
    assert lt.excess_loss(theta, phi) > 0


@pytest.mark.parametrize("teacher_hidden", [None, 6])
def test_closed_form_loss_matches_long_simulation(teacher_hidden):
    # Mean loss over steps (burn, burn+T] of 64 independent paths: z-score < 4 (paths independent).
    proc, cell, ro, theta, phi, lt = setup(teacher_hidden=teacher_hidden)
    rng = np.random.default_rng(4)
    B, burn, T = 64, 200, 2000
    _, xs, ys = proc.sample(proc.init(rng, B), burn + T, rng)
    L = (sequence_loss(cell, theta, ro, phi, xs, ys) - sequence_loss(cell, theta, ro, phi, xs[:burn], ys[:burn])) / T
    z = (L.mean() - lt.loss(theta, phi)) / (L.std(ddof=1) / np.sqrt(B))
    assert abs(z) < 4


def test_rtrl_long_run_direction_matches_closed_form_gradient():
    # THEORY §5: ∇L = E_π[cJ].  32 independent paths; every coordinate within the Bonferroni
    # Student-t bound at familywise level 1%.
    proc, cell, ro, theta, phi, lt = setup()
    rng = np.random.default_rng(8)
    P = 32
    res = frozen_windows(cell, ro, RTRL(), proc, np.tile(theta, (P, 1)), np.tile(phi, (P, 1)), 200, 2000, 1, rng)
    g = np.concatenate([res["grad"][0], res["grad_phi"][0]], axis=1)
    exact = np.concatenate(lt.gradient(theta, phi))
    z = (g.mean(axis=0) - exact) / (g.std(axis=0, ddof=1) / np.sqrt(P))
    crit = stats.t.ppf(1 - 0.01 / (2 * exact.size), P - 1)
    assert np.abs(z).max() < crit
    # the same test detects a 20% error in the largest entry
    wrong = exact.copy()
    j = np.argmax(np.abs(exact))
    wrong[j] *= 1.2
    assert np.abs((g.mean(axis=0) - wrong) / (g.std(axis=0, ddof=1) / np.sqrt(P))).max() > crit


def test_refuses_nonlinear_or_unstable():
    proc, cell, ro, theta, phi, lt = setup()
    with pytest.raises(ValueError):
        LinearTheory(make_cell("elman", 3, 2), proc)
    unstable = make_cell("elman", 3, 2, activation="identity")
    P = unstable.unpack(theta)
    P["W"] = 1.2 * np.eye(3)
    with pytest.raises(ValueError):
        LinearTheory(unstable, proc).loss(unstable.pack(P), phi)
