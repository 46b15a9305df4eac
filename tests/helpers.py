"""Test helpers shared by several test modules (no tests here).

Report fakes (records, CLI and report tests): ``fake-pass`` passes every check, ``fake-fail`` has a
failing check, ``fake-broken`` has one task that raises and one that diverges; :func:`use_fakes`
puts them in the section registry.  No real simulation.

A small trainer-based experiment for the parallel, fault and resume tests: ``fake-trainer``: task
``i`` trains an Elman cell online (:class:`simulations.training.OnlineTrainer`, real estimator and
data process) from its own seed, then draws three more numbers from the same generator (so a
resumed run must also restore the generator's state).  ``kill``: the task with that index kills
its own worker process (SIGKILL) before doing anything.  Workers import this module by name, so
it must stay importable from ``tests/``.

:func:`train`: a small online training run that can be stopped and resumed from checkpoints (the
checkpoint and fault tests).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rtrl_validation.analysis.sections import Figure, Section, Table  # noqa: E402
from rtrl_validation.simulations.cells import make_cell  # noqa: E402
from rtrl_validation.simulations.checkpoint import CheckpointStore  # noqa: E402
from rtrl_validation.simulations.data import VAR1Teacher  # noqa: E402
from rtrl_validation.simulations.data.base import DataProcess  # noqa: E402
from rtrl_validation.simulations.data.copy_task import CopyTask, MaskedReadout  # noqa: E402
from rtrl_validation.simulations.estimators import parse_estimator  # noqa: E402
from rtrl_validation.simulations.experiments.base import ConfigError, Experiment, Task, TaskResult, Verdict  # noqa: E402
from rtrl_validation.simulations.experiments.schema import Names, TaskSchema  # noqa: E402
from rtrl_validation.simulations.readouts import LinearReadout  # noqa: E402
from rtrl_validation.simulations.training import OnlineTrainer, Schedule  # noqa: E402

CALLS = {"run_task": 0}


class FakeExperiment(Experiment):
    """Task ``i`` draws ``n_samples`` normals; the check is ``|mean| <= bound``.  ``broken``: task
    ``t1`` raises, ``t2`` diverges; ``interrupt_at``: that task raises ``KeyboardInterrupt``."""

    description = "fake experiment for tests"
    schemas = {"draws": TaskSchema(data=Names(("mean",), ("n",)), arrays=Names(("x", "cumsum")))}

    def __init__(self, name: str, bound: float = 1.0, broken: bool = False, interrupt_at: str | None = None):
        self.name, self.bound, self.broken, self.interrupt_at = name, bound, broken, interrupt_at
        self.profiles = {"quick": {"tasks": 3, "n_samples": 50, "scale": 1.0},
                         "full": {"tasks": 4, "n_samples": 200, "scale": 1.0}}

    def validate(self, config):
        if not isinstance(config["tasks"], int) or config["tasks"] <= 0:
            raise ConfigError(f"tasks must be a positive integer, got {config['tasks']!r}")
        if not config["scale"] > 0:
            raise ConfigError(f"scale must be positive, got {config['scale']!r}")

    def tasks(self, config):
        return [Task(f"t{i}", {"i": i, "n_samples": config["n_samples"], "scale": config["scale"]})
                for i in range(config["tasks"])]

    def run_task(self, task, seed, progress=None):
        CALLS["run_task"] += 1
        if task.key == self.interrupt_at:
            raise KeyboardInterrupt
        i = task.config["i"]
        if self.broken and i == 1:
            raise RuntimeError("boom in task t1\nsecond line")
        x = np.random.default_rng(seed).normal(size=task.config["n_samples"]) * task.config["scale"]
        if progress:
            progress(0.5)
        mean = float(x.mean())
        if self.broken and i == 2:
            return TaskResult(data={"mean": mean}, status="diverged", reason="NaN at step 7")
        return TaskResult(data={"mean": mean, "n": np.int64(x.size)}, arrays={"x": x, "cumsum": np.cumsum(x)},
                          verdicts=[Verdict(f"mean small {self.name}", abs(mean) <= self.bound,
                                            f"|mean| = {abs(mean):.3g} vs bound {self.bound}",
                                            abs(mean), self.bound)])


def summarise(records):
    """Analysis: one verdict per record, a figure from the arrays, a table."""
    ok = [r for r in records if r["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(5, 2.5))
    for r in ok:
        if "cumsum" in r["arrays"]:
            ax.plot(r["arrays"]["cumsum"], label=r["task"])
    ax.set_xlabel("sample index")
    ax.set_ylabel("running sum")
    name = records[0]["experiment"]
    return Section(title=f"Fake section {name}", experiment=name,
                   method="Draws normal samples and checks that their mean is small.",
                   equation=r"\bar x = \frac{1}{n}\sum_{i=1}^n x_i",
                   verdicts=[Verdict.from_dict(v) for r in records for v in r["verdicts"]],
                   tables=[Table("Means", ["task", "mean"], [[r["task"], r["data"]["mean"]] for r in ok])],
                   figures=[Figure("Running sums of the samples", fig)],
                   notes=["A note."])


def broken_analysis(records):
    raise ZeroDivisionError("analysis blew up")


def fakes(passing=True, failing=False, broken=False, broken_analysis_=False):
    sections = []
    if passing:
        sections.append((FakeExperiment("fake-pass", bound=10.0), summarise))
    if failing:
        sections.append((FakeExperiment("fake-fail", bound=1e-9), summarise))
    if broken:
        sections.append((FakeExperiment("fake-broken", bound=10.0, broken=True), summarise))
    if broken_analysis_:
        sections.append((FakeExperiment("fake-badanalysis", bound=10.0), broken_analysis))
    return sections


def use_fakes(monkeypatch, **which):
    """Put the fakes in the section registry; tasks this small run in the test process (a worker
    pool would only add its start-up time)."""
    from rtrl_validation.reports import registry
    monkeypatch.setattr(registry, "SECTIONS", fakes(**which))
    in_process(monkeypatch)
    return registry.SECTIONS


def in_process(monkeypatch):
    """Make the CLI's default backend the test process itself, where a backend choice exists."""
    try:
        import rtrl_validation.simulations.parallel as parallel
    except ImportError:
        return
    monkeypatch.setattr(parallel, "cores", lambda: 1, raising=False)


