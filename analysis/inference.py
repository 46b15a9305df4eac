"""Decision rules for statistical verdicts: PASS, FAIL or INCONCLUSIVE with stated resolution
(DESIGN.md "The checks a report carries"; THEORY.md's claims are what they decide).

Every rule is a pure function of an :class:`Estimate` (an effect with its standard error and
degrees of freedom) and parameters fixed before the data are seen (the margin or the minimum
effect the claim cares about, the level ``α``).  It returns a :class:`Decision`, from which
:func:`verdict` builds the report's :class:`~rtrl_validation.simulations.experiments.base.Verdict`.

* :func:`equivalence` — two one-sided tests against a margin ``m``: PASS when the whole
  ``1 − 2α`` interval lies inside ``(c − m, c + m)``; FAIL when it lies wholly outside (the effect
  is beyond the margin at level ``α``); INCONCLUSIVE otherwise.  Resolution: the margin, and the
  half-width the interval would need (``m / (t_{1−α} + t_{1−α/2})`` in standard errors) for a
  true effect ``c`` to PASS with probability ``1 − α``.
* :func:`superiority` — "the effect is positive": PASS when the one-sided ``1 − α`` lower bound
  is above 0; FAIL when the upper bound is below the minimum effect ``δ`` the claim cares about;
  INCONCLUSIVE otherwise.  Resolution: the minimum detectable effect at 80% power,
  ``(t_{1−α} + t_{0.8})·se``; when it exceeds ``δ`` the reason says so.
* :func:`below` — "the effect is at most ``b``" (a cost ratio against a budget): PASS when the
  one-sided upper bound is below ``b``, FAIL when the lower bound is above it.
* :func:`with_control` — a known-wrong variant at the effect size the claim cares about must be
  rejected by the same statistic; if it is not, the claim's decision becomes INCONCLUSIVE.
* :func:`intersection` — several tests of one claim (directions): PASS only if all PASS.
* :func:`holm` — Holm's step-down correction over a family (``statsmodels`` ``multipletests``)
  applied to the p-values of both the PASS and the FAIL test.
* Estimates: :func:`mean_estimate` (independent replicates: Student t), :func:`instance_mean`
  (per-instance estimates with their own errors: a random-effects mean, DerSimonian–Laird),
  :func:`cluster_bootstrap` (any statistic, resampling whole instances) and :func:`loglog_slope`
  (regression of ``log y`` on ``log x``, errors clustered by instance).

Small inputs are refused, not estimated: a function raises :class:`UnreliableEstimate` when it has
too few replicates for its interval to mean what it says (callers turn that into INCONCLUSIVE).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from rtrl_validation.simulations.experiments.base import FAIL, INCONCLUSIVE, PASS, Verdict

#: power at which a minimum detectable effect is stated
POWER = 0.8
#: fewest independent units for an interval (replicates, instances, bootstrap clusters)
MIN_UNITS = 4


class UnreliableEstimate(ValueError):
    """Too little data for the estimate's interval to hold its stated level."""


@dataclass(frozen=True)
class Estimate:
    """An effect with its standard error; ``df`` the degrees of freedom of its t reference
    (``inf``: normal); ``n`` the number of independent units behind it; ``unit`` names them."""

    value: float
    se: float
    df: float
    n: int
    unit: str = "replicates"

    def quantile(self, q: float) -> float:
        return float(stats.t.ppf(q, self.df)) if np.isfinite(self.df) else float(stats.norm.ppf(q))

    def interval(self, level: float) -> tuple[float, float]:
        """Central ``level`` interval."""
        h = self.quantile(0.5 + level / 2) * self.se
        return self.value - h, self.value + h

    def p_above(self, x: float) -> float:
        """One-sided p-value of ``H0: effect ≤ x`` (small when the effect is above ``x``)."""
        return self._sf(self.value - x)

    def p_below(self, x: float) -> float:
        """One-sided p-value of ``H0: effect ≥ x``."""
        return self._sf(x - self.value)

    def _sf(self, diff: float) -> float:
        """``P(T > diff / se)`` (an exact estimate, ``se = 0``: 0 or 1)."""
        if self.se == 0.0:
            return 0.0 if diff > 0 else 1.0
        z = diff / self.se
        return float(stats.t.sf(z, self.df)) if np.isfinite(self.df) else float(stats.norm.sf(z))


@dataclass(frozen=True)
class Decision:
    """A rule's outcome.  ``p_pass``/``p_fail``: p-values of the tests whose rejection gives PASS
    / FAIL (Holm adjusts these); ``interval`` at the level the rule used; ``resolution`` in the
    effect's unit (margin or minimum detectable effect) and ``needed`` the effect the claim cares
    about; ``rule`` and ``reason`` are one line each."""

    status: str
    estimate: Estimate
    interval: tuple[float, float]
    p_pass: float
    p_fail: float
    alpha: float
    resolution: float
    needed: float
    rule: str
    reason: str
    family: str = ""


