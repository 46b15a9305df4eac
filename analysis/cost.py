"""Cost scaling: fitted exponents of per-step time and state memory in the hidden size ``k`` beside
the theory (THEORY.md §2.1, §4, §6), and the report section of the ``cost`` experiment.

Time is the computing thread's CPU time per step: on an idle machine it equals wall time, on a
shared one it is the part other processes do not inflate; the wall-time exponent is reported
beside it.  The experiment times every size of a series once per *sweep* and repeats the sweep;
the exponent of each sweep is the least-squares slope of ``log time`` on ``log k`` over the
largest ``fit_points`` sizes, and the exponent's estimate and interval are over sweeps (the
replicate level; Student t).  Verdicts (:mod:`analysis.inference`, Holm over the section's
exponent family):

* each dense series' exponent against its theoretical order (RTRL 4, KF-RTRL 3, SnAp-1 / UORO /
  RFLO / BPTT 2 for ``p ≈ k²``), and every series' exponent against the slope of its structural
  operation count over the same sizes (:func:`simulations.flops.estimator_flops`; for sparse
  SnAp-2 that is its stated formula): equivalence within :data:`TOLERANCE`, so an interval wider
  than the tolerance is INCONCLUSIVE; judged only where the fitted sizes are arithmetic-dominated
  (:func:`exponent_decision`: the per-step overhead, timed on a tiny cell in every sweep, must be
  at most ``TOLERANCE / (2 β)`` of the time at the smallest fitted size, else INCONCLUSIVE) and,
  for a series timed beside the bare operation its step cannot beat (exact RTRL: the dense
  product of its shapes), at a steady machine rate (that product's own exponent within
  ``TOLERANCE / 2`` of its FLOP count's slope over the same sizes, else INCONCLUSIVE);
* "SnAp-1 costs no more than a BPTT step" (at most :data:`BPTT_FACTOR` × at the largest common
  size, sweeps paired) and "SnAp-2 stays cheaper than RTRL on a sparse network" (by at least 2×);
* memory identities (exact counts).

Engineering targets (the estimator step against a forward step, batching gain) are benchmarks:
a descriptive table, not verdicts.
"""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter
from scipy import stats

from dataclasses import dataclass, replace

from rtrl_validation.simulations.experiments.base import INCONCLUSIVE, Verdict

from . import inference as inf
from . import style
from .sections import Figure, Section, Table

#: equivalence margin on an exponent: half the distance between consecutive integer orders
TOLERANCE = 0.5
#: "comparable to a BPTT step": at most this many BPTT steps (THEORY §6, claim 2)
BPTT_FACTOR = 2.0
#: "SnAp-2 stays tractable where RTRL does not": at least this factor cheaper on the sparse network
SPARSE_GAIN = 2.0
#: level of every cost verdict
ALPHA = 0.05
SOURCE = "THEORY §2.1, §4, §6; Menick et al. (SnAp)"


def fit_exponent(k, y) -> dict:
    """Least-squares slope of ``log y`` on ``log k`` with its 95% interval.

    Returns ``{"slope", "lo", "hi", "se", "intercept", "n"}`` (``lo = hi = slope`` when ``n = 2``)."""
    x, z = np.log(np.asarray(k, dtype=float)), np.log(np.asarray(y, dtype=float))
    fit = stats.linregress(x, z)
    n = x.size
    half = stats.t.ppf(0.975, n - 2) * fit.stderr if n > 2 else 0.0
    return {"slope": float(fit.slope), "lo": float(fit.slope - half), "hi": float(fit.slope + half),
            "se": float(fit.stderr), "intercept": float(fit.intercept), "n": int(n)}


def sweep_exponent(k, times) -> inf.Estimate:
    """The exponent over timing sweeps: ``times`` is ``n_k × sweeps``; one slope per sweep, their
    mean with a Student-t error over sweeps.  A record without sweeps (one column) falls back to
    the single fit's standard error over sizes (``df = n_k − 2``)."""
    times = np.asarray(times, dtype=float)
    if times.ndim == 1 or times.shape[1] == 1:
        f = fit_exponent(k, times.ravel())
        return inf.Estimate(f["slope"], f["se"], max(f["n"] - 2, 1), f["n"], "sizes")
    slopes = [fit_exponent(k, times[:, r])["slope"] for r in range(times.shape[1])]
    return inf.mean_estimate(slopes, "timing sweeps")


