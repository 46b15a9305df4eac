"""A small online training run that can be stopped and resumed from checkpoints: the shared
fixture of the checkpoint tests (``test_faults.py``, ``test_checkpoint_safety.py``)."""
from __future__ import annotations

import contextlib

import numpy as np

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.checkpoint import CheckpointStore
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.data.copy_task import CopyTask, MaskedReadout
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer, Schedule

STEPS = 400


def train(estimator: str, store: CheckpointStore | None = None, stop_at: int | None = None, config=1,
          process: str = "var1", cell: str = "elman"):
    """Online training of 400 steps (chunks of 32) from fixed seeds on a VAR(1) teacher or the
    copy task (``process="copy"``); ``stop_at``: raise KeyboardInterrupt at the first chunk end at
    or after that step (as Ctrl-C would).  Returns ``(numbers, task checkpoints)``."""
    rng = np.random.default_rng(3)
    proc = CopyTask(alphabet=2) if process == "copy" else VAR1Teacher(hidden=3, inputs=2)
    c = make_cell(cell, 3, proc.m)
    readout = (MaskedReadout(LinearReadout(c.k, proc.n_out, "xent")) if process == "copy"
               else LinearReadout(c.k, proc.n_out))
    trainer = OnlineTrainer(c, readout, parse_estimator(estimator), proc, Schedule(0.05, 100.0, 0.75),
                            record_every=40, chunk=32)
    state = trainer.init(c.init(rng, batch=2), readout.init(rng, 2), rng)

    def progress(n):
        if stop_at is not None and state.t >= stop_at:
            raise KeyboardInterrupt

    ck = store.task("exp", "task", {"config": config}) if store is not None else None
    with ck if ck is not None else contextlib.nullcontext():
        state, traj = trainer.run(state, STEPS, rng, progress=progress)
    return {"theta": state.theta, "phi": state.phi, "s": state.s, "after": rng.standard_normal(3),
            **traj.arrays()}, ck
