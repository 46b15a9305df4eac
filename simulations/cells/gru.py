"""GRU cells (THEORY.md §3): standard (reset before the recurrent product) and reset-after.

Gates ``z = σ(W_z s + U_z x + b_z)``, ``r = σ(W_r s + U_r x + b_r)``, update
``s' = (1 − z) ⊙ s + z ⊙ h̃`` with

* standard:     ``h̃ = tanh(W_h (r ⊙ s) + U_h x + b_h)``;
* reset-after:  ``h̃ = tanh(r ⊙ (W_h s + b_hr) + U_h x + b_h)`` (cuDNN's form).

In the standard cell ``∂s'/∂a_r = diag(z ⊙ tanh') W_h diag(s ⊙ σ'(a_r))`` is dense, so its
``I_t`` has a dense block; the reset-after cell keeps one nonzero per column.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, sigmoid
from ..jacobians import GateJacobian
from ..kernels_cells import SOURCE_ONE, SOURCE_U, SOURCE_W, STATE_INPUT_ONE

#: the blocks' sources as the pre-activation pass reads them (:meth:`Cell._plan`)
SOURCES = STATE_INPUT_ONE
RESET_SOURCES = {"rs": (SOURCE_U, 0), "x": (SOURCE_W, 0), "one": (SOURCE_ONE, 0)}


class GRU(Cell):
    """Standard GRU.  Blocks ``W_z U_z b_z W_r U_r b_r W_h U_h b_h`` (``W_*`` recurrent, maskable)."""

    name = "gru"

    def _specs(self):
        k, m = self.hidden, self.m
        return [("W_z", "z", "s", k, k, True), ("U_z", "z", "x", k, m, False), ("b_z", "z", "one", k, 1, False),
                ("W_r", "r", "s", k, k, True), ("U_r", "r", "x", k, m, False), ("b_r", "r", "one", k, 1, False),
                ("W_h", "h", "rs", k, k, True), ("U_h", "h", "x", k, m, False), ("b_h", "h", "one", k, 1, False)]

    def _forward(self, P, s, x, jac):
        k = self.k
        zr = sigmoid(P.affine(self._plan(("z", "r"), SOURCES), s, x))       # [a_z, a_r] in one pass
        z, r = zr[:, :k], zr[:, k:]
        rs = r * s
        h = np.tanh(P.affine(self._plan(("h",), RESET_SOURCES), rs, x))
        s_new = (1.0 - z) * s + z * h
        if not jac:
            return (s_new,)
        Gz = (h - s) * z * (1.0 - z)                                   # B × k
        Gh = z * (1.0 - h * h)                                         # B × k
        Gr = Gh[:, :, None] * P["W_h"] * (s * r * (1.0 - r))[:, None, :]   # B × k × k (dense)
        gates = {"z": self._stacked(Gz), "h": self._stacked(Gh), "r": GateJacobian(Gr)}
        # D = diag(1 − z) + G_z W_z + G_h W_h diag(r) + G_r W_r
        D = self._dynamics((self._stacked(1.0 - z), None), (gates["z"], P["W_z"], None, None, self._free(P, "W_z")),
                           (gates["h"], P["W_h"], r, None, self._free(P, "W_h")),
                           (gates["r"], P["W_r"], None, None, self._free(P, "W_r")))
        sources = {"s": s, "x": x, "one": self._ones(s.shape[0]), "rs": rs}
        return s_new, D, gates, sources

    def _structure(self):
        eye = np.eye(self.k, dtype=bool)
        Mz, Mr, Mh = self.mask("W_z"), self.mask("W_r"), self.mask("W_h")
        Dp = eye | Mz | Mh | ((Mh.astype(int) @ Mr.astype(int)) > 0)
        return Dp, {"z": eye, "h": eye, "r": Mh}


class GRUResetAfter(Cell):
    """Reset-after GRU.  Blocks ``W_z U_z b_z W_r U_r b_r W_h b_hr U_h b_h``."""

    name = "gru-reset-after"

    def _specs(self):
        k, m = self.hidden, self.m
        return [("W_z", "z", "s", k, k, True), ("U_z", "z", "x", k, m, False), ("b_z", "z", "one", k, 1, False),
                ("W_r", "r", "s", k, k, True), ("U_r", "r", "x", k, m, False), ("b_r", "r", "one", k, 1, False),
                ("W_h", "hh", "s", k, k, True), ("b_hr", "hh", "one", k, 1, False),
                ("U_h", "h", "x", k, m, False), ("b_h", "h", "one", k, 1, False)]

    def _forward(self, P, s, x, jac):
        k = self.k
        a = P.affine(self._plan(("z", "r", "hh", "h"), SOURCES), s, x)      # every gate in one pass
        zr = sigmoid(a[:, :2 * k])
        z, r = zr[:, :k], zr[:, k:]
        ahh = a[:, 2 * k:3 * k]                                        # W_h s + b_hr
        h = np.tanh(r * ahh + a[:, 3 * k:])
        s_new = (1.0 - z) * s + z * h
        if not jac:
            return (s_new,)
        Gz = (h - s) * z * (1.0 - z)
        Gh = z * (1.0 - h * h)
        Ghh = Gh * r
        Gr = Gh * ahh * r * (1.0 - r)
        gates = {"z": self._stacked(Gz), "r": self._stacked(Gr), "hh": self._stacked(Ghh), "h": self._stacked(Gh)}
        # D = diag(1 − z) + G_z W_z + G_r W_r + G_hh W_h
        D = self._dynamics((self._stacked(1.0 - z), None),
                           *[(gates[g], P[w], None, None, self._free(P, w)) for g, w in (("z", "W_z"), ("r", "W_r"),
                                                                                          ("hh", "W_h"))])
        sources = {"s": s, "x": x, "one": self._ones(s.shape[0])}
        return s_new, D, gates, sources

    def _structure(self):
        eye = np.eye(self.k, dtype=bool)
        Dp = eye | self.mask("W_z") | self.mask("W_r") | self.mask("W_h")
        return Dp, {"z": eye, "r": eye, "hh": eye, "h": eye}
