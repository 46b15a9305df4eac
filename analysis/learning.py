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

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from rtrl_validation.simulations.estimators import ESTIMATORS
from rtrl_validation.simulations.experiments.base import FAIL, INCONCLUSIVE, Verdict
from rtrl_validation.simulations.experiments.learning import applies

from . import style
from .inference import (Decision, UnreliableEstimate, detects, equivalence, holm, inconclusive, mean_estimate,
                        superiority, verdict, with_control)
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
        self.tuning = data.get("tuning") or {}

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
#: Decision rules, fixed before the data (Menick et al. 2021, abstract; THEORY.md §6).  Statistic:
#: the paired (by seed) advantage averaged along the learning curve, i.e. per data step.
SOURCE = "Menick et al. 2021 (SnAp), abstract; THEORY.md §6"
ALPHA = 0.05
#: smallest advantage the claims care about: 2 curriculum levels; 0.05 bits per character
DELTA = {"copy": 2.0, "text": 0.05}
#: "approaches RTRL": equivalence margin on RTRL's lead (1 curriculum level; 0.02 bits per character)
MARGIN = {"copy": 1.0, "text": 0.02}
#: smallest cosine gain that counts as "aligns better" / "approaches RTRL"
COS_DELTA = 0.05
#: the claims' regime: a FAIL below it is reported INCONCLUSIVE (the scale cannot test the claim)
PAPER_HIDDEN, PAPER_STEPS = 128, 100_000
FAMILY = "learning claims"


@dataclass
class Pending:
    """A claim on its way to a verdict: a decision, or the reason there is none (``why``);
    ``scale`` names why a FAIL would not speak to the claim (empty: it would)."""

    check: str
    claim: str
    statistic: str
    control: str
    evidence: str
    decision: Decision | None = None
    why: str = ""
    scale: str = ""


def scale_gap(run: Run) -> str:
    """Why ``run`` is below the claims' regime (hidden units, steps), or ``""``."""
    hidden = run.record["config"].get("hidden")
    gaps = []
    if hidden is None or hidden < PAPER_HIDDEN:
        gaps.append(f"{hidden} < {PAPER_HIDDEN} units")
    if run.steps < PAPER_STEPS:
        gaps.append(f"{run.steps} < {PAPER_STEPS} steps")
    return ("below the claim's scale (" + ", ".join(gaps) + ")") if gaps else ""


def paired(check, claim, statistic, values, delta, evidence, scale="", kind="superiority") -> Pending:
    """A paired claim on per-seed ``values``: superiority with minimum effect ``delta``, or
    equivalence within ``±delta`` (``kind="equivalence"``); its control is the same spread with a
    true effect of ``delta`` (superiority) or ``2·delta`` (equivalence), which the interval must
    detect."""
    try:
        est = mean_estimate(values, unit="seeds")
    except UnreliableEstimate as e:
        return Pending(check, claim, statistic, "", evidence, why=str(e), scale=scale)
    if kind == "equivalence":
        shift = 2 * delta
        decision = equivalence(est, delta, ALPHA)
    else:
        shift = delta
        decision = superiority(est, delta, ALPHA)
    control = f"a paired difference of {shift:.3g} with the observed spread (se {est.se:.3g}) must be detected"
    decision = with_control(decision, detects(replace(est, value=shift), ALPHA), control)
    return Pending(check, claim, statistic, control, evidence, decision, scale=scale)


def judge(pending: list[Pending]) -> list[Verdict]:
    """Holm over the decided claims (one family), then verdicts (:func:`settle`)."""
    decided = [p for p in pending if p.decision is not None]
    adjusted = iter(holm([p.decision for p in decided], FAMILY))
    return [settle(p, None if p.decision is None else next(adjusted)) for p in pending]


def settle(p: Pending, d: Decision | None) -> Verdict:
    """The verdict of claim ``p`` with its (multiplicity-adjusted) decision ``d``: INCONCLUSIVE
    with ``p.why`` when there is none; a FAIL below the claims' scale becomes INCONCLUSIVE."""
    if d is None:
        return inconclusive(p.check, p.why + (f"; {p.evidence}" if p.evidence else ""), p.claim, SOURCE,
                            p.statistic, p.control, FAMILY)
    if d.status == FAIL and p.scale:
        d = replace(d, status=INCONCLUSIVE, reason=f"{d.reason}, but {p.scale}: a FAIL here does not "
                                                      "speak to the claim")
    return verdict(p.check, d, p.claim, SOURCE, p.statistic, p.control, p.evidence)


