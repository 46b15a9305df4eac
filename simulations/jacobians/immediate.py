"""The immediate Jacobian ``I_t = ∂F/∂θ`` in factored form (THEORY.md §1, §3):

    I_t[:, col(A, i, j)] = G_g[:, i] · v_j,        G_g = ∂s_t/∂a_g  (k × n_g),

so ``I_t`` is never stored as a ``k × p`` matrix inside a time step; it is kept as the gate
Jacobians ``G_g`` (:mod:`.gates`) and the block inputs ``v``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..kernels import add_diagonal_outer
from .blocks import ParamBlock, as_slice, merge_blocks, unit_major
from .cache import LayoutCache
from .gates import GateJacobian
from .products import block_outer, outer_into, row_dot

_NONE = np.zeros((0, 0))


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
    cache: LayoutCache = field(default_factory=LayoutCache, repr=False)     # the cell's
    _inputs: dict = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return next(iter(self.sources.values())).shape[0]

    @property
    def groups(self) -> tuple[ParamBlock, ...]:
        """The blocks with consecutive unmasked blocks of a gate merged (:func:`merge_blocks`; cached per cell)."""
        if self.cache.groups is None:
            self.cache.groups = merge_blocks(self.blocks)
        return self.cache.groups

    def source(self, blk: ParamBlock) -> np.ndarray:
        """The input ``v`` of a block (``B × n_in``); of a merged block, its inputs concatenated."""
        if isinstance(blk.source, str):
            return self.sources[blk.source]
        v = self._inputs.get(blk.source)
        if v is None:
            v = self._inputs[blk.source] = np.concatenate([self.sources[s] for s in blk.source], axis=1)
        return v

    def know_input(self, source: tuple[str, ...], v: np.ndarray) -> None:
        """Keep ``v`` (``B × n_in``) as the input of the merged block over ``source`` (the
        concatenation of those sources, formed already by the cell's forward step)."""
        self._inputs[source] = v

    def block_values(self, blk: ParamBlock) -> np.ndarray:
        """Nonzero values of the block's columns: ``B × R × q`` (stacked) or ``B × k × q`` (dense)."""
        G = self.gates[blk.gate]
        v = self.source(blk)[:, blk.idx_j]
        return G.vals[:, :, blk.idx_i] * v[:, None, :]

    def dense(self) -> np.ndarray:
        """``B × k × p`` (for checks; never used inside a time step of an estimator)."""
        out = np.zeros((self.batch, self.k, self.p))
        self.add_to(out)
        return out

    def add_to(self, J: np.ndarray, lam: np.ndarray | None = None, out: np.ndarray | None = None,
               units_first: bool = False) -> None:
        """In place ``J += I`` for a dense influence ``J`` (``B × k × p``, any strides: views allowed)
        and, when ``lam`` (``B × k``) is given, ``out += λ I`` (``out``: ``B × p``).  ``units_first``:
        ``J`` and ``out`` hold their columns in the :func:`unit_major` order instead of ``θ``'s.

        An unmasked block whose gate level ``r`` sits on consecutive state rows ``a … a+n−1``
        puts ``G[:, a+i, i] v_j`` at ``J[:, a+i, col(i, j)]``, and ``λ_{a+i} G[:, a+i, i] v_j`` into
        ``out``, in one loop (:func:`~simulations.kernels.add_diagonal_outer`; a batch of 1
        broadcasts).  Other blocks scatter through precomputed indices, and then ``λ I`` comes from
        :meth:`rmatvec`.
        """
        cache = self.cache
        if units_first and cache.unit_major is None:
            cache.unit_major = unit_major(self.blocks, self.p)
        pos = cache.unit_major if units_first else None
        if cache.diagonal_levels is None:                 # every level of every block on a row range
            cache.diagonal_levels = all(
                blk.full and self.gates[blk.gate].rows is not None and None not in self.gates[blk.gate].starts
                for blk in self.groups)
        diagonal = cache.diagonal_levels
        fused = lam is not None and diagonal
        lam_k, out_k = (lam, out) if fused else (_NONE, J[:, 0])
        for blk in self.groups:
            G = self.gates[blk.gate]
            if G.rows is None:
                J[:, :, blk.cols if pos is None else pos[blk.cols]] += self.block_values(blk)
                continue
            v = self.source(blk)
            for r, start in enumerate(G.starts):
                if blk.full and start is not None:
                    add_diagonal_outer(J, start, blk.offset, blk.n_in, blk.n_out, v, G.vals[:, r], lam_k, out_k,
                                       units_first)
                else:
                    rows, idx = self._scatter_index(blk, r)
                    J[:, rows, idx if pos is None else pos[idx]] += G.vals[:, r, blk.idx_i] * v[:, blk.idx_j]
        if lam is not None and not fused:
            if pos is None:
                self.rmatvec(lam, out=out, add=True)
            else:
                out[:, pos] += self.rmatvec(lam)

    def _scatter_index(self, blk: ParamBlock, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns (``q`` each) of level ``r`` of a stacked block's nonzeros in ``k × p``."""
        idx = self.cache.scatter.get((blk.name, r))
        if idx is None:
            idx = self.cache.scatter[(blk.name, r)] = (self.gates[blk.gate].rows[r][blk.idx_i],
                                                        blk.offset + np.arange(blk.size))
        return idx

    def left_gates(self, lam: np.ndarray) -> dict[str, np.ndarray]:
        """``λ G_g`` (``B × n_g``) for every gate."""
        return {g: G.rmatvec(lam) for g, G in self.gates.items()}

    def rmatvec(self, lam: np.ndarray, out: np.ndarray | None = None, add: bool = False,
                scale: np.ndarray | None = None, left_gates: dict | None = None) -> np.ndarray:
        """``λ I`` (``B × p``) for ``λ``: ``B × k``: the block ``A`` of ``λ I`` is ``v ⊗ (λ G)``
        (:func:`block_outer`).  Cost ``O(p)`` for stacked gates.  ``out`` receives the result
        (``add``: ``out += λ I``); ``scale`` (``B``) multiplies each replicate's row;
        ``left_gates``: :meth:`left_gates` of ``λ`` when already computed."""
        lg = self.left_gates(lam) if left_gates is None else left_gates
        if scale is not None:
            lg = {g: w * scale[:, None] for g, w in lg.items()}
        return block_outer(self.groups, self.p, self.source, lambda b: lg[b.gate], out, add)

    def rmatvec_norms(self, lam: np.ndarray, left_gates: dict | None = None) -> np.ndarray:
        """``‖λ I‖`` per replicate (``B``) without forming ``λ I``: an unmasked block contributes
        ``‖v‖² ‖λ G‖²`` (the norm of an outer product), a masked block the sum of its squares.
        ``left_gates``: :meth:`left_gates` of ``λ`` when already computed."""
        lg = self.left_gates(lam) if left_gates is None else left_gates
        sq = np.zeros(lam.shape[0])
        for blk in self.groups:
            v, w = self.source(blk), lg[blk.gate]
            if blk.full:
                sq = sq + row_dot(v, v) * row_dot(w, w)
            else:
                vals = w[:, blk.idx_i] * v[:, blk.idx_j]
                sq = sq + row_dot(vals, vals)
        return np.sqrt(sq)


class InjectionPart(NamedTuple):
    """Where one block (and level) of ``I_t`` goes in an entry-major store: ``kind`` ``"grid"`` (one
    contiguous ``n_in × n_out`` grid), ``"level"`` (a stacked level gathered) or ``"dense"`` (the
    structural pattern of a dense gate: ``level`` then holds the flat gate indices, ``src_cols`` the
    input columns)."""

    block: ParamBlock
    kind: str
    dst: object              # slice or index array into the store
    level: object            # the gate level (int), or flat gate indices (dense)
    src_cols: np.ndarray | None


class EntryInjection:
    """Adds the factored ``I_t`` into an entry-major store of a sparse influence (``values``:
    ``nnz × B``), per parameter block at the destinations of its structural nonzeros.

    ``locate(rows, cols)`` gives the positions of entries ``(rows, cols)`` of the ``k × p`` matrix in
    the store; ``pattern(blk)`` the structural nonzeros ``(rows, local columns)`` of a block whose gate
    Jacobian is dense.  Built once from the first step's gate layout, then reused.  An unmasked
    block whose level is stored as one contiguous ``n_in × n_out`` grid takes the outer product
    without index gathers (:func:`outer_into`, batch last).
    """

    def __init__(self, I: ImmediateJacobian, locate, pattern):
        self.parts = []
        for blk in I.groups:
            G = I.gates[blk.gate]
            c = blk.offset + np.arange(blk.size)
            if G.rows is not None:                         # stacked diagonals: one part per level
                for r in range(G.rows.shape[0]):
                    dst = as_slice(locate(G.rows[r][blk.idx_i], c))
                    kind = "grid" if blk.full and isinstance(dst, slice) else "level"
                    self.parts.append(InjectionPart(blk, kind, dst, r, None))
            else:                                          # dense gate: only its structural pattern
                n = G.vals.shape[-1]
                rr, cc = pattern(blk)
                dst = as_slice(locate(rr, blk.offset + cc))
                self.parts.append(InjectionPart(blk, "dense", dst, rr * n + blk.idx_i[cc], blk.idx_j[cc]))

    def add_to(self, values: np.ndarray, I: ImmediateJacobian) -> None:
        """In place ``values += I`` at the stored entries (``values``: ``nnz × B``)."""
        B = values.shape[1]
        for blk, kind, dst, r, jsrc in self.parts:
            v = I.source(blk)
            if kind == "grid":
                grid = values[dst]
                grid.shape = (blk.n_in, blk.n_out, B)
                outer_into(grid, v, I.gates[blk.gate].vals[:, r], add=True, batch_last=True)
            elif kind == "level":
                values[dst] += (I.gates[blk.gate].vals[:, r, blk.idx_i] * v[:, blk.idx_j]).T
            else:
                G = I.gates[blk.gate].vals.reshape(I.gates[blk.gate].vals.shape[0], -1)
                values[dst] += (G[:, r] * v[:, jsrc]).T
