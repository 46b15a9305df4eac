"""The report as one self-contained HTML page (inline CSS and SVG, no network).

Order: title, summary table of every verdict, one section per experiment (method, equation,
configuration, verdicts with evidence, figures, tables, notes, failed/diverged runs), provenance
appendix.  The same page is what WeasyPrint turns into the PDF, so the CSS carries print rules.
"""
from __future__ import annotations

import json
import math
import re
from html import escape

import numpy as np

from rtrl_validation.analysis.sections import Table
from rtrl_validation.simulations.runner import one_line

from .build import Report, SectionResult, status_counts, status_of
from .figures import equation_svg, figure_svg

TITLE = "RTRL validation report"

CSS = """
@page { size: A4; margin: 16mm 14mm 18mm;
        @bottom-center { content: "page " counter(page) " of " counter(pages); font-size: 8pt; color: #666; } }
body { font-family: "DejaVu Sans", "Helvetica", sans-serif; font-size: 9.5pt; line-height: 1.35;
       color: #1b1b1b; max-width: 62em; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 18pt; margin: 0 0 .2em; }
h2 { font-size: 13.5pt; border-bottom: 1.5px solid #444; padding-bottom: 2px; margin-top: 1.6em; }
h3 { font-size: 10.5pt; margin: 1.1em 0 .3em; }
h2, h3 { break-after: avoid; }
section.experiment, section.appendix { break-before: page; }
p.meta { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 .9em; font-size: 8.3pt; }
caption { caption-side: top; text-align: left; font-style: italic; color: #444; padding-bottom: 2px; }
th, td { border: 1px solid #c8c8c8; padding: 2px 5px; text-align: left; vertical-align: top; }
table { table-layout: fixed; }
td { overflow-wrap: break-word; }
th { background: #eef0f2; }
tr.group td { background: #f6f7f8; font-weight: bold; padding-top: 4px; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.code, code { font-family: "DejaVu Sans Mono", monospace; font-size: 7.8pt; }
.badge { display: inline-block; padding: 0 5px; border-radius: 3px; font-weight: bold; font-size: 8pt;
         color: #fff; white-space: nowrap; }
.PASS { background: #1a7f37; } .FAIL { background: #c62828; } .NOT-RUN { background: #7a7a7a; }
.INCONCLUSIVE { background: #b26a00; }
.overall { font-size: 11pt; margin: .4em 0 .8em; }
.method { margin: .3em 0; }
.equation { margin: .4em 0 .6em 1.5em; }
.equation svg { max-width: 100%; height: auto; }
figure { margin: .8em 0; break-inside: avoid; text-align: center; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 8.5pt; color: #333; text-align: left; margin-top: .2em; }
ul.failures li { color: #8a1c1c; }
pre.error { background: #fbeaea; border: 1px solid #e0b4b4; padding: .5em; font-size: 7.5pt;
            white-space: pre-wrap; overflow-wrap: anywhere; }
a { color: #0b5cad; text-decoration: none; }
"""


