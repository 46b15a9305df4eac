"""Matplotlib figures and mathtext equations as inline SVG whose text stays text.

``svg.fonttype = 'none'`` writes labels and mathtext glyphs as SVG ``<text>``, so the HTML is
searchable and WeasyPrint puts real text in the PDF.  No LaTeX is needed (matplotlib mathtext).

Mathtext draws accents (``\\hat``, ``\\tilde``, ``\\bar`` ...) as *combining* characters placed on
their own; a text shaper (Pango, used by WeasyPrint) then shows them on a dotted circle.  They
are swapped for the spacing modifier letters of the same shape, moved so their ink lands where
the combining glyph's ink was.
"""
from __future__ import annotations

import io
import re
from functools import lru_cache

import matplotlib
from matplotlib import ft2font
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont

from rtrl_validation.analysis import style

_NO_HINTING = ft2font.LoadFlags.NO_HINTING if hasattr(ft2font, "LoadFlags") else ft2font.LOAD_NO_HINTING

SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "rtrl-validate", "font.family": "DejaVu Sans"}
#: combining accent -> spacing modifier letter of the same shape
SPACING_ACCENT = {"\u0300": "\u02cb", "\u0301": "\u02ca", "\u0302": "\u02c6", "\u0303": "\u02dc",
                  "\u0304": "\u02c9", "\u0306": "\u02d8", "\u0307": "\u02d9", "\u0308": "\u00a8",
                  "\u030a": "\u02da", "\u030c": "\u02c7", "\u20d7": "\u2192"}
_G_TAG = re.compile(r"<g\b[^>]*>|</g>")
_BARE_G = re.compile(r'<g id="[^"]*">')
_TSPAN = re.compile(r'<tspan x="([-\d.e]+)" y="([-\d.e]+)" style="([^"]*)">(.)</tspan>')


@lru_cache(maxsize=256)
def _accent_shift(char: str, family: str, oblique: bool, size: float) -> tuple[float, float]:
    """(dx, dy) in SVG units that put the spacing accent's ink where the combining one's was."""
    font = ft2font.FT2Font(findfont(FontProperties(family=family, style="italic" if oblique else "normal")))
    font.set_size(size, 72)
    boxes = [font.load_char(ord(c), flags=_NO_HINTING).bbox
             for c in (char, SPACING_ACCENT[char])]
    (x0, _, _, top0), (x1, _, _, top1) = boxes
    return (x0 - x1) / 64.0, -(top0 - top1) / 64.0


def _spacing_accents(svg: str) -> str:
    def swap(m):
        x, y, style, char = m.groups()
        if char not in SPACING_ACCENT:
            return m.group(0)
        size = re.search(r"font-size: ([\d.]+)px", style)
        family = re.search(r"font-family: '([^']+)'", style)
        if not (size and family):
            return m.group(0)
        dx, dy = _accent_shift(char, family.group(1), "oblique" in style or "italic" in style,
                               float(size.group(1)))
        return (f'<tspan x="{float(x) + dx:.6g}" y="{float(y) + dy:.6g}" style="{style}">'
                f"{SPACING_ACCENT[char]}</tspan>")
    return _TSPAN.sub(swap, svg)


def _flatten(svg: str) -> str:
    """Drop matplotlib's ``<g id=...>`` wrappers that carry nothing but an id (about two in three
    elements of a plot) with their closing tags; the drawing is unchanged and WeasyPrint, whose
    cost is per element, renders the PDF about twice as fast."""
    out, stack, last = [], [], 0
    for tag in _G_TAG.finditer(svg):
        text = tag.group(0)
        if text.endswith("/>"):
            continue
        if text == "</g>":
            drop = stack.pop()
        else:
            drop = _BARE_G.fullmatch(text) is not None
            stack.append(drop)
        if drop:
            out.append(svg[last:tag.start()])
            last = tag.end()
    out.append(svg[last:])
    return "".join(out)


def inline_svg(svg: str) -> str:
    """The SVG element alone (no XML prolog, no metadata), flattened, with spacing accents."""
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg[svg.index("<svg"):], count=1, flags=re.S)
    return _spacing_accents(_flatten(svg))


def close_figure(fig) -> None:
    """Release ``fig`` (pyplot keeps the figures it made until they are closed)."""
    import matplotlib.pyplot as plt
    plt.close(fig)


def figure_svg(fig) -> str:
    """``fig`` as an inline ``<svg>`` element (the figure is closed afterwards)."""
    buf = io.StringIO()
    try:
        with style.style():
            fig.savefig(buf, format="svg", metadata={"Date": None}, **style.save_options(fig))
    finally:
        close_figure(fig)
    return inline_svg(buf.getvalue())


def equation_svg(equation: str, fontsize: float = 13) -> str:
    """One line of matplotlib mathtext (``$...$`` added if absent) as an inline ``<svg>``;
    raises ``ValueError`` if mathtext cannot parse it."""
    text = equation.strip()
    if "$" not in text:
        text = f"${text}$"
    buf = io.StringIO()
    with matplotlib.rc_context(SVG_RC):
        fig = Figure(figsize=(0.1, 0.1))
        fig.text(0, 0, text, fontsize=fontsize)
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.03, transparent=True,
                    metadata={"Date": None})
    return inline_svg(buf.getvalue())
