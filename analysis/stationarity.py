"""Stationarity statistics (THEORY.md §5, consequence 2).

* :func:`max_distance` — the largest over coordinates of ``W₁ / sd`` (a difference in one
  coordinate is not diluted by averaging over the others); :func:`agreement` — the decision
  "two samples have the same law, within a shift of ``δ`` standard deviations in any coordinate":
  FAIL when a permutation test of :func:`max_distance` rejects at level ``α``; PASS when it does
  not and its power against a shift of ``δ`` sd in one coordinate (by simulation on the pooled
  sample) is at least 80%; INCONCLUSIVE otherwise.

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


def _w1_over_sd(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = np.concatenate([a, b]).std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    if a.shape[0] == b.shape[0]:
        return np.abs(np.sort(a, axis=0) - np.sort(b, axis=0)).mean(axis=0) / sd
    return np.array([wasserstein_distance(a[:, j], b[:, j]) for j in range(a.shape[1])]) / sd


def max_distance(a, b) -> float:
    """``max_j W₁(a[:, j], b[:, j]) / sd_j`` (``a``: ``n × d``, ``b``: ``n' × d``; pooled sd)."""
    return float(_w1_over_sd(a, b).max())


def permutation_null(a, b, n_perm: int, rng: np.random.Generator, statistic=marginal_distance) -> np.ndarray:
    """``n_perm`` values of ``statistic`` after random relabelling of the pooled sample."""
    pooled = np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    n = len(a)
    out = np.empty(n_perm)
    for i in range(n_perm):
        idx = rng.permutation(len(pooled))
        out[i] = statistic(pooled[idx[:n]], pooled[idx[n:]])
    return out


#: permutations behind every agreement decision, and simulated shifts behind its power
N_PERM, N_POWER, POWER = 1000, 200, 0.8


def agreement(a, b, delta: float, alpha: float, rng: np.random.Generator, n_perm: int = N_PERM,
              n_power: int = N_POWER) -> dict:
    """Decide "``a`` and ``b`` (``n × d``, ``n' × d``) have the same law within ``δ`` sd per coordinate".

    Returns ``status`` (PASS / FAIL / INCONCLUSIVE, see the module docstring), the statistic
    ``D`` (:func:`max_distance`), its permutation ``p`` (``(1 + #{null ≥ D}) / (1 + n_perm)``), the
    critical value ``crit`` (the null's ``1 − α`` quantile) and the ``power`` against a shift of
    ``δ`` pooled sd in one coordinate (coordinates taken in turn, on random splits of the pooled
    sample)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    D = max_distance(a, b)
    null = permutation_null(a, b, n_perm, rng, max_distance)
    p = (1 + np.sum(null >= D)) / (1 + n_perm)
    crit = float(np.quantile(null, 1 - alpha))
    pooled = np.concatenate([a, b])
    sd = pooled.std(axis=0)
    n, hits = len(a), 0
    for i in range(n_power):
        idx = rng.permutation(len(pooled))
        x, y = pooled[idx[:n]].copy(), pooled[idx[n:]]
        x[:, i % pooled.shape[1]] += delta * sd[i % pooled.shape[1]]
        hits += max_distance(x, y) > crit
    power = hits / n_power
    status = "FAIL" if p <= alpha else "PASS" if power >= POWER else "INCONCLUSIVE"
    return {"status": status, "D": D, "p": float(p), "crit": crit, "power": power}
