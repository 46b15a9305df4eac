"""KF-RTRL, Kronecker-factored RTRL (Mujika, Meier & Steger 2018; THEORY.md §4).

For cells of the form ``s_t = σ(W â_t)`` with ``â_t = [s_{t−1}; x_t; 1]`` (``I_t = â_tᵀ ⊗ diag σ'``):
``J ≈ uᵀ ⊗ A`` with ``u``: ``B × a`` (``a = k + m + 1``) and ``A``: ``B × k × k``.  Each step draws
``c₁, c₂ ∈ {−1, +1}`` and sets

    u ← c₁ p₁ u + c₂ p₂ â_t,     A ← c₁ D_t A / p₁ + c₂ diag(σ'(z_t)) / p₂,
    p₁ = sqrt(‖D_t A‖ / ‖u‖),     p₂ = sqrt(‖diag σ'‖ / ‖â_t‖),

(zero norms set that ``p`` to 1, which leaves the expectation unchanged).  ``E[c₁c₂] = 0`` makes
the cross terms vanish: ``E[uᵀ ⊗ A] = J_t`` exactly.  The parameter column of ``W[i, j]`` reads
``u_j A[:, i]`` (the column-major layout of :mod:`simulations.jacobians`; masked entries skipped).
Memory ``O(k²)``, time ``O(k³)`` per step (``D_t A``, :meth:`DynamicsJacobian.matmul`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..jacobians import block_outer, merge_blocks
from ..kernels import kronecker_step
from .base import Capabilities, Estimator
from .signs import rademacher
from .uoro import balance, norms


@dataclass(frozen=True)
class KroneckerLayout:
    gate: str
    sources: tuple       # block sources in â order
    size: int            # a = len(â)
    ucol: np.ndarray     # p: index of each parameter's factor in u
    acol: np.ndarray     # p: index of each parameter's column of A
    blocks: tuple = ()   # the cell's parameter blocks, consecutive unmasked ones merged (merge_blocks)
    uslice: dict = None  # block name -> its slice of u


@dataclass
class KroneckerState:
    u: np.ndarray        # B × a
    A: np.ndarray        # B × k × k
    batch: int
    p: int
    layout: KroneckerLayout
    scales: np.ndarray | None = None   # B × 2: the last step's (p₁, p₂)


def kronecker_layout(cell) -> KroneckerLayout:
    """Check that ``cell`` has the form ``s' = σ(W â)`` and map its parameters onto ``(u, A)``.

    Raises ``ValueError`` (one line) for cells KF-RTRL does not support."""
    gates = {b.gate for b in cell.blocks}
    supported = cell.kronecker_form and len(gates) == 1
    if supported:
        _, Gp = cell._structure()
        supported = np.array_equal(np.asarray(Gp[next(iter(gates))], dtype=bool), np.eye(cell.k, dtype=bool))
    if not supported:
        raise ValueError(f"kf-rtrl needs a cell of the form s' = sigma(W [s; x; 1]) "
                         f"(elman, contractive-elman); {cell.name!r} is not")
    offsets, sources, a = {}, [], 0
    for b in cell.blocks:
        offsets[b.name] = a
        sources.append(b.source)
        a += b.n_in
    ucol = np.concatenate([offsets[b.name] + b.idx_j for b in cell.blocks]).astype(np.intp)
    acol = np.concatenate([b.idx_i for b in cell.blocks]).astype(np.intp)
    groups = merge_blocks(cell.blocks)                  # consecutive: u is the blocks' inputs in order
    starts = np.cumsum([0] + [b.n_in for b in groups])
    uslice = {b.name: slice(int(a0), int(a0) + b.n_in) for b, a0 in zip(groups, starts)}
    return KroneckerLayout(next(iter(gates)), tuple(sources), a, ucol, acol, groups, uslice)


class KFRTRL(Estimator):
    name = "kf-rtrl"
    capabilities = Capabilities(stochastic=True)     # draws random signs: replicates differ
    _cached: tuple | None = None                     # (the last cell, its KroneckerLayout)
    static_state = ("layout",)

    def require_cell(self, cell) -> None:
        """Cells of the form ``s' = σ(W â)`` (THEORY §4): the one rule, :func:`kronecker_layout`."""
        self.layout(cell)

    def flops(self, cell) -> float:
        """``D_t A``: ``2k³``; ``c A`` and its outer product with ``u``: ``2k² + p``; ``u``, norms: ``4(k + m + 1)``."""
        k = cell.k
        return 2.0 * k ** 3 + 2.0 * k * k + cell.p + 4.0 * (k + cell.m + 1)

    def memory(self, cell) -> float:
        """``u`` and ``A``: ``(k + m + 1) + k²``."""
        return float(cell.k + cell.m + 1 + cell.k * cell.k)

    def layout(self, cell) -> KroneckerLayout:
        cached = self._cached
        if cached is None or cached[0] is not cell:
            cached = (cell, kronecker_layout(cell))
            self._cached = cached
        return cached[1]

    def init(self, cell, theta, batch, rng=None):
        lay = self.layout(cell)
        return KroneckerState(np.zeros((batch, lay.size)), np.zeros((batch, cell.k, cell.k)), batch, cell.p, lay)

    def update(self, state, lin, rng):
        lay = state.layout
        B, k = state.A.shape[:2]
        c = rademacher(rng, (B, 2))
        DA = lin.dynamics.matmul(state.A)
        sig = lin.I.gates[lay.gate].vals[:, 0, :]                                   # B × k: σ'(z_t)
        ahat = np.concatenate([lin.I.sources[src] for src in lay.sources], axis=1)  # B × a: â_t
        ahat = np.broadcast_to(ahat, state.u.shape)
        sig = np.broadcast_to(sig, (B, k))
        p1 = balance(np.sqrt(np.einsum("bij,bij->b", DA, DA)), norms(state.u))
        p2 = balance(norms(sig), norms(ahat))
        state.scales = np.stack([p1, p2], axis=1)
        state.u = (c[:, 0] * p1)[:, None] * state.u + (c[:, 1] * p2)[:, None] * ahat
        A = (c[:, 0] / p1)[:, None, None] * DA
        diag = np.arange(k)
        A[:, diag, diag] += (c[:, 1] / p2)[:, None] * sig
        state.A = A
        return state

    def step(self, state, lin, credit, rng=None):
        """``update`` and ``gradient`` in one compiled pass after ``D_t A``
        (:func:`~simulations.kernels.kronecker_step`: the scales, ``u``, ``A``, ``c_t A`` and
        ``ĝ``); the same signs and products as ``update`` then ``gradient``, sums added in index
        order.  (A subclass that redefines ``update`` or ``gradient`` keeps them.)  With the
        linearization's :class:`~simulations.jacobians.KroneckerFactors`, ``D_t``, ``σ'`` and ``â``
        come from them (the same numbers)."""
        if type(self).update is not KFRTRL.update or type(self).gradient is not KFRTRL.gradient:
            return super().step(state, lin, credit, rng)
        lay = state.layout
        B, k = state.A.shape[:2]
        c = rademacher(rng, (B, 2))
        f = lin.factors
        if f is not None and len(lay.blocks) == 1:        # D_t = diag(σ') W formed from the factors
            DA = np.matmul(f.dsigma[:, :, None] * f.W, state.A)
            sig, ahat = f.dsigma, f.ahat
        else:
            DA = lin.dynamics.matmul(state.A)
            sig = lin.I.gates[lay.gate].vals[:, 0, :]
            ahat = lin.I.source(lay.blocks[0]) if len(lay.blocks) == 1 else \
                np.concatenate([lin.I.sources[src] for src in lay.sources], axis=1)
        u, A, g, state.scales = np.empty_like(state.u), np.empty((B, k, k)), np.empty((B, state.p)), np.empty((B, 2))
        kronecker_step(DA, sig, ahat, state.u, c, credit, lay.ucol, lay.acol, u, A, g, state.scales)
        state.u, state.A = u, A
        return state, g

    def signs_per_step(self, cell) -> int:
        return 2

    def gradient(self, state, credit):
        """``ĝ[:, col(i, j)] = u_j (c A)_i``: ``B × p``, block by block ``u ⊗ (c A)`` (:func:`block_outer`)."""
        lay = state.layout
        cA = np.matmul(credit[:, None, :], state.A)[:, 0, :]
        return state, block_outer(lay.blocks, state.p, lambda b: state.u[:, lay.uslice[b.name]], lambda b: cA)

    def influence(self, state):
        lay = state.layout
        return state.u[:, None, lay.ucol] * state.A[:, :, lay.acol]

    def influence_norms(self, state):
        """``‖J̃‖_F`` with ``J̃[r, c] = u[ucol[c]] A[r, acol[c]]``: ``Σ_c u[ucol[c]]² Σ_r A[r, acol[c]]²``
        (``B``), without forming the ``B × k × p`` product."""
        lay = state.layout
        cols = np.einsum("brj,brj->bj", state.A, state.A)
        return np.sqrt(np.einsum("bc,bc->b", state.u[:, lay.ucol] ** 2, cols[:, lay.acol]))

    def reset(self, state):
        state.u[...] = 0.0
        state.A[...] = 0.0
        return state
