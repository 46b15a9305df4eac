"""LSTM cell with state ``s = [h; c]`` (``k = 2·hidden``), influence tracked for both (THEORY.md §3).

``a_g = W_g h + U_g x + b_g`` for ``g ∈ {i, f, g, o}``; ``i, f, o = σ(a)``, ``g = tanh(a_g)``;
``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')``.  Each gate unit touches two state rows
(``h_j`` and ``c_j``; the output gate only ``h_j``), so ``I_t`` has at most two nonzeros per column.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, sigmoid
from ..kernels_cells import SOURCE_ONE, SOURCE_U, SOURCE_W

GATES = ("i", "f", "g", "o")
#: the blocks' sources as the pre-activation pass reads them: ``h`` is the first half of ``s``
SOURCES = {"h": (SOURCE_U, 0), "x": (SOURCE_W, 0), "one": (SOURCE_ONE, 0)}


class LSTM(Cell):
    """Blocks ``W_g U_g b_g`` for ``g`` in ``i f g o`` (``W_*`` recurrent ``n × n``, maskable)."""

    name = "lstm"
    state_factor = 2

    def _specs(self):
        n, m = self.hidden, self.m
        specs = []
        for g in GATES:
            specs += [(f"W_{g}", g, "h", n, n, True), (f"U_{g}", g, "x", n, m, False),
                      (f"b_{g}", g, "one", n, 1, False)]
        return specs

    def _forward(self, P, s, x, jac):
        n = self.hidden
        h, c = s[:, :n], s[:, n:]
        a = P.affine(self._plan(GATES, SOURCES), s, x)                  # [a_i, a_f, a_g, a_o] in one pass
        sig = sigmoid(a)
        i, f, o = sig[:, :n], sig[:, n:2 * n], sig[:, 3 * n:]
        g = np.tanh(a[:, 2 * n:3 * n])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        s_new = np.concatenate([h_new, c_new], axis=1)
        if not jac:
            return (s_new,)
        B = s.shape[0]
        q = o * (1.0 - tc * tc)                             # ∂h'/∂c'
        dc = {"i": g * i * (1.0 - i), "f": c * f * (1.0 - f), "g": i * (1.0 - g * g)}   # ∂c'/∂a
        gates = {name: self._stacked(np.stack([q * v, v], axis=1), "both") for name, v in dc.items()}
        gates["o"] = self._stacked(tc * o * (1.0 - o), "h")
        # D = Σ_g G_g W_g (reading h) + ∂s'/∂c (reading c: rows h_j, c_j get q_j f_j, f_j)
        h_cols, c_cols = slice(0, n), slice(n, 2 * n)
        D = self._dynamics(*[(gates[name], P[f"W_{name}"], None, h_cols, self._free(P, f"W_{name}")) for name in GATES],
                           (self._stacked(np.stack([q * f, f], axis=1), "both"), None, None, c_cols))
        sources = {"h": h, "x": x, "one": self._ones(B)}
        return s_new, D, gates, sources

    def _rows(self, layout):
        """``"h"``: row ``j`` (``h_j``) for unit ``j``; ``"both"``: rows ``h_j`` and ``c_j``."""
        units = np.arange(self.hidden)
        return {"h": units, "both": np.stack([units, self.hidden + units])}[layout]

    def _structure(self):
        n = self.hidden
        eye = np.eye(n, dtype=bool)
        M = {g: self.mask(f"W_{g}") for g in GATES}
        Mc = M["i"] | M["f"] | M["g"]
        Dp = np.block([[Mc | M["o"], eye], [Mc, eye]])
        Gp = {g: np.vstack([eye, eye]) for g in ("i", "f", "g")}
        Gp["o"] = np.vstack([eye, np.zeros_like(eye)])
        return Dp, Gp
