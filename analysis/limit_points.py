"""Check 5 of the convergence section: where RTRL and its truncated or approximate controls stop
(THEORY.md §5; Lam, Sirignano & Spiliopoulos 2025, "RTRL converges to a stationary point of the
ergodic loss, TBPTT's truncation biases the gradient").

Every estimator of a case trains from the same ``θ_0`` on the same data stream per replicate
(:func:`simulations.experiments.convergence.paired_streams`), so the comparison is paired:

* :func:`paired_gaps` — per replicate ``d_b = ln‖∇L(θ̄_c,b)‖ − ln‖∇L(θ̄_RTRL,b)‖`` at the Polyak
  averages ``θ̄`` (mean of the iterates over the last ``limit_average`` of the run).
* :func:`limit_verdicts` — per control ``c``: "``c`` stays above RTRL's limit" as a one-sided
  superiority test of the mean of ``d_b`` (Student t over replicates) with the minimum effect
  :data:`DELTA` (a factor 2 in ‖∇L‖), Holm over the case's controls; TBPTT(1), the most biased
  control, must be detected or every verdict of the case is INCONCLUSIVE.
  A TBPTT(τ) with τ beyond the data's memory is tested the other way: its limit is within a
  factor 2 of RTRL's (two one-sided tests, margin :data:`DELTA`), since its bias ≈ r^τ is small.
  Where ``∇L`` is a Monte Carlo estimate (tanh students), a control is INCONCLUSIVE when the
  Monte Carlo band on its mean paired log-gap (:func:`mc_band`, ``z = 1.645``) is wider than
  ``δ/2``, or when a norm is not resolved from zero.
* :func:`floor_verdict` — RTRL's ``‖∇L(θ̄)‖`` against the stochastic-approximation noise floor
  predicted from ``α_t`` (:mod:`simulations.noise_floor`, linear cases): per replicate
  ``ln(‖∇L(θ̄_b)‖ / floor_b)``, equivalent to 0 within ``ln 2`` (TOST); INCONCLUSIVE where the
  linearised transient from the start is still above the floor (horizon too short), where the
  minimiser found no stationary point, or where TBPTT(1) measured against the same floor is not
  rejected (the control).
* :func:`tau_decay` — the gap ``‖∇L(θ̄_τ)‖ − ‖∇L(θ̄_RTRL)‖`` of TBPTT(τ) against ``τ``: a
  geometric fit ``gap ∝ r^τ`` (errors clustered by replicate) beside the contraction ``ρ`` and the
  data's memory rate; descriptive (LSS25 states no rate for the gap).
"""
from __future__ import annotations

import numpy as np

from rtrl_validation.simulations.experiments.base import Verdict

from .inference import (Estimate, UnreliableEstimate, equivalence, holm, inconclusive, mean_estimate, superiority,
                        verdict, with_control)
from .montecarlo import debiased_norm, log_mean_ci
from . import style
from .sections import Figure, Table

#: level of each one-sided test before Holm
ALPHA = 0.05
#: the smallest limit gap the claim cares about: a factor 2 in ‖∇L‖ (log scale), fixed before the data
DELTA = float(np.log(2.0))
#: the control that must be detected for any verdict of the family to count
CONTROL = "tbptt-1"
SOURCE = "THEORY.md §5 (consequence 5); Lam, Sirignano & Spiliopoulos 2025"


def tau(spec: str) -> int | None:
    """``τ`` of a ``tbptt-τ`` spec, else ``None``."""
    return int(spec.split("-")[1]) if spec.startswith("tbptt-") else None


def limit_norm(record) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-replicate ``‖∇L‖`` at the Polyak average of a training record (``B``) and its Monte
    Carlo standard error ``√(tr Σ̂ / P)`` over the ``P`` evaluation paths (``None`` when ``∇L`` is
    exact; it bounds the standard deviation of ``‖ḡ‖`` about ``‖∇L‖``)."""
    a = record["arrays"]
    if "avg_grad_norm_exact" in a:
        return np.asarray(a["avg_grad_norm_exact"], dtype=float), None
    return debiased_norm(a["eval_grad"][-1])                  # B × P × d: the late-average row


#: one-sided normal quantile of the Monte Carlo error band (the section's tests are one-sided at 5%)
Z_MC = 1.645


def log_error(norm: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of ``ln‖∇L‖`` per replicate, ``se / ‖∇L‖`` (delta method); ``inf``
    where ``‖∇L‖ ≤ Z_MC · se`` (the norm is not resolved from zero, its logarithm is not estimated)."""
    norm, se = np.asarray(norm, dtype=float), np.asarray(se, dtype=float)
    return np.where(norm > Z_MC * se, se / np.maximum(norm, np.finfo(float).tiny), np.inf)


