"""Cost scaling: fitted exponents of per-step time and state memory in the hidden size ``k`` beside
the theory (THEORY.md §2.1, §4, §6), and the report section of the ``cost`` experiment.

The exponent is the slope of a least-squares line through ``(log k, log time)`` over the largest
``fit_points`` sizes of a series, with a 95% interval from Student's t (``n − 2`` degrees of
freedom).  Time is the computing thread's CPU time per step (fastest repeat): on an idle
machine it equals wall time, on a shared one it is the part other processes do not inflate;
the wall-time exponent is reported beside it.  The theory it is compared with is the slope of
the estimator's structural operation count (:func:`simulations.flops.estimator_flops`) over the
same sizes, which tends to the asymptotic exponent (RTRL 4, KF-RTRL 3, SnAp-1 / UORO / RFLO /
BPTT 2 for a dense network, ``p ≈ k²``).  A fit passes when that slope lies within the interval widened by
:data:`ALLOWANCE` on each side (single-thread BLAS throughput still grows with size over these
grids, and caches change the cost of a memory pass, so a measured slope is not a pure count) and
the interval is narrow enough to decide (half-width at most :data:`MAX_HALF_WIDTH`; a wider one
is reported as a failure to confirm).
"""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter
from scipy import stats

from rtrl_validation.simulations.experiments.base import Verdict

from . import style
from .sections import Figure, Section, Table

#: allowance (in the exponent) added on each side of the fitted 95% interval
ALLOWANCE = 0.3
#: a fitted interval wider than ± this cannot confirm an exponent
MAX_HALF_WIDTH = 0.5
#: "comparable to a BPTT step": at most this many BPTT steps (THEORY §6, claim 2)
BPTT_FACTOR = 2.0
#: per-step time of SnAp-1 and UORO against one forward step of the same cell (the issue's target)
FORWARD_FACTOR = 3.0
#: batched replicates against sequential runs (the issue's target)
BATCH_GAIN = 20.0


def fit_exponent(k, y) -> dict:
    """Least-squares slope of ``log y`` on ``log k`` with its 95% interval.

    Returns ``{"slope", "lo", "hi", "se", "intercept", "n"}`` (``lo = hi = slope`` when ``n = 2``)."""
    x, z = np.log(np.asarray(k, dtype=float)), np.log(np.asarray(y, dtype=float))
    fit = stats.linregress(x, z)
    n = x.size
    half = stats.t.ppf(0.975, n - 2) * fit.stderr if n > 2 else 0.0
    return {"slope": float(fit.slope), "lo": float(fit.slope - half), "hi": float(fit.slope + half),
            "se": float(fit.stderr), "intercept": float(fit.intercept), "n": int(n)}


def series_table(record) -> dict[str, dict]:
    """Per series: arrays, the fits of time / operation count / memory over the fitted sizes."""
    a, npts = record["arrays"], record["config"]["fit_points"]
    out = {}
    for s in record["data"]["series"]:
        name = s["name"]
        k = np.asarray(a[f"k.{name}"])
        sel = slice(max(k.size - npts, 0), None)
        arr = {key: np.asarray(a[f"{key}.{name}"], dtype=float) for key in
               ("time", "time_min", "forward", "linearize", "ratio", "cpu", "cpu_forward", "cpu_linearize",
                "bytes", "flops", "p")}
        out[name] = dict(s, k=k, sel=sel, **arr, fit=fit_exponent(k[sel], arr["cpu"][sel]),
                         wall=fit_exponent(k[sel], arr["time_min"][sel]),
                         model=fit_exponent(k[sel], arr["flops"][sel])["slope"],
                         memory=fit_exponent(k[sel], arr["bytes"][sel])["slope"])
    return out


def _exponent_verdicts(tab) -> list[Verdict]:
    out = []
    for name, s in tab.items():
        f, m = s["fit"], s["model"]
        asym = "" if s["theory"] is None else f", asymptotic {s['theory'][0]}"
        check = ("RTRL's per-step cost is quartic in k" if name == "rtrl"
                 else f"{name}: per-step time exponent matches its operation count")
        half = (f["hi"] - f["lo"]) / 2
        inside = f["lo"] - ALLOWANCE <= m <= f["hi"] + ALLOWANCE
        out.append(Verdict(check, bool(inside and half <= MAX_HALF_WIDTH),
                           f"fitted k^{f['slope']:.2f} [95% CI {f['lo']:.2f}, {f['hi']:.2f}] over k = "
                           f"{', '.join(str(int(x)) for x in s['k'][s['sel']])}; operation count k^{m:.2f}{asym}; "
                           f"wall time k^{s['wall']['slope']:.2f}; PASS when the count's exponent is within the "
                           f"CI ± {ALLOWANCE} and the CI half-width ≤ {MAX_HALF_WIDTH}"
                           + ("" if half <= MAX_HALF_WIDTH else f" (half-width {half:.2f}: too noisy to confirm)"),
                           f["slope"], m))
    return out


