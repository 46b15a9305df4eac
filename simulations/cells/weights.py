"""``θ`` as a cell's forward map reads it (THEORY.md §3): its blocks as matrices, and the gates'
pre-activations formed from ``θ`` directly.

:class:`Weights` holds the block matrices of ``θ`` (unmasked blocks are views of ``θ``; masked
blocks, :class:`MaskedWeights`, live in buffers refreshed from ``θ``'s free entries) and ``θ`` itself.
:class:`AffinePlan` lists which blocks feed which gates from which sources, as the table of the
compiled pass :func:`~simulations.kernels_cells.affine_gates`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..jacobians import ParamBlock
from ..kernels import scatter_free
from ..kernels_cells import CURRENT, FREE, REFRESH, SOURCE_ONE, SOURCE_U, affine_gates


class Weights(dict):
    """The block matrices of one ``θ``: block name -> matrix (``n_out × n_in``, or
    ``B' × n_out × n_in`` for ``θ`` of shape ``B' × p``), merged unmasked blocks included under
    their merged names (``"W+U+b"``), all views of ``θ``; ``theta``: ``θ`` as ``B' × p``.  Kept by
    the cell for the last ``θ`` array seen and handed to each call of the forward map
    (:meth:`begin` starts a call)."""

    gather = None
    matrices = True
    stale = False

    def __init__(self, mats: dict, theta: np.ndarray):
        super().__init__(mats)
        self.theta = theta
        self.free_entries = {}        # block name -> FreeEntries (views of θ) or None, kept by Cell._free

    def begin(self, matrices: bool) -> "Weights":
        """Start a call of the forward map (``matrices``: whether it reads the masked matrices)."""
        return self

    def refresh(self) -> None:
        """Make every matrix describe ``θ`` as it is now (views always do)."""

    def compiled(self, batch: int) -> bool:
        """Whether :meth:`affine` takes the compiled pass for ``batch`` replicates: when each has
        its own ``θ`` row (or there is one replicate).  ``θ`` shared by several replicates is one
        matrix product per block for all of them (BLAS), faster than a pass per replicate."""
        return self.theta.shape[0] == batch

    def affine(self, plan: "AffinePlan", u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """The pre-activations ``a`` (``B × plan.n``) of the plan's gates, ``a_g = Σ_A A v_A``
        (THEORY.md §3) with ``v_A`` the block's source (``u``, ``w`` or 1, ``B × ·``).

        One compiled pass over ``θ`` (:func:`~simulations.kernels_cells.affine_gates`, which also
        refreshes the masked matrices when stale and ``matrices``) when :meth:`compiled`; else one
        product per block."""
        B = max(u.shape[0], w.shape[0])
        if u.shape[0] != w.shape[0]:               # one row broadcast to all (the compiled pass reads a row per replicate)
            u, w = (np.ascontiguousarray(np.broadcast_to(v, (B, v.shape[1]))) for v in (u, w))
        a = np.empty((B, plan.n))
        if self.compiled(B):
            if self.gather is None:
                affine_gates(self.theta, u, w, plan.table, plan.entries, _NO_STORE, FREE, a)
                return a
            mode = CURRENT if not self.stale else REFRESH if self.matrices and plan.every_masked else FREE
            affine_gates(self.theta, u, w, plan.table, plan.entries, self.gather[2], mode, a)
            self.stale = self.stale and mode != REFRESH
            return a
        a[...] = 0.0
        for blk, src, sl in plan.parts:
            A = self[blk.name]
            if src == SOURCE_ONE:
                a[:, sl] += A[..., 0]
            else:
                v = (u if src == SOURCE_U else w)[:, plan.source_cols[blk.name]]
                a[:, sl] += v @ A.T if A.ndim == 2 else np.matmul(A, v[..., None])[..., 0]
        return a


class MaskedWeights(Weights):
    """:class:`Weights` with masked blocks, whose matrices live in buffers (``store``, each
    column-major like the views) refreshed from ``θ``'s free entries; ``gather``: ``(θ, src, store,
    dst)`` of :func:`~simulations.kernels.scatter_free`.

    In each call a masked block's matrix is refreshed at most once, when first read
    (:meth:`__getitem__`) or, when ``matrices`` (the call will read them: ``linearize``, whose
    ``D_t`` keeps them), by the compiled pre-activation pass (:meth:`affine`), which copies the
    free entries while it reads them; so whatever the call reads describes ``θ`` as it is now.
    A forward step alone reads only ``θ``'s free entries."""

    def __init__(self, mats: dict, theta: np.ndarray, gather: tuple):
        super().__init__(mats, theta)
        self.gather = gather
        self.stale = True

    def begin(self, matrices: bool) -> "MaskedWeights":
        self.stale, self.matrices = True, matrices
        return self

    def refresh(self) -> None:
        if self.stale:
            scatter_free(*self.gather)
            self.stale = False

    def __getitem__(self, name: str) -> np.ndarray:
        if self.stale:
            self.refresh()
        return dict.__getitem__(self, name)

    def get(self, name: str, default=None):
        return self[name] if name in self else default