def _better_word(run: Run) -> str:
    return "higher L" if run.sign > 0 else "lower bits/char"


def snap1_vs_uoro(runs: dict[str, Run], tag: str) -> list[Pending]:
    """Claim (1): SnAp-1 learns faster than UORO (comparable cost per step), and aligns better."""
    s1, uo = runs.get("snap-1"), runs.get("uoro")
    if s1 is None or uo is None:
        return []
    kind = s1.kind
    out = [paired(
        f"SnAp-1 learns faster than UORO at comparable cost [{tag}]",
        "SnAp-1 substantially outperforms other RTRL approximations of comparable cost, such as UORO",
        f"paired advantage of SnAp-1 in {s1.metric_name} ({_better_word(s1)}), averaged along the curve",
        curve_lead(s1, uo), DELTA[kind],
        f"final {s1.metric_name}: SnAp-1 {_fmt_ci(mean_ci(s1.final))}, UORO {_fmt_ci(mean_ci(uo.final))}; "
        f"FLOPs/step SnAp-1/UORO = {s1.fps / uo.fps:.2f}; δ = {DELTA[kind]:g}", scale_gap(s1))]
    c1, cu = s1.mean_cosine, uo.mean_cosine
    if c1 is not None and cu is not None:
        out.append(paired(
            f"SnAp-1 gradient aligns better with RTRL than UORO's [{tag}]",
            "SnAp-1's gradient is closer to RTRL's than UORO's along training",
            "paired difference of the mean cosine with exact RTRL (SnAp-1 − UORO)", c1 - cu, COS_DELTA,
            f"SnAp-1 {_fmt_ci(mean_ci(c1))}, UORO {_fmt_ci(mean_ci(cu))}", scale_gap(s1)))
    return out


#: the two TBPTT baselines: updates at every step through the last τ steps (the paper's comparison),
#: and once per block of τ steps; label prefix -> how it updates
TBPTT_VARIANTS = {"online-tbptt-": "online, every step", "tbptt-": "every τ steps"}


def chosen_tbptt(runs: dict[str, Run], prefix: str = "tbptt-") -> tuple[Run | None, str]:
    """The TBPTT baseline of one variant (``prefix``, :data:`TBPTT_VARIANTS`): the τ with the best
    tuning score (tuning seeds), else — untuned — the strongest on the evaluation seeds (which
    favours TBPTT)."""
    tb = {lab: r for lab, r in runs.items() if lab.startswith(prefix)}
    if not tb:
        return None, ""
    scores = {lab: r.tuning.get("score") for lab, r in tb.items()}
    if all(v is not None for v in scores.values()):
        best = max(scores, key=lambda lab: scores[lab])
        return tb[best], f"{best}: τ tuned on the tuning seeds among {', '.join(sorted(tb))}"
    s2 = runs.get("snap-2") or next(iter(tb.values()))
    best = min(tb, key=lambda lab: np.mean(curve_lead(s2, tb[lab])) if lab != s2.label else 0.0)
    return tb[best], f"{best}: τ not tuned; the strongest on the evaluation seeds among {', '.join(sorted(tb))}"


def snap2_vs_tbptt(runs: dict[str, Run], tag: str, density: float) -> list[Pending]:
    """Claim (2): sparse SnAp-2 with online updates learns faster per data step than TBPTT, once
    against each TBPTT variant present (:data:`TBPTT_VARIANTS`)."""
    return [p for prefix, updates in TBPTT_VARIANTS.items()
            for p in snap2_vs_variant(runs, tag, density, prefix, updates)]


