"""Central finite differences with Richardson extrapolation and an error estimate (THEORY §2.3).

For a batched scalar function ``f: B × p -> B`` (every row one parameter vector, all rows on the
same data) the gradient at ``θ`` is estimated coordinate-wise from central differences
``Δ_j = (f(θ + h_j e_i) − f(θ − h_j e_i)) / 2h_j`` on the steps ``h_j = h₀ 2^{−j} max(1, |θ_i|)``,
``j = 0..J``, extrapolated twice:

    R₁_j = (4Δ_{j+1} − Δ_j) / 3 = f' + O(h⁴),    R₂_j = (16R₁_{j+1} − R₁_j) / 15 = f' + O(h⁶).

All ``2p(J+1)`` evaluations (plus 9 for the noise estimate) run as one batched call.  In the
manner of numdifftools the step is chosen per coordinate, as the ``j`` with the smallest error
estimate

    e_j = |R₂_j − R₂_{j+1}| + |R₂_{j+1} − R₂_{j+2}| + 3σ_f Σ|a_j|,

two successive changes of the extrapolant (large wherever the Taylor series has not yet taken
hold, so such steps are never chosen) plus the rounding term, where ``R₂_j = Σ a f(θ_probe)`` and
``σ_f`` is the noise level of ``f`` estimated from sixth differences of ``f`` along a random
direction at a tiny step (Moré & Wild's ECnoise), floored at ``ε|f(θ)|``.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from rtrl_validation.simulations.seeding import as_generator

EPS = np.finfo(float).eps


@dataclass
class FDGradient:
    """``derivative`` (``p``), its ``error`` estimate (``p``), ``truncation`` (``p``),
    ``rounding`` (scalar), the noise level ``noise`` of ``f``, and ``value = f(θ)``."""

    derivative: np.ndarray
    error: np.ndarray
    truncation: np.ndarray
    rounding: float
    noise: float
    value: float


def noise_level(values: np.ndarray) -> float:
    """ECnoise: ``σ ≈ sqrt(γ₆ · mean((Δ⁶ f)²))`` with ``γ₆ = (6!)² / 12!`` from ``f`` on 9 equispaced
    points (Moré & Wild 2011).  ``values``: ``(9,)``."""
    d6 = np.diff(values, n=6)
    g6 = factorial(6) ** 2 / factorial(12)
    return float(np.sqrt(g6 * np.mean(d6 * d6)))


def richardson_gradient(f, theta, h0: float = 0.1, levels: int = 11, *, rng) -> FDGradient:
    """Gradient of ``f`` at ``θ`` (``p``) with an error estimate; ``f`` maps ``B × p -> B``.
    ``rng`` (a seed or a Generator) draws the direction of the noise estimate."""
    theta = np.asarray(theta, dtype=float)
    p = theta.size
    steps = h0 * 0.5 ** np.arange(levels)[:, None] * np.maximum(1.0, np.abs(theta))   # L × p
    eye = np.eye(p)
    probes = [theta + sgn * steps[l][:, None] * eye for l in range(levels) for sgn in (1.0, -1.0)]
    rng = as_generator(rng)
    u = rng.standard_normal(p)
    u /= np.linalg.norm(u)
    eta = 1e-4 * max(1.0, float(np.abs(theta).max()))
    line = theta + eta * np.arange(-4, 5)[:, None] * u
    vals = f(np.vstack(probes + [line]))
    fp = vals[: 2 * levels * p].reshape(levels, 2, p)
    line_vals = vals[2 * levels * p:]
    delta = (fp[:, 0] - fp[:, 1]) / (2 * steps)                           # Δ_j
    r1 = (4 * delta[1:] - delta[:-1]) / 3                                  # R₁_j
    r2 = (16 * r1[1:] - r1[:-1]) / 15                                      # R₂_j, j = 0..L-3
    change = np.abs(np.diff(r2, axis=0))                                   # |R₂_j − R₂_{j+1}|
    trunc = change[:-1] + change[1:]                                       # j = 0..L-5
    n = trunc.shape[0]
    # R₂_j = (64Δ_{j+2} − 20Δ_{j+1} + Δ_j)/45, Δ_i = (f₊ − f₋)/2h_i: Σ|a| over its six probes.
    weights = (64 / steps[2:n + 2] + 20 / steps[1:n + 1] + 1 / steps[:n]) / 45
    f0 = float(line_vals[4])
    sigma = max(noise_level(line_vals), EPS * abs(f0))
    rounding = 3 * sigma * weights
    err = trunc + rounding
    best = np.argmin(err, axis=0)
    cols = np.arange(p)
    return FDGradient(r2[best, cols], err[best, cols], trunc[best, cols], float(np.max(rounding[best, cols])),
                      sigma, f0)
