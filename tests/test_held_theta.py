"""A held ``θ`` (:meth:`Cell.hold <simulations.cells.base.Cell.hold>`): its masked matrices kept
current by its one writer instead of copied at every call.

A held cell must compute exactly what the same cell computes from ``θ`` refreshed at every call
(the compiled pass adds a masked block's products in the same order either way), so the
comparisons are exact.  Hand mutations fail these tests: ``written`` doing nothing, the trainer
writing ``θ`` without calling it, the trainer writing through the old alias after a projection
replaced ``θ`` (the new ``θ`` not held, the alias's identity not checked), ``release`` leaving
``θ`` read-only, and holding a second ``θ`` without releasing the first.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from rtrl_validation.simulations import aligned
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.cells.base import Cell
from rtrl_validation.simulations.cells.weights import HeldTheta
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.optimizers import Adam, Schedule
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer

try:
    from test_kernels_cells import _blocks as _blocks_of
except ImportError:  # tests collected as a package
    from tests.test_kernels_cells import _blocks as _blocks_of

#: masked blocks multiplied through their matrices when current (0.3, 0.1) or scattered (0.05)
CASES = [("gru-reset-after", 0.3), ("gru-reset-after", 0.1), ("gru", 0.3), ("lstm", 0.1), ("elman", 0.3),
         ("gru-reset-after", 0.05)]


def _setup(name, density, batch):
    rng = np.random.default_rng(4)
    cell = make_cell(name, 9, 4, density=density, mask_seed=3)
    theta = aligned.copy(cell.init(rng, batch=batch))
    s, x = 0.5 * rng.standard_normal((3, cell.k)), rng.standard_normal((3, cell.m))
    return cell, theta, s, x, rng


@pytest.mark.parametrize("name,density", CASES)
@pytest.mark.parametrize("batch", [None, 3])
def test_a_held_theta_computes_what_a_refreshed_one_does(name, density, batch):
    """After each write through the writer's alias and ``written``, a held cell's step and
    linearization equal an unheld cell's on a copy of ``θ`` exactly, and ``D_t``'s weight factors
    are ``θ``'s blocks as they are now."""
    cell, theta, s, x, rng = _setup(name, density, batch)
    ref = make_cell(name, 9, 4, density=density, mask_seed=3)
    held = cell.hold(theta)
    for _ in range(3):
        held.writable += 0.05 * rng.standard_normal(theta.shape)
        held.written()
        copy = theta.copy()
        np.testing.assert_array_equal(cell.step(theta, s, x), ref.step(copy, s, x))
        lin, lin_ref = cell.linearize(theta, s, x), ref.linearize(copy, s, x)
        np.testing.assert_array_equal(lin.state, lin_ref.state)
        np.testing.assert_array_equal(lin.D, lin_ref.D)
        np.testing.assert_array_equal(lin.I.dense(), lin_ref.I.dense())
        mats = _blocks_of(cell, copy)
        for t in lin.dynamics.terms:
            if t.W is not None:
                assert any(np.array_equal(t.W, A) for A in mats.values())
        for b in cell.blocks:
            np.testing.assert_array_equal(cell.unpack(theta)[b.name], mats[b.name])
    held.release()


def test_a_write_without_written_is_not_seen():
    """The contract the tests above rely on: a held cell reads its matrices as they are, so a write
    through the alias that ``written`` does not follow leaves the step on the old weights (this is
    what a writer that forgets it would compute, and what the comparisons above would catch)."""
    cell, theta, s, x, rng = _setup("gru-reset-after", 0.3, None)
    ref = make_cell("gru-reset-after", 9, 4, density=0.3, mask_seed=3)
    held = cell.hold(theta)
    before = cell.step(theta, s, x)
    held.writable[cell.block["W_z"].cols] += 1.0
    np.testing.assert_array_equal(cell.step(theta, s, x), before)
    assert not np.array_equal(ref.step(theta.copy(), s, x), before)
    held.written()
    np.testing.assert_array_equal(cell.step(theta, s, x), ref.step(theta.copy(), s, x))


def test_a_held_theta_is_read_only_until_released():
    cell, theta, s, x, rng = _setup("lstm", 0.3, None)
    held = cell.hold(theta)
    assert cell.hold(theta) is held                     # held already: the same alias
    with pytest.raises(ValueError):
        theta += 1.0
    with pytest.raises(ValueError):
        Cell.hold(make_cell("lstm", 9, 4, density=0.3, mask_seed=3), theta)   # a second writer refused
    held.release()
    assert theta.flags.writeable
    theta += 0.1                                        # seen again at the next call
    ref = make_cell("lstm", 9, 4, density=0.3, mask_seed=3)
    np.testing.assert_array_equal(cell.step(theta, s, x), ref.step(theta.copy(), s, x))


def test_holding_another_theta_releases_the_first():
    cell, theta, s, x, rng = _setup("gru", 0.3, None)
    other = aligned.copy(cell.init(rng))
    first = cell.hold(theta)
    second = cell.hold(other)
    assert theta.flags.writeable and not other.flags.writeable
    theta += 0.1                                        # the first θ is an ordinary array again
    ref = make_cell("gru", 9, 4, density=0.3, mask_seed=3)
    np.testing.assert_array_equal(cell.step(theta, s, x), ref.step(theta.copy(), s, x))
    np.testing.assert_array_equal(cell.step(other, s, x), ref.step(other.copy(), s, x))
    first.release()                                     # released already: nothing happens
    assert not other.flags.writeable
    second.release()


def test_a_dense_cell_locks_nothing():
    cell, theta, s, x, rng = _setup("gru", 1.0, None)
    held = cell.hold(theta)
    assert held.writable is theta and theta.flags.writeable
    held.written()
    held.release()


def test_a_pickled_cell_carries_no_hold():
    cell, theta, s, x, rng = _setup("gru-reset-after", 0.3, None)
    cell.hold(theta)
    copy = pickle.loads(pickle.dumps(cell))
    assert copy._held is None and copy._views is None
    fresh = theta.copy()
    np.testing.assert_array_equal(copy.step(fresh, s, x), cell.step(theta, s, x))


def _train(density, project, hold, batch=2, steps=60, spec="snap-1", monkeypatch=None):
    rng = np.random.default_rng(7)
    cell = make_cell("contractive-elman" if project else "gru-reset-after", 8, 3, density=density, mask_seed=2)
    if not hold:
        monkeypatch.setattr(Cell, "hold", lambda self, theta: HeldTheta(theta, theta, None, self))
    proc = VAR1Teacher(hidden=4, inputs=3, activation="tanh", teacher_rho=0.7, ar=0.5, noise=0.1, seed=1)
    ro = LinearReadout(cell.k, proc.n_out, proc.loss)
    tr = OnlineTrainer(cell, ro, parse_estimator(spec), proc, Schedule(0.05, 100.0, 0.75), record_every=20,
                       chunk=25, optimizer=Adam(), project=cell.project if project else None)
    state = tr.init(cell.init(rng, batch=batch), ro.init(rng, batch), rng)
    state, traj = tr.run(state, steps, rng, checkpoint=False)
    assert state.theta.flags.writeable                  # released at the end of the run
    return state, traj


@pytest.mark.parametrize("density,project,spec", [(0.3, False, "snap-1"), (0.1, False, "rtrl"),
                                                  (0.3, True, "snap-1"), (1.0, False, "snap-1")])
def test_training_on_a_held_theta_follows_the_same_path(density, project, spec, monkeypatch):
    """The training loop holds ``θ`` (its optimiser writes it, then ``written``; a projection's new
    ``θ`` is held in its place): the trajectory equals, exactly, the loop's with nothing held."""
    held_state, held_traj = _train(density, project, True, spec=spec)
    with monkeypatch.context() as m:
        ref_state, ref_traj = _train(density, project, False, spec=spec, monkeypatch=m)
    np.testing.assert_array_equal(held_state.theta, ref_state.theta)
    np.testing.assert_array_equal(np.array(held_traj.loss), np.array(ref_traj.loss))
    assert np.max(np.abs(held_state.theta - held_traj.theta[0])) > 1e-3      # θ moved