def overhead_share(overhead, times_k1) -> float | None:
    """Share of the time per step at the smallest fitted size that is per-step overhead: the median
    over sweeps of ``overhead_r / t_r(k₁)`` (``overhead``: CPU seconds per step on a tiny cell, one
    per sweep; ``times_k1``: the same sweeps at ``k₁``), or ``None`` when not measured."""
    if overhead is None:
        return None
    o, t = np.atleast_1d(np.asarray(overhead, dtype=float)), np.atleast_1d(np.asarray(times_k1, dtype=float))
    n = min(o.size, t.size)
    return float(np.median(o[:n] / t[:n])) if n else None


def max_overhead_share(exponent: float) -> float:
    """The largest overhead share at ``k₁`` at which a fitted exponent can still be judged.

    With ``t(k) = c₀ + A k^β`` the local log-log slope is ``β (1 − s(k))``, ``s(k) = c₀ / t(k)``
    decreasing in ``k``, so a slope fitted from ``k₁`` on is biased low by at most ``β s(k₁)``;
    requiring ``β s(k₁) ≤ TOLERANCE / 2`` keeps that bias within half the equivalence margin."""
    return TOLERANCE / (2.0 * max(exponent, TOLERANCE))


def overhead_gated(share: float | None, centre: float) -> bool:
    """Whether an exponent claimed to be ``centre`` is not tested: the overhead's share ``share``
    at the smallest fitted size is above :func:`max_overhead_share` (``None``: not measured)."""
    return share is not None and share > max_overhead_share(centre)


@dataclass(frozen=True)
class FloorRate:
    """The bare floor operation of a series timed in the same sweeps (exact RTRL: its dense
    product): the exponent of its time and the slope of its FLOP count over the fitted sizes."""

    exponent: float
    count: float

    @property
    def drift(self) -> float:
        """How far the machine's rate for that operation moves over the fitted sizes, as an exponent:
        ``exponent − count`` (negative: faster per FLOP at larger sizes)."""
        return self.exponent - self.count


def floor_rate(k, floor_sweeps, floor_flops) -> FloorRate | None:
    """:class:`FloorRate` from the floor's CPU seconds (``n_k × sweeps``) and FLOP counts (``n_k``)
    at the fitted sizes ``k``, or ``None`` when not measured or too few sweeps."""
    if floor_sweeps is None or floor_flops is None:
        return None
    try:
        e = sweep_exponent(k, floor_sweeps)
    except inf.UnreliableEstimate:
        return None
    return FloorRate(float(e.value), fit_exponent(k, floor_flops)["slope"])


def rate_gated(rate: FloorRate | None) -> bool:
    """Whether an exponent is not tested because the machine's rate for the step's floor operation
    moves over the fitted sizes by more than half the margin (``|drift| > TOLERANCE / 2``): there no
    implementation's time could follow its count to within the margin's half (``None``: no gate)."""
    return rate is not None and abs(rate.drift) > TOLERANCE / 2


def exponent_decision(est: inf.Estimate, centre: float, share: float | None, alpha: float = ALPHA,
                      where: str = "", rate: FloorRate | None = None) -> inf.Decision:
    """Equivalence of a fitted exponent with ``centre`` within :data:`TOLERANCE`, decided only in
    an arithmetic-dominated range: when the per-step overhead's share ``share`` at the smallest
    fitted size exceeds :func:`max_overhead_share` the decision is INCONCLUSIVE with that reason
    (overhead bends the log-log curve down: a shortfall would not be the claim's failure, and an
    exponent above the claim could hide behind it).  ``share = None`` (not measured): no gate.
    Likewise when the bare floor operation timed in the same sweeps (``rate``) shows the machine's
    own rate moving over the fitted sizes by more than half the margin (:func:`rate_gated`): the
    step's time could not follow its count there however it were written."""
    d = inf.equivalence(est, TOLERANCE, alpha, centre=centre)
    limit = max_overhead_share(centre)
    if overhead_gated(share, centre):
        return replace(d, status=INCONCLUSIVE, family="cost: exponents (not tested: overhead-dominated)",
                       reason=f"overhead-dominated range: per-step overhead{where} is {share:.0%} of the time "
                              f"at the smallest fitted size, above {limit:.1%} = tolerance / (2·{centre:.2g}) "
                              "(it could bend the slope by more than half the tolerance)")
    if rate_gated(rate):
        return replace(d, status=INCONCLUSIVE, family="cost: exponents (not tested: the machine's rate moves)",
                       reason=f"the machine's rate moves over these sizes: the bare dense product of the step's "
                              f"shapes, timed in the same sweeps, grows like k^{rate.exponent:.2f} against its "
                              f"count's k^{rate.count:.2f} (a drift of {rate.drift:+.2f}, beyond ±{TOLERANCE / 2:g} "
                              "= half the tolerance), so no step's time could follow its count here")
    return d


