"""Cost scaling: fitted exponents of per-step time and state memory in the hidden size ``k`` beside
the theory (THEORY.md §2.1, §4, §6), and the report section of the ``cost`` experiment.

The exponent is the slope of a least-squares line through ``(log k, log time)`` over the largest
``fit_points`` sizes of a series (time: the fastest of the interleaved repeats, the estimate
least disturbed by other load; medians are reported beside it), with a 95% interval from Student's t (``n − 2`` degrees of
freedom).  The theory it is compared with is the slope of the estimator's structural operation
count (:func:`simulations.flops.estimator_flops`) over the same sizes, which tends to the
asymptotic exponent (RTRL 4, KF-RTRL 3, SnAp-1 / UORO / RFLO / BPTT 2 for a dense network,
``p ≈ k²``); a fit passes when that slope lies within the interval widened by
:data:`ALLOWANCE` on each side (single-thread BLAS throughput still grows with size over these
grids, and caches change the cost of a memory pass, so a measured slope is not a pure count).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure as MplFigure
from scipy import stats

from simulations.experiments.base import Verdict

from .sections import Figure, Section, Table

#: allowance (in the exponent) added on each side of the fitted 95% interval
ALLOWANCE = 0.3
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
        out[name] = dict(s, k=k, time=np.asarray(a[f"time.{name}"]), bytes=np.asarray(a[f"bytes.{name}"]),
                         flops=np.asarray(a[f"flops.{name}"]), time_min=np.asarray(a[f"time_min.{name}"]),
                         forward=np.asarray(a[f"forward.{name}"]),
                         linearize=np.asarray(a[f"linearize.{name}"]), ratio=np.asarray(a[f"ratio.{name}"]),
                         p=np.asarray(a[f"p.{name}"]), sel=sel,
                         fit=fit_exponent(k[sel], np.asarray(a[f"time_min.{name}"])[sel]),
                         model=fit_exponent(k[sel], np.asarray(a[f"flops.{name}"])[sel])["slope"],
                         memory=fit_exponent(k[sel], np.asarray(a[f"bytes.{name}"])[sel])["slope"])
    return out


def _exponent_verdicts(tab) -> list[Verdict]:
    out = []
    for name, s in tab.items():
        f, m = s["fit"], s["model"]
        asym = "" if s["theory"] is None else f", asymptotic {s['theory'][0]}"
        check = ("RTRL's per-step cost is quartic in k" if name == "rtrl"
                 else f"{name}: per-step time exponent matches its operation count")
        out.append(Verdict(check, bool(f["lo"] - ALLOWANCE <= m <= f["hi"] + ALLOWANCE),
                           f"fitted k^{f['slope']:.2f} [95% CI {f['lo']:.2f}, {f['hi']:.2f}] over k = "
                           f"{', '.join(str(int(x)) for x in s['k'][s['sel']])}; operation count k^{m:.2f}{asym}; "
                           f"PASS when the count's exponent is within the CI ± {ALLOWANCE}", f["slope"], m))
    return out


def _claim_verdicts(record, tab) -> list[Verdict]:
    out, cfg = [], record["config"]
    if "snap-1" in tab and "bptt" in tab:
        s, b = tab["snap-1"], tab["bptt"]
        common = np.intersect1d(s["k"], b["k"])
        ratios = [s["time"][s["k"] == k][0] / b["time"][b["k"] == k][0] for k in common]
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
        full = (s["time"][i] + s["linearize"][i]) / s["forward"][i]
        out.append(Verdict(f"{name}: online step within {FORWARD_FACTOR:g}× a forward step at k={k0}",
                           bool(full <= FORWARD_FACTOR),
                           f"(linearize + update + gradient) / cell.step = {full:.2f}; the estimator's own "
                           f"update + gradient alone: {s['ratio'][i]:.2f}× a forward step "
                           f"({s['time'][i] * 1e6:.0f} µs vs {s['forward'][i] * 1e6:.0f} µs)", full, FORWARD_FACTOR))
    bt = record["data"]["batching"]
    gain = bt["sequential_seconds"] / bt["batched_seconds"]
    out.append(Verdict(f"{bt['replicates']} replicates of {bt['estimator']} batched ≥ {BATCH_GAIN:g}× faster "
                       "than sequential runs", bool(gain >= BATCH_GAIN),
                       f"k={bt['hidden']}, {bt['steps']} full steps: batched {bt['batched_seconds'] * 1e3:.1f} ms, "
                       f"sequential {bt['sequential_seconds'] * 1e3:.1f} ms, gain {gain:.1f}×", gain, BATCH_GAIN))
    if "snap-1" in tab:
        s = tab["snap-1"]
        exact = bool(np.all(s["bytes"] == 8 * s["p"]))
        out.append(Verdict("SnAp-1 holds one number per parameter", exact,
                           "state bytes / (8 p) = " + ", ".join(f"{b / (8 * p):.3g}" for b, p in zip(s["bytes"], s["p"]))))
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
                r = sp["time"][sp["k"] == kk][0] / rt["time"][rt["k"] == kk][0]
                out.append(Verdict(f"SnAp-2 stays cheaper than RTRL on the sparse network (THEORY §6)",
                                   bool(r < 1.0 and sp["model"] < rt["model"]),
                                   f"at k={int(kk)}: SnAp-2 / RTRL per-step time = {r:.2f}; exponents: SnAp-2 "
                                   f"fitted {sp['fit']['slope']:.2f} (count {sp['model']:.2f}), RTRL fitted "
                                   f"{rt['fit']['slope']:.2f} (count {rt['model']:.2f})", r, 1.0))
    return out


def _plot(ax, tab, names, key, fitted):
    for i, name in enumerate(names):
        s = tab[name]
        y = s["time_min"] if key == "time" else s["bytes"]
        ax.loglog(s["k"], y, "o-", ms=3, color=f"C{i}",
                  label=f"{name} (k^{s['fit']['slope']:.2f})" if fitted else f"{name} (k^{s['memory']:.2f})")
        if fitted:
            kk = s["k"][s["sel"]]
            ax.loglog(kk, np.exp(s["fit"]["intercept"]) * kk ** s["fit"]["slope"], "--", color=f"C{i}", lw=1)
    ax.set_xlabel("state size k")


def _figure(tab, names, title, forward=True):
    fig = MplFigure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    _plot(ax1, tab, names, "time", True)
    if forward:
        ks = np.unique(np.concatenate([tab[n]["k"] for n in names]))
        fw = [np.median(np.concatenate([tab[n]["forward"][tab[n]["k"] == k] for n in names])) for k in ks]
        ax1.loglog(ks, fw, ":", color="k", label="one forward step")
    ax1.set(ylabel="seconds per step", title=f"{title}: per-step time")
    ax1.legend(fontsize=7)
    _plot(ax2, tab, names, "bytes", False)
    ax2.set(ylabel="bytes per replicate", title=f"{title}: estimator state")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def analyse(records: list[dict]) -> Section:
    """Records of ``cost`` -> report section."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    section = Section(
        title="Cost scaling of the estimators",
        experiment="cost",
        method=("Per-step wall time of each estimator's update and gradient (median of interleaved timings, "
                "single-threaded BLAS) and the bytes its state holds, over the state size k; exponents are "
                "least-squares slopes in log-log coordinates with 95% intervals, set beside the exponent of "
                "the estimator's operation count over the same sizes and the asymptotic theory."),
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
    section.verdicts = [v if isinstance(v, Verdict) else Verdict(**v) for v in section.verdicts]
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
                     f"{f['slope']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}]", f"{s['model']:.2f}",
                     "–" if s["theory"] is None else s["theory"][0], f"{s['memory']:.2f}",
                     "–" if s["theory"] is None else s["theory"][1],
                     f"{s['time'][-1] * 1e6:.0f}", f"{s['bytes'][-1] / 1e6:.3g}"])
    section.tables.append(Table(
        "Fitted exponents (95% CI) beside the operation-count exponent over the same sizes and the asymptotic "
        "theory; time (µs per step) and state memory (MB per replicate) at the largest k",
        ["series", "density", "k fitted", "time exponent", "count exponent", "theory", "memory exponent",
         "memory theory", "µs/step", "MB"], rows))
    d = rec["data"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} thread(s))"
                     for b in d.get("blas", [])) or "none detected"
    section.notes.append(f"Threads: measured with threadpoolctl limiting BLAS to {d['threads']} thread(s); "
                         f"BLAS seen: {blas}.")
    section.notes.append("Timings share the machine with whatever else runs on it; ratios (estimator / forward "
                         "step) are taken from interleaved timings so that both see the same load. BPTT's "
                         "memory is its tape per step; its per-step time includes the adjoint at the end of "
                         "each block.")
    return section
