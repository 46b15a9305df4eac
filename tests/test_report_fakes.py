"""Tiny fake experiments and analyses for the records/CLI/report tests (no real simulation).

``fake-pass`` passes every check, ``fake-fail`` has a failing check, ``fake-broken`` has one
task that raises and one that diverges.  :func:`use_fakes` puts them in the section registry.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rtrl_validation.analysis.sections import Figure, Section, Table  # noqa: E402
from rtrl_validation.simulations.experiments.base import ConfigError, Experiment, Task, TaskResult, Verdict  # noqa: E402

CALLS = {"run_task": 0}


class FakeExperiment(Experiment):
    """Task ``i`` draws ``n_samples`` normals; the check is ``|mean| <= bound``.  ``broken``: task
    ``t1`` raises, ``t2`` diverges; ``interrupt_at``: that task raises ``KeyboardInterrupt``."""

    description = "fake experiment for tests"

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
