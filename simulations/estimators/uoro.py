"""UORO, unbiased online recurrent optimisation (Tallec & Ollivier 2018; THEORY.md §4).

Rank-one estimate ``J ≈ s̃ θ̃ᵀ`` with ``s̃``: ``B × k`` and ``θ̃``: ``B × p``.  Each step draws
``ν ∈ {−1, +1}^k`` uniformly and sets

    s̃ ← ρ₀ D_t s̃ + ρ₁ ν,     θ̃ ← θ̃ / ρ₀ + (νᵀ I_t) / ρ₁,
    ρ₀ = sqrt(‖θ̃‖ / ‖D_t s̃‖),  ρ₁ = sqrt(‖νᵀ I_t‖ / ‖ν‖).

The cross terms have zero mean because ``ρ₁`` is even in ``ν``, so ``E[s̃ θ̃ᵀ] = J_t`` for any
positive ``ρ₀, ρ₁``; a zero norm (e.g. at the first step, ``s̃ = θ̃ = 0``) sets that ``ρ`` to 1,
which leaves the product, hence the expectation, unchanged.  Memory ``O(k + p)``; time
``O(k² + p)`` per step: ``D_t s̃`` from the factored ``D_t`` (one product with ``W`` for all
replicates), ``‖νᵀ I_t‖`` from the norms of its factors, ``θ̃ / ρ₀`` as a change of ``θ̃``'s
separate scalar factor, and ``νᵀ I_t / ρ₁`` added into ``θ̃`` in place as outer products (rank-one
BLAS updates for one replicate), never formed on its own: two passes over ``p`` numbers per
update (``‖θ̃‖`` and the rank-one update) and one per gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..jacobians import row_dot
from .base import Estimator
from .signs import rademacher


def left_product(I, lam: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``λ I_t`` (``B × p``): :meth:`~simulations.jacobians.ImmediateJacobian.rmatmul`, by its former name."""
    return I.rmatmul(lam, out)


def norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of ``x`` (``B × n`` -> ``B``), one pass without temporaries."""
    return np.sqrt(row_dot(x, x))


def balance(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``sqrt(num / den)``, and ``1`` where either norm is zero (or not finite).  A handful of values
    (one or a few replicates) are computed as Python floats: the same correctly rounded operations
    as numpy's, in far fewer calls."""
    if num.size <= 16:
        vals = [math.sqrt(a / b) if 0.0 < a < math.inf and 0.0 < b < math.inf else 1.0
                for a, b in zip(num.ravel().tolist(), den.ravel().tolist())]
        return np.array(vals).reshape(num.shape)
    ok = (num > 0) & (den > 0) & np.isfinite(num) & np.isfinite(den)
    return np.where(ok, np.sqrt(np.where(ok, num, 1.0) / np.where(ok, den, 1.0)), 1.0)


#: ``θ̃``'s factor is folded into its direction when it leaves ``[2⁻⁶⁴, 2⁶⁴]`` (far from over/underflow)
FOLD_RANGE = (2.0 ** -64, 2.0 ** 64)


@dataclass
class RankOneState:
    """``s̃`` (``B × k``) and ``θ̃ = factor · direction`` (``B × p``; ``factor``: ``B``, kept apart so that
    ``θ̃ ← θ̃ / ρ₀`` costs ``O(1)`` instead of a pass over ``p`` numbers)."""

    s: np.ndarray          # B × k: s̃
    direction: np.ndarray  # B × p: θ̃ / factor
    factor: np.ndarray     # B
    batch: int
    p: int
    scales: np.ndarray | None = None   # B × 2: the last step's (ρ₀, ρ₁)

    @property
    def theta(self) -> np.ndarray:
        """``θ̃``: ``B × p``."""
        return self.factor[:, None] * self.direction


class UORO(Estimator):
    name = "uoro"
    #: draws random signs: its estimates are random, replicates differ
    stochastic = True

    def init(self, cell, theta, batch, rng=None):
        return RankOneState(np.zeros((batch, cell.k)), np.zeros((batch, cell.p)), np.ones(batch), batch, cell.p)

    def update(self, state, lin, rng):
        B, k = state.s.shape
        nu = rademacher(rng, (B, k))
        Ds = lin.dynamics.matvec(state.s)
        nuG = lin.I.left_gates(nu)
        num = np.stack([state.factor * norms(state.direction), lin.I.rmatmul_norms(nu, nuG)], axis=1)
        den = np.stack([norms(Ds), np.full(B, np.sqrt(k))], axis=1)
        state.scales = scales = balance(num, den)                               # B × 2: (ρ₀, ρ₁)
        state.s = scales[:, :1] * Ds + scales[:, 1:] * nu
        state.factor = state.factor / scales[:, 0]                              # θ̃ / ρ₀
        if not all(FOLD_RANGE[0] <= f <= FOLD_RANGE[1] for f in state.factor.tolist()):
            state.direction *= state.factor[:, None]
            state.factor = np.ones(B)
        lin.I.rmatmul(nu, out=state.direction, add=True, scale=1.0 / (scales[:, 1] * state.factor), left_gates=nuG)
        return state

    def signs_per_step(self, cell) -> int:
        return cell.k

    def gradient(self, state, credit):
        """``ĝ = (c s̃) θ̃ᵀ``: ``B × p``."""
        return state, (row_dot(credit, state.s) * state.factor)[:, None] * state.direction

    def influence(self, state):
        return state.s[:, :, None] * state.theta[:, None, :]

    def reset(self, state):
        state.s[...] = 0.0
        state.direction[...] = 0.0
        state.factor = np.ones(state.batch)
        return state
