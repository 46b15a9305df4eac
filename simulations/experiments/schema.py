"""What an experiment's tasks write, declared once: per kind of task, the keys of
``TaskResult.data`` and the names of ``TaskResult.arrays``.

The experiment holds ``schemas`` (kind -> :class:`TaskSchema`) and says which kind a task is
(``Experiment.task_kind``).  The same declaration is checked when a task's result is produced
(:meth:`Experiment.check_result`, called by the runner: a task that writes an undeclared or
misses a required key fails with the difference as its reason) and when records are read for
analysis (:meth:`Experiment.check_record_data`, a list of one-line problems for the record
reader).  A name ending in ``.*`` stands for every name with that prefix (``"cos.*"``: one array
per estimator).  A record whose status is not ``"ok"`` may lack required names (it stopped
early) but never has undeclared ones.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    """Required and optional names (``prefix.*`` patterns allowed)."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def _matches(self, pattern: str, name: str) -> bool:
        return name.startswith(pattern[:-1]) if pattern.endswith(".*") else name == pattern

    def declared(self, name: str) -> bool:
        return any(self._matches(p, name) for p in self.required + self.optional)

    def problems(self, what: str, names: Iterable[str], complete: bool) -> list[str]:
        names = list(names)
        out = [f"undeclared {what} {n!r}" for n in names if not self.declared(n)]
        if complete:
            out += [f"missing {what} {p!r}" for p in self.required if not any(self._matches(p, n) for n in names)]
        return out


@dataclass(frozen=True)
class TaskSchema:
    """What one kind of task writes: ``data`` keys and ``arrays`` names."""

    data: Names = Names()
    arrays: Names = Names()

    def problems(self, data: Iterable[str], arrays: Iterable[str], status: str = "ok") -> list[str]:
        """One line per difference between what was written and what is declared."""
        complete = status == "ok"
        return self.data.problems("data key", data, complete) + self.arrays.problems("array", arrays, complete)