def snap2_vs_variant(runs, tag, density, prefix, updates) -> list[Pending]:
    """Claim (2) against the tuned TBPTT of one variant (``prefix``; ``updates`` names when it
    updates θ)."""
    s2 = runs.get("snap-2")
    tb, how = chosen_tbptt(runs, prefix)
    if s2 is None or tb is None or density >= 1.0:
        return []
    check = f"Sparse SnAp-2 with online updates learns faster per step than TBPTT ({updates}) [{tag}]"
    claim = "for highly sparse networks SnAp-2 can outperform BPTT in learning speed when updates are done online"
    stat = f"paired advantage of SnAp-2 over {tb.label} in {s2.metric_name}, averaged along the curve"
    evidence = (f"baseline {how}; final {s2.metric_name}: SnAp-2 {_fmt_ci(mean_ci(s2.final))}, "
                f"{tb.label} {_fmt_ci(mean_ci(tb.final))}; δ = {DELTA[s2.kind]:g}")
    if s2.kind == "copy":
        tau = int(tb.label.rsplit("-", 1)[1])
        reached = float(np.nanmax(np.concatenate([s2.final, tb.final])))
        if reached + 1 <= tau:
            return [Pending(check, claim, stat, "", evidence,
                            why=f"curriculum never exceeded τ: longest length reached {reached:g}, so every "
                                f"recall lies within τ = {tau} steps of its symbol")]
    return [paired(check, claim, stat, curve_lead(s2, tb), DELTA[s2.kind], evidence, scale_gap(s2))]


def snap_orders(runs: dict[str, Run]) -> list[int]:
    return sorted(int(lab.split("-")[1]) for lab in runs if lab.startswith("snap-"))


def snap_to_rtrl(runs: dict[str, Run], tag: str) -> list[Pending]:
    """SnAp-n approaches RTRL as n grows: the cosine rises (superiority), and RTRL's lead over the
    highest order is within the margin (equivalence: indistinguishable from zero is not enough)."""
    orders = snap_orders(runs)
    if len(orders) < 2:
        return []
    out = []
    snaps = [runs[f"snap-{n}"] for n in orders]
    cos = [r.mean_cosine for r in snaps]
    if all(c is not None for c in cos):
        out.append(paired(
            f"SnAp-n gradient approaches RTRL's as n grows (cosine) [{tag}]",
            "the SnAp-n gradient approaches RTRL's as n grows",
            f"paired cosine gain with exact RTRL, n={orders[-1]} minus n={orders[0]}", cos[-1] - cos[0], COS_DELTA,
            "mean cosine: " + ", ".join(f"n={n}: {_fmt_ci(mean_ci(c), 4)}" for n, c in zip(orders, cos)),
            scale_gap(snaps[0])))
    check = f"SnAp-n learning curve approaches RTRL's as n grows [{tag}]"
    claim = f"SnAp-{orders[-1]} learns as fast as RTRL (within the margin)"
    stat = f"RTRL's paired lead over SnAp-{orders[-1]} in {snaps[0].metric_name}, averaged along the curve"
    if "rtrl" not in runs:
        out.append(Pending(check, claim, stat, "", "", why="exact RTRL not trained in this profile"))
        return out
    rt = runs["rtrl"]
    gaps = [mean_ci(curve_lead(rt, r)) for r in snaps]
    out.append(paired(check, claim, stat, curve_lead(rt, snaps[-1]), MARGIN[rt.kind],
                      "RTRL's lead: " + ", ".join(f"n={n}: {_fmt_ci(g)}" for n, g in zip(orders, gaps))
                      + f"; margin ±{MARGIN[rt.kind]:g}", scale_gap(rt), kind="equivalence"))
    return out


