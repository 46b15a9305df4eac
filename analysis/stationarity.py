"""Stationarity statistics (THEORY.md §5, consequences 2 and 4).

* :func:`unit_root_tests` — ADF (null: unit root) and KPSS (null: level stationarity) from
  ``statsmodels`` on one series; a settled series rejects the first and not the second.
* :func:`principal_series` — the projection of a multivariate window on its first principal
  component: a drift in any direction dominates the variance, so it shows there.
* :func:`marginal_distance` / :func:`permutation_null` — the mean over coordinates of the 1-D
  Wasserstein distance (``scipy.stats.wasserstein_distance``) between two samples, in units of
  the pooled standard deviation, and its distribution under random relabelling (the Monte Carlo
  noise floor for samples of these sizes).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import wasserstein_distance
from statsmodels.tools.sm_exceptions import InterpolationWarning
from statsmodels.tsa.stattools import adfuller, kpss

#: KPSS critical values for level stationarity (Kwiatkowski et al. 1992, Table 1)
KPSS_CRITICAL = {0.10: 0.347, 0.05: 0.463, 0.025: 0.574, 0.01: 0.739}


def unit_root_tests(x) -> dict:
    """ADF (constant, AIC lag choice) and KPSS (level, automatic lags) on the 1-D series ``x``.

    Returns ``adf_stat``, ``adf_p`` (MacKinnon), ``kpss_stat``, ``kpss_p`` (interpolated in
    ``[0.01, 0.1]``; compare ``kpss_stat`` with :data:`KPSS_CRITICAL` for exact levels).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 20 or not np.all(np.isfinite(x)):
        raise ValueError("unit-root tests need a finite 1-D series of length >= 20")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InterpolationWarning)
        warnings.simplefilter("ignore", FutureWarning)      # tuple-vs-result-object notice (statsmodels 0.15)
        adf = adfuller(x, regression="c", autolag="AIC")
        kp = kpss(x, regression="c", nlags="auto")
    return {"adf_stat": float(adf[0]), "adf_p": float(adf[1]), "kpss_stat": float(kp[0]), "kpss_p": float(kp[1])}


def principal_series(window) -> np.ndarray:
    """Scores of the ``n × d`` window on its first principal component (``n``)."""
    w = np.asarray(window, dtype=float)
    w = w - w.mean(axis=0)
    _, _, vt = np.linalg.svd(w, full_matrices=False)
    return w @ vt[0]


def marginal_distance(a, b) -> float:
    """Mean over coordinates ``j`` of ``W₁(a[:, j], b[:, j]) / sd_j`` (``a``: ``n × d``, ``b``: ``n' × d``).

    Equal sample sizes use the exact identity ``W₁ = mean |a_(i) − b_(i)|`` over order statistics
    (all coordinates at once; the same number as ``scipy.stats.wasserstein_distance``, which is
    used for unequal sizes)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = np.concatenate([a, b]).std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    if a.shape[0] == b.shape[0]:
        w = np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)).mean(axis=0)
    else:
        w = np.array([wasserstein_distance(a[:, j], b[:, j]) for j in range(a.shape[1])])
    return float(np.mean(w / sd))


def permutation_null(a, b, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """``n_perm`` values of :func:`marginal_distance` after random relabelling of the pooled sample."""
    pooled = np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    n = len(a)
    out = np.empty(n_perm)
    for i in range(n_perm):
        idx = rng.permutation(len(pooled))
        out[i] = marginal_distance(pooled[idx[:n]], pooled[idx[n:]])
    return out
