"""Bias, variance and alignment of approximate gradients, with jackknife confidence intervals
(THEORY.md §4 "the measurable quantities"), and the report section of the ``bias-variance`` experiment.

From the replicate statistics a task stores (``sq_err`` ``‖ĝ_r − g‖²``, ``proj``
``⟨ĝ_r − g, ḡ − g⟩``, ``cos``; ``R × T`` each, see :mod:`simulations.experiments.bias_variance`):

* ``‖ḡ − g‖² = mean_r proj_r``; leaving replicate ``r`` out,
  ``‖ḡ₋ᵣ − g‖² = (R²‖ḡ − g‖² − 2R proj_r + sq_err_r)/(R − 1)²``;
* ``tr Σ̂ = (Σ sq_err − R‖ḡ − g‖²)/(R − 1)``, and its leave-one-out values likewise;
* relative bias ``‖ḡ − g‖/‖g‖``, normalised variance ``tr Σ̂/‖g‖²``, and the noise floor
  ``sqrt(tr Σ̂/R)/‖g‖`` that the relative bias of an *unbiased* estimator sits at;
* 95% intervals: estimate ± 1.96 jackknife standard errors (cosine: mean ± 1.96 sd/√R).

Deterministic estimators (``R = 1``) have exact values and zero variance.
"""
from __future__ import annotations

import numpy as np

from rtrl_validation.simulations.experiments.base import Verdict

from . import style
from .sections import Figure, Section, Table

Z95 = 1.959963984540054
TINY = np.finfo(float).tiny
FLOOR = 1e-7          # plotted values at or below this (exact to rounding, or a CI reaching 0) sit on the axis


