"""The application (issue: RTRL against the best TBPTT(τ) on the synthetic order book): verdict,
table and figure from the ``application-*`` records of the ``convergence`` experiment
(:mod:`simulations.experiments.application`).

Decision rule, fixed here before the data:

* **selection**: ``τ*`` = the ``τ`` with the smallest mean validation loss over replicates (the
  validation stretch precedes the test stretch of every series; a method whose training diverged
  is not eligible);
* **statistic**: per replicate ``b`` the log-ratio ``d_b = ln(L_test(τ*)_b / L_test(RTRL)_b)`` of the
  test losses (the same series, the same ``θ₀``, the same test stretch): positive when RTRL
  predicts better; its mean over replicates with a Student-t interval;
* **claim**: RTRL's held-out loss is lower than the best TBPTT(τ)'s — :func:`~.inference.superiority`
  with minimum effect :data:`DELTA` (0.5% of the held-out loss, about a tenth of what the volatility
  memory can remove: on this series a least-squares predictor with an exponentially weighted
  volatility feature has a loss about 5% below the best memoryless one); PASS when the one-sided
  95% lower bound is above 0, FAIL when the upper bound is below ``δ``;
* **horizon**: the claim is about the limit of the step sizes; a run shorter than
  :data:`MIN_STEPS` online steps reports its estimate as INCONCLUSIVE;
* **control**: TBPTT(τ*)'s test predictions shifted by the constant ``c_b ≥ 0`` that raises its
  held-out loss by the factor ``e^δ`` (the shifted loss is ``L_b + c_b r̄_b + ½c_b²`` with ``r̄_b``
  its mean test residual, so ``c_b = −r̄_b + √(r̄_b² + 2(e^δ − 1) L_b)``) must be found worse than
  RTRL by the same test — a known-worse predictor at exactly the effect the claim cares about,
  with the claim's own noise; if it is not, the claim's decision is INCONCLUSIVE (unless RTRL is
  worse at level α: the upper bound below 0 is a FAIL whatever the control).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rtrl_validation.simulations.experiments.base import FAIL, INCONCLUSIVE, PASS

from . import style
from .inference import (MIN_UNITS, UnreliableEstimate, inconclusive, mean_estimate, superiority, verdict,
                        with_control)
from .sections import Figure, Table

#: smallest log-ratio of held-out losses the claim cares about (0.5%)
DELTA = 0.005
#: level of the one-sided tests
ALPHA = 0.05
#: shortest training run whose held-out loss is taken as the limit regime's
MIN_STEPS = 100_000

CLAIM = ("online RTRL follows the gradient of the ergodic loss, a truncated gradient does not: on the order-book "
         "series RTRL's held-out one-step loss is lower than that of the best TBPTT(τ)")
SOURCE = "LSS25 (the financial-data motivation); THEORY.md §5"
STATISTIC = "mean over replicates of ln(L_test(TBPTT(τ*)) / L_test(RTRL))"


def _ok(records):
    return {r["data"]["estimator"]: r for r in records if r["task"].startswith("application-") and r["status"] == "ok"}


def log_ratio(loss, reference) -> np.ndarray:
    """``ln(loss / reference)`` per replicate."""
    return np.log(np.asarray(loss, dtype=float) / np.asarray(reference, dtype=float))


def shift(loss, residual, delta: float = DELTA) -> np.ndarray:
    """The constant ``c ≥ 0`` added to every prediction that makes the held-out loss ``L + c r̄ + ½c²``
    equal ``e^δ L`` (``r̄``: the mean residual ``ŷ − y`` over the stretch; per replicate)."""
    loss, r = np.asarray(loss, dtype=float), np.asarray(residual, dtype=float)
    return -r + np.sqrt(r * r + 2.0 * np.expm1(delta) * loss)


def shifted_loss(loss, residual, delta: float = DELTA) -> np.ndarray:
    """Held-out loss ``L + c r̄ + ½c²`` of the predictions shifted by :func:`shift` (per replicate)."""
    c = shift(loss, residual, delta)
    return np.asarray(loss, dtype=float) + c * np.asarray(residual, dtype=float) + 0.5 * c * c


def best_tau(runs: dict) -> str | None:
    """The TBPTT spec with the smallest mean validation loss (``None`` without one)."""
    tb = {e: r for e, r in runs.items() if r["data"]["tau"] is not None}
    return min(tb, key=lambda e: float(np.mean(tb[e]["arrays"]["val_loss"]))) if tb else None


def decide(d, d_control, steps: int, delta: float = DELTA, alpha: float = ALPHA):
    """The decision on paired log-ratios ``d`` (``B``) with the control's ``d_control``: a
    :class:`~.inference.Decision` (superiority with minimum effect ``δ``; INCONCLUSIVE when the
    control is not detected or ``steps < MIN_STEPS``).  Raises :class:`UnreliableEstimate` with
    too few replicates."""
    dec = superiority(mean_estimate(d), delta, alpha)
    ctrl = superiority(mean_estimate(d_control), delta, alpha)
    if not (dec.status == FAIL and dec.interval[1] < 0):      # RTRL worse at level α: the control is moot
        dec = with_control(dec, ctrl.status == PASS, f"TBPTT(τ*) worsened by δ: lower bound {ctrl.interval[0]:.3g}")
    if steps < MIN_STEPS:
        dec = replace(dec, status=INCONCLUSIVE,
                      reason=f"{steps} training steps < {MIN_STEPS}: shorter than the limit regime the claim is about "
                             f"(otherwise {dec.status}: {dec.reason})")
    return dec, ctrl


def application(records):
    """``(verdicts, tables, figures)`` of the application."""
    runs = _ok(records)
    failed = [r for r in records if r["task"].startswith("application-") and r["status"] != "ok"]
    if not runs and not failed:
        return [], [], []
    check = "8 application: RTRL's held-out loss on the order-book series is lower than the best TBPTT(τ)'s"
    star = best_tau(runs)
    rtrl = runs.get("rtrl")
    if rtrl is None or star is None:
        why = "RTRL's run did not finish" if rtrl is None else "no TBPTT(τ) run finished"
        return [inconclusive(check, why, CLAIM, SOURCE, STATISTIC)], [], []
    base = rtrl["arrays"]
    d = log_ratio(runs[star]["arrays"]["test_loss"], base["test_loss"])
    d_ctrl = log_ratio(shifted_loss(runs[star]["arrays"]["test_loss"], runs[star]["arrays"]["test_residual"]),
                       base["test_loss"])
    steps = rtrl["data"]["steps"]
    control = "TBPTT(τ*) with predictions shifted to raise its held-out loss by e^δ must be found worse than RTRL"
    try:
        dec, ctrl = decide(d, d_ctrl, steps)
        lo = ctrl.interval[0]
        v = verdict(check, dec, CLAIM, SOURCE, STATISTIC,
                    control=f"{control}: lower bound {lo:.3g} ({'detected' if ctrl.status == PASS else 'not detected'})",
                    evidence=f"τ* = {runs[star]['data']['tau']} (smallest validation loss of τ ∈ "
                             f"{sorted(r['data']['tau'] for r in runs.values() if r['data']['tau'] is not None)}); "
                             f"{steps} online steps, held-out {rtrl['data']['test_steps']} steps per series"
                             + (f"; not finished: {', '.join(r['task'] for r in failed)}" if failed else ""))
    except UnreliableEstimate as e:
        v = inconclusive(check, str(e), CLAIM, SOURCE, STATISTIC, control=control)
    return [v], [_table(runs, star)], [_figure(runs, star)]


def _mean_ci(x):
    """Mean and 95% Student-t interval over replicates (no interval below ``MIN_UNITS``)."""
    if np.size(x) < MIN_UNITS:
        return float(np.mean(x)), float("nan"), float("nan")
    e = mean_estimate(x)
    lo, hi = e.interval(0.95)
    return e.value, lo, hi


def _name(r) -> str:
    return "RTRL" if r["data"]["tau"] is None else f"TBPTT(τ={r['data']['tau']})"


def _order(runs):
    return sorted(runs, key=lambda e: -1 if runs[e]["data"]["tau"] is None else runs[e]["data"]["tau"])


def _table(runs, star):
    base = runs["rtrl"]["arrays"]["test_loss"]
    rows = []
    for e in _order(runs):
        a = runs[e]["arrays"]
        m, lo, hi = _mean_ci(a["test_loss"])
        x, xlo, xhi = _mean_ci(a["test_excess"])
        r, rlo, rhi = _mean_ci(log_ratio(a["test_loss"], base))
        rows.append([_name(runs[e]) + (" (τ*)" if e == star else ""), f"{np.mean(a['val_loss']):.4f}",
                     f"{m:.4f} [{lo:.4f}, {hi:.4f}]", f"{x:.4f} [{xlo:.4f}, {xhi:.4f}]",
                     "—" if e == "rtrl" else f"{r:+.4f} [{rlo:+.4f}, {rhi:+.4f}]"])
    oracle = float(np.mean(runs["rtrl"]["arrays"]["test_oracle"]))
    return Table(f"8 Application: held-out one-step loss on the order-book volatility target (mean over "
                 f"{len(base)} paired replicates, 95% intervals; the conditional mean's loss is {oracle:.4f})",
                 ["method", "validation loss", "test loss", "excess over the conditional mean",
                  "ln(L / L_RTRL)"], rows)


def _figure(runs, star):
    base = runs["rtrl"]["arrays"]["test_loss"]
    order = _order(runs)
    fig = style.figure(width=6.4, height=2.7)
    ax1, ax2 = fig.subplots(1, 2)
    for i, e in enumerate(order):
        st = style.estimator_style(e)
        m, lo, hi = _mean_ci(runs[e]["arrays"]["test_excess"])
        ax1.errorbar([i], [m], yerr=[[m - lo], [hi - m]], color=st.color, marker=st.marker, ms=6, ls="none")
        if e != "rtrl":
            r, rlo, rhi = _mean_ci(log_ratio(runs[e]["arrays"]["test_loss"], base))
            ax2.errorbar([i - 1], [r], yerr=[[r - rlo], [rhi - r]], color=st.color, marker=st.marker, ms=6, ls="none")
            if e == star:
                ax2.annotate("τ*", (i - 1, rhi), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    ax1.set_xticks(range(len(order)), [_name(runs[e]) for e in order], rotation=30, fontsize=7)
    ax2.set_xticks(range(len(order) - 1), [_name(runs[e]) for e in order[1:]], rotation=30, fontsize=7)
    ax1.set_ylabel("held-out excess loss")
    ax2.axhline(0.0, color="0.5", lw=0.6)
    ax2.axhline(DELTA, color="0.3", lw=0.8, ls="--", label=f"δ = {DELTA}")
    ax2.set_ylabel(r"$\ln(L_\mathrm{test} / L_\mathrm{test}^\mathrm{RTRL})$")
    ax2.legend(fontsize=7)
    return Figure("8 Application: held-out loss per method on the order-book series (left: excess over the "
                  "conditional mean; right: paired log-ratio of test losses against RTRL, positive where RTRL "
                  "predicts better; τ*: the τ chosen on the validation stretch), 95% intervals over replicates", fig)
