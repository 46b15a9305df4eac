"""Rate fits (THEORY.md §5, consequence 1).

* :func:`hac_line` — OLS of ``y`` on ``x`` with Newey–West (HAC) standard errors (``statsmodels``
  ``OLS(...).fit(cov_type="HAC")``): points along one trajectory are autocorrelated.  (Rates over
  replicates use :func:`analysis.inference.loglog_slope`, errors clustered by replicate.)
* :func:`geometric_rate` — the rate ``r`` of ``y_t ≈ C t^a r^t`` (``a = 0``: ``‖Δs_t‖ ≤ Cρ^t``;
  ``a = 1``: ``‖ΔJ_t‖ ≤ C t ρ^t``) from OLS of ``log y − a log t`` on ``t``, with HAC errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm
from scipy import stats


@dataclass
class SlopeFit:
    """``slope`` ± ``se`` (HAC) of a line fitted to ``n`` points; ``ci`` is the two-sided ``level`` interval."""

    slope: float
    se: float
    intercept: float
    n: int
    ci: tuple[float, float]
    maxlags: int


def newey_west_lags(n: int) -> int:
    """The usual bandwidth ``⌊4 (n/100)^{2/9}⌋`` (Newey & West 1994)."""
    return int(np.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


def hac_line(x, y, level: float = 0.95, maxlags: int | None = None) -> SlopeFit:
    """OLS of ``y`` on ``[1, x]`` with HAC (Bartlett kernel) standard errors; needs ≥ 4 finite points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = x.size
    if n < 4 or np.ptp(x) == 0:
        raise ValueError(f"a line fit needs at least 4 distinct finite points, got {n}")
    lags = newey_west_lags(n) if maxlags is None else int(maxlags)
    res = sm.OLS(y, sm.add_constant(x)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True})
    slope, se = float(res.params[1]), float(res.bse[1])
    z = stats.norm.ppf(0.5 + level / 2.0)
    return SlopeFit(slope, se, float(res.params[0]), n, (slope - z * se, slope + z * se), lags)


@dataclass
class RateFit:
    """Geometric rate ``r = exp(slope)`` with its ``ci`` (from the HAC interval of the slope)."""

    rate: float
    ci: tuple[float, float]
    fit: SlopeFit


def geometric_rate(t, y, power: float = 0.0, level: float = 0.95, floor: float = 0.0) -> RateFit:
    """Rate ``r`` of ``y_t ≈ C t^power r^t`` over the points with ``y > floor`` (e.g. above rounding)."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    keep = (y > floor) & (t > 0) & np.isfinite(y)
    t, y = t[keep], y[keep]
    fit = hac_line(t, np.log(y) - power * np.log(t), level)
    return RateFit(float(np.exp(fit.slope)), (float(np.exp(fit.ci[0])), float(np.exp(fit.ci[1]))), fit)