def series_table(record) -> dict[str, dict]:
    """Per series: arrays, the fits of time / operation count / memory over the fitted sizes, and
    the sweep-level exponent estimate ``exp``."""
    a, npts = record["arrays"], record["config"]["fit_points"]
    k0 = record["data"].get("overhead_hidden")
    out = {}
    for s in record["data"]["series"]:
        name = s["name"]
        k = np.asarray(a[f"k.{name}"])
        sel = slice(max(k.size - npts, 0), None)
        arr = {key: np.asarray(a[f"{key}.{name}"], dtype=float) for key in
               ("time", "time_min", "forward", "linearize", "ratio", "cpu", "cpu_forward", "cpu_linearize",
                "bytes", "flops", "p")}
        arr.update({key: np.asarray(a[f"{key}.{name}"], dtype=float) for key in ("online", "cpu_online")
                    if f"{key}.{name}" in a})
        sweeps_ = np.asarray(a.get(f"cpu_sweeps.{name}", arr["cpu"]), dtype=float)
        try:
            exp = sweep_exponent(k[sel], sweeps_[sel])
        except inf.UnreliableEstimate:
            exp = None
        share = overhead_share(a.get(f"overhead.{name}"), sweeps_[sel][0])
        fs, ff = a.get(f"floor_sweeps.{name}"), a.get(f"floor_flops.{name}")
        rate = floor_rate(k[sel], None if fs is None else np.asarray(fs, dtype=float)[sel],
                          None if ff is None else np.asarray(ff, dtype=float)[sel])
        out[name] = dict(s, k=k, sel=sel, **arr, sweeps=sweeps_, exp=exp, share=share, overhead_k=k0, rate=rate,
                         fit=fit_exponent(k[sel], arr["cpu"][sel]),
                         wall=fit_exponent(k[sel], arr["time_min"][sel]),
                         model=fit_exponent(k[sel], arr["flops"][sel])["slope"],
                         memory=fit_exponent(k[sel], arr["bytes"][sel])["slope"])
    return out


def _exponent_verdicts(tab) -> list[Verdict]:
    """Each exponent against its theoretical order and against its operation count's slope:
    equivalence within :data:`TOLERANCE`, Holm over the family."""
    items = []
    for name, s in tab.items():
        sizes = ", ".join(str(int(x)) for x in s["k"][s["sel"]])
        targets = []
        if s["theory"] is not None:
            targets.append(("theory", float(s["theory"][0]),
                            "RTRL's per-step cost is quartic in k" if name == "rtrl"
                            else f"{name}: per-step time exponent = its order {s['theory'][0]} in k (p ∝ k²)"))
        targets.append(("count", float(s["model"]),
                        f"{name}: per-step time exponent = its operation count's ({s['model']:.2f})"))
        for kind, centre, check in targets:
            items.append((name, kind, centre, check, sizes))
    decisions, keep, gated = [], [], {}
    for name, kind, centre, check, sizes in items:
        est = tab[name]["exp"]
        if est is None:
            keep.append((check, None, name, kind, centre, sizes))
            continue
        d = exponent_decision(est, centre, tab[name]["share"], ALPHA, f" (k={tab[name]['overhead_k']})",
                              tab[name]["rate"])
        if overhead_gated(tab[name]["share"], centre) or rate_gated(tab[name]["rate"]):
            gated[check] = d                 # not tested, so not in the Holm family
            keep.append((check, check, name, kind, centre, sizes))
            continue
        decisions.append(d)
        keep.append((check, len(decisions) - 1, name, kind, centre, sizes))
    decided = inf.holm(decisions, "cost: exponents") if decisions else []
    decided = dict(enumerate(decided), **gated)
    out = []
    for check, i, name, kind, centre, sizes in keep:
        s = tab[name]
        claim = (f"{name}'s per-step time grows like k^{centre:g}" if kind == "theory"
                 else f"{name}'s per-step time follows its operation count (k^{centre:.2f} over these sizes)")
        stat = "mean over timing sweeps of the slope of log CPU time on log k"
        evidence = (f"k = {sizes}; operation count k^{s['model']:.2f}; wall time k^{s['wall']['slope']:.2f}"
                    + ("" if s["theory"] is None else f"; asymptotic order {s['theory'][0]}")
                    + ("" if s["share"] is None else f"; overhead share at k={int(s['k'][s['sel']][0])}: "
                       f"{s['share']:.1%} (judged up to {max_overhead_share(centre):.1%})")
                    + ("" if s["rate"] is None else f"; bare dense product k^{s['rate'].exponent:.2f} against its "
                       f"count's k^{s['rate'].count:.2f} (judged up to a drift of ±{TOLERANCE / 2:g})"))
        if i is None:
            out.append(inf.inconclusive(check, "too few timing sweeps for an interval", claim, SOURCE, stat))
        else:
            out.append(inf.verdict(check, decided[i], claim, SOURCE, stat, evidence=evidence))
    return out


