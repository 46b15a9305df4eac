"""Registry of named experiments: name -> instance.  ``rtrl-validate run NAME`` looks here."""
from __future__ import annotations

from .base import ConfigError, Experiment, Task, TaskResult, Verdict

EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    EXPERIMENTS[exp.name] = exp
    return exp


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENTS)}") from None


__all__ = ["EXPERIMENTS", "Experiment", "Task", "TaskResult", "Verdict", "ConfigError", "register",
           "get_experiment"]
