"""UORO, unbiased online recurrent optimisation (Tallec & Ollivier 2018; THEORY.md §4).

Rank-one estimate ``J ≈ s̃ θ̃ᵀ`` with ``s̃``: ``B × k`` and ``θ̃``: ``B × p``.  Each step draws
``ν ∈ {−1, +1}^k`` uniformly and sets

    s̃ ← ρ₀ D_t s̃ + ρ₁ ν,     θ̃ ← θ̃ / ρ₀ + (νᵀ I_t) / ρ₁,
    ρ₀ = sqrt(‖θ̃‖ / ‖D_t s̃‖),  ρ₁ = sqrt(‖νᵀ I_t‖ / ‖ν‖).

The cross terms have zero mean because ``ρ₁`` is even in ``ν``, so ``E[s̃ θ̃ᵀ] = J_t`` for any
positive ``ρ₀, ρ₁``; a zero norm (e.g. at the first step, ``s̃ = θ̃ = 0``) sets that ``ρ`` to 1,
which leaves the product, hence the expectation, unchanged.  Memory ``O(k + p)``; time
``O(k² + p)`` per step (``D_t s̃`` and the factored ``νᵀ I_t``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Estimator
from .signs import rademacher


def left_product(I, lam: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``λ I_t`` (``B × p``) for ``λ``: ``B × k``, as :meth:`ImmediateJacobian.rmatmul` computes it,
    except that an unmasked block (column ``j·n_out + i``) is written as the outer product of its
    input ``v`` and ``λ G`` instead of through index gathers (about 10× faster for large blocks).
    ``out`` (``B × p``, C-contiguous) receives the result when given."""
    if all(blk.size < blk.n_out * blk.n_in for blk in I.blocks):
        return I.rmatmul(lam)
    B = lam.shape[0]
    out = np.empty((B, I.p)) if out is None else out
    lg = {g: G.rmatmul(lam) for g, G in I.gates.items()}
    for blk in I.blocks:
        v = I.sources[blk.source]
        if blk.size == blk.n_out * blk.n_in:
            grid = out[:, blk.cols]
            grid.shape = (B, blk.n_in, blk.n_out)            # a view of ``out`` (setting shape never copies)
            np.multiply(v[:, :, None], lg[blk.gate][:, None, :], out=grid)
        else:
            out[:, blk.cols] = lg[blk.gate][:, blk.idx_i] * v[:, blk.idx_j]
    return out


_row_dot = getattr(np, "vecdot", None) or (lambda a, b: np.einsum("bn,bn->b", a, b))   # numpy < 2: einsum


def norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of ``x`` (``B × n`` -> ``B``), one pass without temporaries."""
    return np.sqrt(_row_dot(x, x))


def balance(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``sqrt(num / den)``, and ``1`` where either norm is zero (or not finite)."""
    ok = (num > 0) & (den > 0) & np.isfinite(num) & np.isfinite(den)
    return np.where(ok, np.sqrt(np.where(ok, num, 1.0) / np.where(ok, den, 1.0)), 1.0)


@dataclass
class RankOneState:
    s: np.ndarray        # B × k: s̃
    theta: np.ndarray    # B × p: θ̃
    batch: int
    p: int
    scales: np.ndarray | None = None   # B × 2: the last step's (ρ₀, ρ₁)
    buf: np.ndarray | None = None      # B × p: scratch for νᵀ I_t


class UORO(Estimator):
    name = "uoro"
    #: draws random signs: its estimates are random, replicates differ
    stochastic = True

    def init(self, cell, theta, batch, rng=None):
        return RankOneState(np.zeros((batch, cell.k)), np.zeros((batch, cell.p)), batch, cell.p)

    def update(self, state, lin, rng):
        B, k = state.s.shape
        nu = rademacher(rng, (B, k))
        Ds = np.matmul(lin.D, state.s[:, :, None])[:, :, 0]
        if state.buf is None:
            state.buf = np.empty_like(state.theta)
        nuI = left_product(lin.I, nu, state.buf)
        rho0 = balance(norms(state.theta), norms(Ds))[:, None]
        rho1 = balance(norms(nuI), np.sqrt(np.full(B, float(k))))[:, None]
        state.scales = np.hstack([rho0, rho1])
        state.s = rho0 * Ds + rho1 * nu
        state.theta *= 1.0 / rho0
        nuI *= 1.0 / rho1
        state.theta += nuI
        return state

    def signs_per_step(self, cell) -> int:
        return cell.k

    def gradient(self, state, credit):
        """``ĝ = (c s̃) θ̃ᵀ``: ``B × p``."""
        return state, np.einsum("bk,bk->b", credit, state.s)[:, None] * state.theta

    def influence(self, state):
        return state.s[:, :, None] * state.theta[:, None, :]

    def reset(self, state):
        state.s[...] = 0.0
        state.theta[...] = 0.0
        return state
