"""A small trainer-based experiment for the parallel, fault and resume tests (no tests here).

``fake-trainer``: task ``i`` trains an Elman cell online (:class:`simulations.training.OnlineTrainer`,
real estimator and data process) from its own seed, then draws three more numbers from the same
generator (so a resumed run must also restore the generator's state).  ``kill``: the task with that
index kills its own worker process (SIGKILL) before doing anything.  Workers import this module by
name, so it must stay importable from ``tests/``.
"""
from __future__ import annotations

import os
import signal

import numpy as np

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.experiments.base import ConfigError, Experiment, Task, TaskResult, Verdict
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer, Schedule


class TrainerExperiment(Experiment):
    name = "fake-trainer"
    description = "online training of a small Elman cell (tests)"
    profiles = {"quick": {"tasks": 3, "steps": 600, "replicates": 2, "hidden": 3, "estimator": "rtrl",
                          "alpha0": 0.05, "chunk": 64, "kill": -1},
                "full": {"tasks": 4, "steps": 2000, "replicates": 2, "hidden": 3, "estimator": "rtrl",
                         "alpha0": 0.05, "chunk": 64, "kill": -1}}

    def validate(self, config):
        for key in ("tasks", "steps", "replicates", "hidden", "chunk"):
            v = config[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        if isinstance(config["alpha0"], bool) or not isinstance(config["alpha0"], (int, float)) \
                or not config["alpha0"] > 0:
            raise ConfigError(f"alpha0 must be a positive number, got {config['alpha0']!r}")
        try:
            parse_estimator(config["estimator"])
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None

    def tasks(self, config):
        return [Task(f"run-{i}", {**{k: v for k, v in config.items() if k != "tasks"}, "i": i})
                for i in range(config["tasks"])]

    def run_task(self, task, seed, progress=None):
        c = task.config
        if c["i"] == c["kill"]:
            os.kill(os.getpid(), signal.SIGKILL)
        rng = np.random.default_rng(seed)
        cell = make_cell("elman", c["hidden"], 2)
        proc = VAR1Teacher(hidden=c["hidden"], inputs=2)
        readout = LinearReadout(cell.k, proc.n_out, proc.loss)
        trainer = OnlineTrainer(cell, readout, parse_estimator(c["estimator"]), proc,
                                Schedule(c["alpha0"], 100.0, 0.75), record_every=50, chunk=c["chunk"])
        B = c["replicates"]
        state = trainer.init(cell.init(rng, batch=B), readout.init(rng, B), rng)
        state, traj = trainer.run(state, c["steps"], rng,
                                  progress=progress and (lambda n: progress(state.t / c["steps"])))
        arrays = {**traj.arrays(), "theta_final": state.theta, "after": rng.standard_normal(3)}
        data = {"final_loss": float(arrays["loss"][-1].mean()) if len(traj.t) else None,
                "diverged_at": traj.diverged_at}
        if traj.diverged_at is not None:
            return TaskResult(data=data, arrays=arrays, status="diverged",
                              reason=f"training diverged at step {traj.diverged_at}: {traj.diverged_reason}")
        return TaskResult(data=data, arrays=arrays,
                          verdicts=[Verdict("loss finite", bool(np.isfinite(data["final_loss"])),
                                            f"final window loss {data['final_loss']:.4g}")])


def use_trainer(monkeypatch=None):
    """Put ``fake-trainer`` alone in the section registry (with ``monkeypatch`` when given)."""
    from rtrl_validation.reports import registry
    sections = [(TrainerExperiment(), None)]
    if monkeypatch is None:
        registry.SECTIONS = sections
    else:
        monkeypatch.setattr(registry, "SECTIONS", sections)
    return sections


def numbers(records) -> list:
    """Everything numeric a record holds (task, status, reason, data, verdicts, arrays): what must
    be bit-for-bit the same whatever the backend."""
    out = []
    for r in records:
        arrays = {name: np.asarray(r["arrays"][name]) for name in r["arrays"]}
        out.append((r["task"], r["task_index"], r["seed"], r["status"], r["reason"], r["data"], r["verdicts"],
                    {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in arrays.items()}))
    return out


def blas_threads_in_worker(job, progress=None):
    """The BLAS thread counts and ``OPENBLAS_NUM_THREADS`` seen by a pool worker."""
    from threadpoolctl import threadpool_info
    return sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}), \
        os.environ.get("OPENBLAS_NUM_THREADS")


class Subset(Experiment):
    """The tasks of a real experiment ``exp`` whose keys are in ``keys`` (task seeds by position in
    the subset), for tests that need one long task of a real experiment."""

    def __init__(self, exp: Experiment, keys):
        self.exp, self.keys = exp, list(keys)
        self.name, self.description, self.profiles = exp.name, exp.description, exp.profiles

    def validate(self, config):
        self.exp.validate(config)

    def tasks(self, config):
        return [t for t in self.exp.tasks(config) if t.key in self.keys]

    def run_task(self, task, seed, progress=None):
        return self.exp.run_task(task, seed, progress)
