"""Exact RTRL (THEORY.md §2.1): ``J_t = D_t J_{t−1} + I_t`` and ``g_t = c_t J_t``.

``J`` is stored dense (``B × k × p``); one step costs one batched ``k × k · k × p`` product plus
``O(nnz(I))`` for adding the factored ``I_t``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Estimator


@dataclass
class InfluenceState:
    J: np.ndarray        # B × k × p
    buf: np.ndarray      # second buffer for D·J
    batch: int
    p: int


class RTRL(Estimator):
    name = "rtrl"

    def init(self, cell, theta, batch, rng=None, J0=None):
        J = np.zeros((batch, cell.k, cell.p)) if J0 is None else np.array(J0, dtype=float)
        return InfluenceState(J, np.empty_like(J), batch, cell.p)

    def update(self, state, lin, rng=None):
        np.matmul(lin.D, state.J, out=state.buf)
        lin.I.add_to(state.buf)
        state.J, state.buf = state.buf, state.J
        return state

    def gradient(self, state, credit):
        return state, np.matmul(credit[:, None, :], state.J)[:, 0, :]

    def influence(self, state):
        return state.J

    def reset(self, state):
        state.J[...] = 0.0
        return state
