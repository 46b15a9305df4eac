"""What a report figure must satisfy (``analysis/style.py``), as a list of problems found.

The figure is drawn with warnings as errors (a constrained-layout warning means something did not
fit); then, at printed size: width within the text width, every text at least the minimum font
size, no legend larger than its axes, at most ``MAX_SERIES`` labelled series per panel, no two
labels, titles or legends overlapping, no overlapping tick labels, log axes only for positive data
and no bars on a log axis.
"""
from __future__ import annotations

import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from rtrl_validation.analysis import style


def _overlap(a, b, slack: float = 0.5) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > slack) and (min(a.y1, b.y1) - max(a.y0, b.y0) > slack)


def _drawn_ticklabels(axis) -> list:
    """The tick labels drawn: those inside the axis's view interval."""
    lo, hi = sorted(axis.get_view_interval())
    i = 0 if axis.axis_name == "x" else 1
    return [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text().strip()
            and lo - 1e-9 * abs(lo) <= t.get_position()[i] <= hi + 1e-9 * abs(hi)]


def _visible_texts(fig):
    """Every drawn text: tick labels inside the view, and the other visible texts."""
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels(which="both")}
    drawn = [t for ax in fig.axes if ax.get_visible() for axis in (ax.xaxis, ax.yaxis)
             for t in _drawn_ticklabels(axis)]
    return drawn + [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()
                    and t.figure is fig and (t.axes is None or t.axes.get_visible())]


def audit(fig, name: str = "figure") -> list[str]:
    """Every problem of ``fig`` as one line each (empty when the figure is fine)."""
    problems = []
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with style.style():
            try:
                fig.canvas.draw()
            except Warning as w:
                return [f"{name}: drawing warns: {w}"]
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth()
    if width > style.TEXT_WIDTH + 1e-9:
        problems.append(f"{name}: {width:.2f} in wide, more than the text width {style.TEXT_WIDTH} in "
                        "(it would be scaled down in print)")
    page = fig.bbox
    for t in _visible_texts(fig):
        if t.get_fontsize() < style.MIN_FONT_PT - 1e-9:
            problems.append(f"{name}: text {t.get_text()!r} at {t.get_fontsize():.1f} pt")
        box = t.get_window_extent(renderer)
        if box.x0 < page.x0 - 1 or box.y0 < page.y0 - 1 or box.x1 > page.x1 + 1 or box.y1 > page.y1 + 1:
            problems.append(f"{name}: text {t.get_text()[:40]!r} runs off the figure")
    labels = []                      # axis labels, titles and legends: none may overlap another
    for i, ax in enumerate(a for a in fig.axes if a.get_visible()):
        where = f"{name} panel {i + 1}"
        box = ax.get_window_extent(renderer)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            lb = legend.get_window_extent(renderer)
            if lb.width > box.width + 0.5 or lb.height > box.height + 0.5:
                problems.append(f"{where}: legend {lb.width:.0f}×{lb.height:.0f} px is larger than its axes "
                                f"{box.width:.0f}×{box.height:.0f} px")
            labels.append((f"{where} legend", lb))
        n = len(ax.get_legend_handles_labels()[0])
        if n > style.MAX_SERIES:
            problems.append(f"{where}: {n} labelled series (at most {style.MAX_SERIES}; use small multiples)")
        for text, what in ((ax.xaxis.label, "x label"), (ax.yaxis.label, "y label"), (ax.title, "title"),
                           (ax._left_title, "title"), (ax._right_title, "title")):
            if text.get_visible() and text.get_text().strip():
                labels.append((f"{where} {what} {text.get_text()!r}", text.get_window_extent(renderer)))
        for axis in (ax.xaxis, ax.yaxis):
            ticks = [t.get_window_extent(renderer) for t in _drawn_ticklabels(axis)]
            if any(_overlap(a, b) for j, a in enumerate(ticks) for b in ticks[j + 1:]):
                problems.append(f"{where}: overlapping tick labels on the {axis.axis_name} axis")
        for axis, data in ((ax.xaxis, 0), (ax.yaxis, 1)):
            if axis.get_scale() != "log":
                continue
            if any(isinstance(p, Rectangle) and p.get_height() > 0 for p in ax.patches):
                problems.append(f"{where}: bars on a log axis")
            blended = ax.get_yaxis_transform() if data == 0 else ax.get_xaxis_transform()
            for line in ax.lines:
                if line.get_transform() is blended:          # axhline / axvline: axes coordinates
                    continue
                values = np.asarray(line.get_data()[data], dtype=float)
                if np.any(np.isfinite(values) & (values <= 0)):
                    problems.append(f"{where}: non-positive values of {line.get_label()!r} on a log {axis.axis_name} axis")
    for legend in fig.legends:
        labels.append((f"{name} figure legend", legend.get_window_extent(renderer)))
    for j, (a, ba) in enumerate(labels):
        for b, bb in labels[j + 1:]:
            if _overlap(ba, bb):
                problems.append(f"{a} overlaps {b}")
    return problems
