"""Write a built report: ``report.html``, ``report.pdf`` (WeasyPrint), ``summary.json`` and every
figure with its data under ``figures/``, atomically."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from rtrl_validation.simulations.records import atomic_write, write_json
from rtrl_validation.simulations.runner import one_line

from .build import Report
from .html import render_html

FORMATS = ("html", "pdf")


def write_pdf(html: str, path: str | Path) -> str | None:
    """Render ``html`` to ``path`` with WeasyPrint; return ``None`` on success, else one line
    saying why the PDF was skipped (WeasyPrint missing, its libraries missing, or a render error)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import HTML
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError when Pango cannot be loaded
        return f"PDF skipped: WeasyPrint cannot be loaded ({one_line(f'{type(e).__name__}: {e}')})"
    for name in ("weasyprint", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        atomic_write(path, lambda f: HTML(string=html).write_pdf(f))
    except Exception as e:  # noqa: BLE001
        return f"PDF skipped: WeasyPrint failed ({one_line(f'{type(e).__name__}: {e}')})"
    return None


def write_report(report: Report, out_dir: str | Path, formats=FORMATS) -> tuple[dict[str, Path], list[str]]:
    """Write ``summary.json``, the figures (``figures/NAME.{svg,pdf,png,csv}``) and the requested
    formats into ``out_dir``; return ``({"summary": path, "figures": folder, "html": path, "pdf": path},
    messages)`` (a skipped PDF is a message)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": write_json(out_dir / "summary.json", report.summary())}
    messages = []
    paths["figures"] = out_dir / "figures"
    html = render_html(report, figures_dir=paths["figures"])
    if "html" in formats:
        paths["html"] = atomic_write(out_dir / "report.html", html)
    if "pdf" in formats:
        problem = write_pdf(html, out_dir / "report.pdf")
        if problem:
            messages.append(problem)
        else:
            paths["pdf"] = out_dir / "report.pdf"
    return paths, messages
