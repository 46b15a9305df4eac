"""Figure quality: the one style, and every figure of a quick run held to it (``figure_audit``).

The fast tests show that the audit catches each fault it looks for on a deliberately bad figure and
that the style gives each estimator one look.  The slow test runs the quick profile (or reuses the
results folder named by ``RTRL_QUICK_RESULTS``) and audits every figure of every section.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from rtrl_validation.analysis import style

try:
    from figure_audit import audit
except ImportError:  # tests collected as a package
    from tests.figure_audit import audit


def good_figure():
    with style.style():
        fig = style.figure(height=2.4)
        ax1, ax2 = fig.subplots(1, 2)
        t = np.arange(1, 50)
        for spec in ("rtrl", "snap-1", "uoro"):
            ax1.plot(t, np.exp(-t / 10) + 0.1, **style.estimator_style(spec).kw())
        ax1.set(yscale="log", xlabel="step $t$", ylabel=r"$\|\nabla L(\theta_t)\|$")
        ax1.legend()
        ax2.plot(t, np.sin(t), label="a")
        ax2.set(xlabel="step $t$", ylabel="value [1]")
        return fig


def test_a_figure_in_the_style_passes_the_audit():
    assert audit(good_figure()) == []


def test_the_audit_catches_each_fault():
    from matplotlib.figure import Figure

    with style.style():
        wide = Figure(figsize=(11, 3))                                    # scaled down in print
        ax = wide.subplots()
        ax.plot([1, 2], [1, 2])
        ax.set_title("tiny", fontsize=5)
        ax.text(30, 1.5, "far outside", clip_on=False, in_layout=False)
        problems = " | ".join(audit(wide))
        assert "more than the text width" in problems and "'tiny' at 5.0 pt" in problems
        assert "'far outside' runs off the figure" in problems

        crowded = style.figure(width=2.5, height=1.2)                     # legend larger than the axes
        ax = crowded.subplots()
        for i in range(7):
            ax.plot([1, 2], [i, i + 1], label=f"a long series name {i}")
        ax.legend(loc="upper left", bbox_to_anchor=(0, 1))
        problems = " | ".join(audit(crowded))
        assert "larger than its axes" in problems and "7 labelled series" in problems

        bars = style.figure(width=3, height=2)                            # bars and zeros on a log axis
        ax = bars.subplots()
        ax.bar([0, 1], [1.0, 10.0])
        ax.plot([0, 1], [0.0, 1.0], label="zero")
        ax.set_yscale("log")
        problems = " | ".join(audit(bars))
        assert "bars on a log axis" in problems and "non-positive values of 'zero'" in problems

        ticks = style.figure(width=2, height=2)                           # tick labels on top of each other
        ax = ticks.subplots()
        ax.set_xticks(range(8), [f"label number {i}" for i in range(8)])
        assert "overlapping tick labels on the x axis" in " | ".join(audit(ticks))

        squeezed = style.figure(width=1.2, height=0.8)                    # a layout warning is an error
        ax = squeezed.subplots()
        ax.set_ylabel("\n".join(["a label taller than the figure"] * 12))
        assert any("drawing warns" in p and "constrained" in p.lower() for p in audit(squeezed)), audit(squeezed)


def test_one_look_per_estimator_across_sections():
    looks = {spec: style.estimator_style(spec) for spec in
             ("rtrl", "bptt", "snap-1", "snap-2", "snap-3", "uoro", "kf-rtrl", "rflo", "tbptt-4", "tbptt-16")}
    assert len({(s.color, s.marker) for s in looks.values()}) == len(looks)      # all distinguishable
    assert style.estimator_style("snap-2") == style.estimator_style("SnAp-2")    # one look whatever the spelling
    assert style.estimator_style("tbptt(4)") == looks["tbptt-4"]
    assert looks["snap-2"].label == "SnAp-2" and looks["tbptt-4"].label == r"TBPTT($\tau$=4)"


def test_panels_keep_the_reference_and_at_most_five_series():
    labels = ["rtrl", "snap-1", "snap-2", "uoro", "kf-rtrl", "rflo", "tbptt-4", "tbptt-16"]
    groups = style.panels(labels)
    assert all(g[0] == "rtrl" and len(g) <= style.MAX_SERIES for g in groups)
    assert sorted({x for g in groups for x in g}) == sorted(labels)


@pytest.fixture(scope="module")
def quick_records(tmp_path_factory):
    from rtrl_validation.reports import registry
    from rtrl_validation.reports.build import stored_records

    folder = os.environ.get("RTRL_QUICK_RESULTS")
    if not folder:
        from rtrl_validation.simulations.runner import run_experiments
        folder = tmp_path_factory.mktemp("quick")
        plan = [(exp, exp.config("quick")) for exp in registry.experiments().values()]
        run_experiments(plan, 0, folder, progress=False)
    return stored_records(folder)


@pytest.mark.slow
def test_every_figure_of_a_quick_run_passes_the_audit(quick_records):
    from rtrl_validation.reports import registry
    from rtrl_validation.reports.build import analyse

    problems, n = [], 0
    for name, records in quick_records.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")                  # a layout warning while drawing is an error
            result = analyse(name, registry.analyses()[name], records)
        assert result.error is None, result.error
        for i, figure in enumerate(result.section.figures, start=1):
            problems += audit(figure.fig, f"{name}-{i}")
            n += 1
    assert n >= 15
    assert problems == [], "\n".join(problems)