def fmt(value) -> str:
    """A table cell's text: numbers to 4 significant digits (scientific outside [1e-3, 1e5))."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v == 0:
            return "0"
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value,
                          separators=(", ", ": "), default=str)
    return str(value)


_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)([eE][-+]?\d+)?%?|[-+]?(inf|nan)")


def _is_num(value) -> bool:
    """Numbers, and strings that spell one ("1.25e-16", the way analyses often pre-format)."""
    if isinstance(value, str):
        return _NUMBER.fullmatch(value.strip()) is not None
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class Cell:
    """A table cell: its HTML and the length of its visible text (for the column widths)."""

    def __init__(self, value=None, html: str | None = None, text: str | None = None, num: bool | None = None):
        self.text = fmt(value) if text is None else text
        self.html = escape(self.text) if html is None else html
        self.num = _is_num(value) if num is None else num

    def td(self) -> str:
        return f'<td class="num">{self.html}</td>' if self.num else f"<td>{self.html}</td>"


def _badge(passed: bool | str | None) -> Cell:
    """NOT RUN (``None``), a status string (PASS / FAIL / INCONCLUSIVE) or a bool."""
    label = "NOT RUN" if passed is None else (passed if isinstance(passed, str) else ("PASS" if passed else "FAIL"))
    return Cell(html=f'<span class="badge {label.replace(" ", "-")}">{label}</span>', text=label + "___")


class Group:
    """A full-width heading row inside a :func:`grid` table."""

    def __init__(self, html: str):
        self.html = html


def grid(columns: list[str], rows: list, caption: str = "") -> str:
    """An HTML table with fixed column widths proportional to each column's longest text (capped),
    which keeps WeasyPrint's layout fast and the table inside the page width.  ``rows`` hold
    lists of :class:`Cell` objects or plain values, or :class:`Group` heading rows."""
    rows = [r if isinstance(r, Group) else [c if isinstance(c, Cell) else Cell(c) for c in r] for r in rows]
    cells = [r for r in rows if not isinstance(r, Group)]
    widths = []
    for i, name in enumerate(columns):
        longest = max([len(c.text) * (1.25 if c.num else 1.0)              # digits are wide
                       for c in (row[i] for row in cells if i < len(row))], default=0)
        word = max((len(w) for w in str(name).split()), default=1)
        widths.append(min(max(longest, 1.2 * word, 3), 40) + 3)      # + padding; headers are bold
    cols = "".join(f'<col style="width: {100 * w / sum(widths):.1f}%">' for w in widths)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join(f'<tr class="group"><td colspan="{len(columns)}">{r.html}</td></tr>' if isinstance(r, Group)
                   else "<tr>" + "".join(c.td() for c in r) + "</tr>" for r in rows)
    caption = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{caption}<colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_html(table: Table) -> str:
    return grid(table.columns, table.rows, table.caption)


def _counts(verdicts) -> str:
    """"12 pass, 1 fail, 3 inconclusive" (zero counts other than pass left out)."""
    c = status_counts(verdicts)
    return ", ".join(f"{n} {k}" for k, n in c.items() if n or k == "pass")


def _evidence(v: dict) -> str:
    """The evidence line of a verdict with its rule, interval, resolution, control and family."""
    parts = [v.get("evidence") or ""]
    if v.get("claim"):
        parts.append(f"claim: {v['claim']}" + (f" ({v['source']})" if v.get("source") else ""))
    for key in ("rule", "resolution", "control", "family"):
        if v.get(key):
            parts.append(f"{key}: {v[key]}")
    return " | ".join(p for p in parts if p)


def summary_html(report: Report) -> str:
    verdicts = report.verdicts
    rows = []
    for number, s in enumerate(report.sections, start=1):
        counts = _badge(None).html if s.status == "not run" else _counts(s.verdicts)
        rows.append(Group(f'<a href="#sec-{escape(s.experiment)}">{number}. {escape(s.section.title)}</a>'
                          f" · {counts}"))
        rows += [[v["check"], _badge(status_of(v)), v["value"], v["bound"]] for v in s.verdicts]
    overall = (f'<p class="overall">{_badge(report.passed).html} {len(verdicts)} checks: {_counts(verdicts)}'
               + (f"; not run: {escape(', '.join(report.not_run))}" if report.not_run else "") + ".</p>")
    return (f'<section class="summary"><h2>Summary</h2>{overall}'
            + grid(["Check", "Result", "Value", "Bound"], rows) + "</section>")


def _equation_html(equation: str) -> str:
    parts = []
    for line in filter(None, (l.strip() for l in equation.splitlines())):
        try:
            parts.append(f'<div class="equation">{equation_svg(line)}</div>')
        except Exception as e:  # noqa: BLE001 - show the source rather than lose the section
            parts.append(f'<div class="equation"><code>{escape(line)}</code> '
                         f"<em>(not rendered: {escape(one_line(str(e)))[:200]})</em></div>")
    return "".join(parts)


def _figure_html(figure) -> str:
    try:
        svg = figure_svg(figure.fig)
    except Exception as e:  # noqa: BLE001
        svg = f'<pre class="error">figure could not be rendered: {escape(one_line(f"{type(e).__name__}: {e}"))}</pre>'
    return f"<figure>{svg}<figcaption>{escape(figure.caption)}</figcaption></figure>"


def section_html(number: int, result: SectionResult) -> str:
    s = result.section
    out = [f'<section class="experiment" id="sec-{escape(result.experiment)}">',
           f"<h2>{number}. {escape(s.title)}</h2>",
           f'<p class="meta">experiment <code>{escape(result.experiment)}</code> · '
           f"{len(result.records)} records · "
           + _badge(result.passed if result.status != "not run" else None).html + "</p>"]
    if s.method:
        out.append(f'<p class="method">{escape(s.method)}</p>')
    if s.equation:
        out.append(_equation_html(s.equation))
    if s.config:
        out.append("<h3>Configuration</h3>" + table_html(Table("", ["key", "value"],
                                                               [[k, v] for k, v in s.config.items()])))
    if result.verdicts:
        out.append("<h3>Verdicts</h3>" + grid(
            ["Check", "Result", "Value", "Bound", "Evidence"],
            [[v["check"], _badge(status_of(v)), v["value"], v["bound"], _evidence(v)] for v in result.verdicts]))
    if s.figures:
        out.append("<h3>Figures</h3>" + "".join(_figure_html(f) for f in s.figures))
    if s.tables:
        out.append("<h3>Tables</h3>" + "".join(table_html(t) for t in s.tables))
    if s.notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in s.notes) + "</ul>")
    if result.failures:
        out.append("<h3>Failed or diverged runs</h3><ul class=\"failures\">"
                   + "".join(f"<li>{escape(f)}</li>" for f in result.failures) + "</ul>")
    if result.error:
        out.append(f'<h3>Analysis error</h3><pre class="error">{escape(result.error)}</pre>')
    out.append("</section>")
    return "".join(out)


def _distinct(values) -> str:
    seen = list(dict.fromkeys(fmt(v) for v in values))
    return ", ".join(seen) if seen else "—"


def _when(iso: str | None) -> str:
    """``2026-01-02T03:04:05.678+00:00`` -> ``2026-01-02 03:04:05``."""
    return (iso or "?")[:19].replace("T", " ")


def provenance_html(report: Report) -> str:
    env = report.environment
    records = [r for s in report.sections for r in s.records]
    about = Table("This report", ["item", "value"], [
        ["generated (UTC)", _when(report.generated)], ["records from", report.source],
        ["profile", report.profile], ["run seed", report.seed],
        ["git revision (renderer)", env["git_revision"] and env["git_revision"]
         + (" (uncommitted changes)" if env.get("git_dirty") else "")],
        ["machine (renderer)", f"{env['hostname']} · {env['platform']} · {env['cpu_count']} CPUs"]])
    runs = Table("Experiments: where and when the records were made", [
        "experiment", "tasks", "seeds", "wall time [s]", "started – finished (UTC)", "machines",
        "git revisions"], [])
    for s in report.sections:
        recs = s.records
        if not recs:
            runs.rows.append([s.experiment, "not run", None, None, None, None, None])
            continue
        prov = [r["provenance"] for r in recs]
        status = [r["status"] for r in recs]
        counts = ", ".join(f"{status.count(k)} {k}" for k in ("ok", "diverged", "failed") if status.count(k))
        runs.rows.append([s.experiment, f"{len(recs)}: {counts}", _distinct(sorted({r["seed"] for r in recs})),
                          float(sum(p["wall_time"] or 0.0 for p in prov)),
                          f"{_when(min(p['started'] for p in prov))} – {_when(max(p['finished'] for p in prov))}",
                          _distinct(f"{p['hostname']} ({p['cpu_count']} CPUs)" for p in prov),
                          _distinct((p["git_revision"] or "none")[:12] for p in prov)])
    packages = sorted({k for r in records for k in r["provenance"]["versions"]} | set(env["versions"]))
    versions = Table("Package versions (records; renderer)", ["package", "records", "renderer"], [
        [name, _distinct(r["provenance"]["versions"].get(name) for r in records),
         env["versions"].get(name)] for name in packages])
    tasks = Table("Wall time per task", ["experiment", "task", "status", "seed", "wall time [s]"],
                  [[r["experiment"], r["task"], r["status"], r["seed"], float(r["provenance"]["wall_time"])]
                   for r in records])
    return ('<section class="appendix" id="provenance"><h2>Appendix: provenance</h2>'
            + "".join(table_html(t) for t in (about, runs, versions, tasks)) + "</section>")


def render_html(report: Report) -> str:
    """The whole report as one HTML string (figures are rendered, then closed)."""
    meta = " · ".join([f"generated {_when(report.generated)} UTC"]
                      + [f"{k} {v}" for k, v in (("profile", report.profile), ("seed", report.seed)) if v is not None]
                      + [f"records from {report.source}"])
    body = [f"<h1>{TITLE}</h1>", f'<p class="meta">{escape(meta)}</p>', summary_html(report)]
    body += [section_html(i, s) for i, s in enumerate(report.sections, start=1)]
    body.append(provenance_html(report))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{TITLE}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