def _check(est: Estimate) -> None:
    if not (np.isfinite(est.value) and np.isfinite(est.se) and est.se >= 0):
        raise UnreliableEstimate(f"non-finite estimate {est.value!r} ± {est.se!r}")
    if est.n < MIN_UNITS:
        raise UnreliableEstimate(f"{est.n} {est.unit}: an interval needs at least {MIN_UNITS}")


def _status(p_pass, p_fail, alpha) -> str:
    if p_pass <= alpha:
        return PASS
    if p_fail <= alpha:
        return FAIL
    return INCONCLUSIVE


def equivalence(est: Estimate, margin: float, alpha: float = 0.05, centre: float = 0.0) -> Decision:
    """Two one-sided tests of ``|effect − centre| < margin`` at level ``alpha``.

    PASS: the ``1 − 2α`` interval inside ``(centre − margin, centre + margin)`` (TOST p ≤ α).
    FAIL: the interval wholly outside it (the effect is beyond the margin at level α).
    Otherwise INCONCLUSIVE; the reason says whether the interval is wider than the margin allows.
    """
    _check(est)
    if not margin > 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin!r}")
    lo_b, hi_b = centre - margin, centre + margin
    p_pass = max(est.p_above(lo_b), est.p_below(hi_b))
    p_fail = min(est.p_above(hi_b), est.p_below(lo_b))
    status = _status(p_pass, p_fail, alpha)
    lo, hi = est.interval(1 - 2 * alpha)
    # the largest standard error at which a true effect equal to ``centre`` passes w.p. 1 − α
    se_needed = margin / (est.quantile(1 - alpha) + est.quantile(1 - alpha / 2))
    reason = {PASS: "interval inside the margin", FAIL: "interval outside the margin"}.get(status, "")
    if status == INCONCLUSIVE:
        reason = (f"interval half-width {(hi - lo) / 2:.3g} too wide for margin {margin:.3g} "
                  f"(needs se ≤ {se_needed:.3g}, has {est.se:.3g})" if est.se > se_needed
                  else "interval straddles the margin")
    return Decision(status, est, (lo, hi), p_pass, p_fail, alpha, margin, margin,
                    f"TOST: PASS if the {1 - 2 * alpha:.0%} interval ⊂ ({lo_b:.3g}, {hi_b:.3g}); FAIL if "
                    "wholly outside", reason)


def mde(est: Estimate, alpha: float, power: float = POWER) -> float:
    """Minimum detectable effect of a one-sided level-``alpha`` test at ``power``."""
    return (est.quantile(1 - alpha) + est.quantile(power)) * est.se


def superiority(est: Estimate, delta: float, alpha: float = 0.05) -> Decision:
    """One-sided test of ``effect > 0`` with ``delta`` the smallest effect the claim cares about.

    PASS: the one-sided ``1 − α`` lower bound above 0.  FAIL: the one-sided upper bound below
    ``delta`` (the effect is smaller than the claim needs).  Otherwise INCONCLUSIVE; the reason
    states the minimum detectable effect at 80% power against ``delta``.
    """
    _check(est)
    if not delta > 0:
        raise ValueError(f"the minimum effect must be positive, got {delta!r}")
    p_pass, p_fail = est.p_above(0.0), est.p_below(delta)
    status = _status(p_pass, p_fail, alpha)
    m = mde(est, alpha)
    lo, hi = est.interval(1 - 2 * alpha)
    reason = {PASS: "lower bound above 0", FAIL: f"upper bound below δ = {delta:.3g}"}.get(status, "")
    if status == INCONCLUSIVE:
        reason = (f"minimum detectable effect {m:.3g} > δ = {delta:.3g}" if m > delta
                  else "interval covers both 0 and δ")
    return Decision(status, est, (lo, hi), p_pass, p_fail, alpha, m, delta,
                    f"one-sided level {alpha:g}: PASS if lower bound > 0; FAIL if upper bound < δ = {delta:.3g}",
                    reason)


