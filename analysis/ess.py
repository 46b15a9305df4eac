"""Effective sample size of a stationary series: Geyer's initial sequence estimators
(Geyer 1992, "Practical Markov chain Monte Carlo", §3.3) over ``statsmodels.tsa.stattools.acf``.

For a series with autocorrelations ``ρ_j`` the integrated autocorrelation time is
``τ = 1 + 2 Σ_{j≥1} ρ_j = −1 + 2 Σ_{m≥0} Γ_m`` with ``Γ_m = ρ_{2m} + ρ_{2m+1}``; for a reversible
chain ``Γ_m`` is positive and decreasing.  The *initial positive sequence* estimator sums the
empirical ``Γ̂_m`` up to the first non-positive one; the *initial monotone sequence* estimator
also replaces each ``Γ̂_m`` by ``min(Γ̂_0, …, Γ̂_m)``.  ``ESS = n / τ̂`` and the Monte Carlo
standard error of the time average is ``sd / √ESS``.

For an AR(1) series with coefficient ``φ``: ``τ = (1 + φ)/(1 − φ)`` (asymptotically in ``n``).
"""
from __future__ import annotations

import numpy as np
from statsmodels.tsa.stattools import acf

METHODS = ("monotone", "positive")


def autocorrelation_time(x, method: str = "monotone") -> float:
    """Geyer's estimate of ``τ`` for the 1-D series ``x`` (``n ≥ 4``); ``≥ 1/n`` always.

    A constant series has no autocorrelation to estimate: ``τ = 1`` is returned.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ESS method {method!r}; choose from {', '.join(METHODS)}")
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 4:
        raise ValueError(f"ESS needs a 1-D series of length >= 4, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("ESS needs a finite series")
    n = x.size
    if np.ptp(x) == 0.0:
        return 1.0
    rho = acf(x, nlags=n - 1, fft=True, adjusted=False)
    pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(axis=1)          # Γ_m, m = 0 … ⌊n/2⌋−1
    nonpos = np.flatnonzero(pairs <= 0.0)
    gam = pairs[: nonpos[0]] if nonpos.size else pairs
    if gam.size == 0:
        return 1.0 / n
    if method == "monotone":
        gam = np.minimum.accumulate(gam)
    return float(max(-1.0 + 2.0 * gam.sum(), 1.0 / n))


def effective_sample_size(x, method: str = "monotone") -> float:
    """``n / τ̂`` (Geyer) for the 1-D series ``x``."""
    x = np.asarray(x, dtype=float)
    return x.size / autocorrelation_time(x, method)


def time_average_se(x, method: str = "monotone") -> tuple[float, float]:
    """``(mean, Monte Carlo standard error)`` of the time average of ``x``: ``sd / √ESS``."""
    x = np.asarray(x, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(effective_sample_size(x, method)))
