"""A synthetic order-book-like series: returns with volatility clustering driven by order flow.

SYNTHETIC: no market data is involved; the process only imitates two stylised facts (GARCH-type
volatility clustering, order-flow imbalance that predicts the next return).

    o_t   = φ o_{t−1} + √(1 − φ²) ξ_t                         order-flow imbalance, AR(1), N(0, 1)
    σ²_t  = ω + a u²_{t−1} + b σ²_{t−1},  ω = v̄ (1 − a − b)    GARCH(1, 1) variance
    u_t   = σ_t ε_t,     r_t = κ σ_t o_{t−1} + u_t              return: predictable part + shock

Inputs ``x_t = (r_t, o_t, |r_t|) / (√v̄, 1, √v̄)`` (``m = 3``); target: the next return
``r_{t+1}/√v̄`` (``target="value"``, mse) or its sign (``target="sign"``, classes ``{0: ≤ 0, 1: > 0}``,
xent).  The best predictor needs the volatility ``σ_{t+1}``, an exponentially weighted memory of
past squared shocks.  With ``|φ| < 1``, ``a, b ≥ 0`` and ``a + b < 1`` the chain ``(o_t, σ²_t, u_t)``
is stationary and geometrically ergodic (GARCH(1,1) with Gaussian shocks: Carrasco & Chen 2002);
returns have a finite fourth moment when ``3a² + 2ab + b² < 1``, so the squared-error loss has a
finite variance.  All ξ, ε are standard normal and drawn from the run's generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataProcess


@dataclass
class BookState:
    o: np.ndarray        # B: imbalance at the last generated time τ
    sig2: np.ndarray     # B: σ²_τ
    u: np.ndarray        # B: shock u_τ
    r: np.ndarray        # B: return r_τ


class SyntheticOrderBook(DataProcess):
    """Synthetic returns / order-flow series (see the module docstring)."""

    name = "orderbook"
    m = 3

    def __init__(self, target: str = "value", phi: float = 0.7, a: float = 0.1, b: float = 0.8,
                 kappa: float = 0.3, variance: float = 1.0, warmup: int = 300):
        if target not in ("value", "sign"):
            raise ValueError(f"order-book target must be 'value' or 'sign', got {target!r}")
        if not (abs(phi) < 1 and a >= 0 and b >= 0 and a + b < 1 and variance > 0):
            raise ValueError("order-book process needs |phi| < 1, a, b >= 0, a + b < 1, variance > 0")
        self.target, self.phi, self.a, self.b, self.kappa = target, float(phi), float(a), float(b), float(kappa)
        self.variance, self.warmup = float(variance), int(warmup)
        self.omega = variance * (1.0 - a - b)
        self.loss, self.n_out = ("mse", 1) if target == "value" else ("xent", 2)

    @property
    def finite_fourth_moment(self) -> bool:
        return 3 * self.a ** 2 + 2 * self.a * self.b + self.b ** 2 < 1.0

    def init(self, rng: np.random.Generator, batch: int) -> BookState:
        state = BookState(rng.standard_normal(batch), np.full(batch, self.variance), np.zeros(batch), np.zeros(batch))
        state, _ = self._chain(state, max(self.warmup, 1), rng)
        return state

    def _chain(self, state, T, rng):
        """Advance ``T`` steps; returns the new state and the returns/imbalances ``(T+1) × B`` from τ."""
        B = state.o.shape[0]
        xi, eps = rng.standard_normal((T, B)), rng.standard_normal((T, B))
        o, sig2, u, r = state.o, state.sig2, state.u, state.r
        rs, os_ = np.empty((T + 1, B)), np.empty((T + 1, B))
        rs[0], os_[0] = r, o
        c = np.sqrt(1.0 - self.phi ** 2)
        for t in range(T):
            sig2 = self.omega + self.a * u * u + self.b * sig2
            sig = np.sqrt(sig2)
            u = sig * eps[t]
            r = self.kappa * sig * o + u
            o = self.phi * o + c * xi[t]
            rs[t + 1], os_[t + 1] = r, o
        return BookState(o, sig2, u, r), (rs, os_)

    def sample(self, state: BookState, T: int, rng: np.random.Generator):
        state, (rs, os_) = self._chain(state, T, rng)
        scale = np.sqrt(self.variance)
        r = rs[:T] / scale
        xs = np.stack([r, os_[:T], np.abs(r)], axis=-1)
        nxt = rs[1:] / scale
        ys = nxt[..., None] if self.target == "value" else (nxt > 0).astype(np.intp)
        return state, xs, ys