def _claim_verdicts(record, tab) -> list[Verdict]:
    out, cfg = [], record["config"]
    if "snap-1" in tab and "bptt" in tab:
        s, b = tab["snap-1"], tab["bptt"]
        common = np.intersect1d(s["k"], b["k"])
        ratios = [s["cpu"][s["k"] == k][0] / b["cpu"][b["k"] == k][0] for k in common]
        if ratios:
            out.append(Verdict("SnAp-1 costs no more than a BPTT step (THEORY §6)", bool(max(ratios) <= BPTT_FACTOR),
                               "per-step time SnAp-1 / BPTT: " + ", ".join(f"k={int(k)}: {r:.2f}"
                                                                         for k, r in zip(common, ratios))
                               + f" (PASS when every ratio ≤ {BPTT_FACTOR:g})", max(ratios), BPTT_FACTOR))
    k0 = cfg["compare_k"]
    for name in ("snap-1", "uoro"):
        s = tab.get(name)
        if s is None or k0 not in s["k"]:
            continue
        i = int(np.flatnonzero(s["k"] == k0)[0])
        own = s["cpu"][i] / s["cpu_forward"][i]
        full = (s["cpu"][i] + s["cpu_linearize"][i]) / s["cpu_forward"][i]
        out.append(Verdict(f"{name}: per-step time within {FORWARD_FACTOR:g}× a forward step at k={k0}",
                           bool(own <= FORWARD_FACTOR),
                           f"CPU time of the estimator's step (update and gradient) / cell.step = {own:.2f} ({s['cpu'][i] * 1e6:.0f} µs vs "
                           f"{s['cpu_forward'][i] * 1e6:.0f} µs); with the Jacobians (linearize + step) "
                           f"{full:.2f}; wall-time median ratio {s['ratio'][i]:.2f}", own, FORWARD_FACTOR))
    bt = record["data"]["batching"]
    gain = bt["sequential_cpu"] / bt["batched_cpu"]
    out.append(Verdict(f"{bt['replicates']} replicates of {bt['estimator']} batched ≥ {BATCH_GAIN:g}× faster "
                       "than sequential runs", bool(gain >= BATCH_GAIN),
                       f"k={bt['hidden']}, {bt['steps']} full steps, CPU time: batched "
                       f"{bt['batched_cpu'] * 1e3:.1f} ms, "
                       f"sequential {bt['sequential_cpu'] * 1e3:.1f} ms, gain {gain:.1f}× (wall-time medians "
                       f"{bt['batched_seconds'] * 1e3:.1f} ms and {bt['sequential_seconds'] * 1e3:.1f} ms, "
                       f"{bt['sequential_seconds'] / bt['batched_seconds']:.1f}×)", gain, BATCH_GAIN))
    if "snap-1" in tab:
        s = tab["snap-1"]
        exact = bool(np.all(s["bytes"] == 8 * s["p"]))
        out.append(Verdict("SnAp-1 holds one number per parameter", exact,
                           "state bytes / (8 p) = "
                           + ", ".join(f"{b / (8 * p):.3g}" for b, p in zip(s["bytes"], s["p"]))))
    sp, rt = tab.get("snap-2-sparse"), tab.get("rtrl-sparse")
    d = cfg["sparse_density"]
    if sp is not None:
        ratio = sp["bytes"] / (8 * sp["p"] * (1 + d * sp["k"]))
        dense = sp["bytes"] / (8 * sp["p"] * sp["k"])
        out.append(Verdict(f"SnAp-2 on a sparse network (d={d:g}) holds about p(1 + dk) numbers, never k·p",
                           bool(np.all((ratio > 0.8) & (ratio < 1.2)) and np.all(dense < 1)),
                           "stored / p(1+dk) = " + ", ".join(f"{r:.2f}" for r in ratio)
                           + "; stored / kp = " + ", ".join(f"{r:.2f}" for r in dense)
                           + " (PASS: first within [0.8, 1.2], second < 1)"))
        if rt is not None:
            common = np.intersect1d(sp["k"], rt["k"])
            if common.size:
                kk = common.max()
                r = sp["cpu"][sp["k"] == kk][0] / rt["cpu"][rt["k"] == kk][0]
                out.append(Verdict(f"SnAp-2 stays cheaper than RTRL on the sparse network (THEORY §6)",
                                   bool(r < 1.0 and sp["model"] < rt["model"]),
                                   f"at k={int(kk)}: SnAp-2 / RTRL per-step time = {r:.2f}; exponents: SnAp-2 "
                                   f"fitted {sp['fit']['slope']:.2f} (count {sp['model']:.2f}), RTRL fitted "
                                   f"{rt['fit']['slope']:.2f} (count {rt['model']:.2f})", r, 1.0))
    return out


def _plot(ax, tab, names, key, fitted):
    for name in names:
        s, sty = tab[name], style.estimator_style(name)
        y = s["cpu"] if key == "time" else s["bytes"]
        ax.loglog(s["k"], y, "-", color=sty.color, marker=sty.marker,
                  label=f"{sty.label} ($k^{{{s['fit']['slope'] if fitted else s['memory']:.2f}}}$)")
        if fitted:
            kk = s["k"][s["sel"]]
            ax.loglog(kk, np.exp(s["fit"]["intercept"]) * kk ** s["fit"]["slope"], "--", color=sty.color, lw=0.8)
    ax.set_xlabel("state size $k$")


