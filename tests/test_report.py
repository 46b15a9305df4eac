"""The report: HTML and PDF content, failures shown, rebuild from records without recomputation."""
from __future__ import annotations

import json
import os
import re
import sys
from types import SimpleNamespace

import pytest
from pypdf import PdfReader

from rtrl_validation.reports import cli, registry
from rtrl_validation.reports.figures import SPACING_ACCENT, equation_svg, figure_svg
from rtrl_validation.reports.html import fmt
from rtrl_validation.simulations.records import load_records

try:
    from helpers import fakes, in_process, use_fakes
except ImportError:  # tests collected as a package
    from tests.helpers import fakes, in_process, use_fakes


def snapshot(folder) -> dict:
    """Every record file in ``folder`` with its start time and modification time: unchanged when
    nothing was recomputed, whichever backend ran the tasks."""
    return {r["path"]: (r["provenance"]["started"], os.stat(r["path"]).st_mtime_ns) for r in load_records(folder)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One full report (HTML + PDF) of a passing, a failing, a broken experiment and a broken
    analysis, then a rebuild of it ``--from`` its records into another folder."""
    out, rebuilt = tmp_path_factory.mktemp("report"), tmp_path_factory.mktemp("rebuilt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "SECTIONS", fakes(passing=True, failing=True, broken=True, broken_analysis_=True))
        in_process(mp)
        code = cli.main(["report", "--out", str(out), "--quiet", "--fail-on", "fail"])
        before = snapshot(out)
        for exp, _ in registry.SECTIONS:
            mp.setattr(exp, "run_task", None)           # any recomputation would raise TypeError
        code_from = cli.main(["report", "--from", str(out), "--out", str(rebuilt), "--format", "html"])
        assert snapshot(out) == before and len(before) == 12
    return SimpleNamespace(out=out, rebuilt=rebuilt, code=code, code_from=code_from,
                           html=(out / "report.html").read_text(),
                           summary=json.loads((out / "summary.json").read_text()))


def test_exit_status_is_0_once_written_and_1_with_fail_on(built):
    assert built.code == 1 and built.code_from == 0           # --fail-on fail; default: written is success
    assert (built.out / "report.html").is_file() and (built.out / "report.pdf").is_file()


def test_rebuild_from_records_gives_identical_verdicts(built):
    again = json.loads((built.rebuilt / "summary.json").read_text())
    assert again["verdicts"] == built.summary["verdicts"]
    assert again["counts"] == built.summary["counts"] and again["passed"] is False
    assert not (built.rebuilt / "report.pdf").exists() and not (built.rebuilt / "records").exists()


def test_summary_json_counts_every_verdict(built):
    s = built.summary
    assert s["counts"] == {"pass": 3 + 0 + 1 + 3, "fail": 0 + 3 + 1 + 1, "inconclusive": 0, "not_run": 0}
    assert s["experiments"]["fake-broken"] == {"records": 3, "ok": 1, "diverged": 1, "failed": 1, "seeds": [0],
                                               "wall_time": pytest.approx(s["experiments"]["fake-broken"]["wall_time"])}
    checks = {(v["experiment"], v["check"]): v["passed"] for v in s["verdicts"]}
    assert checks[("fake-broken", "tasks completed")] is False
    assert checks[("fake-badanalysis", "analysis ran")] is False
    assert checks[("fake-pass", "mean small fake-pass")] is True


def test_html_is_self_contained_with_inline_svg(built):
    html = built.html
    assert "<script" not in html and "<link" not in html and "<img" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("<svg") >= 3 + 3                    # one figure and one equation per good section
    assert ">sample index</tspan>" in html or ">sample index</text>" in html   # text stays text


def test_html_shows_sections_failures_and_provenance(built):
    html = built.html
    for text in ("RTRL validation report", "Summary", "Fake section fake-pass", "Configuration", "Verdicts",
                 "Running sums of the samples", "Means", "A note.", "Draws normal samples",
                 "t1: failed: RuntimeError: boom in task t1 second line", "t2: diverged: NaN at step 7",
                 "Analysis error", "ZeroDivisionError: analysis blew up", "fake-badanalysis (analysis failed)",
                 "Appendix: provenance", "Package versions", "numpy", "Wall time per task", "git revision"):
        assert text in html, text
    assert html.index("Summary") < html.index("<h2>1. Fake section fake-pass") < html.index("Appendix: provenance")
    assert html.count('class="badge FAIL"') >= 5


def test_pdf_opens_and_holds_the_verdict_table_as_text(built):
    reader = PdfReader(built.out / "report.pdf")
    assert len(reader.pages) >= 5
    first = reader.pages[0].extract_text()
    for text in ("RTRL validation report", "Summary", "mean small fake-fail", "|mean| =",
                 "tasks completed", "analysis ran", "PASS", "FAIL", "INCONCLUSIVE"):
        assert text in first, text                      # every non-passing check with its reason on page 1
    assert "mean small fake-pass" not in first           # passing checks are in their sections
    everything = " ".join(page.extract_text() for page in reader.pages)
    assert "boom in task t1" in everything and "NaN at step 7" in everything
    assert re.search(r"sample\s*index", everything)          # a figure's axis label is real text


def test_rerun_into_the_same_folder_reuses_records(monkeypatch, capsys, tmp_path):
    use_fakes(monkeypatch, passing=True)
    assert cli.main(["report", "--out", str(tmp_path), "--format", "html", "--quiet"]) == 0
    first = snapshot(tmp_path)
    assert cli.main(["report", "--out", str(tmp_path), "--format", "html", "--quiet"]) == 0
    assert snapshot(tmp_path) == first and len(first) == 3
    assert "verdicts: 3 PASS, 0 FAIL" in capsys.readouterr().out
    # another seed into the same folder would mix two configurations: refused, nothing changes
    assert cli.main(["report", "--out", str(tmp_path), "--format", "html", "--quiet", "--seed", "1"]) == 2
    assert "holds results of another configuration (seed 0 -> 1)" in capsys.readouterr().err
    assert snapshot(tmp_path) == first


def test_all_pass_exits_0_and_prints_paths(tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch, passing=True)
    monkeypatch.setitem(sys.modules, "weasyprint", None)       # WeasyPrint cannot be imported
    code = cli.main(["report", "--out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"html: {tmp_path / 'report.html'}" in out and "verdicts: 3 PASS, 0 FAIL" in out
    assert "PDF skipped: WeasyPrint cannot be loaded" in out and not (tmp_path / "report.pdf").exists()
    assert json.loads((tmp_path / "summary.json").read_text())["passed"] is True


def test_from_marks_experiments_without_records_as_not_run(built, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(registry, "SECTIONS", fakes(passing=True, failing=True)
                        + [(fakes(passing=True)[0][0].__class__("fake-never"), None)])
    code = cli.main(["report", "--from", str(built.out), "--out", str(tmp_path), "--format", "html"])
    out = capsys.readouterr().out
    assert code == 0 and "not run: fake-never" in out
    html = (tmp_path / "report.html").read_text()
    assert "NOT RUN" in html and "it was not run" in html
    assert json.loads((tmp_path / "summary.json").read_text())["not_run"] == ["fake-never"]


def test_equations_render_as_text_with_spacing_accents():
    svg = equation_svg(r"\hat g_t = c_t \tilde J_t,\ \bar x")
    assert "<text" in svg and "DejaVuSans-" not in svg          # glyphs as text, not outline paths
    assert not any(c in svg for c in SPACING_ACCENT), "combining accents left in the SVG"
    assert all(SPACING_ACCENT[c] in svg for c in ("\u0302", "\u0303", "\u0304"))
    with pytest.raises(ValueError):
        equation_svg(r"\frac{1}{")


def test_figure_svg_is_flat_wellformed_and_keeps_text():
    from xml.etree import ElementTree

    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], "o-")
    ax.set_xlabel("step $t$")
    svg = figure_svg(fig)
    root = ElementTree.fromstring(svg)                              # well-formed, one element
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert not re.search(r'<g id="[^"]*">', svg)                   # id-only groups are gone
    assert "<use" in svg and 'xlink:href="#' in svg and "step" in svg


def test_bad_equation_and_figure_do_not_break_the_section(tmp_path, monkeypatch):
    from rtrl_validation.analysis.sections import Figure, Section
    from rtrl_validation.reports.build import analyse
    from rtrl_validation.reports.html import section_html

    records = [{"experiment": "x", "task": "t", "status": "ok", "reason": "", "verdicts": [],
                "experiment_config": {}, "seed": 0, "provenance": {}}]
    section = Section("X", "x", "method", equation=r"\frac{1}{", figures=[Figure("broken", object())])
    html = section_html(1, analyse("x", lambda recs: section, records))
    assert "not rendered" in html and "figure could not be rendered" in html


@pytest.mark.parametrize("value,text", [(None, "—"), (True, "yes"), (3, "3"), (0.0, "0"), (1.5e-9, "1.500e-09"),
                                        (0.125, "0.125"), (float("nan"), "nan"), ([1, 2], "[1, 2]"), ("a", "a")])
def test_fmt(value, text):
    assert fmt(value) == text


def test_appendix_configuration_is_toml_that_config_accepts(built, tmp_path, monkeypatch, capsys):
    import html as htmllib
    import tomllib

    text = re.search(r'<pre class="cmd" id="config-toml">(.*?)</pre>', built.html, re.S).group(1)
    tables = tomllib.loads(htmllib.unescape(text))
    records = {r["experiment"]: r["experiment_config"] for r in load_records(built.out)}
    assert tables == records and set(tables) == {"fake-pass", "fake-fail", "fake-broken", "fake-badanalysis"}
    path = tmp_path / "report-config.toml"
    path.write_text(htmllib.unescape(text))
    use_fakes(monkeypatch, passing=True, failing=True, broken=True, broken_analysis_=True)
    assert cli.main(["run", "fake-pass", "--config", str(path), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert "rtrl-validate report --profile quick --seed 0" in built.html
    assert "rtrl-validate figure fake-pass-1 --from" in built.html


def test_summary_lists_every_non_passing_check_with_a_link_to_its_row(built):
    summary = built.html[built.html.index('id="summary"'):built.html.index('class="experiment"')]
    links = re.findall(r'<li><span class="badge (FAIL|INCONCLUSIVE)">.*?<a href="#(v-\d+-\d+)">', summary)
    # one line per check family (the same check at several settings), its worst member linked
    from rtrl_validation.reports.html import _family
    failing = [v for v in built.summary["verdicts"] if v["status"] != "PASS"]
    assert len(failing) == built.summary["counts"]["fail"] + built.summary["counts"]["inconclusive"] == 5
    assert 0 < len(links) == len({_family(v["check"]) for v in failing})
    for _, anchor in links:
        assert f'id="{anchor}"' in built.html
    # every non-passing verdict keeps its own anchor in its section, and its full row in the appendix
    assert len(re.findall(r'<a id="v-\d+-\d+"></a>', built.html)) >= len(failing)
    assert len(re.findall(r'id="dv-\d+-\d+"', built.html)) >= len(failing)
    assert 'href="#fig-1"' in built.html and 'id="tab-1"' in built.html


def test_help_lists_every_command_with_an_example(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert re.search(rf"^  {name}\s+\S.*\n\s+e\.g\. rtrl-validate {name}\b", out, re.M), name


def test_gradcheck_table_has_a_header_for_every_column_and_marks_expected_differences():
    from rtrl_validation.proofs_checks.gradcheck import format_table

    check = dict(cell="elman", steps=7, loss="mse", max_abs_error=0.1, max_rel_error=0.2, bound=1e-13, passed=True)
    table = format_table({"checks": [{**check, "comparison": "rtrl vs bptt", "passed": False},
                                     {**check, "comparison": "tbptt(2) != bptt"}]})
    head, _, equal, differ, *_ = table.splitlines()
    assert head.split() == ["cell", "T", "loss", "comparison", "expected", "max", "abs", "err", "max", "rel", "err",
                            "bound", "verdict"]
    assert "equal" in equal and equal.endswith("FAIL")
    assert "tbptt(2) ≠ bptt" in differ and "differ" in differ and differ.endswith("PASS")


def test_inconclusive_verdicts_are_counted_apart_and_do_not_fail_the_report():
    from rtrl_validation.reports.build import status_counts, status_of
    from rtrl_validation.reports.html import _badge, _counts_text, _evidence, _rule, counts
    vs = [{"passed": True}, {"passed": False}, {"passed": False, "status": "INCONCLUSIVE", "evidence": "e",
                                                 "rule": "TOST", "family": "f (2 tests, Holm at 0.05)"}]
    assert [status_of(v) for v in vs] == ["PASS", "FAIL", "INCONCLUSIVE"]
    assert status_counts(vs) == {"pass": 1, "fail": 1, "inconclusive": 1}
    assert _counts_text(counts(vs)) == "1 PASS, 1 FAIL, 1 INCONCLUSIVE" and "INCONCLUSIVE" in _badge("INCONCLUSIVE").html
    assert _rule(vs[2]) == "TOST" and "family: f" in _evidence(vs[2]).text
