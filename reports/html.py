"""The report as one self-contained HTML page (inline CSS and SVG, no network).

Order: title; the summary (counts of PASS / FAIL / INCONCLUSIVE per section, then every FAIL and
INCONCLUSIVE with its one-line reason and a link to its evidence); one section per experiment
(method, equation, configuration, verdicts with their rule and evidence, numbered figures and
tables); appendices (long tables grouped by setting, passing checks of long sections, how to
reproduce the report, provenance).  Figures and tables are numbered with anchors
(``#fig-N``, ``#tab-N``), verdicts have anchors (``#v-S-I``).  The same page is what WeasyPrint
turns into the PDF (headings become its outline), so the CSS carries print rules.
"""
from __future__ import annotations

import json
import math
import re
from html import escape
from pathlib import Path

import numpy as np

from rtrl_validation.analysis.sections import Table
from rtrl_validation.simulations.runner import one_line

from .build import Report, SectionResult, status_counts, status_of
from .export import export_figure, figure_name
from .figures import close_figure, equation_svg, figure_svg, inline_svg

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
section.experiment { margin-top: 2em; } section.appendix { break-before: page; } section.summary { break-after: page; }
section.experiment h2 { break-before: auto; }
p.config { font-size: 8pt; color: #333; }
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
ul.issues { padding-left: 1.2em; font-size: 7.5pt; line-height: 1.25; } ul.issues li { margin: 0; }
.mathinline svg { height: 1.1em; width: auto; vertical-align: -0.25em; }
dl.ev { margin: 0; } dl.ev dt { display: inline; font-weight: bold; } dl.ev dd { display: inline; margin: 0; }
dl.ev dd::after { content: ""; display: block; }
pre.cmd { background: #f4f5f6; border: 1px solid #d0d4d8; padding: .4em; font-size: 7.8pt; white-space: pre-wrap; }
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
@media print { body { max-width: none; margin: 0; padding: 0; } }   /* figures (≤ 7.1 in) print at full size */
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


def _status(v: dict | None) -> str:
    """``"PASS"``, ``"FAIL"``, ``"INCONCLUSIVE"`` of a verdict dict; ``"NOT RUN"`` for ``None``."""
    return "NOT RUN" if v is None else status_of(v)


def _badge(status: str) -> Cell:
    return Cell(html=f'<span class="badge {status.replace(" ", "-")}">{status}</span>', text=status + "___")


class Group:
    """A full-width heading row inside a :func:`grid` table."""

    def __init__(self, html: str):
        self.html = html


def grid(columns: list[str], rows: list, caption: str = "", caption_html: bool = False) -> str:
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
    caption = f"<caption>{caption if caption_html else escape(caption)}</caption>" if caption else ""
    return f"<table>{caption}<colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _equation_html(equation: str) -> str:
    parts = []
    for line in filter(None, (l.strip() for l in equation.splitlines())):
        try:
            parts.append(f'<div class="equation">{equation_svg(line)}</div>')
        except Exception as e:  # noqa: BLE001 - show the source rather than lose the section
            parts.append(f'<div class="equation"><code>{escape(line)}</code> '
                         f"<em>(not rendered: {escape(one_line(str(e)))[:200]})</em></div>")
    return "".join(parts)


#: a section shows its first figures; the others go to the appendix
FIGURES_IN_BODY = 2
#: a section table longer than this goes to the appendix, grouped by setting
APPENDIX_ROWS = 6
#: characters of a reason in the summary's list
REASON_CHARS = 150
#: the reason of one summary line (page 1)
SUMMARY_CHARS = 80
#: a section with more passing checks than this lists them in the appendix
PASS_ROWS = 12
_MATH = re.compile(r"\$[^$]+\$")


def rich(text: str) -> str:
    """Escaped ``text`` whose ``$...$`` spans are rendered as inline mathtext SVG (the source is
    kept when mathtext cannot parse it)."""
    out, last = [], 0
    for m in _MATH.finditer(text):
        out.append(escape(text[last:m.start()]))
        try:
            out.append(f'<span class="mathinline">{equation_svg(m.group(0), fontsize=9)}</span>')
        except Exception:  # noqa: BLE001 - show the source rather than lose the caption
            out.append(escape(m.group(0)))
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


class Doc:
    """Numbers figures and tables in reading order, collects the appendix parts and exports
    figures (``figures_dir``) while the page is written."""

    def __init__(self, figures_dir: Path | None = None):
        self.figures_dir = figures_dir
        self.n_figures = self.n_tables = 0
        self.appendix: list[str] = []          # long tables and passing-check lists, in section order
        self.figures: list[tuple[str, str, str]] = []     # (anchor, name, caption)

    def table(self, table: Table, *, grouped: bool = False) -> str:
        self.n_tables += 1
        anchor = f"tab-{self.n_tables}"
        rows = table.rows
        if grouped and table.group_by:
            rows, last = [], None
            for row in table.rows:
                key = tuple(row[:table.group_by])
                if key != last:
                    rows.append(Group(escape(", ".join(f"{c} = {fmt(v)}" for c, v in
                                                        zip(table.columns, key)))))
                    last = key
                rows.append(row[table.group_by:])
            columns = table.columns[table.group_by:]
        else:
            columns = table.columns
        caption = f'<a class="num" href="#{anchor}">Table {self.n_tables}</a>. ' + rich(table.caption)
        return f'<div id="{anchor}">' + grid(columns, rows, caption=caption, caption_html=True) + "</div>"

    def figure(self, figure, name: str) -> str:
        self.n_figures += 1
        anchor = f"fig-{self.n_figures}"
        note, svg = "", None
        if self.figures_dir is not None:
            try:                                   # the page shows the exported SVG: drawn once
                svg = inline_svg(export_figure(figure.fig, self.figures_dir, name)["svg"].read_text())
                close_figure(figure.fig)
            except Exception as e:  # noqa: BLE001 - the page still shows the figure
                note = f" (not exported: {one_line(f'{type(e).__name__}: {e}')})"
        try:
            svg = figure_svg(figure.fig) if svg is None else svg
        except Exception as e:  # noqa: BLE001
            svg = f'<pre class="error">figure could not be rendered: {escape(one_line(f"{type(e).__name__}: {e}"))}</pre>'
        self.figures.append((anchor, name, figure.caption))
        return (f'<figure id="{anchor}">{svg}<figcaption><a class="num" href="#{anchor}">Figure {self.n_figures}</a>'
                f" <code>{escape(name)}</code>. {rich(figure.caption)}{escape(note)}</figcaption></figure>")


def table_html(table: Table, doc: Doc | None = None) -> str:
    return (doc or Doc()).table(table)


def _anchor(number: int, i: int) -> str:
    return f"v-{number}-{i}"


def counts(verdicts: list[dict]) -> dict[str, int]:
    """``{"PASS": n, "FAIL": n, "INCONCLUSIVE": n}``."""
    return {k.upper(): n for k, n in status_counts(verdicts).items()}


def _counts_text(c: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in c.items() if n or k == "PASS")


def summary_html(report: Report) -> str:
    """Page 1: overall counts, counts per section, and every FAIL and INCONCLUSIVE with its reason."""
    total = counts(report.verdicts)
    overall = "PASS" if not (total["FAIL"] or total["INCONCLUSIVE"]) else (
        "FAIL" if total["FAIL"] else "INCONCLUSIVE")
    head = (f'<p class="overall">{_badge(overall).html} {sum(total.values())} checks: {_counts_text(total)}'
            + (f"; not run: {escape(', '.join(report.not_run))}" if report.not_run else "") + ".</p>")
    rows, issues, n_figures = [], [], 0
    for number, s in enumerate(report.sections, start=1):
        c = counts(s.verdicts)
        link = f'<a href="#sec-{escape(s.experiment)}">{number}. {escape(s.section.title)}</a>'
        status = "NOT RUN" if s.status == "not run" else (
            "FAIL" if c["FAIL"] else "INCONCLUSIVE" if c["INCONCLUSIVE"] else "PASS")
        figures = range(n_figures + 1, n_figures + len(s.section.figures) + 1)     # numbered in reading order
        n_figures += len(s.section.figures)
        rows.append([Cell(html=link, text=s.section.title), _badge(status), c["PASS"], c["FAIL"], c["INCONCLUSIVE"],
                     Cell(html=" ".join(f'<a href="#fig-{i}">{i}</a>' for i in figures) or "—",
                          text=" ".join(map(str, figures)))])
        families: dict[str, list[tuple[int, dict]]] = {}
        for i, v in enumerate(s.verdicts, start=1):
            if _status(v) != "PASS":
                families.setdefault(_family(v["check"]), []).append((i, v))
        for name, members in families.items():          # one line per check family, its worst member
            i, v = max(members, key=lambda m: SEVERITY[_status(m[1])])
            many = (f" ({len(members)} settings: {_counts_text(counts([m for _, m in members]))})"
                    if len(members) > 1 else "")
            issues.append(f'<li>{_badge(_status(v)).html} <a href="#{_anchor(number, i)}">{number}.{i}</a> '
                          f"{escape(name if many else v['check'])}{escape(many)}: "
                          f"{escape(_short(v.get('evidence') or '', SUMMARY_CHARS))}</li>")
    table = grid(["Section", "Result", "PASS", "FAIL", "INCONCLUSIVE", "Figures"], rows)
    n_issues = total["FAIL"] + total["INCONCLUSIVE"]
    listing = (f'<h3>Every check that did not pass ({n_issues}; one line per check, its worst setting '
               f'shown)</h3><ul class="issues">' + "".join(issues) + "</ul>"
               if issues else "<p>Every check passed.</p>")
    return f'<section class="summary" id="summary"><h2>Summary</h2>{head}{table}{listing}</section>'


def _short(text: str, limit: int = REASON_CHARS) -> str:
    """``text`` cut to one line of the summary (the full text is in the section)."""
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + " …"


def _rule(v: dict) -> str:
    """The decision rule (which direction passes, in what unit) with the value and the bound it
    was compared with, and which side of the bound the value lies on."""
    parts = [v["rule"]] if v.get("rule") else []
    value, bound = v.get("value"), v.get("bound")
    if value is not None and bound is not None:
        side = "<" if value < bound else ">" if value > bound else "="
        parts.append(f"value {fmt(value)} {side} bound {fmt(bound)}")
    elif value is not None or bound is not None:
        parts.append(f"value {fmt(value)}" if value is not None else f"bound {fmt(bound)}")
    return ": ".join(parts)


#: statistical evidence fields, in the order they are shown
EVIDENCE = (("claim", "claim"), ("source", "source"), ("statistic", "statistic"), ("effect", "effect"),
            ("interval", "95% interval"), ("resolution", "margin / MDE"), ("control", "control"),
            ("family", "family"))


def _evidence(v: dict) -> Cell:
    text = v.get("evidence") or ""
    items = []
    for key, label in EVIDENCE:
        value = v.get(key)
        if value in (None, "", [], ()):
            continue
        shown = f"[{fmt(value[0])}, {fmt(value[1])}]" if key == "interval" else fmt(value)
        items.append(f"<dt>{label}:</dt> <dd>{escape(shown)}</dd>")
        text += f" {label}: {shown}"
    html = escape(v.get("evidence") or "") + (f'<dl class="ev">{"".join(items)}</dl>' if items else "")
    return Cell(html=html, text=text)


def _verdict_row(number: int, i: int, v: dict, anchor: str | None = None) -> list:
    """A verdict's full row (rule and every evidence field); ``anchor`` its id."""
    anchor = anchor or _anchor(number, i)
    return [Cell(html=f'<a id="{anchor}" href="#{anchor}">{number}.{i}</a>', text=f"{number}.{i}"),
            Cell(v["check"]), _badge(_status(v)), Cell(_rule(v)), _evidence(v)]


def _family(check: str) -> str:
    """A check without its setting (``[task]`` or ``(k=16, d=0.25)``): the rows one section row
    stands for."""
    return re.sub(r"\s*(\[[^\]]*\]|\([^)]*=[^)]*\))", "", check).strip()


SEVERITY = {"FAIL": 2, "INCONCLUSIVE": 1, "PASS": 0}


def _compact_rows(number: int, rows: list[tuple[int, dict]]) -> list[list]:
    """One row per check family (the same check at several settings), worst status first shown:
    the rule and the one-line reason of its worst member; its number links to the full rows in the
    appendix.  Every member keeps its anchor (the summary links to it)."""
    families: dict[str, list[tuple[int, dict]]] = {}
    for i, v in rows:
        families.setdefault(_family(v["check"]), []).append((i, v))
    out = []
    for name, members in families.items():
        i0, worst = max(members, key=lambda m: SEVERITY[_status(m[1])])
        anchors = "".join(f'<a id="{_anchor(number, i)}"></a>' for i, _ in members)
        label = f"{number}.{members[0][0]}" + (f"–{members[-1][0]}" if len(members) > 1 else "")
        tally = ""
        if len(members) > 1:
            c = counts([v for _, v in members])
            tally = f"{len(members)} settings ({_counts_text(c)}); worst: {worst['check']}: "
        out.append([Cell(html=anchors + f'<a href="#d{_anchor(number, i0)}">{label}</a>', text=label),
                    Cell(name), _badge(_status(worst)), Cell(_rule(worst)),
                    Cell(_short(tally + (worst.get("evidence") or ""), 2 * REASON_CHARS))])
    return out


VERDICT_COLUMNS = ["#", "Check", "Result", "Rule: value against bound", "Evidence"]
COMPACT_COLUMNS = ["# (details)", "Check", "Result", "Rule: value against bound", "Reason"]


def section_html(number: int, result: SectionResult, doc: Doc | None = None) -> str:
    doc = doc or Doc()
    s = result.section
    status = "NOT RUN" if result.status == "not run" else (
        "PASS" if result.passed else "FAIL" if counts(result.verdicts)["FAIL"] else "INCONCLUSIVE")
    out = [f'<section class="experiment" id="sec-{escape(result.experiment)}">',
           f"<h2>{number}. {escape(s.title)}</h2>",
           f'<p class="meta">experiment <code>{escape(result.experiment)}</code> · '
           f"{len(result.records)} records · {_counts_text(counts(result.verdicts))} · "
           + _badge(status).html + "</p>"]
    if s.method:
        out.append(f'<p class="method">{rich(s.method)}</p>')
    if s.equation:
        out.append(_equation_html(s.equation))
    if s.config:
        out.append('<p class="config"><b>Configuration</b> (as TOML in the appendix, '
                   '<a href="#config-toml">reproducing this report</a>): '
                   + escape(" · ".join(f"{k} = {fmt(v)}" for k, v in s.config.items())) + "</p>")
    if result.verdicts:
        # the section shows every FAIL and INCONCLUSIVE (and the passing checks when they are few)
        # in one compact row each; every verdict's full evidence is in the appendix
        numbered = list(enumerate(result.verdicts, start=1))
        passing = [(i, v) for i, v in numbered if _status(v) == "PASS"]
        in_body = {i for i, v in numbered if _status(v) != "PASS" or len(passing) <= PASS_ROWS}
        out.append("<h3>Verdicts</h3>")
        if in_body:
            out.append(grid(COMPACT_COLUMNS, _compact_rows(number, [(i, v) for i, v in numbered if i in in_body])))
        anchor = f"verdicts-{escape(result.experiment)}"
        moved = len(numbered) - len(in_body)
        out.append(f'<p>{"%d passing checks and the" % moved if moved else "The"} full evidence of every verdict '
                   f'(claim, statistic, interval, resolution, control, family): '
                   f'<a href="#{anchor}">verdicts of section {number}</a> in the appendix.</p>')
        doc.appendix.append(
            f'<h3 id="{anchor}">Verdicts of section {number}: {escape(s.title)}</h3>'
            + grid(VERDICT_COLUMNS, [_verdict_row(number, i, v, ("d" if i in in_body else "") + _anchor(number, i))
                                     for i, v in numbered]))
    if s.figures:
        named = [(f, figure_name(result.experiment, j)) for j, f in enumerate(s.figures, start=1)]
        out.append("<h3>Figures</h3>" + "".join(doc.figure(f, name) for f, name in named[:FIGURES_IN_BODY]))
        if len(named) > FIGURES_IN_BODY:
            anchor = f"figures-{escape(result.experiment)}"
            out.append(f'<p>{len(named) - FIGURES_IN_BODY} more figures: <a href="#{anchor}">figures of section '
                       f"{number}</a> in the appendix.</p>")
            doc.appendix.append(f'<h3 id="{anchor}">More figures of section {number}: {escape(s.title)}</h3>'
                                + "".join(doc.figure(f, name) for f, name in named[FIGURES_IN_BODY:]))
    if s.tables:
        body = []
        for t in s.tables:
            if len(t.rows) > APPENDIX_ROWS:
                html = doc.table(t, grouped=True)
                anchor = re.search(r'id="(tab-\d+)"', html).group(1)
                doc.appendix.append(f"<h3>From section {number}: {escape(s.title)}</h3>" + html)
                body.append(f'<p>{len(t.rows)} rows: <a href="#{anchor}">Table {anchor[4:]}</a> in the appendix '
                            f"({rich(t.caption)})</p>")
            else:
                body.append(doc.table(t))
        out.append("<h3>Tables</h3>" + "".join(body))
    if s.notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{rich(n)}</li>" for n in s.notes) + "</ul>")
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


def reproduce_html(report: Report, doc: Doc) -> str:
    """The command, the configuration as TOML that ``--config`` accepts, each figure's command
    and the per-task seeds."""
    configs = {s.experiment: s.records[-1]["experiment_config"] for s in report.sections if s.records}
    seeds = sorted({r["seed"] for s in report.sections for r in s.records})
    seed = report.seed if report.seed is not None else (seeds[0] if len(seeds) == 1 else 0)
    command = (f"rtrl-validate report --profile {report.profile or 'quick'} --seed {seed} "
               "--config report-config.toml --out DIR")
    rebuild = f"rtrl-validate report --from {report.source}"
    figures = Table("Every figure: its files under figures/ (.svg, .pdf, .png, and .csv with the plotted "
                    "data) and the command that regenerates it from the records",
                    ["figure", "name", "command"],
                    [[Cell(html=f'<a href="#{a}">{a.replace("fig-", "Figure ")}</a>', text=a), n,
                      f"rtrl-validate figure {n} --from {report.source}"] for a, n, _ in doc.figures])
    tasks = Table("Per-task seeds: task i of a run with seed S draws from numpy SeedSequence(S, spawn_key=(i,))",
                  ["experiment", "task", "task index i", "run seed S"],
                  [[r["experiment"], r["task"], r.get("task_index"), r["seed"]]
                   for s in report.sections for r in s.records])
    return ('<section class="appendix" id="reproduce"><h2>Appendix: reproducing this report</h2>'
            f"<p>Recompute every record and the report (with the configuration below saved as "
            f"<code>report-config.toml</code>):</p><pre class=\"cmd\">{escape(command)}</pre>"
            f"<p>Rebuild the report from the stored records (nothing is computed):</p>"
            f"<pre class=\"cmd\">{escape(rebuild)}</pre>"
            "<h3>Resolved configuration (TOML for --config)</h3>"
            f'<pre class="cmd" id="config-toml">{escape(to_toml(configs))}</pre>'
            + doc.table(figures) + doc.table(tasks) + "</section>")


def to_toml(configs: dict[str, dict]) -> str:
    """``{experiment: config}`` as TOML: one ``[experiment]`` table each (what ``--config`` reads)."""
    out = []
    for name, config in configs.items():
        out.append(f"[{_toml_key(name)}]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in (config or {}).items() if v is not None]
        out.append("")
    return "\n".join(out)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                                if v is not None) + " }"
    return json.dumps(str(value))


def provenance_html(report: Report, doc: Doc | None = None) -> str:
    doc = doc or Doc()
    env = report.environment
    records = [r for s in report.sections for r in s.records]
    about = Table("This report", ["item", "value"], [
        ["generated (UTC)", _when(report.generated)], ["records from", report.source],
        ["profile", report.profile], ["run seed", report.seed],
        ["git revision (renderer)", env["git_revision"] and env["git_revision"]
         + (" (uncommitted changes)" if env.get("git_dirty") else "")],
        ["machine (renderer)", f"{env['hostname']} · {env['platform']} · {env['cpu_count']} CPUs"],
        *[["bad record left out", line] for line in report.skipped]])
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
        n = ", ".join(f"{status.count(k)} {k}" for k in ("ok", "diverged", "failed") if status.count(k))
        runs.rows.append([s.experiment, f"{len(recs)}: {n}", _distinct(sorted({r["seed"] for r in recs})),
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
            + "".join(doc.table(t) for t in (about, runs, versions, tasks)) + "</section>")


def render_html(report: Report, figures_dir: str | Path | None = None) -> str:
    """The whole report as one HTML string (figures are rendered, then closed); with
    ``figures_dir`` every figure is also written there (:func:`~reports.export.export_figure`)."""
    doc = Doc(None if figures_dir is None else Path(figures_dir))
    meta = " · ".join([f"generated {_when(report.generated)} UTC"]
                      + [f"{k} {v}" for k, v in (("profile", report.profile), ("seed", report.seed)) if v is not None]
                      + [f"records from {report.source}"])
    body = [f"<h1>{TITLE}</h1>", f'<p class="meta">{escape(meta)}</p>', summary_html(report)]
    body += [section_html(i, s, doc) for i, s in enumerate(report.sections, start=1)]
    if doc.appendix:
        body.append('<section class="appendix" id="appendix-tables"><h2>Appendix: long tables and passing checks'
                    "</h2>" + "".join(doc.appendix) + "</section>")
    body.append(reproduce_html(report, doc))
    body.append(provenance_html(report, doc))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{TITLE}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
