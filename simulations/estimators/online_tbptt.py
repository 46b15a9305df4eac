"""Online truncated BPTT(τ): a gradient at every step through the last ``τ`` steps (THEORY.md §2.2).

At step ``t`` the estimate is the gradient of the current loss ``ℓ_t`` back through the last ``τ``
steps, the state ``s_{t−τ}`` held constant:

    ĝ_t = Σ_{j=0}^{τ−1} λ_{t−j} I_{t−j},    λ_t = c_t,    λ_{t−j} = λ_{t−j+1} D_{t−j+1},

the adjoint of THEORY §2.2 restricted to a window of ``τ`` steps, i.e. ``c_t J_t^{(τ)}`` with the
influence truncated to the last ``τ`` steps.  Summed over a sequence at fixed ``θ`` it is BPTT of
the loss truncated per step, ``Σ_t ∂ℓ_t/∂θ |_{s_{t−τ} fixed}``; for ``τ ≥ T`` it is the exact
gradient.  This is the standard online TBPTT that Menick et al. (2021) compare SnAp against
(parameters updated at every step), as opposed to :class:`~.bptt.TBPTT`'s non-overlapping
blocks (one gradient per ``τ`` steps).

A ring buffer keeps the last ``τ`` steps' factored Jacobians ``(D_t, I_t)`` from ``linearize``.
They are the Jacobians computed along the run: when ``θ`` moves at every step, the past
Jacobians were taken at past ``θ`` (the recurrent weights of ``D_t`` are copied when the step is
buffered, since ``θ`` changes in place).  Cost per step: ``τ`` adjoint steps,
``O(τ·(k² + p))``; memory: ``τ`` steps' factors.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..flops import immediate_nnz
from ..jacobians import DynamicsJacobian
from .base import Capabilities
from .bptt import TBPTT


def frozen(D: DynamicsJacobian) -> DynamicsJacobian:
    """``D`` with its recurrent weights copied: it keeps describing ``D_t`` at the ``θ`` of its step
    after ``θ`` changes in place."""
    if D.terms is None:
        return D
    return DynamicsJacobian(D.k, tuple(t if t.W is None else replace(t, W=t.W.copy()) for t in D.terms), D.cache)


def window_adjoint(D: list, I: list, credit: np.ndarray) -> np.ndarray:
    """``Σ_j λ_{t−j} I_{t−j}`` over the window (``B × p``): ``λ_t = c_t`` at the newest step,
    ``λ_{t−j} = λ_{t−j+1} D_{t−j+1}`` back to the oldest buffered step (``D``, ``I``: oldest first)."""
    lam = credit
    g = I[-1].rmatvec(lam)
    for j in range(len(I) - 2, -1, -1):
        lam = D[j + 1].rmatvec(lam)
        I[j].rmatvec(lam, out=g, add=True)
    return g


class OnlineTBPTT(TBPTT):
    """TBPTT(τ) with a gradient at every step through the last ``tau`` steps (``online-tbptt-τ``).

    Parameters
    ----------
    tau : int
        The window: the gradient of ``ℓ_t`` flows back through steps ``t−τ+1 … t``.
    """

    name = "online-tbptt"
    capabilities = Capabilities(online=True, holds_influence=False)

    def __init__(self, tau: int = 8):
        super().__init__(tau)

    @property
    def label(self):
        return f"online-tbptt-{self.tau}"

    def flops(self, cell) -> float:
        """Per step ``τ`` products ``λ I`` (``2·nnz(I)`` each) and ``τ − 1`` products ``λ D`` (``2k²``
        each): ``O(τ·(k² + p))``."""
        return self.tau * 2.0 * immediate_nnz(cell) + (self.tau - 1) * 2.0 * cell.k * cell.k

    def memory(self, cell) -> float:
        """``τ`` steps' factors of ``D_t`` and ``I_t`` (gate Jacobian values, block inputs, column
        scalings and the copied recurrent weights); no credits are kept."""
        lin = cell.linearize(np.zeros(cell.p), np.zeros((1, cell.k)), np.zeros((1, cell.m)))
        terms = lin.dynamics.terms or ()
        per_step = sum(G.vals.size for G in lin.I.gates.values()) + sum(v.size for v in lin.I.sources.values()) \
            + sum(t.R.size for t in terms if t.R is not None) + sum(t.W.size for t in terms if t.W is not None)
        return float(self.tau * per_step)

    def update(self, state, lin, rng=None):
        state.D.append(frozen(lin.dynamics))
        state.I.append(lin.I)
        if len(state.I) > self.tau:
            del state.D[0], state.I[0]
        return state

    def gradient(self, state, credit):
        return state, window_adjoint(state.D, state.I, credit)
