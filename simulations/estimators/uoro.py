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
BLAS updates for one replicate), never formed on its own.  :meth:`UORO.step` (the step the
training loops call) does the rank-one addition, the gradient and the next ``‖θ̃‖`` in one pass
over ``p`` numbers (:func:`~simulations.kernels.rank_one_full_step`; a masked block at its free
entries, :func:`~simulations.kernels.rank_one_masked_step`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import aligned
from ..jacobians import merge_blocks, row_dot, unit_major_blocks
from ..kernels import kronecker_rank_one_step, rank_one_full_step, rank_one_scales
from ..flops import immediate_nnz
from .base import Capabilities, Estimator
from .signs import rademacher, sign_draws


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
    sq: np.ndarray | None = None       # B: ‖direction‖² when known from the last fused step

    @property
    def theta(self) -> np.ndarray:
        """``θ̃``: ``B × p``."""
        return self.factor[:, None] * self.direction


class UORO(Estimator):
    name = "uoro"
    capabilities = Capabilities(stochastic=True)     # draws random signs: replicates differ

    def flops(self, cell) -> float:
        """``D_t s̃``: ``2k²``; ``νᵀ I_t``: ``2·nnz(I)``; norms, ``θ̃`` update and ``(c s̃) θ̃``: ``6p + 4k``."""
        k = cell.k
        return 2.0 * k * k + 2.0 * immediate_nnz(cell) + 6.0 * cell.p + 4.0 * k

    def memory(self, cell) -> float:
        """``s̃`` and ``θ̃``: ``k + p``."""
        return float(cell.k + cell.p)

    def init(self, cell, theta, batch, rng=None):
        return RankOneState(np.zeros((batch, cell.k)), aligned.zeros((batch, cell.p)), np.ones(batch), batch, cell.p)

    @staticmethod
    def _begin(state, Ds, rng):
        """What every step starts from, given ``D_t s̃`` (``B × k``): ``ν`` (``B × k``),
        ``‖θ̃'s direction‖²`` (``B``) and an empty ``(ρ₀, ρ₁)`` (``2 × B``); ``s̃`` and the factor
        become new arrays for the step to fill (the old ones may be held elsewhere)."""
        B, k = state.s.shape
        nu = rademacher(rng, (B, k))
        sq = row_dot(state.direction, state.direction) if state.sq is None else state.sq
        state.s, state.factor = np.empty_like(Ds), np.array(state.factor)
        return nu, sq, np.empty((2, B))

    @staticmethod
    def _draw(state, lin, rng):
        """:meth:`_begin` with ``D_t s̃`` from the linearization, and ``ν G_g`` per gate: ``(ν, D_t s̃,
        ν G_g, ‖direction‖², (ρ₀, ρ₁))``."""
        Ds = lin.dynamics.matvec(state.s)
        nu, sq, rho = UORO._begin(state, Ds, rng)
        return nu, Ds, lin.I.left_gates(nu), sq, rho

    def _scales(self, state, lin, rng):
        """The first half of a step: draw ``ν``, set ``(ρ₀, ρ₁)``, ``s̃ ← ρ₀ D_t s̃ + ρ₁ ν`` and
        ``θ̃``'s factor ``← factor / ρ₀`` (folded into the direction when out of range).
        Returns ``(ν, ν G_g per gate, 1 / (ρ₁ · factor))``, the last ``B`` scalars for the rank-one
        addition ``θ̃'s direction += (νᵀ I_t) / (ρ₁ · factor)``."""
        nu, Ds, nuG, sq, rho = self._draw(state, lin, rng)
        rank_one_scales(state.s, Ds, nu, state.factor, sq, lin.I.rmatvec_norms(nu, nuG), rho)
        state.scales = rho.T                                                    # B × 2: (ρ₀, ρ₁)
        if not all(FOLD_RANGE[0] <= f <= FOLD_RANGE[1] for f in state.factor.tolist()):
            state.direction *= state.factor[:, None]
            state.factor = np.ones(state.batch)
        state.sq = None
        return nu, nuG, 1.0 / (rho[1] * state.factor)

    def update(self, state, lin, rng):
        nu, nuG, alpha = self._scales(state, lin, rng)
        lin.I.rmatvec(nu, out=state.direction, add=True, scale=alpha, left_gates=nuG)
        return state

    def step(self, state, lin, credit, rng=None):
        """``update`` and ``gradient`` in one compiled call when ``I_t`` has the state's batch
        (:func:`~simulations.kernels.rank_one_full_step`: the scales, ``s̃``, one pass over ``θ̃``'s
        direction for the rank-one addition, an unmasked block as a grid and a masked block at its
        free entries, the gradient ``(c s̃) θ̃`` and the ``‖direction‖²`` that the next step's
        ``ρ₀`` needs); otherwise ``update`` then ``gradient``.  Same signs, same
        arithmetic as ``update``; sums of squares may be added in another order.  A linearization
        with :class:`~simulations.jacobians.KroneckerFactors` whose ``D_t s̃`` was formed with the
        forward product gives ``â``, ``σ'`` and ``D_t s̃`` directly (one block over ``θ``): then the
        signs' draws, ``ν G = ν ⊙ σ'`` and the step are one call
        (:func:`~simulations.kernels.kronecker_rank_one_step`)."""
        f = lin.factors
        if f is not None and f.tangent is state.s and f.Dv is not None and f.ahat.shape[0] == state.batch:
            sq = row_dot(state.direction, state.direction) if state.sq is None else state.sq
            g, state.s, state.factor, state.sq, rho = kronecker_rank_one_step(
                state.direction, state.s, state.factor, sq, sign_draws(rng, state.s.shape), f.ahat, f.dsigma, f.Dv,
                np.ascontiguousarray(credit), *FOLD_RANGE)
            state.scales = rho.T
            return state, g
        I = lin.I
        groups = I.groups
        if I.batch != state.batch:
            return super().step(state, lin, credit, rng)
        nu, Ds, nuG, sq, rho = self._draw(state, lin, rng)
        blocks, rows, cols = self._block_table(I.blocks)
        vs = tuple(np.require(I.source(b), requirements="CW") for b in groups)    # one array type (the
        # constant source of a bias block that stays alone beside a masked block is read-only)
        ws = tuple(np.ascontiguousarray(nuG[b.gate]) for b in groups)
        state.sq = np.zeros(state.batch)
        g = rank_one_full_step(state.direction, blocks, vs, ws, rows, cols, state.s, Ds, nu, state.factor, sq,
                               np.ascontiguousarray(credit), rho, *FOLD_RANGE, state.sq)
        state.scales = rho.T
        return state, g

    def tangent(self, state) -> np.ndarray:
        """``s̃``: the step starts from ``D_t s̃``, which the cell can form with its forward product."""
        return state.s

    def signs_per_step(self, cell) -> int:
        return cell.k

    #: the last cell's blocks, their rows for the compiled step (``unit_major_blocks``) and the
    #: masked blocks' entries (outputs, inputs; uint32, empty for an unmasked block)
    _table: tuple | None = None

    def _block_table(self, blocks) -> tuple:
        if self._table is None or self._table[0] is not blocks:
            merged = merge_blocks(blocks)
            none = np.zeros(0, dtype=np.uint32)
            rows = tuple(none if b.full else b.idx_i.astype(np.uint32) for b in merged)
            cols = tuple(none if b.full else b.idx_j.astype(np.uint32) for b in merged)
            self._table = (blocks, (unit_major_blocks(blocks), rows, cols))
        return self._table[1]

    def gradient(self, state, credit):
        """``ĝ = (c s̃) θ̃ᵀ``: ``B × p``."""
        return state, (row_dot(credit, state.s) * state.factor)[:, None] * state.direction

    def influence(self, state):
        return state.s[:, :, None] * state.theta[:, None, :]

    def influence_norms(self, state):
        """``‖s̃ θ̃ᵀ‖_F = ‖s̃‖ |factor| ‖direction‖`` (``B``), without forming the ``B × k × p`` product
        (137 MB at Elman k = 256)."""
        sq = row_dot(state.direction, state.direction) if state.sq is None else state.sq
        return np.sqrt(row_dot(state.s, state.s)) * np.abs(state.factor) * np.sqrt(sq)

    def reset(self, state):
        state.s[...] = 0.0
        state.direction[...] = 0.0
        state.factor = np.ones(state.batch)
        state.sq = None
        return state
