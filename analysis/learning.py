"""SnAp's claims under online learning (THEORY.md §6): curves with confidence bands, a table of final
metrics and the verdicts, from the records of the ``learning`` experiment.

Metrics, per replicate (seeds are the replicates; all intervals are 95% Student-t intervals over
them):

* copy task: the curriculum length ``L`` reached after the run (higher is better);
* character model: validation bits per character with frozen ``θ`` at the end (lower is better);
* alignment: the cosine between the estimator's and exact RTRL's segment gradients, averaged over
  the checkpoints of the run.

Estimators of one group (task, cell, density) share ``θ₀``, mask and data replicate by replicate,
so comparisons use paired differences.  "Per FLOP" compares two estimators at the FLOP budget of the
cheaper one's whole run: the dearer one's metric at step ``t* = F / FLOPs-per-step`` (last
curriculum record at or before ``t*``; validation curve linearly interpolated).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from rtrl_validation.simulations.experiments.base import Verdict

from . import style
from .montecarlo import mean_se
from .sections import Figure, Section, Table

LEVEL = 0.95
#: per task: (metric name, array, time array, +1 when higher is better)
METRICS = {"copy": ("curriculum length L", "length", "t", +1),
           "text": ("validation bits/char", "val_bits", "val_t", -1)}


def mean_ci(x, level: float = LEVEL) -> tuple[float, float, float, int]:
    """Mean of the finite values of ``x`` with a Student-t interval: ``(mean, lo, hi, n)``
    (``lo = hi = NaN`` below 2 values; ``lo = hi = mean`` when they are all equal)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.nan, np.nan, np.nan, 0
    if x.size < 2:
        return float(x[0]), np.nan, np.nan, 1
    m, se = mean_se(x)
    q = stats.t.ppf(0.5 + level / 2, x.size - 1) * se
    return float(m), float(m - q), float(m + q), int(x.size)


def _fmt_ci(ci, digits=3) -> str:
    m, lo, hi, n = ci
    if not np.isfinite(m):
        return "n/a"
    if not np.isfinite(lo):
        return f"{m:.{digits}g} (n={n})"
    return f"{m:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def band(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and t-interval at every row of ``values`` (``T × B``), NaN-aware."""
    rows = [mean_ci(v) for v in np.asarray(values, dtype=float)]
    m, lo, hi = (np.array([r[i] for r in rows]) for i in range(3))
    return m, np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m)


# --------------------------------------------------------------------------- per-record quantities
class Run:
    """One record's metric curve and derived numbers."""

    def __init__(self, record: dict):
        cfg, data, arrays = record["config"], record["data"], record["arrays"]
        self.record, self.key = record, record["task"]
        self.kind, self.group, self.label = cfg["task"], cfg["group"], data["estimator"]
        self.metric_name, name, tname, self.sign = METRICS[self.kind]
        self.t = np.asarray(arrays[tname], dtype=float)
        self.values = np.asarray(arrays[name], dtype=float)          # T × B
        self.fps = float(data["flops_per_step"]["total"])
        self.steps = int(data["steps"])
        self.seconds_per_step = float(data["seconds_per_step"])
        self.cosine = np.asarray(arrays["cosine"], dtype=float) if "cosine" in arrays else None
        self.diverged = np.asarray(arrays["diverged_at"]) >= 0

    @property
    def final(self) -> np.ndarray:
        return self.values[-1]

    @property
    def mean_cosine(self) -> np.ndarray | None:
        """Per replicate: the cosine averaged over the checkpoints (``B``); RTRL: 1."""
        if self.label == "rtrl":
            return np.ones(self.values.shape[1])
        if self.cosine is None:
            return None
        with np.errstate(invalid="ignore"):
            return np.nanmean(self.cosine, axis=0)

    def at_step(self, t_star: float) -> np.ndarray:
        """The metric at step ``t*`` (``B``): last record at or before it (copy), interpolated (text)."""
        if self.kind == "copy":
            i = np.searchsorted(self.t, t_star, side="right") - 1
            return np.ones(self.values.shape[1]) if i < 0 else self.values[i]
        return np.array([np.interp(t_star, self.t, v) for v in self.values.T])

    def total_flops(self) -> float:
        return self.fps * self.steps


