"""Report sections built from result records (docs/architecture.md "The checks a report carries").

An analysis function takes the records of one experiment (a list of dicts as loaded from disk,
``arrays`` lazily available) and returns a :class:`Section`; the report assembles sections in
registry order.  Analysis never runs a simulation.  The
pairing of experiments with their analysis functions is ``reports/registry.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A table; ``group_by`` leading columns name a setting (rows are shown grouped under one
    heading per setting when the table is long and goes to the appendix)."""

    caption: str
    columns: list[str]
    rows: list[list[Any]]
    group_by: int = 0


@dataclass
class Figure:
    """A matplotlib figure (``fig``) with a caption (``$...$`` spans are mathtext); rendered
    inline as SVG and exported, with its plotted data, under ``DIR/figures/``.  Draw it with
    :mod:`analysis.style`."""

    caption: str
    fig: Any


@dataclass
class Section:
    """One report section.  ``verdicts`` are :class:`simulations.experiments.Verdict` objects;
    ``method`` is two or three sentences; ``equation`` is matplotlib mathtext (no LaTeX needed)."""

    title: str
    experiment: str
    method: str
    equation: str = ""
    config: dict = field(default_factory=dict)
    verdicts: list = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)   # failed / diverged runs, with reasons
