"""Named, declarative experiments (docs/architecture.md "Experiments", "Data flow").

An experiment turns a config (a plain dict, from a profile and optionally a TOML file) into a
list of independent *tasks*; each task runs with its own seed and returns a :class:`TaskResult`,
which the driver writes as one record.  Tasks never depend on each other, on worker identity or
on order: the same ``(config, seed)`` gives the same numbers however the tasks are scheduled.

Adding an experiment: subclass :class:`Experiment` in its own module, give it ``name``,
``description``, ``profiles`` (profile name -> default config) and implement ``tasks`` and
``run_task``; then add one line to ``EXPERIMENTS`` in ``simulations/experiments/__init__.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class ConfigError(ValueError):
    """A configuration the experiment refuses (unknown key, bad value)."""


#: the three outcomes of a verdict (docs/architecture.md "The checks a report carries")
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
STATUSES = (PASS, FAIL, INCONCLUSIVE)


@dataclass
class Verdict:
    """One decided check: PASS, FAIL or INCONCLUSIVE, with its evidence.

    ``status`` may be given as a bool (``True`` -> PASS, ``False`` -> FAIL) for plain pass/fail
    checks such as a gradient against its rounding bound.  ``evidence`` is the one-line reason.
    ``value`` against ``bound`` where numeric; ``rule`` says which direction passes and in what
    unit (e.g. ``"relative error ≤ 1 × rounding bound"``).

    The remaining fields make a statistical verdict evidence (docs/architecture.md "The checks a report carries"): ``claim`` (one
    sentence) and its ``source`` (THEORY section, paper), the ``statistic``, the ``effect`` with
    its confidence ``interval``, the ``resolution`` (equivalence margin or minimum detectable
    effect at 80% power), the ``control`` run beside it and its outcome, and the multiplicity
    ``family`` it was corrected in.  Empty strings / ``None`` where a field does not apply.
    """

    check: str
    status: str | bool
    evidence: str
    value: float | None = None
    bound: float | None = None
    rule: str = ""
    claim: str = ""
    source: str = ""
    statistic: str = ""
    effect: float | None = None
    interval: tuple[float, float] | None = None
    resolution: str = ""
    control: str = ""
    family: str = ""

    def __post_init__(self):
        if isinstance(self.status, (bool, np.bool_)):
            self.status = PASS if self.status else FAIL
        if self.status not in STATUSES:
            raise ValueError(f"verdict status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @classmethod
    def from_dict(cls, d: dict) -> Verdict:
        """The verdict of a :meth:`to_dict` dict (a record's); one without ``status`` is read from
        its ``passed``."""
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "status"}
        interval = fields.get("interval")
        if interval is not None:
            fields["interval"] = tuple(interval)
        return cls(**fields, status=d["status"] if "status" in d else bool(d.get("passed")))

    def to_dict(self) -> dict:
        def num(x):
            return None if x is None else float(x)
        return {"check": self.check, "status": self.status, "passed": self.passed,
                "evidence": self.evidence, "value": num(self.value), "bound": num(self.bound),
                "rule": self.rule, "claim": self.claim, "source": self.source,
                "statistic": self.statistic, "effect": num(self.effect),
                "interval": None if self.interval is None else [float(v) for v in self.interval],
                "resolution": self.resolution, "control": self.control, "family": self.family}


@dataclass
class TaskResult:
    """What one task returns.

    ``status``: ``"ok"``, ``"diverged"`` (NaN/inf; ``reason`` says at which step) or ``"failed"``.
    ``data``: JSON-able scalars, short lists and strings.  ``arrays``: large numpy arrays (go to
    the ``.npz`` beside the record).  ``verdicts``: checks decided inside the task.
    """

    data: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""


@dataclass
class Task:
    """One independent unit: ``key`` (unique, filename-safe, stable across runs) and its config."""

    key: str
    config: dict[str, Any]


class Experiment:
    name: str = "experiment"
    description: str = ""
    #: profile name -> default config (every key an experiment accepts appears here)
    profiles: dict[str, dict[str, Any]] = {}
    #: its tasks measure time: they run after every other task of a run, one at a time in the
    #: driving process, so that no other task shares the machine with them
    exclusive: bool = False

    def config(self, profile: str = "quick", overrides: dict | None = None) -> dict:
        """The profile's config updated with ``overrides``; unknown keys raise :class:`ConfigError`."""
        if profile not in self.profiles:
            raise ConfigError(f"experiment {self.name!r} has no profile {profile!r}; "
                              f"profiles: {', '.join(self.profiles)}")
        cfg = dict(self.profiles[profile])
        for key, value in (overrides or {}).items():
            if key not in cfg:
                raise ConfigError(f"unknown config key {key!r} for experiment {self.name!r}; "
                                  f"known keys: {', '.join(sorted(cfg))}")
            cfg[key] = value
        self.validate(cfg)
        return cfg

    def validate(self, config: dict) -> None:
        """Raise :class:`ConfigError` with one clear line for a bad value."""

    def tasks(self, config: dict) -> list[Task]:
        raise NotImplementedError

    def run_task(self, task: Task, seed: np.random.SeedSequence,
                 progress: Callable[[float], None] | None = None) -> TaskResult:
        """Run one task.  ``seed`` is the task's own ``SeedSequence`` (spawned by the driver from
        the run seed and the task's position in ``tasks``); ``progress(fraction)`` may be called."""
        raise NotImplementedError