def advantage(a: Run, b: Run, va=None, vb=None) -> tuple:
    """Paired advantage of ``a`` over ``b`` (positive = ``a`` better), as ``mean_ci``."""
    va = a.final if va is None else va
    vb = b.final if vb is None else vb
    return mean_ci(a.sign * (va - vb))


def matched_flops(a: Run, b: Run) -> tuple[np.ndarray, np.ndarray, float]:
    """Both metrics at the FLOP budget of the cheaper run: ``(va, vb, budget)``."""
    F = min(a.total_flops(), b.total_flops())
    return a.at_step(F / a.fps), b.at_step(F / b.fps), F


# --------------------------------------------------------------------------- verdicts
def _seeds_note(n: int) -> str:
    return f"; only {n} seeds: low power" if n < 5 else ""


def _better_word(run: Run) -> str:
    return "higher L" if run.sign > 0 else "lower bits/char"


def snap1_vs_uoro(runs: dict[str, Run], tag: str) -> list[Verdict]:
    s1, uo = runs.get("snap-1"), runs.get("uoro")
    if s1 is None or uo is None:
        return []
    out = []
    ci = advantage(s1, uo)
    ratio = s1.fps / uo.fps
    out.append(Verdict(
        f"SnAp-1 learns faster than UORO at comparable cost [{tag}]", bool(ci[1] > 0),
        f"final {s1.metric_name}: SnAp-1 {_fmt_ci(mean_ci(s1.final))}, UORO {_fmt_ci(mean_ci(uo.final))}; "
        f"paired advantage of SnAp-1 ({_better_word(s1)}) {_fmt_ci(ci)}; FLOPs/step SnAp-1/UORO = {ratio:.2f} "
        f"(PASS when the interval excludes 0 in SnAp-1's favour; the claim's 'substantially' is not "
        f"quantified, the interval gives the size{_seeds_note(ci[3])})", ci[0], 0.0))
    c1, cu = s1.mean_cosine, uo.mean_cosine
    if c1 is not None and cu is not None:
        ci = mean_ci(c1 - cu)
        out.append(Verdict(
            f"SnAp-1 gradient aligns better with RTRL than UORO's [{tag}]", bool(ci[1] > 0),
            f"mean cosine with the exact segment gradient: SnAp-1 {_fmt_ci(mean_ci(c1))}, "
            f"UORO {_fmt_ci(mean_ci(cu))}; paired difference {_fmt_ci(ci)}{_seeds_note(ci[3])}", ci[0], 0.0))
    return out


def snap2_vs_tbptt(runs: dict[str, Run], tag: str, density: float) -> list[Verdict]:
    s2 = runs.get("snap-2")
    tb = {lab: r for lab, r in runs.items() if lab.startswith("tbptt-") or lab == "bptt"}
    if s2 is None or not tb or density >= 1.0:
        return []
    out = []
    per_step = {lab: advantage(s2, r) for lab, r in tb.items()}
    best = min(per_step, key=lambda lab: per_step[lab][0])          # the strongest TBPTT (least advantage)
    ci = per_step[best]
    out.append(Verdict(
        f"Sparse SnAp-2 with online updates learns faster per step than TBPTT [{tag}]", bool(ci[1] > 0),
        f"paired advantage of SnAp-2 ({_better_word(s2)}) after {s2.steps} steps: "
        + "; ".join(f"vs {lab} {_fmt_ci(v)}" for lab, v in per_step.items())
        + f"; judged against the strongest, {best} (PASS when its interval excludes 0 in SnAp-2's favour"
          f"{_seeds_note(ci[3])})", ci[0], 0.0))
    per_flop = {}
    for lab, r in tb.items():
        va, vb, F = matched_flops(s2, r)
        per_flop[lab] = (advantage(s2, r, va, vb), F)
    best = min(per_flop, key=lambda lab: per_flop[lab][0][0])
    ci, F = per_flop[best]
    out.append(Verdict(
        f"Sparse SnAp-2 learns faster per FLOP than TBPTT [{tag}]", bool(ci[1] > 0),
        f"FLOPs/step SnAp-2 {s2.fps:.3g}"
        + (f" ({s2.fps / runs['rtrl'].fps:.2g} of RTRL's)" if "rtrl" in runs else "") + ", "
        + ", ".join(f"{lab} {r.fps:.3g}" for lab, r in tb.items())
        + "; paired advantage of SnAp-2 at the cheaper run's FLOP budget: "
        + "; ".join(f"vs {lab} {_fmt_ci(v[0])} at {v[1]:.3g} FLOPs" for lab, v in per_flop.items())
        + f"; judged against the strongest, {best}{_seeds_note(ci[3])}", ci[0], 0.0))
    return out


