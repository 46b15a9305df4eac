"""Online TBPTT(τ) (``simulations/estimators/online_tbptt.py``): a gradient at every step through
the last ``τ`` steps.

At fixed ``θ`` its step-``t`` gradient must equal BPTT of ``ℓ_t`` alone over the window
``t−τ+1 … t`` started from the state ``s_{t−τ}`` (computed independently by ``run_sequence`` with
full BPTT on the window), and for ``τ ≥ T`` the sum over the sequence must equal exact RTRL's,
both within the float64 rounding bound ``2γ_N·G_abs`` of the gradient checks
(``proofs_checks.gradcheck.rounding_bound``, which bounds every truncated sum since its terms are
nonnegative).  A window one step too short or too long must miss by more than 10⁴ bounds.  When
``θ`` changes in place at every step, the buffered Jacobians must stay those of their own step.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.gradcheck import linearization_ops, rounding_bound
from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data.copy_task import IGNORE, MaskedReadout
from rtrl_validation.simulations.estimators import OnlineTBPTT, parse_estimator
from rtrl_validation.simulations.estimators import online_tbptt
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence

CASES = [("elman", 1.0), ("gru-reset-after", 0.5), ("lstm", 0.5)]
T, B = 12, 2
TINY = np.finfo(float).tiny


def problem(cell_name, density, seed=0):
    rng = np.random.default_rng(seed)
    cell = make_cell(cell_name, 5, 3, density=density, mask_seed=seed + 1)
    readout = LinearReadout(cell.k, 3, "xent")
    theta, phi = cell.init(rng, batch=B), readout.init(rng, B)
    xs = rng.standard_normal((T, B, cell.m))
    ys = rng.integers(0, readout.n_out, size=(T, B))
    bound = np.maximum(2 * rounding_bound(cell, theta, readout, phi, xs, ys), TINY)
    return cell, readout, theta, phi, xs, ys, bound


def online(cell, readout, theta, phi, xs, ys, estimator):
    """Per-step gradients ``T × B × p`` and the states ``(T+1) × B × k`` (``s_0 = 0`` first)."""
    s = np.zeros((xs.shape[1], cell.k))
    state = estimator.init(cell, theta, xs.shape[1])
    grads, states = [], [s]
    for t in range(xs.shape[0]):
        lin = cell.linearize(theta, s, xs[t])
        s = lin.state
        credit = readout.evaluate(phi, s, ys[t])[1]
        state, g = estimator.step(state, lin, credit)
        grads.append(g)
        states.append(s)
    return np.stack(grads), np.stack(states)


def window_bptt(cell, readout, theta, phi, xs, ys, states, t, tau):
    """BPTT of ``ℓ_t`` alone over steps ``max(0, t−τ+1) … t``, from the state before the window."""
    a = max(0, t - tau + 1)
    targets = np.full((t + 1 - a, xs.shape[1]), IGNORE)
    targets[-1] = ys[t]
    return run_sequence(cell, theta, MaskedReadout(readout), phi, xs[a:t + 1], targets, parse_estimator("bptt"),
                        s0=states[a]).grad_theta


@pytest.mark.parametrize("cell_name,density", CASES)
@pytest.mark.parametrize("tau", [1, 4])
def test_each_step_is_bptt_of_its_loss_over_the_last_tau_steps(cell_name, density, tau):
    cell, readout, theta, phi, xs, ys, bound = problem(cell_name, density)
    grads, states = online(cell, readout, theta, phi, xs, ys, OnlineTBPTT(tau))
    ref = np.stack([window_bptt(cell, readout, theta, phi, xs, ys, states, t, tau) for t in range(T)])
    assert np.max(np.abs(grads - ref) / bound) <= 1.0
    assert np.max(np.abs(grads.sum(0) - ref.sum(0)) / bound) <= 1.0
    assert np.abs(ref).max() > 1e-3                       # the comparison is not between zeros


@pytest.mark.parametrize("cell_name,density", CASES)
@pytest.mark.parametrize("tau", [T, T + 3])
def test_a_window_of_the_whole_sequence_is_exact_rtrl(cell_name, density, tau):
    cell, readout, theta, phi, xs, ys, bound = problem(cell_name, density)
    grads, _ = online(cell, readout, theta, phi, xs, ys, parse_estimator(f"online-tbptt-{tau}"))
    exact = run_sequence(cell, theta, readout, phi, xs, ys, parse_estimator("rtrl")).grad_theta
    assert np.max(np.abs(grads.sum(0) - exact) / bound) <= 1.0


@pytest.mark.parametrize("cell_name,density", CASES)
@pytest.mark.parametrize("wrong", [3, 5])
def test_a_window_off_by_one_is_caught(cell_name, density, wrong):
    """Mutation: ``τ = 3`` or ``5`` against the reference for ``τ = 4`` misses by > 10⁴ bounds."""
    cell, readout, theta, phi, xs, ys, bound = problem(cell_name, density)
    grads, states = online(cell, readout, theta, phi, xs, ys, OnlineTBPTT(wrong))
    ref = sum(window_bptt(cell, readout, theta, phi, xs, ys, states, t, 4) for t in range(T))
    assert np.max(np.abs(grads.sum(0) - ref) / bound) > 1e4


def moving_theta_gradients(cell, readout, theta0, phi, xs, ys, tau, drift=1e-2):
    """Online TBPTT while ``θ`` changes in place after every step, and a dense reference built from
    Jacobians linearized at a private copy of each step's ``θ``: ``(estimates, reference, bound)``."""
    rng = np.random.default_rng(7)
    theta = theta0.copy()
    est = OnlineTBPTT(tau)
    state = est.init(cell, theta, B)
    s = np.zeros((B, cell.k))
    Ds, Is, out, ref, bound = [], [], [], [], []
    gam = gamma(tau * (cell.k + 2) + cell.k + linearization_ops(cell.k, cell.m))
    for t in range(T):
        lin = cell.linearize(theta, s, xs[t])
        own = cell.linearize(theta.copy(), s, xs[t])
        s = lin.state
        credit = readout.evaluate(phi, s, ys[t])[1]
        state, g = est.step(state, lin, credit)
        Ds, Is = (Ds + [own.D])[-tau:], (Is + [own.I.dense()])[-tau:]
        lam, lam_abs = credit, np.abs(credit)
        r, r_abs = np.einsum("bk,bkp->bp", lam, Is[-1]), np.einsum("bk,bkp->bp", lam_abs, np.abs(Is[-1]))
        for j in range(len(Is) - 2, -1, -1):
            lam, lam_abs = np.einsum("bk,bkj->bj", lam, Ds[j + 1]), np.einsum("bk,bkj->bj", lam_abs, np.abs(Ds[j + 1]))
            r += np.einsum("bk,bkp->bp", lam, Is[j])
            r_abs += np.einsum("bk,bkp->bp", lam_abs, np.abs(Is[j]))
        out.append(g)
        ref.append(r)
        bound.append(np.maximum(2 * gam * r_abs, TINY))
        theta += drift * rng.standard_normal(theta.shape)            # the optimiser's in-place step
    return np.stack(out), np.stack(ref), np.stack(bound)


