"""Typed experiment configs, checked in one place.

Each experiment declares its config as a dataclass whose field annotations say what a value must
be: ``PositiveInt`` (an integer >= 1, not a bool), ``Density`` (a number in ``(0, 1]``),
``list[CellName]`` and so on.  :func:`check_config` compares a config dict against it and raises
:class:`~.experiments.base.ConfigError` with one line ``<key>: <problem>`` for the first bad key
(unknown, missing, or of the wrong type or range); the experiment adds its name in front
(``<experiment>: <key>: <problem>``).  Checks that involve several keys stay with the experiment
(``Experiment.validate``) and raise through :func:`config_error` in the same style.

Annotations understood: ``int``, ``float`` (finite), ``str``, ``bool``, ``list[T]``, ``dict[K, T]``
and ``Annotated[T, Rule(...)]`` for ranges, names and non-empty lists.  A value is quoted in a
message with its ``repr``, cut to :data:`SHOWN` characters.
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, Callable

import numpy as np

from .cells import CELLS
from .estimators import parse_estimator
from .experiments.base import ConfigError


#: characters of a value's repr quoted in a message
SHOWN = 80


def shown(value) -> str:
    """``repr(value)``, cut to :data:`SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def config_error(key: str, problem: str) -> ConfigError:
    """The one style of a refused config: ``<key>: <problem>``."""
    return ConfigError(f"{key}: {problem}")


@dataclass(frozen=True)
class Rule:
    """A check on a value that already has its base type: ``ok(value)``, or ``problem(value)`` (one
    line or ``None``); ``what`` / ``many`` describe the type in the singular and plural."""

    what: str
    many: str
    ok: Callable[[Any], bool] = lambda v: True
    problem: Callable[[Any], str | None] | None = None

    def check(self, value) -> str | None:
        if self.problem is not None:
            return self.problem(value)
        return None if self.ok(value) else f"must be {self.what}, got {shown(value)}"


def interval(low: float, high: float, closed: str, what: str = "a number", many: str = "numbers") -> Rule:
    """A number in an interval; ``closed`` is ``"()"``, ``"(]"``, ``"[)"`` or ``"[]"``."""
    def ok(v):
        return ((v >= low) if closed[0] == "[" else (v > low)) and ((v <= high) if closed[1] == "]" else (v < high))
    text = f"{closed[0]}{low:g}, {high:g}{closed[1]}"
    return Rule(f"{what} in {text}", f"{many} in {text}", ok)


def one_of(names, kind: str) -> Rule:
    """A name in ``names``, read when a value is checked (a registry may grow after import)."""
    def problem(v):
        known = tuple(names)
        return None if v in known else f"unknown {kind} {shown(v)}; known: {', '.join(known)}"
    listed = ", ".join(names)
    return Rule(f"a {kind} ({listed})", f"{kind}s ({listed})", problem=problem)


def _estimator_problem(spec: str) -> str | None:
    try:
        parse_estimator(spec)
    except (ValueError, TypeError) as e:
        return " ".join(str(e).split())
    return None


#: a list or table with at least one entry
NON_EMPTY = Rule("non-empty", "non-empty", lambda v: len(v) > 0)

PositiveInt = Annotated[int, Rule("a positive integer", "positive integers", lambda v: v >= 1)]
NonNegativeInt = Annotated[int, Rule("a non-negative integer", "non-negative integers", lambda v: v >= 0)]
Positive = Annotated[float, Rule("a positive number", "positive numbers", lambda v: v > 0)]
Density = Annotated[float, interval(0.0, 1.0, "(]", "a density", "densities")]
Fraction = Annotated[float, interval(0.0, 1.0, "()")]
CellName = Annotated[str, one_of(CELLS, "cell")]
EstimatorSpec = Annotated[str, Rule("an estimator spec such as 'snap-2'", "estimator specs such as 'snap-2'",
                                    problem=_estimator_problem)]

_BASE = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers"),
         str: ("a string", "strings"), bool: ("true or false", "booleans")}


def describe(tp, many: bool = False) -> str:
    """A few words for the type ``tp`` (``"a non-empty list of positive integers"``)."""
    base, rules = _unwrap(tp)
    origin = typing.get_origin(base)
    if origin in (list, dict):
        item = typing.get_args(base)[-1]
        empty = "non-empty " if NON_EMPTY in rules else ""
        kind = "list" if origin is list else "table"
        return f"{'' if many else 'a '}{empty}{kind}{'s' if many else ''} of {describe(item, True)}"
    named = [r for r in rules if r is not NON_EMPTY]
    if named:
        return named[0].many if many else named[0].what
    return _BASE[base][many]


def _unwrap(tp):
    if typing.get_origin(tp) is Annotated:
        base, *rules = typing.get_args(tp)
        inner, inner_rules = _unwrap(base)
        return inner, [*inner_rules, *rules]
    return tp, []


def _base_ok(base, value) -> bool:
    if base is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if base is int:
        return isinstance(value, (int, np.integer))
    if base is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
    if base is str:
        return isinstance(value, str)
    raise TypeError(f"config annotation {base!r} is not supported")


def problem(tp, value) -> str | None:
    """What is wrong with ``value`` as a ``tp`` (one line), or ``None``."""
    base, rules = _unwrap(tp)
    origin = typing.get_origin(base)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return f"must be {describe(tp)}, got {shown(value)}"
        (item,) = typing.get_args(base)
        for i, v in enumerate(value):
            bad = problem(item, v)
            if bad is not None:
                return f"item {i}: {bad}"
    elif origin is dict:
        if not isinstance(value, dict):
            return f"must be {describe(tp)}, got {shown(value)}"
        key_tp, item = typing.get_args(base)
        for k, v in value.items():
            bad = problem(key_tp, k) or problem(item, v)
            if bad is not None:
                return f"[{shown(k)}]: {bad}"
    elif not _base_ok(base, value):
        return f"must be {describe(tp)}, got {shown(value)}"
    for rule in rules:
        bad = rule.check(value)
        if bad is not None:
            return f"must be {describe(tp)}, got {shown(value)}" if rule is NON_EMPTY else bad
    return None


def check_config(schema: type, config: dict) -> None:
    """Raise :class:`ConfigError` (``<key>: <problem>``) unless ``config`` has exactly the fields of
    the dataclass ``schema`` with values of their annotated types."""
    hints = typing.get_type_hints(schema, include_extras=True)
    names = [f.name for f in fields(schema)]
    for key in config:
        if key not in hints:
            raise config_error(str(key), f"unknown config key {shown(key)}; known keys: {', '.join(sorted(names))}")
    for name in names:
        if name not in config:
            raise config_error(name, "missing")
        bad = problem(hints[name], config[name])
        if bad is not None:
            raise config_error(name, bad)

