"""The parameter layout (THEORY.md §3): named blocks of ``θ``, their merging and orderings.

``θ`` is the concatenation of the cell's blocks in declaration order; inside a block of shape
``n_out × n_in`` the free (unmasked) entries are taken in column-major order, i.e. ``vec(A)`` with
masked entries skipped.  For a dense Elman cell this is exactly THEORY's column-stacked layout
``θ = vec([W U b])``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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

    @cached_property
    def size(self) -> int:
        return int(self.idx_i.size)

    @cached_property
    def cols(self) -> slice:
        return slice(self.offset, self.offset + self.size)

    @cached_property
    def full(self) -> bool:
        """No masked entry: the block's columns form an ``n_in × n_out`` grid (``col = j·n_out + i``)."""
        return self.size == self.n_out * self.n_in


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




def merge_blocks(blocks) -> tuple[ParamBlock, ...]:
    """Consecutive unmasked blocks of one gate with the same ``n_out`` merged into one block over
    their concatenated inputs: their columns form one ``(Σ n_in) × n_out`` grid (for an Elman cell
    ``W, U, b`` become one block on ``â = [s; x; 1]``, THEORY §3's ``â_tᵀ ⊗ diag(σ')``), so products
    with ``I_t`` take one outer product per gate instead of one per block.  Masked blocks stay as
    they are.  A merged block's ``source`` is the tuple of its blocks' sources."""
    out = []
    for b in blocks:
        prev = out[-1] if out else None
        if prev is not None and b.full and prev.full and b.gate == prev.gate and b.n_out == prev.n_out \
                and b.offset == prev.offset + prev.size:
            sources = (prev.source if isinstance(prev.source, tuple) else (prev.source,)) + (b.source,)
            n_in = prev.n_in + b.n_in
            jj, ii = np.divmod(np.arange(n_in * b.n_out, dtype=np.intp), b.n_out)
            out[-1] = ParamBlock(f"{prev.name}+{b.name}", b.gate, sources, b.n_out, n_in, prev.offset, ii, jj,
                                 prev.recurrent or b.recurrent)
        else:
            out.append(b)
    return tuple(out)


def unit_major_blocks(blocks) -> np.ndarray:
    """The merged blocks as rows ``(offset, n_in, n_out, 1)`` (unmasked: transposed by
    :func:`unit_major`) or ``(offset, size, 1, 0)`` (kept in place), for the compiled loops
    (:func:`~simulations.kernels.unit_major_to_theta`, :func:`~simulations.kernels.rank_one_full_step`)."""
    return np.array([(b.offset, b.n_in, b.n_out, 1) if b.full else (b.offset, b.size, 1, 0)
                     for b in merge_blocks(blocks)], dtype=np.int64)


def unit_major(blocks, p: int) -> np.ndarray:
    """Positions of ``θ``'s columns in the unit-major column order of a dense influence (``B × k × p``):
    inside each merged unmasked block (:func:`merge_blocks`) the column of entry ``(i, j)`` moves
    from ``off + j·n_out + i`` (``θ``'s column-major layout) to ``off + i·n_in + j``, so that ``I_t``'s
    nonzeros on a state row of a stacked gate are ``n_in`` consecutive numbers instead of one number
    every ``n_out`` columns; other columns keep their place.  ``p`` ints (a permutation)."""
    pos = np.arange(p, dtype=np.intp)
    for blk in merge_blocks(blocks):
        if blk.full:
            j, i = np.divmod(np.arange(blk.size, dtype=np.intp), blk.n_out)
            pos[blk.offset + j * blk.n_out + i] = blk.offset + i * blk.n_in + j
    return pos


def as_slice(idx: np.ndarray):
    """A contiguous increasing index array as a slice (a view instead of a gather; cheaper to add into)."""
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx
