"""Checkpoints of the online trainer hold plain data only (numbers, strings, arrays, lists, dicts,
generator states), and a run resumed from any of them ends with the numbers of an uninterrupted
run, bit for bit: every estimator (dense and sparse masked influences, the fused SnAp-1 step, UORO,
KF-RTRL, the TBPTT tape), a data process with per-replicate generators and a curriculum (the copy
task), Adam's state and the learning experiment's recorder hook."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.checkpoint import fits
from rtrl_validation.simulations.curriculum import LengthCurriculum
from rtrl_validation.simulations.data.copy_task import IGNORE, CopyTask, MaskedReadout
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.experiments.learning import LearningRecorder
from rtrl_validation.simulations.optimizers import Adam, Schedule
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer

PLAIN = (dict, list, np.ndarray, int, float, str, bool, type(None))


def assert_plain(x, where="payload"):
    assert isinstance(x, PLAIN), f"{where} holds a {type(x).__name__}"
    if isinstance(x, dict):
        for k, v in x.items():
            assert isinstance(k, str), f"{where} has a key of type {type(k).__name__}"
            assert_plain(v, f"{where}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            assert_plain(v, f"{where}[{i}]")
    elif isinstance(x, np.ndarray):
        assert x.dtype != object, f"{where} is an object array"


class MemorySlot:
    """A checkpoint slot in memory: saves deep copies; loads the snapshot it is given (which must
    fit the loop's initial payload, as :meth:`simulations.checkpoint.Slot.load` requires)."""

    every = 10

    def __init__(self, snapshot=None):
        self.saved, self.snapshot = [], snapshot

    def load(self, call, like=None):
        if self.snapshot is not None:      # what the file store checks: the snapshot fits the call's own state
            assert fits(self.snapshot[1], like)
        return self.snapshot

    def reject(self, why):
        raise AssertionError(f"snapshot rejected: {why}")

    def save(self, call, step, payload):
        self.saved.append((step, copy.deepcopy(payload)))


def run(spec, cell_name, slot, steps=45):
    task = CopyTask(2, LengthCurriculum(0.5, window=4, spread=2))
    cell = make_cell(cell_name, 4, task.m, density=0.5, mask_seed=3)
    readout = MaskedReadout(LinearReadout(cell.k, task.n_out, "xent"))
    rng = np.random.default_rng(0)
    theta0, phi0 = cell.init(rng, batch=2), readout.init(rng, 2)
    estimator = parse_estimator(spec)
    recorder = LearningRecorder(cell, readout, estimator, task, steps, align_every=20, align_len=7,
                                align_rng=np.random.default_rng(9))
    trainer = OnlineTrainer(cell, readout, estimator, task, Schedule(0.01), record_every=5, chunk=8,
                            optimizer=Adam(), counted=lambda y: y != IGNORE, stop="all", hooks=[recorder])
    train_rng, data_rng = np.random.default_rng(1), np.random.default_rng(2)
    state = trainer.init(theta0, phi0, train_rng, data_rng)
    state, traj = trainer.run(state, steps, train_rng, data_rng=data_rng, checkpoint=slot)
    return state, traj.arrays(), recorder.out


@pytest.mark.parametrize("spec,cell_name", [("rtrl", "gru"), ("snap-1", "elman"), ("snap-2", "lstm"),
                                            ("rflo", "gru-reset-after"), ("uoro", "gru"), ("kf-rtrl", "elman"),
                                            ("tbptt-3", "gru")])
def test_resume_from_a_plain_snapshot_gives_the_uninterrupted_numbers(spec, cell_name):
    saver = MemorySlot()
    state, arrays, out = run(spec, cell_name, saver)
    assert len(saver.saved) >= 3
    for _, payload in saver.saved:
        assert_plain(payload)
    mid = saver.saved[len(saver.saved) // 2]
    assert 0 < mid[0] < 45
    state2, arrays2, out2 = run(spec, cell_name, MemorySlot(snapshot=mid))
    for name in ("theta", "phi", "s", "g_acc", "diverged"):
        np.testing.assert_array_equal(getattr(state2, name), getattr(state, name), err_msg=name)
    assert arrays.keys() == arrays2.keys()
    for name in arrays:
        np.testing.assert_array_equal(arrays2[name], arrays[name], err_msg=name)
    for name in out:
        np.testing.assert_array_equal(np.asarray(out2[name]), np.asarray(out[name]), err_msg=name)
    # the comparison can fail: a snapshot taken one chunk earlier, relabelled, does not reproduce the run
    early = saver.saved[0]
    state3, _, _ = run(spec, cell_name, MemorySlot(snapshot=(mid[0], early[1] | {"state": early[1]["state"]
                                                                                   | {"t": mid[0]}})))
    assert not np.array_equal(state3.theta, state.theta)