def _figure(tab, names, title, forward=True):
    groups = style.panels(names, reference=None, size=style.MAX_SERIES - 1)
    fig = style.figure(height=2.9 * len(groups))
    grid = np.atleast_2d(fig.subplots(len(groups), 2, squeeze=False))
    ks = np.unique(np.concatenate([tab[n]["k"] for n in names]))
    fw = [np.median(np.concatenate([tab[n]["cpu_forward"][tab[n]["k"] == k] for n in names])) for k in ks]
    for (ax1, ax2), group in zip(grid, groups):
        _plot(ax1, tab, group, "time", True)
        if forward:
            ax1.loglog(ks, fw, ":", color="k", label="one forward step")
        ax1.set(ylabel="CPU time per step [s]")
        _plot(ax2, tab, group, "bytes", False)
        ax2.set(ylabel="state per replicate [bytes]")
        for ax in (ax1, ax2):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())     # 32, 64, 128, ...: labels in every panel
            ax.xaxis.set_minor_formatter(NullFormatter())
            style.legend_below(ax)
    return fig


def analyse(records: list[dict]) -> Section:
    """Records of ``cost`` -> report section."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    section = Section(
        title="Cost scaling of the estimators",
        experiment="cost",
        method=("Per-step time of each estimator's update and gradient (single-threaded BLAS, interleaved with "
                "a forward step of the cell; the thread's CPU time decides, wall time is shown beside it) and "
                "the bytes its state holds, over the state size k; exponents are least-squares slopes in log-log "
                "coordinates with 95% intervals, set beside the exponent of the estimator's operation count over "
                "the same sizes and the asymptotic theory."),
        equation=r"$t(k) \approx C\,k^{\beta}:\ \mathrm{RTRL}\ \beta=4,\ \mathrm{KF}\ 3,\ "
                 r"\mathrm{SnAp\!-\!1,UORO,RFLO,BPTT}\ 2\ (p\approx k^2)$",
        config=dict(ok[0]["config"]) if ok else {},
        failures=[f"{r['task']}: {r.get('status')} ({r.get('reason', '')})" for r in records if r not in ok],
    )
    if not ok:
        return section
    rec = ok[0]
    tab = series_table(rec)
    section.verdicts = list(rec.get("verdicts", [])) + _exponent_verdicts(tab) + _claim_verdicts(rec, tab)
    section.verdicts = [v if isinstance(v, Verdict) else Verdict.from_dict(v) for v in section.verdicts]
    dense = [n for n, s in tab.items() if s["density"] == 1.0]
    sparse = [n for n, s in tab.items() if s["density"] != 1.0]
    section.figures.append(Figure("Dense network: per-step time (fitted lines dashed over the fitted sizes; "
                                  "dotted: one forward step of the cell) and state memory against k, log-log",
                                  _figure(tab, dense, "dense")))
    if sparse:
        section.figures.append(Figure(f"Sparse network (density {rec['config']['sparse_density']:g}): per-step "
                                      "time and state memory against k", _figure(tab, sparse, "sparse")))
    rows = []
    for name, s in tab.items():
        f = s["fit"]
        rows.append([name, s["density"], f"{int(s['k'][s['sel']][0])}–{int(s['k'][-1])}",
                     f"{f['slope']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}]", f"{s['wall']['slope']:.2f}",
                     f"{s['model']:.2f}",
                     "–" if s["theory"] is None else s["theory"][0], f"{s['memory']:.2f}",
                     "–" if s["theory"] is None else s["theory"][1],
                     f"{s['cpu'][-1] * 1e6:.0f}", f"{s['time'][-1] * 1e6:.0f}", f"{s['bytes'][-1] / 1e6:.3g}"])
    section.tables.append(Table(
        "Fitted CPU-time exponents (95% CI) beside the wall-time exponent, the operation-count exponent over "
        "the same sizes and the asymptotic theory; CPU and wall (median) µs per step and state memory (MB per "
        "replicate) at the largest k",
        ["series", "density", "k fitted", "time exponent", "wall-time exponent", "count exponent", "theory",
         "memory exponent", "memory theory", "CPU µs/step", "wall µs/step", "MB"], rows))
    d = rec["data"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} thread(s))"
                     for b in d.get("blas", [])) or "none detected"
    section.notes.append(f"Threads: measured with threadpoolctl limiting BLAS to {d['threads']} thread(s); "
                         f"BLAS seen: {blas}.")
    if d.get("load_average"):
        section.notes.append("Load average (1, 5, 15 min) at the start and end of the timings: "
                             + "; ".join(", ".join(f"{x:.2f}" for x in la) for la in d["load_average"])
                             + f" on {rec.get('provenance', {}).get('cpu_count', '?')} CPU(s).")
    section.notes.append("Exponents, ratios and the batching gain are decided on the computing thread's CPU "
                         "time (fastest repeat), which other processes on a shared machine do not inflate; wall "
                         "times (medians of interleaved timings) are reported beside them. BPTT's memory is its "
                         "tape per step; its per-step time includes the adjoint at the end of each block.")
    return section