def _paired_log_ratio(a, b, k) -> inf.Estimate | None:
    """``log(time_a / time_b)`` at size ``k`` over sweeps paired by index (or one value)."""
    ia, ib = int(np.flatnonzero(a["k"] == k)[0]), int(np.flatnonzero(b["k"] == k)[0])
    ta, tb = np.atleast_1d(a["sweeps"][ia]), np.atleast_1d(b["sweeps"][ib])
    n = min(ta.size, tb.size)
    try:
        return inf.mean_estimate(np.log(ta[:n] / tb[:n]), "timing sweeps")
    except inf.UnreliableEstimate:
        return None


def _ratio_verdict(check, claim, stat, est, decide, family, evidence) -> Verdict:
    """A cost-ratio verdict: ``decide(estimate)`` as a one-member family, or INCONCLUSIVE without
    enough timing sweeps; ``evidence(estimate)`` is its one-line detail."""
    if est is None:
        return inf.inconclusive(check, "too few timing sweeps", claim, SOURCE, stat)
    return inf.verdict(check, inf.holm([decide(est)], family)[0], claim, SOURCE, stat, evidence=evidence(est))


def _claim_verdicts(record, tab) -> list[Verdict]:
    out, cfg = [], record["config"]
    if "snap-1" in tab and "bptt" in tab:
        s, b = tab["snap-1"], tab["bptt"]
        common = np.intersect1d(s["k"], b["k"])
        if common.size:
            k = common.max()
            check = f"SnAp-1 costs no more than {BPTT_FACTOR:g} BPTT steps (k={int(k)})"
            claim, stat = "SnAp-1 costs no more than backpropagation per step", "log(SnAp-1 / BPTT CPU time per step)"
            out.append(_ratio_verdict(check, claim, stat, _paired_log_ratio(s, b, k),
                                      lambda e: inf.below(e, np.log(BPTT_FACTOR), ALPHA), "cost: SnAp-1 vs BPTT",
                                      lambda e: f"ratio {np.exp(e.value):.2f} (budget {BPTT_FACTOR:g}×)"))
    if "snap-1" in tab:
        s = tab["snap-1"]
        exact = bool(np.all(s["bytes"] == 8 * s["p"]))
        out.append(Verdict("SnAp-1 holds one number per parameter", exact,
                           "state bytes / (8 p) = " + ", ".join(f"{b / (8 * p):.3g}" for b, p in zip(s["bytes"], s["p"])),
                           rule="exact count: bytes = 8 p at every size", claim="SnAp-1 keeps O(p) memory (nz(I))",
                           source="THEORY §4", statistic="state bytes per replicate", resolution="exact"))
    sp, rt = tab.get("snap-2-sparse"), tab.get("rtrl-sparse")
    d = cfg["sparse_density"]
    if sp is not None:
        ratio = sp["bytes"] / (8 * sp["p"] * (1 + d * sp["k"]))
        dense = sp["bytes"] / (8 * sp["p"] * sp["k"])
        out.append(Verdict(f"SnAp-2 on a sparse network (d={d:g}) holds about p(1 + dk) numbers, never k·p",
                           bool(np.all((ratio > 0.8) & (ratio < 1.2)) and np.all(dense < 1)),
                           "stored / p(1+dk) = " + ", ".join(f"{r:.2f}" for r in ratio)
                           + "; stored / kp = " + ", ".join(f"{r:.2f}" for r in dense),
                           rule="first ratio within [0.8, 1.2] and the second < 1 at every size",
                           claim="SnAp-2 on a network of density d keeps about 1 + dk rows per column",
                           source="THEORY §4", statistic="state bytes / (8 p (1 + d k))",
                           resolution="structural count (random masks: ±20%)"))
        if rt is not None:
            common = np.intersect1d(sp["k"], rt["k"])
            if common.size:
                kk = common.max()
                check = f"SnAp-2 at least {SPARSE_GAIN:g}× cheaper than RTRL on the sparse network (k={int(kk)})"
                claim = "for highly sparse networks SnAp-2 stays tractable where RTRL does not"
                stat = "log(RTRL / SnAp-2 CPU time per step)"
                out.append(_ratio_verdict(
                    check, claim, stat, _paired_log_ratio(rt, sp, kk),
                    lambda e: inf.superiority(e, np.log(SPARSE_GAIN), ALPHA), "cost: sparse SnAp-2 vs RTRL",
                    lambda e: f"RTRL / SnAp-2 = {np.exp(e.value):.2f}; exponents SnAp-2 {sp['fit']['slope']:.2f} "
                              f"(count {sp['model']:.2f}), RTRL {rt['fit']['slope']:.2f} (count {rt['model']:.2f})"))
    return out