def below(est: Estimate, bound: float, alpha: float = 0.05) -> Decision:
    """"The effect is at most ``bound``" (e.g. a cost ratio): PASS when the one-sided ``1 − α``
    upper bound is below ``bound``; FAIL when the lower bound is above it; INCONCLUSIVE otherwise,
    with the minimum detectable excess at 80% power as resolution."""
    _check(est)
    p_pass, p_fail = est.p_below(bound), est.p_above(bound)
    status = _status(p_pass, p_fail, alpha)
    m = mde(est, alpha)
    lo, hi = est.interval(1 - 2 * alpha)
    reason = {PASS: f"upper bound below {bound:.3g}", FAIL: f"lower bound above {bound:.3g}"}.get(
        status, f"interval covers {bound:.3g}")
    return Decision(status, est, (lo, hi), p_pass, p_fail, alpha, m, bound,
                    f"one-sided level {alpha:g}: PASS if upper bound < {bound:.3g}; FAIL if lower bound > {bound:.3g}",
                    reason)


def negate(est: Estimate) -> Estimate:
    """The estimate of ``−effect`` (an inferiority claim tested as superiority)."""
    return replace(est, value=-est.value)


def detects(est: Estimate, alpha: float = 0.05) -> bool:
    """Does the two-sided level-``alpha`` interval exclude 0 (a control's effect is seen)?"""
    _check(est)
    lo, hi = est.interval(1 - alpha)
    return lo > 0 or hi < 0


def with_control(decision: Decision, control_rejected: bool, control: str) -> Decision:
    """The claim's decision, made INCONCLUSIVE when its control was not rejected."""
    if control_rejected:
        return decision
    return replace(decision, status=INCONCLUSIVE,
                   reason=f"control not rejected ({control}): the test cannot see the effect it must")


def intersection(decisions: list[Decision]) -> Decision:
    """All of several tests on one claim (e.g. one estimator's bias along several directions):
    PASS when every member PASSes (an intersection-union test, level α without correction);
    FAIL when some member FAILs, its p-value Bonferroni-adjusted over the members; otherwise
    INCONCLUSIVE.  The estimate and interval shown are those of the least favourable member."""
    if not decisions:
        raise ValueError("an intersection needs at least one decision")
    n = len(decisions)
    worst = max(decisions, key=lambda d: d.p_pass)
    p_pass = worst.p_pass
    p_fail = min(1.0, n * min(d.p_fail for d in decisions))
    status = _status(p_pass, p_fail, worst.alpha)
    reason = {PASS: f"all {n} pass", FAIL: "some member fails"}.get(status, worst.reason)
    return replace(worst, status=status, p_pass=p_pass, p_fail=p_fail,
                   rule=f"all of {n}: {worst.rule}", reason=reason)


def holm(decisions: list[Decision], family: str, alpha: float | None = None) -> list[Decision]:
    """Holm's correction over ``decisions`` (one family): PASS needs the Holm-adjusted PASS
    p-value ≤ α, FAIL the adjusted FAIL p-value; the family name and size are recorded."""
    if not decisions:
        return []
    a = decisions[0].alpha if alpha is None else alpha
    adj_pass = multipletests([d.p_pass for d in decisions], alpha=a, method="holm")[1]
    adj_fail = multipletests([d.p_fail for d in decisions], alpha=a, method="holm")[1]
    out = []
    label = f"{family} ({len(decisions)} tests, Holm at {a:g})"
    for d, pp, pf in zip(decisions, adj_pass, adj_fail):
        status = _status(pp, pf, a)
        if d.status == INCONCLUSIVE and d.reason.startswith("control not rejected"):
            status = INCONCLUSIVE
        reason = d.reason if status == d.status else f"{d.reason}; {status} after Holm (adjusted p {min(pp, pf):.3g})"
        out.append(replace(d, status=status, reason=reason, family=label))
    return out


# ------------------------------------------------------------------------- estimates
def mean_estimate(x, unit: str = "replicates") -> Estimate:
    """Mean of independent replicates ``x`` (1-D) with ``sd/√n`` on ``n − 1`` df."""
    x = np.asarray(x, dtype=float).ravel()
    if x.size < MIN_UNITS:
        raise UnreliableEstimate(f"{x.size} {unit}: an interval needs at least {MIN_UNITS}")
    if not np.all(np.isfinite(x)):
        raise UnreliableEstimate(f"non-finite values among the {unit}")
    return Estimate(float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)), float(x.size - 1), x.size, unit)


