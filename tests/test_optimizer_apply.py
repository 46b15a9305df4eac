"""``Optimizer.apply``: the compiled in-place update pass against its numpy reference
(``apply_by_update``: ``update`` then ``+=``), and the training loop that uses it."""
import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.optimizers import _BLOCK, SGD, Adam, apply_by_update
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer, Schedule

EPS = np.finfo(float).eps


def arrays(B=4, n=2 * _BLOCK + 37, seed=0):
    """Parameters and a gradient whose rows span several blocks and a partial one; row 1 gets no
    gradient (and two entries at ±3, the bound: outside), row 2 has entries beyond the bound and
    one non-finite entry."""
    rng = np.random.default_rng(seed)
    theta, g = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    g[1] = 0.0
    theta[1, 7:9] = 3.0, -3.0
    theta[2, :5] = 10.0
    theta[2, _BLOCK + 3] = np.nan
    return theta, g


def sum_bound(g):
    """``Σ g²`` summed in any order: within ``n·ε`` of the exact sum (all terms positive)."""
    return g.shape[1] * EPS


@pytest.mark.parametrize("opt", [SGD(), Adam()], ids=["sgd", "adam"])
def test_apply_equals_update_then_add(opt):
    """Same arithmetic, same order per entry: θ and the optimiser's state are bit-identical to the
    reference over several steps (Adam's bias corrections change with each step); the gradient's
    sum of squares agrees within the reassociation bound, the count of entries beyond the bound
    exactly."""
    theta, g = arrays()
    ref, st_ref, st = theta.copy(), opt.init(theta), opt.init(theta)
    for step, alpha in enumerate((0.1, 0.05, 0.02)):
        gs = g * (1.0 + step)
        st_ref, sq_ref, out_ref = apply_by_update(opt, ref, gs, st_ref, alpha, 3.0)
        st, sq, out = opt.apply(theta, gs, st, alpha, 3.0)
        np.testing.assert_array_equal(theta, ref)
        for a, b in zip(st, st_ref):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sq, sq_ref, rtol=sum_bound(gs), atol=0)
        np.testing.assert_array_equal(out, out_ref)
    assert out[2] >= 6 and out[1] >= 2 and sq[1] == 0.0
    np.testing.assert_array_equal(theta[1], arrays()[0][1])              # no gradient: the row stays
    if isinstance(opt, Adam):
        np.testing.assert_array_equal(st.n, [3, 0, 3, 3])                # ... and Adam's count too


def test_apply_takes_non_contiguous_arrays_through_the_reference():
    theta, g = arrays()
    ref = theta.copy()
    st, sq, out = SGD().apply(theta[:, ::2], g[:, ::2], None, 0.1, 3.0)
    ref[:, ::2] -= 0.1 * g[:, ::2]
    np.testing.assert_array_equal(theta, ref)


def trainer(optimizer, update_every):
    cell = make_cell("gru-reset-after", 6, 3, density=0.5)
    proc = VAR1Teacher(hidden=6, inputs=3, activation="tanh", teacher_rho=0.7, ar=0.5, noise=0.1, seed=1)
    ro = LinearReadout(cell.k, proc.n_out, proc.loss)
    return cell, ro, OnlineTrainer(cell, ro, parse_estimator("snap-1"), proc, Schedule(0.05), update_every,
                                   record_every=10, optimizer=optimizer)


@pytest.mark.parametrize("opt", [SGD(), Adam()], ids=["sgd", "adam"])
def test_trainer_updating_every_step_is_the_accumulating_loop(opt):
    """With an update at every step the loop applies ``g_t`` directly (one pass); through the
    accumulators (``direct_updates = False``: ``g_acc += g``, ``update``, ``θ += u``, the
    reference order) every number is the same; the recorded gradient norms agree within the
    reassociation bound of their sums (``p·ε``)."""
    cell, ro, tr = trainer(opt, 1)
    rng = np.random.default_rng(3)
    theta0, phi0 = cell.init(rng, batch=3), ro.init(rng, 3)
    runs = []
    for direct in (True, False):
        tr.direct_updates = direct
        runs.append(tr.run(tr.init(theta0, phi0, np.random.default_rng(4)), 60, np.random.default_rng(5),
                           checkpoint=False))
    (a, ta), (b, tb) = runs
    assert np.max(np.abs(a.theta - theta0)) > 1e-2
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(np.stack(ta.loss), np.stack(tb.loss))
    np.testing.assert_allclose(np.stack(ta.grad_norm), np.stack(tb.grad_norm), rtol=cell.p * EPS, atol=0)


def test_divergence_of_theta_is_found_by_the_update_pass():
    """A step that sends θ beyond the bound is recorded at that step as a parameter divergence,
    by the direct path as by the accumulating one."""
    out = []
    for direct in (True, False):
        cell, ro, tr = trainer(SGD(), 1)
        tr.direct_updates, tr.blowup = direct, 1.5
        rng = np.random.default_rng(3)
        theta0 = cell.init(rng, batch=2)
        theta0[1, 0] = 1.4999                       # the first update moves it across the bound or not
        _, traj = tr.run(tr.init(theta0, ro.init(rng, 2), np.random.default_rng(4)), 40, np.random.default_rng(5),
                         checkpoint=False)
        out.append((traj.diverged_at, traj.diverged_reason))
    assert out[0][0] == 1 and out[0][1].startswith("parameters")       # it diverges, by θ, at the first update
    assert out[0] == out[1]