def benchmark_table(record, tab) -> Table:
    """Engineering targets, descriptive: estimator step / forward step at ``compare_k`` and the
    batching gain (CPU times, fastest repeat; wall-time medians beside)."""
    rows, k0 = [], record["config"]["compare_k"]
    for name in ("snap-1", "uoro"):
        s = tab.get(name)
        if s is None or k0 not in s["k"]:
            continue
        i = int(np.flatnonzero(s["k"] == k0)[0])
        own = s["cpu"][i] / s["cpu_forward"][i]
        if "cpu_online" in s:                  # the online step timed as one (linearize, then the step)
            full = f"{s['cpu_online'][i] / s['cpu_forward'][i]:.2f} online step (linearize + step)"
        else:                                  # a record made before: the two parts' sum
            full = f"{(s['cpu'][i] + s['cpu_linearize'][i]) / s['cpu_forward'][i]:.2f} with linearize"
        rows.append([f"{name} step / forward step (k={k0})", f"{own:.2f}", full,
                     f"{s['ratio'][i]:.2f} (wall median)", "≤ 3"])
    bt = record["data"]["batching"]
    gain = bt["sequential_cpu"] / bt["batched_cpu"]
    rows.append([f"{bt['replicates']} batched replicates of {bt['estimator']} vs sequential (k={bt['hidden']})",
                 f"{gain:.1f}×", f"{bt['batched_cpu'] * 1e3:.1f} vs {bt['sequential_cpu'] * 1e3:.1f} ms",
                 f"{bt['sequential_seconds'] / bt['batched_seconds']:.1f}× (wall median)", "≥ 20×"])
    return Table("Engineering benchmarks (descriptive: targets of the implementation, not claims of the theory)",
                 ["benchmark", "CPU ratio", "detail", "wall", "target"], rows)


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
                "coordinates, one per timing sweep (every size timed once per sweep, sweeps repeated), with "
                "95% intervals over sweeps; each is compared with the theoretical order and with the exponent of "
                f"the estimator's operation count over the same sizes (equivalence within ±{TOLERANCE}, so a wider "
                "interval is INCONCLUSIVE; Holm over the family). Engineering targets are a descriptive table."),
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
    section.tables.append(benchmark_table(rec, tab))
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
        e = s["exp"]
        lo, hi = e.interval(0.95) if e is not None else (np.nan, np.nan)
        rows.append([name, s["density"], f"{int(s['k'][s['sel']][0])}–{int(s['k'][-1])}",
                     "–" if e is None else f"{e.value:.2f} [{lo:.2f}, {hi:.2f}] ({e.n} {e.unit})",
                     f"{s['wall']['slope']:.2f}",
                     f"{s['model']:.2f}",
                     "–" if s["share"] is None else f"{s['share']:.1%}",
                     "–" if s["theory"] is None else s["theory"][0], f"{s['memory']:.2f}",
                     "–" if s["theory"] is None else s["theory"][1],
                     f"{s['cpu'][-1] * 1e6:.0f}", f"{s['time'][-1] * 1e6:.0f}", f"{s['bytes'][-1] / 1e6:.3g}"])
    section.tables.append(Table(
        "CPU-time exponents (mean over timing sweeps, 95% CI over sweeps) beside the wall-time exponent, the operation-count exponent over "
        "the same sizes, the share of the time at the first fitted size that is per-step overhead (timed on a "
        "tiny cell; an exponent is judged only where β·share ≤ tolerance/2) and the asymptotic theory; CPU and wall (median) µs per step and state memory (MB per "
        "replicate) at the largest k",
        ["series", "density", "k fitted", "time exponent", "wall-time exponent", "count exponent",
         "overhead share at the first fitted k", "theory",
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
