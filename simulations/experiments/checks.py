"""Config checks shared by the ``bias-variance`` and ``cost`` experiments: each raises
:class:`~.base.ConfigError` with one clear line."""
from __future__ import annotations

from ..cells import CELLS, make_cell
from ..estimators import parse_estimator
from .base import ConfigError


def positive_ints(config: dict, keys) -> None:
    for key in keys:
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key} must be a positive integer, got {v!r}")


def positive_int_list(key: str, values, at_least: int = 0) -> None:
    """A list of at least ``at_least`` positive integers (e.g. hidden sizes)."""
    if (not isinstance(values, list) or len(values) < at_least
            or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in values)):
        raise ConfigError(f"{key} must list at least {at_least} positive integers, got {values!r}")


def known_cell(name) -> None:
    if name not in CELLS:
        raise ConfigError(f"unknown cell {name!r}; known cells: {', '.join(CELLS)}")


def density(d) -> None:
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < d <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {d!r}")


def estimator_for(spec, cell_name: str) -> None:
    """``spec`` parses (e.g. ``snap-0`` does not) and runs on ``cell_name`` (KF-RTRL needs σ(W â))."""
    try:
        parse_estimator(spec).require_cell(make_cell(cell_name, 2, 1))
    except ValueError as err:
        raise ConfigError(str(err)) from None