@pytest.mark.parametrize("cell_name", ["elman", "gru-reset-after", "lstm"])
def test_buffered_jacobians_keep_the_theta_of_their_step(cell_name, monkeypatch):
    """Dense cells: their ``D_t`` factors are views of ``θ`` (a masked cell's are scattered copies)."""
    density = 1.0
    cell, readout, theta, phi, xs, ys, _ = problem(cell_name, density)
    g, ref, bound = moving_theta_gradients(cell, readout, theta, phi, xs, ys, tau=4)
    assert np.max(np.abs(g - ref) / bound) <= 1.0
    # mutation: without the copy the buffered D_t read the current θ, and the check must fail
    monkeypatch.setattr(online_tbptt, "frozen", lambda D: D)
    g, ref, bound = moving_theta_gradients(cell, readout, theta, phi, xs, ys, tau=4)
    assert np.max(np.abs(g - ref) / bound) > 1e4


def test_a_restored_state_continues_with_the_same_numbers():
    cell, readout, theta, phi, xs, ys, _ = problem("gru-reset-after", 0.5)
    est = OnlineTBPTT(4)
    whole, _ = online(cell, readout, theta, phi, xs, ys, est)
    state, s = est.init(cell, theta, B), np.zeros((B, cell.k))
    got = []
    for t in range(T):
        if t == 7:                                            # checkpoint and restore mid-window
            state = est.restore_state(est.init(cell, theta, B), est.export_state(state), cell)
        lin = cell.linearize(theta, s, xs[t])
        s = lin.state
        state, g = est.step(state, lin, readout.evaluate(phi, s, ys[t])[1])
        got.append(g)
    np.testing.assert_array_equal(np.stack(got), whole)


