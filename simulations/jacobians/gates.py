"""Gate Jacobians ``G_g = ∂s_t/∂a_g`` (THEORY.md §1, §3): a stack of diagonals (each state row
depends on one unit of the gate: Elman, GRU reset-after, LSTM) or dense (the reset gate of the
standard GRU).  Both ``D_t`` and ``I_t`` are built from them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def level_starts(rows: np.ndarray) -> tuple:
    """For each level ``r`` of a stacked gate Jacobian: the first row when ``rows[r]`` is a
    consecutive range ``a … a+n−1`` (a slice of the state), else ``None``."""
    out = []
    for r in rows:
        ok = r.size > 0 and np.array_equal(r, np.arange(r[0], r[0] + r.size))
        out.append(int(r[0]) if ok else None)
    return tuple(out)


@dataclass
class GateJacobian:
    """``G = ∂s'/∂a`` for one gate, ``k × n`` per replicate.

    * stacked diagonals: ``rows`` (``R × n`` ints, each ``rows[r]`` injective) and ``vals``
      (``B × R × n``): ``G[b, rows[r, i], i] = vals[b, r, i]``; ``starts`` (from :func:`level_starts`,
      computed when not given) marks the levels whose rows are consecutive;
    * dense: ``rows is None`` and ``vals`` is ``B × k × n``.
    """

    vals: np.ndarray
    rows: np.ndarray | None = None
    starts: tuple | None = None

    def __post_init__(self):
        if self.rows is not None and self.starts is None:
            self.starts = level_starts(self.rows)

    def _level(self, r):
        """Row index of level ``r``: a slice when consecutive, else the index array."""
        a = self.starts[r]
        return self.rows[r] if a is None else slice(a, a + self.rows.shape[1])

    def dense(self, k: int) -> np.ndarray:
        """``B × k × n``."""
        if self.rows is None:
            return self.vals
        B, R, n = self.vals.shape
        G = np.zeros((B, k, n))
        cols = np.arange(n)
        for r in range(R):
            G[:, self.rows[r], cols] = self.vals[:, r, :]
        return G

    def matmul(self, A: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
        """``G @ A`` for ``A`` of shape ``n × q`` or ``B × n × q``; returns ``B × k × q``
        (added into ``out`` when given)."""
        if self.rows is None:
            prod = np.matmul(self.vals, A)
            if out is None:
                return prod
            out += prod
            return out
        B, R, n = self.vals.shape
        if out is None:
            out = np.zeros((B, k, A.shape[-1]))
        for r in range(R):
            out[:, self._level(r), :] += self.vals[:, r, :, None] * A
        return out

    def matvec(self, u: np.ndarray, out: np.ndarray) -> np.ndarray:
        """In place ``out += G u`` for ``u``: ``B × n``, ``out``: ``B × k``."""
        if self.rows is None:
            out += np.matmul(self.vals, u[:, :, None])[:, :, 0]
            return out
        for r in range(self.vals.shape[1]):
            out[:, self._level(r)] += self.vals[:, r, :] * u
        return out

    def rmatvec(self, lam: np.ndarray) -> np.ndarray:
        """``λ G`` for ``λ`` of shape ``B × k``; returns ``B × n``."""
        if self.rows is None:
            return np.matmul(lam[:, None, :], self.vals)[:, 0, :]
        out = lam[:, self._level(0)] * self.vals[:, 0, :]
        for r in range(1, self.vals.shape[1]):
            out += lam[:, self._level(r)] * self.vals[:, r, :]
        return out
