"""The one figure style of the report: rcParams, page geometry and one look per estimator.

Every figure of every section is drawn with :func:`figure` inside :func:`style` (the report's
builder wraps each analysis in it), so fonts, layout and colours are set here and nowhere else:

* sizes are chosen for the printed page: a figure is at most :data:`TEXT_WIDTH` inches wide, so
  it is never scaled down and every font (≥ :data:`MIN_FONT_PT` pt) stays that size on paper;
* constrained layout, so labels, ticks and legends do not overlap;
* one colour, marker and line style per estimator (:func:`estimator_style`), whatever the section;
* at most :data:`MAX_SERIES` labelled series per panel; more become small multiples
  (:func:`panels`);
* text is mathtext (``"step $t$"``, ``r"$\\|\\nabla L(\\theta_t)\\|$"``), written as text in SVG.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure as MplFigure
from matplotlib.transforms import ScaledTranslation

#: printed text width of the report (A4 with 14 mm margins), inches
TEXT_WIDTH = 7.1
#: smallest font size at printed size, pt
MIN_FONT_PT = 7.0
#: most labelled series drawn in one panel
MAX_SERIES = 5

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.0,
    "legend.title_fontsize": 7.0,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "figure.titlesize": 8.5,
    "figure.constrained_layout.use": True,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "0.9",
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "errorbar.capsize": 2.0,
    "mathtext.fontset": "dejavusans",
    "svg.fonttype": "none",
    "svg.hashsalt": "rtrl-validate",
    "pdf.fonttype": 42,
}


@contextmanager
def style():
    """Draw inside this context: the report's rcParams, restored afterwards."""
    with matplotlib.rc_context(RC):
        yield


def figure(width: float = TEXT_WIDTH, height: float = 2.6) -> MplFigure:
    """A new figure (not registered with pyplot) of ``width`` × ``height`` inches, at most the text
    width, with constrained layout."""
    return MplFigure(figsize=(min(width, TEXT_WIDTH), height), layout="constrained")


def legend_below(ax, ncol: int = 2):
    """The legend under the axes and its x label, where it covers no data (constrained layout
    makes room for it)."""
    below = ax.transAxes + ScaledTranslation(0, -34 / 72, ax.figure.dpi_scale_trans)
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=ncol)


def save_options(fig) -> dict:
    """``savefig`` options: a figure with a layout engine already fits its page, so it is saved
    as laid out (one drawing); any other is cropped to its contents (``bbox_inches="tight"``,
    which draws it twice)."""
    return {"bbox_inches": None if fig.get_layout_engine() is not None else "tight"}


@dataclass(frozen=True)
class SeriesStyle:
    """How one estimator is drawn everywhere: ``label`` is mathtext."""

    label: str
    color: str
    marker: str
    linestyle: str | tuple

    def kw(self, line: bool = True) -> dict:
        """Keyword arguments for ``ax.plot`` / ``ax.errorbar`` (``line=False``: markers only)."""
        return {"color": self.color, "marker": self.marker, "label": self.label,
                "linestyle": self.linestyle if line else "none", "markevery": 0.1 if line else None}


#: estimator family -> (display name, colour, marker, line style); Okabe–Ito colours, safe for
#: colour-blind readers and in greyscale by marker and line style
FAMILY = {
    "rtrl": ("RTRL", "#000000", "o", "-"),
    "bptt": ("BPTT", "#7f7f7f", "s", "-"),
    "tbptt": ("TBPTT", "#E69F00", "v", (0, (4, 1.5))),
    "online-tbptt": ("online TBPTT", "#8C510A", "v", (0, (6, 1.5, 1, 1.5))),
    "snap": ("SnAp", "#0072B2", "^", "-"),
    "uoro": ("UORO", "#D55E00", "D", (0, (1, 1.2))),
    "kf-rtrl": ("KF-RTRL", "#CC79A7", "P", (0, (5, 1.5, 1, 1.5))),
    "rflo": ("RFLO", "#009E73", "X", (0, (2, 1.5))),
}
#: SnAp-n: one blue per order (darker for higher n)
SNAP_COLOURS = ("#56B4E9", "#0072B2", "#3a4fa8", "#6a51a3", "#1b2a6b", "#3f007d")
SNAP_MARKERS = ("^", "<", ">", "h", "p", "*")
#: TBPTT(τ): one orange per octave of τ
TBPTT_COLOURS = ("#E69F00", "#a66f00", "#f5c242")
TBPTT_MARKERS = ("v", "1", "2")
_SPEC = re.compile(r"^(?P<family>[a-z-]+?)(?:-(?P<order>\d+)|\((?P<arg>[^)]*)\))?$")


def estimator_style(spec: str) -> SeriesStyle:
    """The style of an estimator spec as records name it: ``"rtrl"``, ``"snap-2"``, ``"tbptt-5"``,
    ``"tbptt(5)"``, ``"kf-rtrl"`` ... Unknown names are grey with their own name as label."""
    name = str(spec).strip().lower()
    m = _SPEC.match(name)
    family, order = (m.group("family"), m.group("order") or m.group("arg")) if m else (name, None)
    if family not in FAMILY and name in FAMILY:
        family, order = name, None
    if family not in FAMILY:
        return SeriesStyle(str(spec), "#999999", ".", "-")
    label, colour, marker, ls = FAMILY[family]
    if family == "snap" and order is not None:
        i = (int(order) - 1) % len(SNAP_COLOURS)
        return SeriesStyle(f"SnAp-{order}", SNAP_COLOURS[i], SNAP_MARKERS[i], "-")
    if family == "tbptt" and order is not None and order.isdigit():
        i = int(order).bit_length() % len(TBPTT_COLOURS)        # one shade per octave of τ
        return SeriesStyle(rf"TBPTT($\tau$={order})", TBPTT_COLOURS[i], TBPTT_MARKERS[i], ls)
    if family == "online-tbptt" and order is not None:          # its colour; one marker per octave of τ
        return SeriesStyle(rf"online TBPTT($\tau$={order})", colour, TBPTT_MARKERS[int(order).bit_length() % 3], ls)
    return SeriesStyle(label, colour, marker, ls)


#: colours for series that are not estimators (cells, settings, blocks, finite differences), in
#: order: Paul Tol's muted set, apart from the estimators' colours so that no colour means two things
CYCLE = ("#332288", "#882255", "#DDCC77", "#44AA99", "#999933", "#AA4499", "#88CCEE")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def series(i: int) -> dict:
    """Colour and marker of the ``i``-th non-estimator series of a panel."""
    return {"color": CYCLE[i % len(CYCLE)], "marker": MARKERS[i % len(MARKERS)]}


def panels(labels: list[str], reference: str | None = "rtrl", size: int = MAX_SERIES) -> list[list[str]]:
    """Split ``labels`` into groups of at most ``size`` for small multiples; ``reference`` (when
    present) is drawn in every group, so each panel compares against it."""
    labels = list(labels)
    ref = [reference] if reference in labels else []
    rest = [lab for lab in labels if lab not in ref]
    step = max(size - len(ref), 1)
    groups = [ref + rest[i:i + step] for i in range(0, len(rest), step)]
    return groups or [ref]