def _is_tbptt(label: str) -> bool:
    return any(label.startswith(prefix) for prefix in TBPTT_VARIANTS)


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
        row[1].set(xlabel="FLOPs per replicate (estimate)", xscale="log", title="against cost (extra question)")
        row[2].axhline(0.0, color="k", lw=0.8)
        row[2].set(xlabel="step $t$", ylabel="minus RTRL, paired by seed" if ref is not None else "(no RTRL run)")
        if row[2].get_legend_handles_labels()[0]:
            row[2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    what = ("curriculum length reached" if kind == "copy"
            else r"validation bits per character (frozen $\theta$, fixed validation segment)")
    return Figure(f"{what.capitalize()} against step $t$, against estimated FLOPs, and as the paired difference "
                  "from RTRL (the FLOP axis is an extra question, not a claim of the paper); lines: mean over seeds, bands: 95% Student-t intervals", fig)


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


#: methods shown together in the per-step panels (a few per panel, so they stay readable)
PANELS = (("SnAp-1 and comparable cost", ("rtrl", "snap-1", "uoro", "rflo", "kf-rtrl")),
          ("SnAp-n and TBPTT(τ) per block", ("rtrl", "snap-2", "snap-3", "tbptt-", "bptt")),
          ("SnAp-n and online TBPTT(τ)", ("rtrl", "snap-2", "snap-3", "online-tbptt-")))


def _in_panel(label: str, members: tuple[str, ...]) -> bool:
    return any(label == m or (m.endswith("-") and label.startswith(m)) for m in members)


def panels_figure(kind: str, groups: dict[str, dict[str, Run]]) -> Figure:
    """Per group, the metric against steps in :data:`PANELS` (SnAp-1 with the methods of its cost;
    SnAp-n with TBPTT per block; SnAp-n with online TBPTT), mean over seeds with a 95% t-band; a
    panel without a run of the group is left out."""
    gids = [g for g in groups if g.startswith(kind + "-")]
    panels = [(title, members) for title, members in PANELS
              if any(_in_panel(lab, members) and lab != "rtrl" for g in gids for lab in groups[g])] or PANELS[:1]
    fig = style.figure(height=2.0 * len(gids) + 0.3)
    axes = np.atleast_2d(fig.subplots(len(gids), len(panels), squeeze=False))
    ylabel = r"curriculum length $L$ (symbols)" if kind == "copy" else r"validation bits per character"
    for row, gid in zip(axes, gids):
        for ax, (title, members) in zip(row, panels):
            for lab, run in groups[gid].items():
                if not _in_panel(lab, members):
                    continue
                _band(ax, run.t, *band(run.values), lab)
            ax.set(xlabel=r"online step $t$", ylabel=ylabel)
            ax.set_title(f"{gid}: {title}", loc="left")
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
    what = "Curriculum length reached" if kind == "copy" else r"Validation bits per character (frozen $\theta$)"
    return Figure(f"{what} against online steps, a few methods per panel: mean over evaluation seeds with a "
                  "95% t-band", fig)


def compute_figure(groups: dict[str, dict[str, Run]]) -> Figure:
    """Estimated FLOPs and measured seconds per online step and replicate, per estimator."""
    gids = list(groups)
    fig = style.figure(height=2.8)
    ax_f, ax_s = fig.subplots(1, 2)
    width = 0.8 / max(len(gids), 1)
    labels = sorted({lab for runs in groups.values() for lab in runs})
    x = np.arange(len(labels))
    for i, gid in enumerate(gids):
        runs = groups[gid]
        fps = [runs[lab].fps if lab in runs else np.nan for lab in labels]
        sec = [1e3 * runs[lab].seconds_per_step / runs[lab].values.shape[1] if lab in runs else np.nan
               for lab in labels]
        # points, not bars: the axis is logarithmic
        ax_f.plot(x + i * width, fps, ls="none", label=gid, **style.series(i))
        ax_s.plot(x + i * width, sec, ls="none", label=gid, **style.series(i))
    for ax, ylabel in ((ax_f, r"FLOPs per step (estimate)"), (ax_s, r"ms per step and replicate (measured)")):
        ax.set_xticks(x + width * (len(gids) - 1) / 2, labels, rotation=45, ha="right")
        ax.set(yscale="log", ylabel=ylabel)
    ax_f.legend()
    return Figure("Compute per online step: the structural FLOP estimate and the measured wall time per step and "
                  "replicate (one thread; all replicates of a task run together)", fig)


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
                "updates at each block end, online TBPTT(τ) at every step through the last τ steps) on a binary copy task whose length L grows when the recall loss over a "
                "window falls below a threshold, and on a character-level model of Python's pydoc topics. "
                "Seeds share θ₀, mask and data across estimators, so comparisons are paired; intervals are 95% "
                "t-intervals over seeds. Cost is a structural FLOP estimate per step."),
        equation=(r"$\tilde J_t = (D_t \tilde J_{t-1} + I_t)\odot M_n,\quad \theta_{t+1} = \theta_t - "
                  r"\alpha\,\mathrm{Adam}(c_t \tilde J_t),\quad \mathrm{bpc} = \ell_{\mathrm{nats}}/\ln 2$"),
        config=cfg, failures=failures)
    if not groups:
        section.notes.append("no usable records")
        return section

    pending = []
    for gid, runs in groups.items():
        any_run = next(iter(runs.values()))
        pending += snap1_vs_uoro(runs, gid)
        pending += snap2_vs_tbptt(runs, gid, any_run.record["config"]["density"])
        pending += snap_to_rtrl(runs, gid)
    section.verdicts = judge(pending)

    for kind in METRICS:
        if any(g.startswith(kind + "-") for g in groups):
            section.figures.append(panels_figure(kind, groups))
            section.figures.append(curves_figure(kind, groups))
    section.figures.append(compute_figure(groups))
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

    extra = []
    for gid, runs in groups.items():
        for cheap, dear in (("uoro", "snap-1"), *((lab, "snap-2") for lab in runs if _is_tbptt(lab))):
            if cheap in runs and dear in runs:
                va, vb, F = matched_flops(runs[dear], runs[cheap])
                extra.append([gid, f"{dear} vs {cheap}", f"{runs[dear].fps / runs[cheap].fps:.2g}", f"{F:.3g}",
                              _fmt_ci(advantage(runs[dear], runs[cheap], va, vb))])
    if extra:
        section.tables.append(Table(
            "Extra question, not a claim of the paper (descriptive, no verdict): the dearer estimator's paired "
            "advantage (positive = better) when both have spent the FLOPs of the cheaper one's whole run",
            ["group", "pair", "FLOPs/step ratio", "budget (FLOPs)", "advantage at equal FLOPs"], extra))
    tuned = []
    for gid, runs in groups.items():
        for lab, run in runs.items():
            t = run.tuning
            if t:
                scores = ", ".join("diverged" if v is None else f"{v:.3g}" for v in t.get("scores", []))
                tuned.append([gid, lab, ", ".join(f"{v:.3g}" for v in t.get("grid", [])), scores or "not tuned",
                              f"{t.get('chosen_lr', float('nan')):.3g}", t.get("tuning_seeds", 0), t.get("steps", 0)])
    if tuned:
        section.tables.append(Table(
            "Tuning (on tuning seeds disjoint from the evaluation seeds): learning-rate grid, score per rate "
            "(copy: mean curriculum length along the run; text: minus training bits/char over its second half), "
            "the chosen rate; TBPTT's τ is the tbptt-τ with the best score. The claims are judged on the "
            "evaluation seeds only.",
            ["group", "estimator", "lr grid", "tuning score", "chosen lr", "tuning seeds", "tuning steps"], tuned))
    for gid, runs in groups.items():
        cell = next(iter(runs.values())).record["data"].get("cell")
        # the run's estimators and every registered one: one that cannot run on the cell is named, not dropped
        missing = [e for e in dict.fromkeys([*cfg.get("estimators", []), *ESTIMATORS]) if cell and not applies(e, cell)]
        if missing:
            section.notes.append(f"{gid}: not applicable to {cell}: {', '.join(missing)} (KF-RTRL needs the "
                                 "Kronecker form s' = σ(W [s; x; 1])).")
    section.notes.append(
        f"Verdicts ({FAMILY}, Holm at {ALPHA:g} over the family): paired by seed, the advantage averaged along the "
        f"learning curve (per data step); superiority needs the lower bound above 0 and FAILs when the upper bound "
        f"is below δ (copy {DELTA['copy']:g} curriculum levels, text {DELTA['text']:g} bits/char; cosine "
        f"{COS_DELTA:g}); 'approaches RTRL' is an equivalence test (margin copy ±{MARGIN['copy']:g}, text "
        f"±{MARGIN['text']:g}); the control is an effect of δ with the observed spread, which the interval must "
        f"detect. Below {PAPER_HIDDEN} units or {PAPER_STEPS} steps a FAIL is reported INCONCLUSIVE; SnAp-2 vs "
        "TBPTT on the copy task is INCONCLUSIVE while the curriculum never exceeded τ.")

    pairs = []
    for gid, runs in groups.items():
        if "snap-1" in runs and "uoro" in runs:
            pairs.append(f"{gid}: SnAp-1/UORO FLOPs per step = {runs['snap-1'].fps / runs['uoro'].fps:.2f}")
        if "snap-2" in runs:
            tb = [r for lab, r in runs.items() if lab.startswith("tbptt-")]
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