class HeldWeights(Weights):
    """The weights of a held ``θ`` (:meth:`~simulations.cells.base.Cell.hold`): the masked
    matrices of :class:`MaskedWeights`, kept current by ``θ``'s writer (:meth:`written` after each
    write), so a call neither refreshes nor checks them and the compiled pass multiplies a masked
    block through its matrix where that is faster (:data:`CURRENT_ENOUGH`)."""

    def __init__(self, masked: MaskedWeights):
        masked.refresh()
        super().__init__(masked, masked.theta)
        self.gather = masked.gather

    def written(self) -> None:
        """``θ`` has changed: copy its free entries into the masked matrices (one compiled gather)."""
        scatter_free(*self.gather)


@dataclass
class HeldTheta:
    """``θ`` held by its one writer (:meth:`~simulations.cells.base.Cell.hold`): ``theta`` is
    read-only while held (an in-place write through it raises), ``writable`` is the writer's alias
    of the same memory; after each write through it the writer calls :meth:`written`, which brings
    the masked matrices up to date, and :meth:`release` at the end.  ``weights``: the
    :class:`HeldWeights` the cell reads (``None`` for a cell without masked blocks: then
    ``writable`` is ``theta`` itself and nothing is locked); ``cell``: the holding cell."""

    theta: np.ndarray
    writable: np.ndarray
    weights: HeldWeights | None
    cell: object
    released: bool = False

    def written(self) -> None:
        """``θ`` has changed: refresh the masked matrices from its free entries."""
        if self.weights is not None and not self.released:
            self.weights.written()

    def release(self) -> None:
        """Give ``θ`` back: writable again, its matrices refreshed at each call of the cell as before."""
        if self.weights is None or self.released:
            return
        self.released = True
        self.theta.flags.writeable = True
        self.cell._forget(self)


_NO_STORE = np.zeros((1, 0))
#: a masked block refreshed in the pass is multiplied through its matrix when its density is at
#: least 1 / DENSE_ENOUGH: a scattered update per free entry (0.6–0.9 ns measured) against a
#: vectorised pass over every matrix entry (0.07–0.09 ns), GRU k = 64 and 128, one thread
DENSE_ENOUGH = 8
#: a masked block whose matrix is current already (a held ``θ``) is multiplied through it when its
#: density is at least 1 / CURRENT_ENOUGH: a scattered update per free entry takes 10–16× a dense
#: entry's time (1.7–2.8 against 0.17–0.25 ns, three k × k blocks, k = 64–256, one thread), and at
#: density 1/12 the two ways took the same time (1.7 against 2.1 µs at k = 64, 11.5 against 12.1 at
#: k = 128, 35.8 against 34.2 at k = 256)
CURRENT_ENOUGH = 12


@dataclass(frozen=True)
class AffinePlan:
    """The pre-activations of ``gates`` (each ``n_out`` consecutive columns of ``a``, ``n`` in all,
    in order) from the blocks of those gates.  ``table``, ``entries``: the compiled pass's block
    table and masked entries (:func:`~simulations.kernels_cells.affine_gates`); ``parts``:
    ``(block, source code, columns of a)`` for the numpy path; ``source_cols``: block name -> its
    columns of the source; ``every_masked``: the plan reads every masked block of the cell (so its
    pass can refresh them all)."""

    gates: tuple[str, ...]
    n: int
    table: np.ndarray
    entries: np.ndarray
    parts: tuple
    source_cols: dict
    every_masked: bool


def affine_plan(blocks: list[ParamBlock], gates: tuple[str, ...], sources: dict[str, tuple[int, int]],
                store_offsets: dict[str, int]) -> AffinePlan:
    """The plan of the blocks of ``gates``: ``sources`` maps a block's source name to ``(code,
    first column)`` (code 0: the pass's ``u``, 1: ``w``, 2: the constant 1); ``store_offsets``:
    a masked block's matrix offset in the store of :class:`Weights` (its matrix column-major there,
    entry ``(i, j)`` at ``offset + j·n_out + i``)."""
    slices, n = {}, 0
    for g in gates:
        n_out = next(b.n_out for b in blocks if b.gate == g)
        slices[g] = slice(n, n + n_out)
        n += n_out
    rows, ents, parts, cols = [], [], [], {}
    e0 = 0
    for b in blocks:
        if b.gate not in slices:
            continue
        code, first = sources[b.source]
        sl = slices[b.gate]
        kind = 1 if b.full else 2 if DENSE_ENOUGH * b.size >= b.n_out * b.n_in else \
            3 if CURRENT_ENOUGH * b.size >= b.n_out * b.n_in else 0
        rows.append((b.offset, b.size, b.n_out, b.n_in, sl.start, code, first, kind, e0,
                     store_offsets.get(b.name, 0)))
        if not b.full:
            ents.append(np.concatenate([b.idx_i, b.idx_j, b.idx_j * b.n_out + b.idx_i]))
            e0 += ents[-1].size
        parts.append((b, code, sl))
        cols[b.name] = slice(first, first + b.n_in)
    entries = np.concatenate(ents).astype(np.int32) if ents else np.zeros(0, dtype=np.int32)
    return AffinePlan(tuple(gates), n, np.array(rows, dtype=np.int64), np.ascontiguousarray(entries),
                      tuple(parts), cols, all(b.full or b.gate in slices for b in blocks))