def _jackknife(theta: np.ndarray, loo: np.ndarray) -> np.ndarray:
    """``(estimate, lo, hi)`` stacked on the first axis from leave-one-out values ``loo`` (``R × …``)."""
    R = loo.shape[0]
    se = np.sqrt((R - 1) / R * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    return np.stack([theta, theta - Z95 * se, theta + Z95 * se])


def statistics(sq_err, proj, cos, g_norm, window: slice | None = None) -> dict[str, np.ndarray]:
    """Relative bias, normalised variance, cosine and noise floor with 95% intervals.

    Arrays ``R × T`` (``g_norm``: ``T``).  Returns name -> ``3 × T`` (estimate, lo, hi), or ``3``
    when ``window`` is given (the statistic averaged over those steps, jackknifed as a whole).
    """
    sq_err, proj, cos = (np.asarray(a, dtype=float) for a in (sq_err, proj, cos))
    g2 = np.maximum(np.asarray(g_norm, dtype=float) ** 2, TINY)
    w = slice(None) if window is None else window
    avg = (lambda a: a) if window is None else (lambda a: a[..., w].mean(axis=-1))
    R = sq_err.shape[0]
    d2 = proj.mean(axis=0)
    if R == 1:
        rb = avg(np.sqrt(d2 / g2))
        zero = np.zeros_like(rb)
        c = avg(cos[0])
        return {"rel_bias": np.stack([rb, rb, rb]), "nvar": np.stack([zero] * 3),
                "cos": np.stack([c, c, c]), "floor": np.stack([zero] * 3)}
    d2_loo = np.maximum((R * R * d2 - 2 * R * proj + sq_err) / (R - 1) ** 2, 0.0)
    s = sq_err.sum(axis=0)
    tr = np.maximum((s - R * d2) / (R - 1), 0.0)
    tr_loo = np.maximum(((s - sq_err) - (R - 1) * d2_loo) / max(R - 2, 1), 0.0)
    out = {
        "rel_bias": _jackknife(avg(np.sqrt(d2 / g2)), avg(np.sqrt(d2_loo / g2))),
        "nvar": _jackknife(avg(tr / g2), avg(tr_loo / g2)),
        "floor": _jackknife(avg(np.sqrt(tr / R / g2)), avg(np.sqrt(tr_loo / (R - 1) / g2))),
    }
    c = avg(cos)
    m, se = c.mean(axis=0), c.std(axis=0, ddof=1) / np.sqrt(R)
    out["cos"] = np.stack([m, m - Z95 * se, m + Z95 * se])
    for name in ("rel_bias", "nvar", "floor"):
        out[name][1] = np.maximum(out[name][1], 0.0)
    return out


def record_statistics(record: dict, window: slice | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per estimator label: :func:`statistics` of one ``bias-variance`` record."""
    arrays, g = record["arrays"], record["arrays"]["g_norm"]
    return {lab: statistics(arrays[f"sq_err.{lab}"], arrays[f"proj.{lab}"], arrays[f"cos.{lab}"], g, window)
            for lab in record["data"]["estimators"]}


def late_window(record: dict) -> slice:
    return slice(record["data"]["steps"] // 2, None)


# ------------------------------------------------------------------------- report section
def _sweep(records, axis):
    """Records of the one-at-a-time sweep along ``axis`` (0: hidden, 1: density, 2: rho), sorted."""
    keys = ("hidden", "density", "rho")
    out = []
    for r in records:
        base, d = r["data"]["base"], r["data"]
        if all(d[keys[i]] == base[i] or i == axis or (keys[i] == "rho" and d["rho"] is None) for i in range(3)):
            out.append(r)
    return sorted(out, key=lambda r: r["data"][keys[axis]])


def _base_record(records):
    for r in records:
        d, base = r["data"], r["data"]["base"]
        if d["hidden"] == base[0] and d["density"] == base[1] and d["rho"] in (base[2], None):
            return r
    return records[0]


def _curves_figure(record):
    stats = record_statistics(record)
    d = record["data"]
    t = np.arange(1, d["steps"] + 1)
    rows = style.panels(list(stats), reference=None, size=4)
    fig = style.figure(height=1.9 * len(rows) + 0.3)
    grid = np.atleast_2d(fig.subplots(len(rows), 3, sharex=True, squeeze=False))
    for axes, labels in zip(grid, rows):
        for lab in labels:
            st, sty = stats[lab], style.estimator_style(lab)
            for ax, name in zip(axes, ("rel_bias", "nvar", "cos")):
                est, lo, hi = st[name]
                if name == "nvar" and d["replicates"][lab] == 1:
                    continue
                if name != "cos":
                    est, lo, hi = (np.maximum(a, FLOOR) for a in (est, lo, hi))
                ax.plot(t, est, **sty.kw())
                ax.fill_between(t, lo, hi, color=sty.color, alpha=0.2, lw=0)
            if d["replicates"][lab] > 1:
                axes[0].plot(t, np.maximum(st["floor"][0], FLOOR), color=sty.color, ls=":", lw=0.8)
        axes[0].set(yscale="log", ylabel=r"rel. bias $\|\mathrm{E}\,\hat g - g\| / \|g\|$",
                    ylim=(FLOOR / 2, None))
        axes[1].set(yscale="log", ylabel=r"norm. variance $\mathrm{E}\|\hat g - \mathrm{E}\,\hat g\|^2 / \|g\|^2$",
                    ylim=(FLOOR / 2, None))
        axes[2].set(ylabel=r"cosine of $\hat g$ with $g$", ylim=(-0.1, 1.05))
        if not axes[1].has_data():
            axes[1].text(0.5, 0.5, "deterministic: no variance", ha="center", va="center",
                         transform=axes[1].transAxes)
        axes[2].legend()
    for ax in grid[-1]:
        ax.set_xlabel("step $t$")
    return Figure(f"Bias, variance and alignment against time at k={d['k']}, d={d['density']:g}"
                  + (f", ρ={d['rho']:g}" if d["rho"] is not None else "")
                  + " (bands: 95% jackknife intervals; dotted: noise floor sqrt(tr Σ/R)/‖g‖ of the "
                    f"stochastic estimators, where an unbiased estimator's relative bias sits; values "
                    f"≤ {FLOOR:g}, i.e. exact to rounding or an interval reaching 0, are drawn at {FLOOR:g})", fig)


def _sweep_figure(records, axis, name):
    recs = _sweep(records, axis)
    if len(recs) < 2:
        return None
    xkey = ("k", "density", "rho")[axis]
    labels = recs[0]["data"]["estimators"]
    rows = style.panels(labels, reference=None, size=4)
    fig = style.figure(width=5.6, height=1.9 * len(rows) + 0.3)
    grid = np.atleast_2d(fig.subplots(len(rows), 2, sharex=True, squeeze=False))
    for axes, group in zip(grid, rows):
        for lab in group:
            xs, vals = [], []
            for r in recs:
                if lab in r["data"]["estimators"]:
                    xs.append(r["data"][xkey])
                    vals.append(record_statistics(r, late_window(r))[lab])
            if not xs:
                continue
            sty = style.estimator_style(lab)
            for ax, metric in zip(axes, ("rel_bias", "nvar")):
                if metric == "nvar" and all(r["data"]["replicates"].get(lab, 1) == 1 for r in recs):
                    continue
                est = np.array([v[metric][0] for v in vals])
                lo = np.array([v[metric][1] for v in vals])
                hi = np.array([v[metric][2] for v in vals])
                est_c = np.maximum(est, FLOOR)
                ax.errorbar(xs, est_c, yerr=[est_c - np.maximum(lo, FLOOR), np.maximum(hi, FLOOR) - est_c],
                            **sty.kw(line=False))
        for ax, metric in zip(axes, ("relative bias", "normalised variance")):
            ax.set(yscale="log", ylabel=metric, ylim=(FLOOR / 2, None))
            if axis == 0:
                ax.set_xscale("log", base=2)
        axes[0].legend()
    for ax in grid[-1]:
        ax.set_xlabel(name)
    return Figure(f"Late-window (t > T/2) relative bias and normalised variance against {name}, with 95% "
                  f"jackknife intervals (values ≤ {FLOOR:g}, exact to rounding, are drawn at {FLOOR:g})", fig)


def _order_figure(records):
    chunks = [records[i:i + style.MAX_SERIES] for i in range(0, len(records), style.MAX_SERIES)]
    fig = style.figure(width=3.4 * len(chunks), height=2.6)
    for ax, chunk in zip(np.atleast_1d(fig.subplots(1, len(chunks), sharey=True)), chunks):
        for i, r in enumerate(chunk):
            d = r["data"]
            stats = record_statistics(r, late_window(r))
            ns = d["orders"]
            rb = [max(stats[f"snap-{n}"]["rel_bias"][0], FLOOR) for n in ns]
            ax.plot(ns, rb, **style.series(i),
                    label=f"$k$={d['k']}, $d$={d['density']:g}, $n^*$={d['exact_order']}")
        ax.set(yscale="log", xlabel="SnAp order $n$", ylim=(FLOOR / 2, None))
        ax.legend()
    fig.axes[0].set_ylabel("relative bias, late window")
    return Figure(f"SnAp-n relative bias against n for every setting; it reaches zero (drawn at {FLOOR:g}) "
                  "at the exact order n*", fig)


def _fmt(v):
    est, lo, hi = (float(x) for x in v)
    if lo == hi:
        return f"{est:.3g}"
    return f"{est:.3g} [{lo:.3g}, {hi:.3g}]"


def _claims(records) -> list[Verdict]:
    """THEORY §4/§6 claims decided from the jackknife intervals."""
    out = []
    for r in records:
        d = r["data"]
        stats = record_statistics(r, late_window(r))
        tag = f"k={d['k']}, d={d['density']:g}" + (f", ρ={d['rho']:g}" if d["rho"] is not None else "")
        if "kf-rtrl" in stats and "uoro" in stats:
            kf, uo = stats["kf-rtrl"]["nvar"], stats["uoro"]["nvar"]
            out.append(Verdict(f"KF-RTRL variance below UORO's ({tag})", bool(kf[2] < uo[1]),
                               f"late-window normalised variance KF {_fmt(kf)} vs UORO {_fmt(uo)} "
                               "(PASS when the intervals are separated)", float(kf[0]), float(uo[0])))
        if "snap-1" in stats and "uoro" in stats:
            s1, uo = stats["snap-1"]["cos"], stats["uoro"]["cos"]
            out.append(Verdict(f"SnAp-1 aligns better with the gradient than UORO ({tag})", bool(s1[1] > uo[2]),
                               f"late-window cosine SnAp-1 {_fmt(s1)} vs UORO {_fmt(uo)}",
                               float(s1[0]), float(uo[0])))
    ks = _sweep(records, 0)
    if len(ks) >= 2 and all("uoro" in r["data"]["estimators"] for r in ks):
        v = [record_statistics(r, late_window(r))["uoro"]["nvar"] for r in ks]
        grows = all(a[0] < b[0] for a, b in zip(v, v[1:])) and v[0][2] < v[-1][1]
        out.append(Verdict("UORO variance grows with k", bool(grows),
                           "late-window normalised variance by k: "
                           + ", ".join(f"k={r['data']['k']}: {_fmt(x)}" for r, x in zip(ks, v))
                           + " (PASS: increasing estimates, smallest and largest k separated)", None, None))
    base = _base_record(records)
    if "uoro" in base["data"]["estimators"]:
        T = base["data"]["steps"]
        first = record_statistics(base, slice(0, 1))["uoro"]["nvar"]
        early = record_statistics(base, slice(0, max(T // 4, 1)))["uoro"]["nvar"]
        late = record_statistics(base, late_window(base))["uoro"]["nvar"]
        out.append(Verdict("UORO variance builds up over time", bool(first[2] < late[1]),
                           f"normalised variance at t = 1: {_fmt(first)}; t ≤ T/4: {_fmt(early)}; t > T/2: "
                           f"{_fmt(late)} (PASS: the late window above the first step, intervals separated; "
                           "under a contraction it levels off, so the first quarter may already be at the "
                           "plateau)", float(late[0]), float(first[0])))
    return out


def analyse(records: list[dict]) -> Section:
    """Records of ``bias-variance`` -> report section."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    failures = [f"{r['task']}: {r.get('status')} ({r.get('reason', '')})" for r in records if r not in ok]
    points = [r for r in ok if r["data"].get("kind") != "identities"]
    verdicts = []
    for r in ok:
        for v in r["verdicts"]:
            v = dict(v)
            if r["data"].get("kind") != "identities":
                v["check"] = f"[{r['task']}] {v['check']}"
            verdicts.append(Verdict.from_dict(v))
    section = Section(
        title="Bias and variance of the approximate estimators",
        experiment="bias-variance",
        method=("At a fixed θ and one data path, each estimator's online gradient ĝ_t = c_t J̃_t is compared "
                "with the exact RTRL shadow g_t = c_t J_t; UORO and KF-RTRL run R replicates batched with "
                "independent signs, SnAp-n and RFLO are deterministic. Confidence intervals are 95% jackknife "
                "intervals over replicates; SnAp-n = RTRL is judged against a float64 rounding bound and "
                "unbiasedness by a Bonferroni-corrected z-test whose power is shown on UORO with biased signs."),
        equation=(r"$\mathrm{bias}_t = \frac{\|\mathbb{E}\hat g_t - g_t\|}{\|g_t\|},\quad "
                  r"\mathrm{var}_t = \frac{\mathbb{E}\|\hat g_t - \mathbb{E}\hat g_t\|^2}{\|g_t\|^2},\quad "
                  r"\tilde J_t = (D_t \tilde J_{t-1} + I_t)\odot M_n$"),
        config=dict(records[0]["config"]) if records else {},
        failures=failures,
    )
    section.config.pop("setting", None)
    if not points:
        section.verdicts = verdicts
        section.notes.append("no sweep records: only the identity checks ran")
        return section
    verdicts += _claims(points)
    section.verdicts = verdicts
    section.figures.append(_curves_figure(_base_record(points)))
    for axis, name in ((0, "hidden size $k$"), (1, "density $d$"), (2, r"contraction $\rho$")):
        fig = _sweep_figure(points, axis, name)
        if fig is not None:
            section.figures.append(fig)
    section.figures.append(_order_figure(points))
    rows = []
    for r in sorted(points, key=lambda r: (r["data"]["k"], r["data"]["density"], r["data"]["rho"] or 0)):
        d = r["data"]
        for lab, st in record_statistics(r, late_window(r)).items():
            rows.append([d["k"], d["density"], d["rho"], d["exact_order"], lab, d["replicates"][lab],
                         d["stored"].get(lab), _fmt(st["rel_bias"]), _fmt(st["nvar"]), _fmt(st["cos"])])
    section.tables.append(Table(
        "Late-window (t > T/2) means with 95% jackknife intervals; 'stored' is the number of influence "
        "entries a SnAp/RFLO replicate holds (k·p for dense RTRL); n* is the order from which SnAp is exact",
        ["k", "d", "ρ", "n*", "estimator", "R", "stored", "relative bias", "normalised variance", "cosine"], rows,
        group_by=4))
    section.notes.append("Data: inputs and targets i.i.d. N(0, 1), linear readout with squared loss; θ from the "
                         "cell's initialiser (contractive-elman: projected onto its ρ-ball).")
    section.notes.append("n* is the smallest SnAp order whose mask M_n equals the closure of the structural "
                         "reachability (one more than the longest shortest path from a unit in the recurrent "
                         "graph; 2 for a dense network).")
    return section