def snap_orders(runs: dict[str, Run]) -> list[int]:
    return sorted(int(lab.split("-")[1]) for lab in runs if lab.startswith("snap-"))


def snap_to_rtrl(runs: dict[str, Run], tag: str) -> list[Verdict]:
    orders = snap_orders(runs)
    if len(orders) < 2 or "rtrl" not in runs:
        return []
    out = []
    snaps = [runs[f"snap-{n}"] for n in orders]
    cos = [r.mean_cosine for r in snaps]
    if all(c is not None for c in cos):
        overall = mean_ci(cos[-1] - cos[0])
        steps = [mean_ci(b - a) for a, b in zip(cos, cos[1:])]
        drop = any(np.isfinite(s[2]) and s[2] < 0 for s in steps)
        exact = all(np.allclose(c, 1.0, rtol=0, atol=1e-9) for c in cos)
        passed = exact or (overall[1] > 0 and not drop)
        out.append(Verdict(
            f"SnAp-n gradient approaches RTRL's as n grows (cosine) [{tag}]", bool(passed),
            "mean cosine with the exact gradient: "
            + ", ".join(f"n={n}: {_fmt_ci(mean_ci(c), 4)}" for n, c in zip(orders, cos))
            + f"; n={orders[-1]} minus n={orders[0]}: {_fmt_ci(overall)} (PASS when that interval is above 0 "
              f"and no step in n lowers the cosine significantly{_seeds_note(overall[3])})", overall[0], 0.0))
    rt = runs["rtrl"]
    gaps = [mean_ci(curve_lead(rt, r)) for r in snaps]                  # RTRL's lead over SnAp-n
    first, last = gaps[0], gaps[-1]
    contains0 = np.isfinite(last[1]) and last[1] <= 0 <= last[2]
    passed = bool(contains0 and abs(last[0]) <= abs(first[0]))
    out.append(Verdict(
        f"SnAp-n learning curve approaches RTRL's as n grows [{tag}]", passed,
        f"RTRL's paired lead in {rt.metric_name} over SnAp-n, averaged along the learning curve: "
        + ", ".join(f"n={n}: {_fmt_ci(g)}" for n, g in zip(orders, gaps))
        + f" (PASS when the lead at n={orders[-1]} is no larger than at n={orders[0]} and its interval "
          f"contains 0{_seeds_note(last[3])})"
        + (f"; the lead at n={orders[0]} is itself indistinguishable from 0 at this power"
           if np.isfinite(first[1]) and first[1] <= 0 <= first[2] else ""), last[0], first[0]))
    return out


def curve_lead(a: Run, b: Run) -> np.ndarray:
    """Per replicate, ``a``'s advantage over ``b`` averaged over the common records of their curves (``B``)."""
    n = min(len(a.t), len(b.t))
    if not np.array_equal(a.t[:n], b.t[:n]):
        raise ValueError(f"{a.key} and {b.key} were recorded at different steps")
    with np.errstate(invalid="ignore"):
        return a.sign * np.nanmean(a.values[:n] - b.values[:n], axis=0)


# --------------------------------------------------------------------------- figures
def _band(ax, x, m, lo, hi, lab):
    sty = style.estimator_style(lab)
    ax.plot(x, m, **sty.kw())
    ax.fill_between(x, lo, hi, color=sty.color, alpha=0.15, lw=0)


