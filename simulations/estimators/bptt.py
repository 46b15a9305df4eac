"""Backpropagation through time (THEORY.md §2.2) and truncated BPTT(τ).

BPTT keeps a tape of ``(D_t, I_t, c_t)`` and runs the adjoint
``λ_T = c_T``, ``λ_t = c_t + λ_{t+1} D_{t+1}`` with ``dL/dθ = Σ_t λ_t I_t`` at ``flush``.
``D_t`` and ``I_t`` stay factored on the tape (``O(k + m)`` numbers per step besides the shared
weights, THEORY §2's ``O(τk + p)``); they refer to ``θ``'s storage, so ``θ`` must not change in
place while a block is pending (the online loops change it only when a block's gradient arrives).
TBPTT(τ) does the same on consecutive blocks of ``τ`` steps and drops every dependence that
crosses a block boundary (the influence restarts from zero at each block); a block's gradient
is returned by ``gradient`` at the step that completes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..flops import immediate_nnz
from ..jacobians import DynamicsJacobian, DynamicsTerm, GateJacobian, ImmediateJacobian, LayoutCache
from .base import Capabilities, Estimator


@dataclass
class TapeState:
    batch: int
    p: int
    D: list = field(default_factory=list)
    I: list = field(default_factory=list)
    c: list = field(default_factory=list)


def adjoint(D: list, I: list, c: list) -> np.ndarray:
    """``Σ_t λ_t I_t`` over one tape, with ``λ_t = c_t + λ_{t+1} D_{t+1}`` (``B × p``).

    ``D``: :class:`~simulations.jacobians.DynamicsJacobian` per step (``λ D`` by ``rmatvec``)."""
    lam = c[-1]
    g = I[-1].rmatvec(lam)
    for t in range(len(c) - 2, -1, -1):
        lam = c[t] + D[t + 1].rmatvec(lam)
        I[t].rmatvec(lam, out=g, add=True)
    return g


class TBPTT(Estimator):
    """Truncated BPTT with non-overlapping blocks of ``tau`` steps; ``tau=None`` is full BPTT."""

    name = "tbptt"
    capabilities = Capabilities(online=False, holds_influence=False)

    def __init__(self, tau: int | None = None):
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 1):
            raise ValueError(f"truncation length tau must be a positive integer, got {tau!r}")
        self.tau = tau

    @property
    def label(self):
        return "bptt" if self.tau is None else f"tbptt-{self.tau}"

    def init(self, cell, theta, batch, rng=None):
        return TapeState(batch, cell.p)

    def flops(self, cell) -> float:
        """One adjoint step per time step, ``λ D``: ``2k²``; ``λ I``: ``2·nnz(I)``; ``+ c_t``: ``k``
        (independent of ``τ``: the non-overlapping blocks visit each step once)."""
        return 2.0 * cell.k * cell.k + 2.0 * immediate_nnz(cell) + cell.k

    def memory(self, cell) -> float:
        """A full tape of ``τ`` steps: per step the credit (``k``) and the step-dependent factors of
        ``D_t`` and ``I_t`` (gate Jacobian values, block inputs, column scalings; the weights are
        ``θ``'s, not copied).  Full BPTT's tape grows with the sequence: no bound."""
        if self.tau is None:
            raise NotImplementedError("bptt holds the whole sequence: its memory grows with T")
        lin = cell.linearize(np.zeros(cell.p), np.zeros((1, cell.k)), np.zeros((1, cell.m)))
        per_step = cell.k + sum(G.vals.size for G in lin.I.gates.values()) \
            + sum(v.size for v in lin.I.sources.values()) \
            + sum(t.R.size for t in lin.dynamics.terms if t.R is not None)
        return float(self.tau * per_step)

    def update(self, state, lin, rng=None):
        state.D.append(lin.dynamics)
        state.I.append(lin.I)
        return state

    def gradient(self, state, credit):
        state.c.append(credit)
        if self.tau is not None and len(state.c) == self.tau:
            return self.flush(state)
        return state, np.zeros((state.batch, state.p))

    def flush(self, state):
        if not state.c:
            return state, np.zeros((state.batch, state.p))
        g = adjoint(state.D, state.I, state.c)
        state.D, state.I, state.c = [], [], []
        return state, g

    def reset(self, state):
        state.D, state.I, state.c = [], [], []
        return state

    def export_state(self, state) -> dict:
        """The pending tape as plain data: per step the factors of ``D_t`` and ``I_t`` (gate
        Jacobians, weights, block inputs) and the credit."""
        return {"D": [_plain_dynamics(D) for D in state.D],
                "I": [{"gates": {g: _plain_gate(G) for g, G in I.gates.items()}, "sources": dict(I.sources)}
                      for I in state.I],
                "c": list(state.c)}

    def restore_state(self, template, plain, cell):
        """The tape rebuilt on ``cell``'s blocks (the weights as saved: equal to ``θ``'s while the
        block is pending)."""
        template.D = [_dynamics(cell, d) for d in plain["D"]]
        template.I = [ImmediateJacobian(cell.k, cell.p, cell.blocks,
                                        {g: _gate(G) for g, G in i["gates"].items()},
                                        {name: np.asarray(v, dtype=float) for name, v in i["sources"].items()},
                                        LayoutCache()) for i in plain["I"]]
        template.c = [np.asarray(c, dtype=float) for c in plain["c"]]
        return template


class BPTT(TBPTT):
    """Full BPTT: the whole sequence is one block."""

    name = "bptt"

    def __init__(self):
        super().__init__(None)


def _plain_gate(G: GateJacobian) -> dict:
    return {"vals": G.vals, "rows": G.rows}


def _gate(d: dict) -> GateJacobian:
    return GateJacobian(np.asarray(d["vals"], dtype=float),
                        None if d["rows"] is None else np.asarray(d["rows"], dtype=np.intp))


def _plain_dynamics(D: DynamicsJacobian) -> dict:
    if D.terms is None:
        return {"dense": D.dense()}
    return {"terms": [{"L": _plain_gate(t.L), "W": t.W, "R": t.R,
                       "cols": None if t.cols is None else [t.cols.start, t.cols.stop]} for t in D.terms]}


def _dynamics(cell, d: dict) -> DynamicsJacobian:
    if "dense" in d:
        return DynamicsJacobian.from_dense(d["dense"])
    terms = tuple(DynamicsTerm(_gate(t["L"]), None if t["W"] is None else np.asarray(t["W"], dtype=float),
                               None if t["R"] is None else np.asarray(t["R"], dtype=float),
                               None if t["cols"] is None else slice(*t["cols"])) for t in d["terms"])
    return DynamicsJacobian(cell.k, terms, LayoutCache())
