"""Monte Carlo summaries over independent replicates (paths or training runs): means with
standard errors, familywise critical values, one-sided comparisons and a debiased norm.

Independent replicates make these exact in the usual sense: ``se = sd/√n`` with Student-t
quantiles on ``n − 1`` degrees of freedom.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def mean_se(x, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and its standard error ``sd/√n`` along ``axis`` (``n ≥ 2`` replicates)."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    if n < 2:
        raise ValueError("a standard error needs at least 2 replicates")
    return x.mean(axis=axis), x.std(axis=axis, ddof=1) / np.sqrt(n)


def familywise_t(tests: int, df: float, level: float = 0.01) -> float:
    """Two-sided Student-t critical value with Bonferroni over ``tests`` comparisons at familywise ``level``."""
    return float(stats.t.ppf(1.0 - level / (2.0 * max(tests, 1)), df))


def max_z(a_mean, a_se, b_mean, b_se, extra=0.0) -> tuple[float, np.ndarray]:
    """``max_j |a_j − b_j| / √(se_a² + se_b² + extra²)`` and the vector of ``z_j``."""
    z = (np.asarray(a_mean) - np.asarray(b_mean)) / np.sqrt(np.asarray(a_se) ** 2 + np.asarray(b_se) ** 2
                                                            + np.asarray(extra) ** 2)
    return float(np.max(np.abs(z))), z


def welch_greater(x, y) -> tuple[float, float]:
    """One-sided Welch test of ``mean(x) > mean(y)``: ``(t, p)``."""
    res = stats.ttest_ind(np.asarray(x, dtype=float), np.asarray(y, dtype=float), equal_var=False,
                          alternative="greater")
    return float(res.statistic), float(res.pvalue)


def debiased_norm(samples, axis: int = -2) -> tuple[np.ndarray, np.ndarray]:
    """``‖E g‖`` from independent samples of ``g`` (replicates on ``axis``, components last):
    ``‖ḡ‖² − tr Σ̂/n`` is unbiased for ``‖E g‖²``; returns ``(√max(0, ·), noise floor √(tr Σ̂/n))``."""
    g = np.asarray(samples, dtype=float)
    n = g.shape[axis]
    m = g.mean(axis=axis)
    trace = g.var(axis=axis, ddof=1).sum(axis=-1) / n
    return np.sqrt(np.maximum((m * m).sum(axis=-1) - trace, 0.0)), np.sqrt(trace)


def variance_ratio_interval(n: int, level: float) -> tuple[float, float]:
    """Central ``level`` interval of ``s²/σ²`` for ``n`` normal replicates (``χ²_{n−1}/(n−1)``)."""
    df = n - 1
    lo, hi = stats.chi2.ppf([(1 - level) / 2, (1 + level) / 2], df)
    return float(lo / df), float(hi / df)


def log_mean_ci(x, level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of positive replicates with a Student-t interval on the log scale."""
    lx = np.log(np.asarray(x, dtype=float))
    m, se = lx.mean(), lx.std(ddof=1) / np.sqrt(lx.size)
    q = stats.t.ppf(0.5 + level / 2, lx.size - 1)
    return float(np.exp(m)), float(np.exp(m - q * se)), float(np.exp(m + q * se))
