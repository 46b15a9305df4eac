"""Every figure as files: SVG, PDF and PNG, and the plotted data as CSV, under ``DIR/figures/``.

A figure's name is ``EXPERIMENT-I`` (its section's experiment and its position in the section,
from 1), stable across rebuilds; ``rtrl-validate figure NAME --from DIR`` writes the same files
again from the records.  The CSV is read off the drawn artists, so it holds exactly what is
plotted: one row per point, ``panel, series, kind, x, y, y_low, y_high``.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from rtrl_validation.analysis import style
from rtrl_validation.simulations.records import atomic_write

FIGURE_FORMATS = ("svg", "pdf", "png")
COLUMNS = ["panel", "series", "kind", "x", "y", "y_low", "y_high"]


def figure_name(experiment: str, index: int) -> str:
    """``("bias-variance", 2)`` -> ``"bias-variance-2"``."""
    return f"{experiment}-{index}"


def split_name(name: str, experiments) -> tuple[str, int] | None:
    """``"bias-variance-2"`` -> ``("bias-variance", 2)`` when the experiment is registered."""
    head, _, index = name.rpartition("-")
    if head in experiments and index.isdigit() and int(index) >= 1:
        return head, int(index)
    return None


def _label(artist, fallback: str) -> str:
    label = artist.get_label() or ""
    return fallback if label.startswith("_") or not label else label


def figure_rows(fig) -> list[list]:
    """The plotted data of ``fig``: lines and markers, scatter points, bands (as low/high against x)
    and bars, panel by panel."""
    rows = []
    for p, ax in enumerate(fig.axes, start=1):
        errorbars = {}
        for c in ax.containers:
            if getattr(c, "lines", None) and len(c.lines) == 3:          # ErrorbarContainer
                data, caps, _ = c.lines
                if data is not None:
                    errorbars[id(data)] = c.get_label()
                for cap in caps or ():
                    errorbars[id(cap)] = f"{c.get_label()}: interval end"
        for i, line in enumerate(ax.lines):
            if not isinstance(line, Line2D):
                continue
            x, y = (np.asarray(v, dtype=float).ravel() for v in line.get_data())
            if x.size != y.size or x.size == 0:
                continue
            name = _label(line, errorbars.get(id(line)) or f"line {i + 1}")
            name = f"line {i + 1}" if name.startswith("_") else name
            rows += [[p, name, "line", a, b, "", ""] for a, b in zip(x, y)]
        for i, coll in enumerate(ax.collections):
            name = _label(coll, f"collection {i + 1}")
            if isinstance(coll, PathCollection):
                rows += [[p, name, "points", a, b, "", ""] for a, b in coll.get_offsets()]
            elif isinstance(coll, PolyCollection):
                for path in coll.get_paths():
                    v = path.vertices
                    if len(v) < 4:
                        continue
                    n = (len(v) - 1) // 2                       # fill_between: lower edge, then upper back
                    lower, upper = v[1:n + 1], v[n + 1:][::-1][:n]
                    if len(upper) == len(lower) and np.allclose(lower[:, 0], upper[:, 0]):
                        rows += [[p, name, "band", a, "", lo, hi]
                                 for (a, lo), (_, hi) in zip(lower, upper)]
        for i, patch in enumerate(ax.patches):
            if isinstance(patch, Rectangle):
                rows.append([p, _label(patch, f"bar {i + 1}"), "bar", patch.get_x() + patch.get_width() / 2,
                             patch.get_height(), "", ""])
    return rows


def figure_csv(fig) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in figure_rows(fig):
        writer.writerow([f"{v:.17g}" if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue()


def export_figure(fig, folder: str | Path, name: str) -> dict[str, Path]:
    """Write ``NAME.svg``, ``NAME.pdf``, ``NAME.png`` and ``NAME.csv`` into ``folder``; return the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    logging.getLogger("fontTools").setLevel(logging.ERROR)    # font subsetting warns about old font dates
    paths = {}
    with style.style():
        for fmt in FIGURE_FORMATS:
            paths[fmt] = atomic_write(folder / f"{name}.{fmt}",
                                      lambda f, fmt=fmt: fig.savefig(f, format=fmt, metadata=_metadata(fmt),
                                                                     **style.save_options(fig)))
    paths["csv"] = atomic_write(folder / f"{name}.csv", figure_csv(fig))
    return paths


def _metadata(fmt: str) -> dict:
    """No creation dates, so the same records give the same files."""
    return {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}[fmt]
