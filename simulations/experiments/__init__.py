"""Experiment contract (:mod:`.base`) and the simulation experiments.

The registry of experiments and their report sections is ``reports/registry.py`` (it sits on top
of every package, so experiments may live in ``simulations`` or ``proofs_checks``).
"""
from __future__ import annotations

from .base import ConfigError, Experiment, Task, TaskResult, Verdict

__all__ = ["Experiment", "Task", "TaskResult", "Verdict", "ConfigError"]
