"""The online training loop (simulations/training.py) as used by the convergence experiment:
one update by hand, frozen-θ long-run means, update intervals, TBPTT block updates, checkpoints,
step-size conditions and divergence recording."""
import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators.bptt import BPTT
from rtrl_validation.simulations.estimators.rtrl import RTRL
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence
from rtrl_validation.simulations.training import OnlineTrainer, Schedule, frozen_windows, log_checkpoints

try:
    from helpers import Replay
except ImportError:  # pragma: no cover - run from the repository root
    from tests.helpers import Replay


def setup(B=3, T=60, k=3, seed=0, cell_name="contractive-elman", **cell_opts):
    rng = np.random.default_rng(seed)
    cell = make_cell(cell_name, k, 2, **cell_opts)
    ro = LinearReadout(k, 1)
    xs, ys = rng.standard_normal((T, B, 2)), rng.standard_normal((T, B, 1))
    return cell, ro, Replay(xs, ys), cell.init(rng, batch=B), ro.init(rng, B)


def test_one_update_by_hand():
    cell, ro, proc, theta, phi = setup()
    sched = Schedule(0.1, 10.0, 0.75)
    tr = OnlineTrainer(cell, ro, RTRL(), proc, sched, record_every=1, chunk=7)
    state, traj = tr.run(tr.init(theta, phi, np.random.default_rng(0)), 1, np.random.default_rng(0))
    r = run_sequence(cell, theta, ro, phi, proc.xs[:1], proc.ys[:1], RTRL())
    alpha = sched(1)
    assert np.allclose(state.theta, cell.project(theta - alpha * r.grad_theta), atol=1e-14)
    assert np.allclose(state.phi, phi - alpha * r.grad_phi, atol=1e-14)
    assert np.allclose(traj.arrays()["loss"][0], r.loss)


@pytest.mark.parametrize("burn,windows", [(0, 1), (12, 4)])
def test_frozen_window_means_equal_prefix_gradients(burn, windows):
    # schedule=None keeps θ fixed; the window mean of c_t J_t over (burn, burn+T] equals the
    # difference of whole-prefix gradients (THEORY §2: Σ c_t J_t = dL/dθ), to rounding.
    cell, ro, proc, theta, phi = setup()
    T = 48
    res = frozen_windows(cell, ro, RTRL(), proc, theta, phi, burn, T, windows, np.random.default_rng(0))
    mean = np.concatenate([res["grad"], res["grad_phi"]], axis=2).mean(axis=0)

    def total(n):
        r = run_sequence(cell, theta, ro, phi, proc.xs[:n], proc.ys[:n], BPTT())
        return np.concatenate([r.grad_theta, r.grad_phi], axis=1)
    expect = (total(burn + T) - total(burn)) / T
    assert np.allclose(mean, expect, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        frozen_windows(cell, ro, RTRL(), proc, theta, phi, 0, 10, 3, np.random.default_rng(0))


def test_update_every_and_tbptt_blocks():
    cell, ro, proc, theta, phi = setup()
    for est, K, every in ((RTRL(), 4, 4), (parse_estimator("tbptt-3"), 1, 3)):
        tr = OnlineTrainer(cell, ro, est, proc, Schedule(0.05), update_every=K, record_every=1,
                           project=cell.project, train_readout=False)
        _, traj = tr.run(tr.init(theta, phi, np.random.default_rng(0)), 24, np.random.default_rng(0))
        a = traj.arrays()
        moved = np.any(a["theta"][1:] != a["theta"][:-1], axis=(1, 2))      # θ after step t vs t − 1
        assert np.array_equal(np.flatnonzero(moved) + 2, [t for t in range(2, 25) if t % every == 0])
        assert np.all(a["phi"] == phi)                       # train_readout=False


def test_checkpoints_and_recording():
    cell, ro, proc, theta, phi = setup()
    ck = log_checkpoints(60, 10)
    assert ck[-1] == 60 and np.all(np.diff(ck) > 0) and ck[0] >= 1
    tr = OnlineTrainer(cell, ro, RTRL(), proc, Schedule(0.01, 10.0, 0.6), checkpoints=ck, record_grad=True,
                       project=cell.project)
    _, traj = tr.run(tr.init(theta, phi, np.random.default_rng(0)), 60, np.random.default_rng(0))
    a = traj.arrays()
    assert np.array_equal(a["t"], ck)
    assert a["theta"].shape == (ck.size, 3, cell.p) and a["grad"].shape == (ck.size, 3, cell.p)
    assert np.all(a["contraction"] <= cell.rho + 1e-12)
    default = OnlineTrainer(cell, ro, RTRL(), proc, Schedule(0.01), record_every=20)
    _, traj = default.run(default.init(theta, phi, np.random.default_rng(0)), 60, np.random.default_rng(0))
    assert traj.t == [20, 40, 60] and "grad" not in traj.arrays()


def test_theorem_conditions_refused():
    cell, ro, proc, theta, phi = setup()
    for gamma in (0.0, 0.5, 0.4):
        with pytest.raises(ValueError, match="step-size conditions"):
            OnlineTrainer(cell, ro, RTRL(), proc, Schedule(0.1, 10.0, gamma), require_theorem=True)
    with pytest.raises(ValueError):
        OnlineTrainer(cell, ro, RTRL(), proc, None, require_theorem=True)
    OnlineTrainer(cell, ro, RTRL(), proc, Schedule(0.1, 10.0, 1.0), require_theorem=True)


def test_divergence_is_recorded_not_raised():
    cell, ro, proc, theta, phi = setup(cell_name="elman", activation="identity")
    theta[:, cell.block["W"].cols] = (3.0 * np.eye(3)).ravel()      # unstable, no projection
    tr = OnlineTrainer(cell, ro, RTRL(), proc, Schedule(10.0), record_every=1)
    state, traj = tr.run(tr.init(theta, phi, np.random.default_rng(0)), 60, np.random.default_rng(0))
    assert traj.diverged_at is not None and traj.diverged_at == state.t < 60
