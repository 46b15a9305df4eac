"""Named, declarative experiments (docs/architecture.md "Experiments", "Data flow").

An experiment turns a config (a plain dict, from a profile and optionally a TOML file) into a
list of independent *tasks*; each task runs with its own seed and returns a :class:`TaskResult`,
which the driver writes as one record.  Tasks never depend on each other, on worker identity or
on order: the same ``(config, seed)`` gives the same numbers however the tasks are scheduled.

Adding an experiment: subclass :class:`Experiment` in its own module, give it ``name``,
``description``, ``profiles`` (profile name -> default config), ``Config`` (a dataclass whose
annotated fields type every key, :mod:`simulations.config`), ``schemas`` (what each kind of task
writes, :mod:`.schema`) and ``task_memory`` (:mod:`simulations.memory`), and implement ``tasks``
and ``run_task``; then add one line to ``SECTIONS`` in ``reports/registry.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .schema import TaskSchema


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

    #: the typed config: a dataclass whose annotated fields are the keys every profile holds
    #: (checked by :func:`simulations.config.check_config`); ``None``: ``validate`` checks everything
    Config: type | None = None

    def config(self, profile: str = "quick", overrides: dict | None = None) -> dict:
        """The profile's config updated with ``overrides``, checked against :attr:`Config`, by
        :meth:`validate` and against the machine's memory (:mod:`simulations.memory`) before any
        work starts.  A refused config raises :class:`ConfigError` with one line
        ``<experiment>: <key>: <problem>``."""
        from ..memory import check_fits

        if profile not in self.profiles:
            raise ConfigError(f"experiment {self.name!r} has no profile {profile!r}; "
                              f"profiles: {', '.join(self.profiles)}")
        cfg = dict(self.profiles[profile])
        overrides = {} if overrides is None else overrides
        try:
            if not isinstance(overrides, dict):
                raise ConfigError(f"overrides must be a table of config keys, got {overrides!r}")
            for key, value in overrides.items():
                if key not in cfg:
                    shown = key if isinstance(key, str) and key.isprintable() else repr(key)
                    raise ConfigError(f"{shown}: unknown config key {key!r}; known keys: {', '.join(sorted(cfg))}")
                cfg[key] = value
            if self.Config is not None:
                from ..config import check_config
                check_config(self.Config, cfg)
            self.validate(cfg)
            self.check_overrides(cfg, overrides)
            check_fits(self, cfg)
        except ConfigError as e:
            message = " ".join(str(e).split())
            raise ConfigError(message if message.startswith(f"{self.name}: ") else f"{self.name}: {message}") from None
        return cfg

    def validate(self, config: dict) -> None:
        """Checks across keys (the types are :attr:`Config`'s): raise :class:`ConfigError` with one
        line ``<key>: <problem>`` (:func:`simulations.config.config_error`)."""

    def check_overrides(self, config: dict, overrides: dict) -> None:
        """Checks that apply to what the user changed (``overrides``) but not to the profiles."""

    def preamble(self, config: dict) -> str:
        """What to say before a run of ``config`` starts (e.g. its predicted time); empty: nothing."""
        return ""

    #: what each kind of task writes (:mod:`.schema`); empty: not declared, nothing is checked
    schemas: dict[str, TaskSchema] = {}

    def task_kind(self, task_config: dict) -> str:
        """The kind of a task (a key of :attr:`schemas`); the one kind when there is a single one."""
        return next(iter(self.schemas))

    def check_result(self, task: Task, result: TaskResult) -> list[str]:
        """Differences between a task's result and its declared schema (one line each)."""
        if not self.schemas:
            return []
        return self.schemas[self.task_kind(task.config)].problems(result.data, result.arrays, result.status)

    def check_record_data(self, record: dict) -> list[str]:
        """Differences between a record's ``data`` / arrays and the declared schema of its task's
        kind, as lines ``<experiment>/<task>: <problem>``; failed records are not checked."""
        if not self.schemas or record.get("status") == "failed":
            return []
        where = f"{self.name}/{record.get('task')}"
        try:
            schema = self.schemas[self.task_kind(record["config"])]
        except (KeyError, TypeError, StopIteration):
            return [f"{where}: task config does not name a kind of task of {self.name!r}"]
        data, names = record.get("data"), record.get("array_names")
        if names is None and isinstance(record.get("arrays"), dict):
            names = list(record["arrays"])
        if not isinstance(data, dict) or not isinstance(names, (list, tuple)):
            return [f"{where}: data must be a table and array_names a list"]
        return [f"{where}: {p}" for p in schema.problems(data, names, record.get("status", "ok"))]

    def task_memory(self, task_config: dict) -> float:
        """Bytes one task of this config holds at its peak (an estimate from
        :mod:`simulations.memory`; 0: negligible)."""
        return 0.0

    def tasks(self, config: dict) -> list[Task]:
        raise NotImplementedError

    def run_task(self, task: Task, seed: np.random.SeedSequence,
                 progress: Callable[[float], None] | None = None) -> TaskResult:
        """Run one task.  ``seed`` is the task's own ``SeedSequence`` (spawned by the driver from
        the run seed and the task's position in ``tasks``); ``progress(fraction)`` may be called."""
        raise NotImplementedError
