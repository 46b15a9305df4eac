"""Stationarity statistics (THEORY.md §5, consequences 2 and 4).

* :func:`marginal_distance` / :func:`permutation_null` — the mean over coordinates of the 1-D
  Wasserstein distance (``scipy.stats.wasserstein_distance``) between two samples, in units of
  the pooled standard deviation, and its distribution under random relabelling (the Monte Carlo
  noise floor for samples of these sizes).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance


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
