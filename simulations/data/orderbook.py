"""A synthetic order-book-like series: returns with volatility clustering driven by order flow.

SYNTHETIC: no market data is involved; the process only imitates two stylised facts (GARCH-type
volatility clustering, order-flow imbalance that predicts the next return).

    o_t   = φ o_{t−1} + √(1 − φ²) ξ_t                         order-flow imbalance, AR(1), N(0, 1)
    σ²_t  = ω + a u²_{t−1} + b σ²_{t−1},  ω = v̄ (1 − a − b)    GARCH(1, 1) variance
    u_t   = σ_t ε_t,     r_t = κ σ_t o_{t−1} + u_t              return: predictable part + shock

Inputs ``x_t = (r_t, o_t, |r_t|) / (√v̄, 1, √v̄)`` (``m = 3``); targets, each a function of the next
return ``r_{t+1}``:

* ``target="value"``: ``r_{t+1}/√v̄`` (mse); conditional mean ``κ σ_{t+1} o_t / √v̄``;
* ``target="volatility"``: ``|r_{t+1}|/√v̄`` (mse), a volatility forecast; conditional mean
  ``σ_{t+1} g(κ o_t) / √v̄`` with ``g(μ) = E|μ + ε| = μ(2Φ(μ) − 1) + 2ϕ(μ)`` (folded normal);
* ``target="sign"``: classes ``{0: ≤ 0, 1: > 0}`` (xent).

``σ_{t+1}`` is known at time ``t`` (a function of past shocks), so the best predictor needs an
exponentially weighted memory of past squared shocks (e-folding ``−1/ln(a + b)`` steps); for the
volatility target that memory carries most of what can be predicted.  With ``|φ| < 1``,
``a, b ≥ 0`` and ``a + b < 1`` the chain ``(o_t, σ²_t, u_t)`` is stationary and geometrically
ergodic (GARCH(1,1) with Gaussian shocks: Carrasco & Chen 2002); returns have a finite fourth
moment when ``3a² + 2ab + b² < 1``, so the squared-error loss has a finite variance.  All ξ, ε are
standard normal and drawn from the run's generator.

:meth:`SyntheticOrderBook.with_noise` scales the unpredictable part of the target,
``y = m + noise·(y_obs − m)`` with ``m`` the conditional mean: ``noise = 0`` gives ``m`` itself.
The inputs are unchanged and ``E[y | past] = m`` for every ``noise``, so the mean squared-error
loss changes by a constant and ``∇L`` is the same (the mean loss at ``noise = 0`` is the excess
loss over the best predictor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from .base import DataProcess

TARGETS = ("value", "volatility", "sign")


@dataclass
class BookState:
    o: np.ndarray        # B: imbalance at the last generated time τ
    sig2: np.ndarray     # B: σ²_τ
    u: np.ndarray        # B: shock u_τ
    r: np.ndarray        # B: return r_τ


def folded_mean(mu: np.ndarray) -> np.ndarray:
    """``E|μ + ε|`` for ``ε ~ N(0, 1)``: ``μ(2Φ(μ) − 1) + 2ϕ(μ)``."""
    return mu * (2.0 * norm.cdf(mu) - 1.0) + 2.0 * norm.pdf(mu)


class SyntheticOrderBook(DataProcess):
    """Synthetic returns / order-flow series (see the module docstring)."""

    name = "orderbook"
    m = 3

    def __init__(self, target: str = "value", phi: float = 0.7, a: float = 0.1, b: float = 0.8,
                 kappa: float = 0.3, variance: float = 1.0, warmup: int = 300, noise: float = 1.0):
        if target not in TARGETS:
            raise ValueError(f"order-book target must be one of {', '.join(TARGETS)}, got {target!r}")
        if not (abs(phi) < 1 and a >= 0 and b >= 0 and a + b < 1 and variance > 0):
            raise ValueError("order-book process needs |phi| < 1, a, b >= 0, a + b < 1, variance > 0")
        if not noise >= 0 or (target == "sign" and noise != 1.0):
            raise ValueError(f"order-book target noise must be >= 0 (and 1 for the sign target), got {noise!r}")
        self.target, self.phi, self.a, self.b, self.kappa = target, float(phi), float(a), float(b), float(kappa)
        self.variance, self.warmup, self.noise = float(variance), int(warmup), float(noise)
        self.omega = variance * (1.0 - a - b)
        self.loss, self.n_out = ("xent", 2) if target == "sign" else ("mse", 1)

    @property
    def finite_fourth_moment(self) -> bool:
        return 3 * self.a ** 2 + 2 * self.a * self.b + self.b ** 2 < 1.0

    @property
    def memory(self) -> float:
        """E-folding time ``−1/ln(a + b)`` of the volatility's memory of past shocks (steps)."""
        return float(-1.0 / np.log(self.a + self.b))

    def with_noise(self, noise: float) -> "SyntheticOrderBook":
        """The same series with the target's unpredictable part scaled by ``noise`` (``0``: the
        conditional mean; same ``∇L``, see the module docstring)."""
        return SyntheticOrderBook(self.target, self.phi, self.a, self.b, self.kappa, self.variance, self.warmup,
                                  noise)

    def init(self, rng: np.random.Generator, batch: int) -> BookState:
        state = BookState(rng.standard_normal(batch), np.full(batch, self.variance), np.zeros(batch), np.zeros(batch))
        state, _ = self._chain(state, max(self.warmup, 1), rng)
        return state

    def _chain(self, state, T, rng):
        """Advance ``T`` steps; returns the new state and the returns, imbalances and volatilities
        ``(T+1) × B`` from τ (``σ`` at τ is not stored: row 0 of the volatilities is unused)."""
        B = state.o.shape[0]
        xi, eps = rng.standard_normal((T, B)), rng.standard_normal((T, B))
        o, sig2, u, r = state.o, state.sig2, state.u, state.r
        rs, os_, sigs = np.empty((T + 1, B)), np.empty((T + 1, B)), np.empty((T + 1, B))
        rs[0], os_[0], sigs[0] = r, o, np.sqrt(sig2)
        c = np.sqrt(1.0 - self.phi ** 2)
        for t in range(T):
            sig2 = self.omega + self.a * u * u + self.b * sig2
            sig = np.sqrt(sig2)
            u = sig * eps[t]
            r = self.kappa * sig * o + u
            o = self.phi * o + c * xi[t]
            rs[t + 1], os_[t + 1], sigs[t + 1] = r, o, sig
        return BookState(o, sig2, u, r), (rs, os_, sigs)

    def sample(self, state: BookState, T: int, rng: np.random.Generator):
        state, (rs, os_, sigs) = self._chain(state, T, rng)
        scale = np.sqrt(self.variance)
        r = rs[:T] / scale
        xs = np.stack([r, os_[:T], np.abs(r)], axis=-1)
        nxt = rs[1:] / scale
        if self.target == "sign":
            return state, xs, (nxt > 0).astype(np.intp)
        mu = self.kappa * os_[:T]                          # r_{t+1} = σ_{t+1}(κ o_t + ε_{t+1})
        if self.target == "value":
            y, mean = nxt, sigs[1:] * mu / scale
        else:
            y, mean = np.abs(nxt), sigs[1:] * folded_mean(mu) / scale
        if self.noise != 1.0:
            y = mean + self.noise * (y - mean)
        return state, xs, y[..., None]
