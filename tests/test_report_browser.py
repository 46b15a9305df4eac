"""The report in a real browser (headless Chromium) and the PDF's structure.

report.html of the fake sections is opened in headless Chromium over the DevTools protocol:
every internal link must resolve to an element with that id, no image or inline SVG may be
broken (empty), and the page may log no console error or uncaught exception.  The PDF must have
an outline (bookmarks from the headings) and text on every page.

Without Chromium the browser test is skipped, unless ``RTRL_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs the Debian package when it is missing).
"""
from __future__ import annotations

import os

import pytest
from pypdf import PdfReader

from rtrl_validation.reports import cli, registry

try:
    from cdp import Browser, chromium
except ImportError:  # tests collected as a package
    from tests.cdp import Browser, chromium
try:                     # the fake experiments: tests/helpers.py, formerly tests/test_report_fakes.py
    from helpers import fakes, in_process
except ImportError:
    try:
        from test_report_fakes import fakes, in_process
    except ImportError:  # tests collected as a package
        from tests.test_report_fakes import fakes, in_process

#: what the page reports about itself: links without a target, broken images, empty drawings
AUDIT = """(() => {
  const ids = new Set([...document.querySelectorAll('[id]')].map(e => e.id));
  const internal = [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
  const images = [...document.images];
  const svgs = [...document.querySelectorAll('figure svg, .equation svg, .mathinline svg')];
  return {
    links: internal.length,
    dangling: internal.filter(id => !ids.has(decodeURIComponent(id))),
    external: [...document.querySelectorAll('[src], link[href]')].map(e => e.getAttribute('src') || e.getAttribute('href')),
    images: images.length,
    broken_images: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    svgs: svgs.length,
    empty_svgs: svgs.filter(s => { const r = s.getBoundingClientRect(); return !(r.width > 0 && r.height > 0); }).length,
    figures: document.querySelectorAll('figure[id^="fig-"]').length,
    tables: document.querySelectorAll('[id^="tab-"]').length,
  };
})()"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a passing, a failing and a broken experiment and a broken analysis."""
    out = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "SECTIONS", fakes(passing=True, failing=True, broken=True, broken_analysis_=True))
        in_process(mp)
        assert cli.main(["report", "--out", str(out), "--quiet"]) == 0
    return out


def test_report_html_in_headless_chromium(report):
    if chromium() is None:
        if os.environ.get("RTRL_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (RTRL_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium is not installed (the Debian package 'chromium'; .ci/run installs it)")
    control = report / "control.html"              # what the audit must catch, checked in the same browser
    control.write_text('<a href="#nowhere">x</a><img src="missing.png"><script>console.error("boom")</script>')
    with Browser() as browser:
        browser.open(control.resolve().as_uri())
        bad = browser.evaluate(AUDIT)
        assert bad["dangling"] == ["nowhere"] and len(bad["broken_images"]) == 1, bad
        assert any("boom" in e for e in browser.errors), browser.errors
        browser.errors.clear()
        browser.open((report / "report.html").resolve().as_uri())
        audit = browser.evaluate(AUDIT)
        errors = list(browser.errors)
    assert audit["links"] >= 10, audit                     # summary, verdict, figure and table links
    assert audit["dangling"] == [], audit["dangling"]
    assert audit["external"] == [], audit["external"]      # self-contained: nothing is fetched
    assert audit["broken_images"] == [] and audit["empty_svgs"] == 0, audit
    assert audit["figures"] == 3 and audit["svgs"] >= 6, audit
    assert errors == []


def test_pdf_has_an_outline_and_text_on_every_page(report):
    reader = PdfReader(report / "report.pdf")
    titles = []

    def walk(items):
        for item in items:
            walk(item) if isinstance(item, list) else titles.append(item.title)
    walk(reader.outline)
    for title in ("Summary", "1. Fake section fake-pass", "Appendix: reproducing this report", "Appendix: provenance"):
        assert title in titles, (title, titles)
    empty = [i + 1 for i, page in enumerate(reader.pages) if len(page.extract_text().split()) < 5]
    assert empty == [], f"pages without text: {empty}"


def test_figures_are_exported_with_their_data_and_regenerated_one_by_one(report, capsys, tmp_path):
    folder = report / "figures"
    names = sorted(p.stem for p in folder.glob("*.csv"))
    assert names == ["fake-broken-1", "fake-fail-1", "fake-pass-1"]
    for name in names:
        for ext in ("svg", "pdf", "png"):
            assert (folder / f"{name}.{ext}").stat().st_size > 0
    data = (folder / "fake-pass-1.csv").read_text().splitlines()
    assert data[0] == "panel,series,kind,x,y,y_low,y_high" and len(data) == 1 + 3 * 50   # three runs of 50 samples
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "SECTIONS", fakes(passing=True, failing=True, broken=True, broken_analysis_=True))
        assert cli.main(["figure", "fake-pass-1", "--from", str(report), "--out", str(tmp_path)]) == 0
        assert (tmp_path / "fake-pass-1.csv").read_text() == (folder / "fake-pass-1.csv").read_text()
        assert (tmp_path / "fake-pass-1.svg").read_bytes() == (folder / "fake-pass-1.svg").read_bytes()
        assert cli.main(["figure", "fake-pass-9", "--from", str(report)]) == 2
        assert cli.main(["figure", "nothing-1", "--from", str(report)]) == 2
    err = capsys.readouterr().err
    assert "has 1 figure(s)" in err and "unknown figure 'nothing-1'" in err