def test_cost_and_memory_grow_with_the_window():
    cell = make_cell("gru-reset-after", 16, 4, density=0.25, mask_seed=0)
    f4, f8 = OnlineTBPTT(4).flops(cell), OnlineTBPTT(8).flops(cell)
    per_window_step = 2.0 * cell.k ** 2 + 2.0 * cell.patterns()[1].sum()
    assert f8 - f4 == pytest.approx(4 * per_window_step)
    assert OnlineTBPTT(8).memory(cell) == pytest.approx(2 * OnlineTBPTT(4).memory(cell))
    caps = OnlineTBPTT(4).capabilities
    assert caps.online and not caps.holds_influence and not caps.stochastic
    assert parse_estimator("online-tbptt-4").label == "online-tbptt-4"
    with pytest.raises(ValueError):
        OnlineTBPTT(0)


def test_profiles_run_both_tbptt_variants_with_distinct_labels_and_colours():
    from rtrl_validation.analysis.style import estimator_style
    from rtrl_validation.simulations.experiments.learning import LearningExperiment

    exp = LearningExperiment()
    for profile in ("quick", "full", "paper"):
        specs = exp.config(profile)["estimators"]
        assert any(e.startswith("online-tbptt-") for e in specs) and any(e.startswith("tbptt-") for e in specs)
        assert len({parse_estimator(e).label for e in specs}) == len(specs)
        assert len({estimator_style(e).label for e in specs}) == len(specs)
    assert estimator_style("online-tbptt-4").color not in {estimator_style(e).color
                                                          for e in ("tbptt-4", "tbptt-8", "tbptt-16", "uoro", "rflo")}


def test_online_training_resumes_from_a_checkpoint_with_the_same_numbers():
    """In the online loop (θ moving at every step) a plain checkpoint of the buffered window
    resumes to the uninterrupted numbers (the trainer's checkpoint test, for online TBPTT)."""
    try:
        from test_training_checkpoints import MemorySlot, assert_plain, run
    except ImportError:  # pragma: no cover - run from the repository root
        from tests.test_training_checkpoints import MemorySlot, assert_plain, run
    saver = MemorySlot()
    state, arrays, _ = run("online-tbptt-3", "gru", saver)
    assert len(saver.saved) >= 3 and np.all(np.isfinite(state.theta))
    for _, payload in saver.saved:
        assert_plain(payload)
    mid = saver.saved[len(saver.saved) // 2]
    state2, arrays2, _ = run("online-tbptt-3", "gru", MemorySlot(snapshot=mid))
    np.testing.assert_array_equal(state2.theta, state.theta)
    for name in arrays:
        np.testing.assert_array_equal(arrays2[name], arrays[name], err_msg=name)
