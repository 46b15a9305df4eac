"""Structured Jacobians of a recurrent core (THEORY.md §1, §3).

Every cell writes its pre-activations as sums of matrix-vector products ``a_g = Σ A v`` over the
parameter blocks ``A`` of a gate ``g``.  The immediate Jacobian then factors block by block:

    I_t[:, col(A, i, j)] = G_g[:, i] · v_j,        G_g = ∂s_t/∂a_g  (k × n_g),

so ``I_t`` is never stored as a ``k × p`` matrix; it is kept as the gate Jacobians ``G_g`` and the
block inputs ``v``.  ``G_g`` is either a stack of "diagonals" (each state row depends on one unit
of the gate: Elman, GRU reset-after, LSTM) or dense (the reset gate of the standard GRU).

Parameter layout (one convention, used everywhere): ``θ`` is the concatenation of the cell's
blocks in declaration order; inside a block of shape ``n_out × n_in`` the free (unmasked) entries
are taken in column-major order, i.e. ``vec(A)`` with masked entries skipped.  For a dense Elman
cell this is exactly THEORY's column-stacked layout ``θ = vec([W U b])``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ParamBlock:
    """One named parameter matrix ``A`` (``n_out × n_in``) feeding gate ``gate`` with input ``source``.

    ``idx_i``, ``idx_j`` (``q,``) list the free entries in column-major order; they occupy
    ``θ[offset : offset + q]``.
    """

    name: str
    gate: str
    source: str
    n_out: int
    n_in: int
    offset: int
    idx_i: np.ndarray
    idx_j: np.ndarray
    recurrent: bool = False

    @property
    def size(self) -> int:
        return int(self.idx_i.size)

    @property
    def cols(self) -> slice:
        return slice(self.offset, self.offset + self.size)


def make_blocks(specs, masks=None) -> tuple[list[ParamBlock], int]:
    """Build the layout from ``specs = [(name, gate, source, n_out, n_in, recurrent), ...]``.

    ``masks[name]`` (bool ``n_out × n_in``) removes entries from the parameter vector.
    Returns ``(blocks, p)``.
    """
    masks = masks or {}
    blocks, offset = [], 0
    for name, gate, source, n_out, n_in, recurrent in specs:
        mask = masks.get(name)
        if mask is None:
            mask = np.ones((n_out, n_in), dtype=bool)
        jj, ii = np.nonzero(np.asarray(mask, dtype=bool).T)  # column-major order
        blocks.append(ParamBlock(name, gate, source, n_out, n_in, offset,
                                 ii.astype(np.intp), jj.astype(np.intp), recurrent))
        offset += ii.size
    return blocks, offset


@dataclass
class GateJacobian:
    """``G = ∂s'/∂a`` for one gate, ``k × n`` per replicate.

    * stacked diagonals: ``rows`` (``R × n`` ints, each ``rows[r]`` injective) and ``vals``
      (``B × R × n``): ``G[b, rows[r, i], i] = vals[b, r, i]``;
    * dense: ``rows is None`` and ``vals`` is ``B × k × n``.
    """

    vals: np.ndarray
    rows: np.ndarray | None = None

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

    def left_matmul(self, A: np.ndarray, k: int) -> np.ndarray:
        """``G @ A`` for ``A`` of shape ``n × q`` or ``B × n × q``; returns ``B × k × q``."""
        if self.rows is None:
            return np.matmul(self.vals, A)
        B, R, n = self.vals.shape
        out = np.zeros((B, k, A.shape[-1]))
        for r in range(R):
            out[:, self.rows[r], :] += self.vals[:, r, :, None] * A
        return out

    def rmatmul(self, lam: np.ndarray) -> np.ndarray:
        """``λ G`` for ``λ`` of shape ``B × k``; returns ``B × n``."""
        if self.rows is None:
            return np.einsum("bk,bkn->bn", lam, self.vals)
        return np.einsum("brn,brn->bn", lam[:, self.rows], self.vals)


@dataclass
class ImmediateJacobian:
    """``I_t = ∂F/∂θ`` (THEORY §1) in factored form: ``I[:, col(A,i,j)] = G_{gate(A)}[:, i] v_{source(A)}[j]``.

    ``gates``: gate name -> :class:`GateJacobian`; ``sources``: source name -> ``B × n_in``.
    """

    k: int
    p: int
    blocks: list[ParamBlock]
    gates: dict[str, GateJacobian]
    sources: dict[str, np.ndarray]
    _flat: dict = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return next(iter(self.sources.values())).shape[0]

    def block_values(self, blk: ParamBlock) -> np.ndarray:
        """Nonzero values of the block's columns: ``B × R × q`` (stacked) or ``B × k × q`` (dense)."""
        G = self.gates[blk.gate]
        v = self.sources[blk.source][:, blk.idx_j]
        return G.vals[:, :, blk.idx_i] * v[:, None, :]

    def dense(self) -> np.ndarray:
        """``B × k × p`` (for checks; never used inside a time step of an estimator)."""
        out = np.zeros((self.batch, self.k, self.p))
        self.add_to(out)
        return out

    def add_to(self, J: np.ndarray) -> None:
        """In place ``J += I`` for a dense, C-contiguous influence ``J`` (``B × k × p``).

        An unmasked block whose gate level ``r`` sits on consecutive state rows ``a … a+n−1``
        puts ``G[:, a+i, i] v_j`` at ``J[:, a+i, off + j·n + i]``: a strided "diagonal" view of
        ``J`` (strides ``p+1`` over ``i`` and ``n`` over ``j``) takes the update without index
        arrays.  Other blocks scatter through precomputed flat indices.
        """
        B = J.shape[0]
        Jf = J.reshape(B, -1)
        for blk in self.blocks:
            G = self.gates[blk.gate]
            if G.rows is None:
                J[:, :, blk.cols] += self.block_values(blk)
            elif blk.size == blk.n_out * blk.n_in and J.flags.c_contiguous:
                v = self.sources[blk.source]
                for r, start in enumerate(self._level_starts(G)):
                    if start is None:
                        Jf[:, self._flat_index(blk)] += self.block_values(blk).reshape(B, -1)
                        break
                    view = np.lib.stride_tricks.as_strided(
                        Jf[:, start * self.p + blk.offset:], shape=(B, blk.n_out, blk.n_in),
                        strides=(Jf.strides[0], (self.p + 1) * J.itemsize, blk.n_out * J.itemsize))
                    view += G.vals[:, r, :, None] * v[:, None, :]
            else:
                Jf[:, self._flat_index(blk)] += self.block_values(blk).reshape(B, -1)

    @staticmethod
    def _level_starts(G: "GateJacobian") -> list:
        """For each level ``r`` the first row when ``rows[r]`` is a consecutive range, else ``None``."""
        out = []
        for rows in G.rows:
            ok = rows.size == 0 or np.array_equal(rows, np.arange(rows[0], rows[0] + rows.size))
            out.append(int(rows[0]) if ok and rows.size else None)
        return out

    def _flat_index(self, blk: ParamBlock) -> np.ndarray:
        """Flat indices ``row·p + col`` (``R·q``) of a stacked block's nonzeros in a ``k × p`` matrix."""
        idx = self._flat.get(blk.name)
        if idx is None:
            rows = self.gates[blk.gate].rows[:, blk.idx_i]  # R × q
            idx = (rows * self.p + (blk.offset + np.arange(blk.size))[None, :]).ravel()
            self._flat[blk.name] = idx
        return idx

    def rmatmul(self, lam: np.ndarray) -> np.ndarray:
        """``λ I`` for ``λ`` of shape ``B × k``; returns ``B × p``.  Cost ``O(p)`` for stacked gates."""
        out = np.empty((lam.shape[0], self.p))
        lg = {g: G.rmatmul(lam) for g, G in self.gates.items()}
        for blk in self.blocks:
            out[:, blk.cols] = lg[blk.gate][:, blk.idx_i] * self.sources[blk.source][:, blk.idx_j]
        return out


@dataclass
class Linearization:
    """One step of the core: ``s_t`` (``B × k``), ``D_t`` (``B × k × k``), ``I_t`` (:class:`ImmediateJacobian`)."""

    state: np.ndarray
    D: np.ndarray
    I: ImmediateJacobian