# --------------------------------------------------------------------------- the trainer experiment
WAIT_AFTER = "RTRL_TEST_WAIT_AFTER"   # environment: task run-0 stops at this step until a signal ends it


def wait_for_a_signal_after(steps: int, t: int) -> None:
    """Sleep (up to 120 s) once ``t`` reached ``steps``: a signal sent after task run-0's first
    snapshot then finds the task still running, however slowly the test that sends it is scheduled."""
    if t >= steps:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)


class TrainerExperiment(Experiment):
    """Online training of a small Elman cell.  With the environment variable :data:`WAIT_AFTER`
    set to ``N`` (the fault tests' subprocesses), task run-0 waits for a signal at its first chunk
    end at or after step ``N``, before that chunk's snapshot."""
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
        wait = int(os.environ.get(WAIT_AFTER, 0)) if c["i"] == 0 else 0

        def advanced(n):
            if progress:
                progress(state.t / c["steps"])
            if wait:
                wait_for_a_signal_after(wait, state.t)
        state, traj = trainer.run(state, c["steps"], rng, progress=advanced if progress or wait else None)
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


# --------------------------------------------------------------------------- deterministic data
class Replay(DataProcess):
    """Replays fixed ``xs`` (``T × B × m``) and ``ys``: deterministic data for exact comparisons."""

    def __init__(self, xs, ys):
        self.xs, self.ys, self.m, self.n_out = xs, ys, xs.shape[2], ys.shape[2]

    def init(self, rng, batch):
        assert batch == self.xs.shape[1]
        return 0

    def sample(self, state, T, rng):
        return state + T, self.xs[state:state + T], self.ys[state:state + T]


# --------------------------------------------------------------------------- resumable training
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