def curves_figure(kind: str, groups: dict[str, dict[str, Run]]) -> Figure:
    """Per group and per panel of at most five estimators (RTRL in each): the metric against
    steps, against FLOPs, and each estimator's paired difference from RTRL against steps."""
    rows = [(gid, labels) for gid in groups if gid.startswith(kind + "-")
            for labels in style.panels(list(groups[gid]), reference="rtrl", size=style.MAX_SERIES - 1)]
    fig = style.figure(height=1.9 * len(rows) + 0.2)
    axes = np.atleast_2d(fig.subplots(len(rows), 3, squeeze=False))
    name = METRICS[kind][0]
    for row, (gid, labels) in zip(axes, rows):
        runs = groups[gid]
        ref = runs.get("rtrl")
        for lab in labels:
            run = runs[lab]
            m, lo, hi = band(run.values)
            later = run.t > 0
            _band(row[0], run.t, m, lo, hi, lab)
            _band(row[1], run.t[later] * run.fps, m[later], lo[later], hi[later], lab)
            if ref is not None and lab != "rtrl" and ref.values.shape == run.values.shape:
                _band(row[2], run.t, *band(run.values - ref.values), lab)
            elif lab == "rtrl":
                row[2].plot([], [], **style.estimator_style(lab).kw())      # its legend entry
        row[0].set(xlabel="step $t$", ylabel=name)
        row[0].set_title(gid, loc="left")
        row[1].set(xlabel="FLOPs per replicate (estimate)", xscale="log")
        row[2].axhline(0.0, color="k", lw=0.8)
        row[2].set(xlabel="step $t$", ylabel="minus RTRL, paired by seed" if ref is not None else "(no RTRL run)")
        row[2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    what = ("curriculum length reached" if kind == "copy"
            else r"validation bits per character (frozen $\theta$, fixed validation segment)")
    return Figure(f"{what.capitalize()} against step $t$, against estimated FLOPs, and as the paired difference "
                  "from RTRL; lines: mean over seeds, bands: 95% Student-t intervals", fig)


def alignment_figure(groups: dict[str, dict[str, Run]]) -> Figure | None:
    panels = [(gid, labels) for gid in groups if any(r.cosine is not None for r in groups[gid].values())
              for labels in style.panels([lab for lab, r in groups[gid].items() if r.cosine is not None],
                                         reference=None)]
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig = style.figure(width=2.4 * cols, height=3.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (gid, labels) in zip(axes, panels):
        for lab in labels:
            run = groups[gid][lab]
            t = np.asarray(run.record["arrays"]["align_t"], dtype=float)
            _band(ax, t, *band(run.cosine), lab)
        ax.set(xlabel="step $t$", ylabel="cosine with RTRL", ylim=(-0.2, 1.05))
        ax.set_title(gid, loc="left")
        style.legend_below(ax, ncol=1)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return Figure("Gradient alignment along training: cosine between the estimator's and exact RTRL's gradient "
                  r"of a replayed stretch of the stream at frozen $\theta_t$ (lines: mean over seeds, bands: "
                  "95% Student-t intervals)", fig)


# --------------------------------------------------------------------------- the section
def collect(records: list[dict]) -> tuple[dict[str, dict[str, Run]], list[str]]:
    """Group the usable records: ``{group: {estimator label: Run}}`` and the failure lines."""
    groups: dict[str, dict[str, Run]] = {}
    failures = []
    for r in records:
        status = r.get("status", "ok")
        if status != "ok":
            failures.append(f"{r['task']}: {status} ({r.get('reason', '')})")
        if status == "failed":
            continue
        run = Run(r)
        groups.setdefault(run.group, {})[run.label] = run
    return groups, failures


def analyse(records: list[dict]) -> Section:
    """Records of ``learning`` -> report section."""
    groups, failures = collect(records)
    cfg = dict(records[0].get("experiment_config") or records[0]["config"]) if records else {}
    section = Section(
        title="SnAp's claims under online learning: copy task and character model",
        experiment="learning",
        method=("Every estimator trains the same sparse network online (Adam on each step's gradient; TBPTT(τ) "
                "updates at each block end) on a binary copy task whose length L grows when the recall loss over a "
                "window falls below a threshold, and on a character-level model of Python's pydoc topics. "
                "Seeds share θ₀, mask and data across estimators, so comparisons are paired; intervals are 95% "
                "t-intervals over seeds. Cost is a structural FLOP estimate per step."),
        equation=(r"$\tilde J_t = (D_t \tilde J_{t-1} + I_t)\odot M_n,\quad \theta_{t+1} = \theta_t - "
                  r"\alpha\,\mathrm{Adam}(c_t \tilde J_t),\quad \mathrm{bpc} = \ell_{\mathrm{nats}}/\ln 2$"),
        config=cfg, failures=failures)
    if not groups:
        section.notes.append("no usable records")
        return section

    verdicts = []
    for gid, runs in groups.items():
        any_run = next(iter(runs.values()))
        tag = gid
        verdicts += snap1_vs_uoro(runs, tag)
        verdicts += snap2_vs_tbptt(runs, tag, any_run.record["config"]["density"])
        verdicts += snap_to_rtrl(runs, tag)
    section.verdicts = verdicts

    for kind in METRICS:
        if any(g.startswith(kind + "-") for g in groups):
            section.figures.append(curves_figure(kind, groups))
    fig = alignment_figure(groups)
    if fig is not None:
        section.figures.append(fig)

    rows = []
    for gid, runs in groups.items():
        for lab, run in runs.items():
            va, _, F = matched_flops(run, min(runs.values(), key=Run.total_flops))
            rows.append([gid, lab, run.record["data"]["p"], f"{run.fps:.3g}", f"{1e3 * run.seconds_per_step:.2f}",
                         _fmt_ci(mean_ci(run.final)), _fmt_ci(mean_ci(va)),
                         _fmt_ci(mean_ci(run.mean_cosine)) if run.mean_cosine is not None else "",
                         int(run.diverged.sum())])
    section.tables.append(Table(
        "Final metrics (mean [95% t-interval] over seeds): copy task = curriculum length L reached; text = "
        "validation bits/char. 'at min budget' = the metric when the run had spent the FLOPs of the cheapest run "
        "of its group; cosine = alignment with exact RTRL averaged over checkpoints (RTRL: 1 by definition).",
        ["group", "estimator", "p", "FLOPs/step", "ms/step", "final", "at min budget", "cosine", "diverged"], rows))

    pairs = []
    for gid, runs in groups.items():
        if "snap-1" in runs and "uoro" in runs:
            pairs.append(f"{gid}: SnAp-1/UORO FLOPs per step = {runs['snap-1'].fps / runs['uoro'].fps:.2f}")
        if "snap-2" in runs:
            tb = [r for lab, r in runs.items() if lab.startswith("tbptt")]
            if tb:
                pairs.append(f"{gid}: SnAp-2/TBPTT FLOPs per step = {runs['snap-2'].fps / tb[0].fps:.1f}")
    section.notes.append(
        "Pairing: all estimators of a group train the same cell (same hidden size, weight mask and parameter "
        "count p), i.e. the comparison is parameter-matched; cost enters through the per-FLOP axis and the "
        "matched-budget comparisons. SnAp-1 and UORO are both O(p) per step and are compared at equal steps; "
        "TBPTT(τ) with non-overlapping blocks costs the same per step for every τ, so sparse SnAp-2 is compared "
        "with it both per step and at the FLOP budget of the cheaper run. " + "; ".join(pairs) + ".")
    section.notes.append(
        "Copy task: a random binary string of length ℓ ~ U[max(1, L−spread), L], a delimiter, then recall steps "
        "with targets; loss (and credit) only on recall steps; L grows by one per replicate when the mean recall "
        "loss over a window of recalled characters is below the threshold in bits. Episodes follow each other "
        "in one stream per replicate and the state is never reset.")
    section.notes.append(
        f"Alignment: every {cfg.get('align_every', '?')} steps θ is frozen and the next {cfg.get('align_len', '?')} "
        "steps of the training stream are replayed from the current state with zero influence, once with the "
        "estimator and once with exact RTRL; the cosine is that of the two gradients of this segment's loss. "
        "TBPTT(τ) with τ at least the segment length is exact on such a segment.")
    texts = [r for runs in groups.values() for r in runs.values() if r.kind == "text"]
    if texts:
        d = texts[0].record["data"]
        c = d.get("corpus", {})
        section.notes.append(
            f"Character model: corpus {c.get('source', 'pydoc_data.topics')} of Python {c.get('python', '?')} "
            f"({c.get('chars', '?')} characters, sha256 {str(c.get('sha256', ''))[:12]}…), topics joined in sorted "
            f"order; last {cfg.get('val_fraction', 0.1):g} of the text validates; vocabulary = the "
            f"{len(d.get('vocab', ''))} most frequent training characters + UNK. Validation bits/char with frozen "
            "θ on a fixed segment from the start of the validation split, state carried from zero.")
    seeds = {run.values.shape[1] for runs in groups.values() for run in runs.values()}
    if seeds and max(seeds) < 5:
        section.notes.append(f"Only {max(seeds)} seeds per estimator: intervals are wide and a claim can fail "
                             "for lack of power (the full profile runs more seeds and longer).")
    return section