def mc_band(control: np.ndarray, reference: np.ndarray) -> float:
    """``Z_MC`` times the Monte Carlo standard error of the mean paired log-gap, from the per-replicate
    errors of :func:`log_error` (independent evaluation paths per estimator and replicate)."""
    return float(Z_MC * np.sqrt(np.sum(np.square(control) + np.square(reference))) / control.size)


def paired_gaps(control: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``ln control_b − ln reference_b`` per replicate (``B``); non-positive norms (a debiased
    estimate below its noise) are clipped to the smallest positive float first."""
    tiny = np.finfo(float).tiny
    return np.log(np.maximum(control, tiny)) - np.log(np.maximum(reference, tiny))


def superiority_decision(gaps, delta: float = DELTA, alpha: float = ALPHA):
    """The per-control rule: one-sided Student t over replicates of the mean paired log-gap."""
    return superiority(mean_estimate(gaps, "paired replicates"), delta, alpha)


def equivalence_decision(gaps, margin: float = DELTA, alpha: float = ALPHA):
    """The rule for a truncation beyond the memory: TOST of the mean paired log-gap within ``±margin``."""
    return equivalence(mean_estimate(gaps, "paired replicates"), margin, alpha)


def limit_verdicts(case: str, norms: dict[str, np.ndarray], failed: dict[str, str],
                   memory: float | None = None, errors: dict[str, np.ndarray] | None = None) -> list[Verdict]:
    """Verdicts "``c``'s limit stays above RTRL's" for each control ``c`` (``norms``: spec ->
    per-replicate ``‖∇L‖`` at the Polyak average, RTRL under ``"rtrl"``; ``failed``: spec -> why
    it has no limit point); for TBPTT(τ) with ``τ > memory`` (steps) "within a factor 2 of RTRL's".

    ``errors`` (Monte Carlo ``∇L``): spec -> per-replicate standard error of ``ln‖∇L‖``
    (:func:`log_error`).  A control whose Monte Carlo band on the mean paired log-gap
    (:func:`mc_band`) is wider than half the resolution ``δ`` is INCONCLUSIVE (its evaluation
    cannot resolve the effect the claim cares about) and leaves the Holm family."""
    family = f"5 limit points ({case})"
    claim = ("{c} stops at a point where ‖∇L‖ is larger than at RTRL's limit (paired: same θ₀, same data); "
             "RTRL follows ∇L, the control's gradient is biased")
    claim_far = ("{c} truncates beyond the data's memory (≈ {m:.2g} steps): its bias is small, its limit's ‖∇L‖ is "
                 "within a factor 2 of RTRL's (paired)")
    stat = "mean over replicates of ln‖∇L(θ̄_c)‖ − ln‖∇L(θ̄_RTRL)‖"
    out, decided, unresolved = [], [], False
    if "rtrl" not in norms:
        return [inconclusive(f"{family}: controls against RTRL", "RTRL has no limit point (did not finish)",
                             claim.format(c="each control"), SOURCE)]
    specs = [s for s in list(norms) + list(failed) if s != "rtrl"]
    beyond = {s for s in specs if tau(s) is not None and memory is not None and tau(s) > memory}
    for spec in specs:
        check = _check_name(family, spec, spec in beyond)
        text = claim_far.format(c=spec, m=memory) if spec in beyond else claim.format(c=spec)
        if spec in failed:
            out.append(inconclusive(check, f"no limit point: {failed[spec]}", text, SOURCE, stat))
            continue
        rule = equivalence_decision if spec in beyond else superiority_decision
        if errors is not None and spec in errors and "rtrl" in errors:
            band = mc_band(errors[spec], errors["rtrl"])
            if not band <= DELTA / 2:
                out.append(inconclusive(check, f"Monte Carlo error of ∇L too wide: the band ±{band:.3g} on the mean "
                                        f"log-ratio (z = {Z_MC}) exceeds half the resolution δ/2 = {DELTA / 2:.3g}"
                                        + ("" if np.isfinite(band) else " (some ‖∇L‖ not resolved from 0)"),
                                        text, SOURCE, stat))
                if spec == CONTROL:
                    unresolved = True
                continue
        try:
            decided.append((spec, rule(paired_gaps(norms[spec], norms["rtrl"]))))
        except UnreliableEstimate as e:
            out.append(inconclusive(check, str(e), text, SOURCE, stat))
    if not decided:
        return out
    adjusted = holm([d for _, d in decided], family)
    ctrl = dict(zip([s for s, _ in decided], adjusted)).get(CONTROL)
    seen = ctrl is not None and ctrl.status == "PASS"
    ctrl_txt = (f"{CONTROL} (the most biased truncation) detected above RTRL: "
                + ("yes" if seen else "no" if ctrl is not None else
                   "not resolved by the Monte Carlo ∇L" if unresolved else "not run"))
    for (spec, _), d in zip(decided, adjusted):
        d = d if spec == CONTROL else with_control(d, seen, ctrl_txt)
        g = np.exp(d.estimate.value)
        text = claim_far.format(c=spec, m=memory) if spec in beyond else claim.format(c=spec)
        out.append(verdict(_check_name(family, spec, spec in beyond), d, text, SOURCE, stat,
                           control=ctrl_txt, evidence=f"ratio of ‖∇L‖ at the limits {g:.3g}× (geometric mean)"))
    return out


def _check_name(family, spec, beyond):
    return f"{family}: {spec} " + ("(τ beyond the memory) within a factor 2 of RTRL's ‖∇L‖" if beyond
                                   else "stays above RTRL's ‖∇L‖")


FLOOR_SOURCE = "THEORY.md §5 (Robbins–Monro noise near a stationary point); LSS25 (∇L(θ_t) → 0)"
#: ‖∇L‖ at the minimiser's end point below which it is a stationary point
STAR_TOL = 1e-6


def floor_verdict(case: str, rtrl, control=None) -> Verdict:
    """RTRL reaches the predicted noise floor at its Polyak average (see module docstring);
    ``rtrl`` and ``control`` (TBPTT(1)) are training records of the case."""
    check = f"5 noise floor ({case}): RTRL's ‖∇L‖ at its Polyak average is at the predicted floor"
    claim = ("RTRL follows ∇L: at its Polyak average ‖∇L‖ is at the stochastic-approximation noise floor predicted "
             "from α_t, the Hessian and the long-run gradient-noise covariance at the stationary point (within 2×)")
    stat = "mean over replicates of ln(‖∇L(θ̄_RTRL)‖ / predicted Polyak floor)"
    a = rtrl["arrays"] if rtrl is not None else {}
    if "floor_polyak" not in a:
        return inconclusive(check, "no predicted floor (not a linear case, or RTRL did not finish)", claim,
                            FLOOR_SOURCE, stat)
    info, fl = rtrl["data"]["floor"], np.asarray(a["floor_polyak"])
    bad = [b for b, (g, n) in enumerate(zip(info["star_grad_norm"], info["negative_eigenvalues"]))
           if not g < STAR_TOL or n > 0]
    if bad:
        return inconclusive(check, f"replicates {bad}: no local minimum found near the Polyak average "
                            f"(‖∇L‖ at the end point or negative Hessian eigenvalues)", claim, FLOOR_SOURCE, stat)
    short = np.asarray(a["transient_polyak"]) > fl
    if short.any():
        return inconclusive(check, f"horizon too short: in {int(short.sum())} of {fl.size} replicates the linearised "
                            "transient from the start is still above the floor", claim, FLOOR_SOURCE, stat)
    x = paired_gaps(np.asarray(a["avg_grad_norm_exact"]), fl)
    try:
        d = equivalence_decision(x)
    except UnreliableEstimate as e:
        return inconclusive(check, str(e), claim, FLOOR_SOURCE, stat)
    ctrl_txt = f"{CONTROL} against the same floor: not run"
    if control is not None and "avg_grad_norm_exact" in control["arrays"]:
        try:
            c = equivalence_decision(paired_gaps(np.asarray(control["arrays"]["avg_grad_norm_exact"]), fl))
            ctrl_txt = (f"{CONTROL} against the same floor: ratio {np.exp(c.estimate.value):.3g}×, "
                        + ("rejected" if c.status == "FAIL" else f"not rejected ({c.status})"))
            d = with_control(d, c.status == "FAIL", ctrl_txt)
        except UnreliableEstimate:
            d = with_control(d, False, ctrl_txt)
    else:
        d = with_control(d, False, ctrl_txt)
    return verdict(check, d, claim, FLOOR_SOURCE, stat, control=ctrl_txt,
                   evidence=f"‖∇L(θ̄)‖ / floor per replicate: " + ", ".join(f"{v:.2f}" for v in np.exp(x))
                   + f"; floors {', '.join(f'{v:.3g}' for v in fl)}")


def tau_decay(norms: dict[str, np.ndarray]):
    """Fit ``ln(gap_{τ,b}) = a + τ ln r`` over TBPTT(τ) runs and replicates with a positive gap
    (gap = ``‖∇L(θ̄_τ)‖ − ‖∇L(θ̄_RTRL)‖``), errors clustered by replicate: ``(r̂, (lo, hi), points)``
    or ``None`` (fewer than two τ or four replicates with positive gaps)."""
    import statsmodels.api as sm

    taus = sorted((tau(s), s) for s in norms if tau(s) is not None)
    if "rtrl" not in norms or len(taus) < 2:
        return None
    x, y, g = [], [], []
    for t, s in taus:
        gap = norms[s] - norms["rtrl"]
        for b in np.flatnonzero(gap > 0):
            x.append(t)
            y.append(np.log(gap[b]))
            g.append(b)
    if len(set(x)) < 2 or len(set(g)) < 4:
        return None
    fit = sm.OLS(np.array(y), sm.add_constant(np.array(x, dtype=float))).fit(
        cov_type="cluster", cov_kwds={"groups": np.array(g)})
    est = Estimate(float(fit.params[1]), float(fit.bse[1]), float(len(set(g)) - 1), len(set(g)))
    lo, hi = est.interval(0.95)
    return float(np.exp(est.value)), (float(np.exp(lo)), float(np.exp(hi))), len(x)


def limits(records, config):
    """Check 5 for every ``limit_cases`` case: verdicts, the table of limits, the τ-decay table
    and the figures; notes for estimators without a record."""
    verdicts, tables, figures, notes = [], [], [], []
    wanted = list(config.get("limit_estimators", [])) if config else []
    for case in (config or {}).get("limit_cases", []):
        runs = {r["data"]["estimator"]: r for r in records if r["task"].startswith(f"limit-{case}-")}
        missing = [e for e in wanted if e not in runs]
        if missing:
            notes.append(f"5 ({case}): no record (estimator not registered when run, or not run): "
                         + ", ".join(missing))
        norms, failed, errors, rows = {}, {}, {}, []
        for spec in wanted:
            r = runs.get(spec)
            if r is None:
                continue
            if r["status"] != "ok":
                failed[spec] = f"{r['status']}: {r['reason']}"
                rows.append([spec, "—", "—", "—", failed[spec]])
                continue
            g, floor = limit_norm(r)
            norms[spec] = g
            if floor is not None:
                errors[spec] = log_error(g, floor)
            positive = bool(np.all(g > 0))              # a debiased Monte Carlo norm can be 0: no log scale
            if positive:
                gm, lo, hi = log_mean_ci(g)
                mean = f"{gm:.3g} [{lo:.3g}, {hi:.3g}]"
            else:
                mean = "— (a norm at 0: below its Monte Carlo floor)"
            ratio = "—" if spec == "rtrl" or "rtrl" not in norms or not positive or not np.all(norms["rtrl"] > 0) \
                else _f(float(np.exp(paired_gaps(g, norms["rtrl"]).mean())))
            rows.append([spec, mean, ", ".join(f"{x:.3g}" for x in g),
                         "exact" if floor is None else f"{floor.max():.2g}", ratio])
        mem = runs["rtrl"]["data"]["memory"] if "rtrl" in runs else None
        verdicts += limit_verdicts(case, norms, failed, mem["steps"] if mem else None, errors or None)
        if case.startswith("linear"):
            ok = {s: r for s, r in runs.items() if r["status"] == "ok"}
            verdicts.append(floor_verdict(case, ok.get("rtrl"), ok.get(CONTROL)))
        tables.append(Table(f"5 Limit points ({case}): ‖∇L‖ at the Polyak average of the iterates over the last "
                            f"{config['limit_average']:.0%} of {config['train_steps']} steps (paired: same θ₀ and "
                            "data per replicate)",
                            ["estimator", "geometric mean [95% CI]", "per replicate", "∇L exact, or its largest Monte Carlo s.e.",
                             "paired ratio to RTRL"], rows))
        decay = tau_decay(norms)
        if decay is not None:
            r_hat, (lo, hi), n = decay
            rate = mem.get("rate") if mem else None
            tables.append(Table(f"5 Limit gap against τ ({case}): gap ∝ r^τ fitted on {n} (τ, replicate) points "
                                "with a positive gap, errors clustered by replicate (descriptive)",
                                ["r̂", "95% CI", "student ρ", "data memory rate"],
                                [[_f(r_hat), f"[{lo:.3g}, {hi:.3g}]", config.get("rho"), _f(rate)]]))
        free = next((r for r in records if r["task"] == f"unprojected-{case}"), None)
        proj = projection_rows(runs, wanted, config.get("rho"), free)
        if proj:
            tables.append(Table(f"5 Projection ({case}): where the contraction constraint sup|σ'|·‖W‖₂ ≤ ρ is active, the "
                                "stationarity notion is a KKT point, measured by the projected-gradient map "
                                "‖θ − Π(θ − ∇L)‖ (equal to ‖∇L‖ in the interior)",
                                ["estimator", "checkpoints on the boundary (outside, unprojected)",
                                 "replicates on the boundary at the end", "max sup|σ'|·‖W‖₂",
                                 "‖∇L(θ̄)‖ (geo. mean)", "KKT ‖θ̄ − Π(θ̄ − ∇L)‖ (geo. mean)"], proj))
        figures.append(_limit_figure(case, runs, wanted, norms, decay, mem))
    return verdicts, tables, figures, notes


#: relative tolerance for "on the boundary" of the contraction set (the projection clips to ρ exactly)
BOUNDARY_TOL = 1e-9


def projection_rows(runs, wanted, rho, free=None):
    """Per estimator: the fraction of checkpoints (all replicates) with ``sup|σ'|·‖W‖₂ = ρ``, the
    replicates on the boundary at the last checkpoint, the largest contraction constant, and
    ``‖∇L‖`` beside the KKT measure at the Polyak average (exact cases); ``free``: the RTRL run
    without projection (fraction of checkpoints outside the set, ``> ρ``), or its failure."""
    rows = []
    if rho is None:
        return rows
    for spec, r in [(s, runs.get(s)) for s in wanted] + [("rtrl, no projection", free)]:
        if r is None:
            continue
        if r["status"] != "ok" or "contraction" not in r["arrays"]:
            if spec.endswith("no projection"):
                rows.append([spec, f"{r['status']}: {r['reason']}", "—", "—", "—", "—"])
            continue
        a = r["arrays"]
        c = np.asarray(a["contraction"])
        on = c > rho * (1 + BOUNDARY_TOL) if spec.endswith("no projection") else c >= rho * (1 - BOUNDARY_TOL)
        kkt = a.get("avg_kkt_norm_exact")
        rows.append([spec, f"{on.mean():.1%}", f"{int(on[-1].sum())} of {on.shape[1]}", _f(float(c.max()), 4),
                     _f(float(np.exp(np.log(a["avg_grad_norm_exact"]).mean()))) if "avg_grad_norm_exact" in a else "—",
                     _f(float(np.exp(np.log(kkt).mean()))) if kkt is not None else "—"])
    return rows


def _f(x, digits=3):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _mc_curve(ax, spec, a):
    """Monte Carlo ``‖∇L(θ_t)‖`` (debiased, geometric mean over replicates) at the evaluated checkpoints
    (RTRL: along the run; a control: its final iterate only, a marker)."""
    t = np.asarray(a["eval_t"])
    rows = np.flatnonzero(t > 0)
    if not rows.size:
        return
    g = debiased_norm(np.asarray(a["eval_grad"])[rows])[0]                       # rows × B
    g = np.exp(np.log(np.maximum(g, 1e-300)).mean(axis=1))
    sty = style.estimator_style(spec)
    ax.loglog(t[rows], g, marker="o", ms=3, lw=1.6 if spec == "rtrl" else 1.0, label=sty.label + " (Monte Carlo)",
              color=sty.color, ls=sty.linestyle if rows.size > 1 else "none")


def _limit_figure(case, runs, wanted, norms, decay, mem):
    """Left: ‖∇L(θ_t)‖ against t (log–log) for every estimator on the same data (geometric mean
    over replicates; exact ∇L along the run, or the Monte Carlo estimates where they were made).  Right: the limit gap against τ with the fitted decay."""
    drawn = [spec for spec in wanted if runs.get(spec) is not None and runs[spec]["status"] == "ok"
             and ("grad_norm_exact" in runs[spec]["arrays"] or "eval_grad" in runs[spec]["arrays"])]
    groups = style.panels(drawn, reference="rtrl", size=style.MAX_SERIES - 1)   # room for the floor line
    fig = style.figure(width=style.TEXT_WIDTH, height=2.9)
    axes = fig.subplots(1, len(groups) + 1, squeeze=False)[0]
    ax1, ax2 = axes[0], axes[-1]
    for ax, group in zip(axes[:-1], groups):
        for spec in group:
            a = runs[spec]["arrays"]
            if "grad_norm_exact" not in a:
                _mc_curve(ax, spec, a)
                continue
            keep = ~a["late"] & np.all(np.isfinite(a["grad_norm_exact"]), axis=1)
            if keep.sum() < 2:
                continue
            g = np.exp(np.log(np.maximum(a["grad_norm_exact"][keep], 1e-300)).mean(axis=1))
            sty = style.estimator_style(spec)
            ax.loglog(a["t"][keep], g, lw=1.6 if spec == "rtrl" else 1.0, label=sty.label, color=sty.color,
                      ls=sty.linestyle)
            if spec == "rtrl" and "floor_iterate" in a:
                f = np.exp(np.log(np.maximum(a["floor_iterate"], 1e-300)).mean(axis=1))
                ax.loglog(a["t"][keep], f[keep], ls=":", color="k", label="predicted floor (RTRL)")
        ax.set_xlabel("online step $t$")
        if ax.lines:
            ax.legend(fontsize=7)
    ax1.set_ylabel(r"$\|\nabla L(\theta_t)\|$ (geometric mean)")
    taus = sorted((tau(s), s) for s in norms if tau(s) is not None)
    if "rtrl" in norms and taus:
        gaps = np.array([norms[s] - norms["rtrl"] for _, s in taus])          # τ × B
        t_arr = np.array([t for t, _ in taus], dtype=float)
        for b in range(gaps.shape[1]):
            pos = gaps[:, b] > 0
            ax2.semilogy(t_arr[pos], gaps[pos, b], "o", ms=3, color="0.5")
        pos_mean = np.array([np.mean(row) for row in gaps])
        ax2.semilogy(t_arr[pos_mean > 0], pos_mean[pos_mean > 0], "-", **style.series(0), label="mean gap")
        if decay is not None:
            r_hat = decay[0]
            ref = pos_mean[pos_mean > 0]
            if ref.size:
                t0 = t_arr[pos_mean > 0][0]
                tt = np.linspace(t_arr.min(), t_arr.max(), 50)
                ax2.semilogy(tt, ref[0] * r_hat ** (tt - t0), "--", color=style.series(1)["color"],
                             label=rf"fit $\propto \hat r^{{\tau}}$, $\hat r$ = {r_hat:.2f}")
        ax2.legend(fontsize=7)
    ax2.set_xlabel(r"truncation $\tau$ (steps)")
    ax2.set_ylabel(r"$\|\nabla L(\bar\theta_\tau)\| - \|\nabla L(\bar\theta_{\mathrm{RTRL}})\|$")
    if mem:
        ax2.set_title(f"memory ≈ {mem['steps']:.1f} steps", fontsize=9)
    return Figure(f"5 RTRL against its controls ({case}, same $\\theta_0$ and data stream): $\\|\\nabla L(\\theta_t)\\|$ along the paired runs, and the limit gap of "
                  "TBPTT(τ) against τ (grey: replicates with a positive gap)", fig)