def instance_mean(values, ses, unit: str = "instances") -> Estimate:
    """Random-effects mean of per-instance estimates ``values`` with standard errors ``ses``
    (DerSimonian–Laird between-instance variance ``τ²``; weights ``1/(se² + τ²)``; Student t on
    ``n − 1`` df, the Hartung–Knapp scale factor so that few instances are not overconfident)."""
    y, s2 = np.asarray(values, dtype=float), np.asarray(ses, dtype=float) ** 2
    n = y.size
    if n < MIN_UNITS:
        raise UnreliableEstimate(f"{n} {unit}: a random-effects interval needs at least {MIN_UNITS}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(s2))):
        raise UnreliableEstimate(f"non-finite values among the {unit}")
    w = 1.0 / np.maximum(s2, np.finfo(float).tiny)
    mu_f = np.sum(w * y) / w.sum()
    q = np.sum(w * (y - mu_f) ** 2)
    tau2 = max(0.0, (q - (n - 1)) / (w.sum() - np.sum(w * w) / w.sum()))
    w = 1.0 / (s2 + tau2)
    mu = np.sum(w * y) / w.sum()
    var_hk = np.sum(w * (y - mu) ** 2) / ((n - 1) * w.sum())
    return Estimate(float(mu), float(np.sqrt(max(var_hk, 1.0 / w.sum()))), float(n - 1), n, unit)


def cluster_bootstrap(statistic, clusters: list, rng: np.random.Generator, n_boot: int = 2000,
                      unit: str = "instances") -> Estimate:
    """``statistic(list of clusters) -> float`` with a bootstrap standard error that resamples
    whole clusters (independent instances) with replacement; normal reference, ``df = n − 1``."""
    n = len(clusters)
    if n < MIN_UNITS:
        raise UnreliableEstimate(f"{n} {unit}: a cluster bootstrap needs at least {MIN_UNITS}")
    value = float(statistic(clusters))
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = np.array([statistic([clusters[i] for i in row]) for row in idx])
    if not np.all(np.isfinite(boots)):
        raise UnreliableEstimate("the statistic is not finite on every bootstrap resample")
    return Estimate(value, float(boots.std(ddof=1)), float(n - 1), n, unit)


def loglog_slope(x, y, groups=None, unit: str = "instances") -> Estimate:
    """Slope of ``log y`` on ``log x`` (least squares).  ``groups`` (one label per point) marks
    independent units (instances, timing sweeps) whose points may be correlated: the slope's
    standard error is then cluster-robust (statsmodels, ``df = groups − 1``); without groups the
    points are independent (``df = n − 2``)."""
    import statsmodels.api as sm

    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly))):
        raise UnreliableEstimate("log-log regression needs positive finite values")
    if np.unique(lx).size < 2:
        raise UnreliableEstimate("log-log regression needs at least two distinct x")
    X = sm.add_constant(lx)
    if groups is None:
        if lx.size < MIN_UNITS:
            raise UnreliableEstimate(f"{lx.size} points: a slope interval needs at least {MIN_UNITS}")
        fit = sm.OLS(ly, X).fit()
        return Estimate(float(fit.params[1]), float(fit.bse[1]), float(lx.size - 2), lx.size, "points")
    g = np.unique(np.asarray(groups), return_inverse=True)[1]
    n = int(g.max()) + 1
    if n < MIN_UNITS:
        raise UnreliableEstimate(f"{n} {unit}: a clustered slope interval needs at least {MIN_UNITS}")
    fit = sm.OLS(ly, X).fit(cov_type="cluster", cov_kwds={"groups": g})
    return Estimate(float(fit.params[1]), float(fit.bse[1]), float(n - 1), n, unit)


# ------------------------------------------------------------------------- verdicts
def verdict(check: str, decision: Decision, claim: str, source: str, statistic: str,
            control: str = "", evidence: str = "") -> Verdict:
    """The report's verdict of ``decision`` with every evidence field filled in."""
    d = decision
    lo, hi = d.interval
    kind = "margin" if d.rule.startswith("TOST") else "MDE (80% power)"
    needs = "bound" if "PASS if upper bound <" in d.rule else "claim needs"
    return Verdict(check, d.status,
                   (evidence + "; " if evidence else "") + f"{statistic} = {d.estimate.value:.3g} "
                   f"[{lo:.3g}, {hi:.3g}] ({1 - 2 * d.alpha:.0%} interval) over {d.estimate.n} {d.estimate.unit}: "
                   f"{d.reason}",
                   value=d.estimate.value, bound=d.needed, rule=d.rule, claim=claim, source=source,
                   statistic=statistic, effect=d.estimate.value, interval=(lo, hi),
                   resolution=f"{kind} {d.resolution:.3g} ({needs} {d.needed:.3g})",
                   control=control, family=d.family)


def inconclusive(check: str, why: str, claim: str, source: str, statistic: str = "",
                 control: str = "", family: str = "") -> Verdict:
    """A verdict that could not be decided (too little data, estimate refused): INCONCLUSIVE."""
    return Verdict(check, INCONCLUSIVE, why, claim=claim, source=source, statistic=statistic,
                   control=control, family=family, rule="not decided: " + why)
