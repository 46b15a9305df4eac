"""The dynamics Jacobian ``D_t = ∂F/∂s`` in factored form (THEORY.md §1, §3):

    D_t = Σ_terms L · W · diag(R) · E,

with ``L`` a gate Jacobian, ``W`` a recurrent weight matrix (or the identity), ``R`` an optional
column scaling and ``E`` the selection of the state entries the term reads.  For an Elman cell
``D_t = diag(σ') W``: products with ``D_t`` cost one product with ``W`` plus ``O(k)``, and
replicates that share ``θ`` share one product with ``W``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernels import add_gate_entries
from .blocks import as_slice
from .cache import LayoutCache
from .gates import GateJacobian

_NO_INDEX = np.zeros(0, dtype=np.intp)           # add_gate_entries: the entries are a slice
_NO_MATRIX = np.zeros((1, 1, 1))                 # ... no W factor
_NO_ROW = np.zeros((1, 1))                       # ... no R factor


@dataclass(frozen=True)
class FreeEntries:
    """The structural nonzeros of a masked ``W`` (``n × q``), as ``θ`` stores them (THEORY.md §3,
    ``θ``'s layout): ``W[..., i[f], j[f]] = values[:, f]``, every other entry of ``W`` zero.
    ``values``: ``B_W × nnz`` (a view of ``θ``'s block; ``B_W`` 1, shared, or ``B``); ``i``,
    ``j``: ``nnz``, in column-major order."""

    values: np.ndarray
    i: np.ndarray
    j: np.ndarray


@dataclass
class DynamicsTerm:
    """One summand ``L · W · diag(R) · E`` of ``D_t`` (``k × k``).

    ``L``: a :class:`GateJacobian` (``k × n``); ``W``: ``n × q`` (shared by the replicates),
    ``B × n × q`` (one per replicate) or ``None`` (the identity, ``n = q``); ``R``: ``B × q`` or
    ``None``; ``cols``: the ``q`` consecutive state entries the term reads (``E`` selects them);
    ``free``: when ``W`` is masked, its structural nonzeros (:class:`FreeEntries`), which
    :meth:`DynamicsJacobian.entries` reads instead of ``W`` (``None``: any entry of ``W`` may be
    nonzero).
    """

    L: GateJacobian
    W: np.ndarray | None = None
    R: np.ndarray | None = None
    cols: slice | None = None
    free: FreeEntries | None = None


@dataclass
class DynamicsJacobian:
    """``D_t = ∂F/∂s`` (THEORY §1) as a sum of factored terms (:class:`DynamicsTerm`), ``B × k × k``.

    Products never form ``D_t`` unless they must: ``matvec`` (``D v``) and ``rmatvec`` (``λ D``)
    cost one product with each recurrent ``W`` (one matrix product for all replicates when ``W``
    is shared) plus ``O(k)`` per diagonal gate; ``diagonal`` and ``entries`` read single entries in
    ``O(1)`` each for stacked gates.  ``dense()`` forms (and caches) the ``B × k × k`` array.

    The factors refer to ``θ``'s storage (``W`` are views of the unpacked ``θ``): a
    ``DynamicsJacobian`` describes ``D_t`` at the ``θ`` of its step as long as that ``θ`` is not
    changed in place.  Entry assignment (``D[idx] = values``) replaces the factored form by the
    edited dense matrix (used to build deliberately wrong Jacobians in mutation tests).
    """

    k: int
    terms: tuple
    cache: LayoutCache = field(default_factory=LayoutCache, repr=False)     # the cell's
    _dense: np.ndarray | None = field(default=None, repr=False)
    _known: tuple | None = field(default=None, repr=False)          # (v, D v) formed with the forward step

    def remember(self, v: np.ndarray, Dv: np.ndarray) -> None:
        """Keep ``D v`` (``B × k``), formed by the cell in the same pass over ``W`` as its forward
        step; :meth:`matvec` of the same array ``v`` returns it."""
        self._known = (v, Dv)

    @classmethod
    def from_dense(cls, D: np.ndarray) -> "DynamicsJacobian":
        """A dense ``B × k × k`` array as a dynamics Jacobian (no factors)."""
        D = np.asarray(D, dtype=float)
        return cls(D.shape[-1], None, LayoutCache(), D)

    # ------------------------------------------------------------------ array-like behaviour
    @property
    def batch(self) -> int:
        return self._dense.shape[0] if self.terms is None else self.terms[0].L.vals.shape[0]

    @property
    def shape(self) -> tuple:
        return (self.batch, self.k, self.k)

    def copy(self) -> "DynamicsJacobian":
        return DynamicsJacobian(self.k, self.terms, self.cache,
                                None if self._dense is None else self._dense.copy())

    def __getitem__(self, idx):
        return np.array(self.dense()[idx])

    def __setitem__(self, idx, values):
        D = self.dense().copy()
        D[idx] = values
        self.terms, self._dense = None, D

    def _cols(self, t: DynamicsTerm) -> slice:
        return slice(0, self.k) if t.cols is None else t.cols

    # ------------------------------------------------------------------ products
    def dense(self, out: np.ndarray | None = None) -> np.ndarray:
        """``B × k × k`` (cached; formed into ``out`` when given and not yet formed)."""
        if self._dense is not None:
            if out is not None:
                out[...] = self._dense
            return self._dense
        first = True
        for t in self.terms:
            cols, L = self._cols(t), t.L
            A = t.W if t.R is None or t.W is None else t.W * t.R[:, None, :]
            if first and A is not None and L.rows is not None and L.vals.shape[1] == 1 \
                    and L.starts[0] == 0 and L.vals.shape[2] == self.k and cols == slice(0, self.k):
                if out is None:
                    out = np.empty((L.vals.shape[0], self.k, self.k))
                np.multiply(L.vals[:, 0, :, None], A, out=out)     # diag(σ') W: one pass, no zero fill
                first = False
                continue
            if first:
                if out is None:
                    out = np.zeros((L.vals.shape[0], self.k, self.k))
                else:
                    out[...] = 0.0
                first = False
            if A is not None:
                L.matmul(A, self.k, out[:, :, cols])
            else:                                          # L · diag(R) on the columns ``cols``
                vals = L.vals if t.R is None else L.vals * t.R[:, None, :]
                n = vals.shape[-1]
                if L.rows is None:
                    out[:, :, cols] += vals
                else:
                    c = np.arange(cols.start, cols.start + n)
                    for r in range(vals.shape[1]):
                        out[:, L.rows[r], c] += vals[:, r]
        self._dense = out
        return out

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``D v`` for ``v``: ``B × k``; returns ``B × k`` (the product :meth:`remember`-ed for this
        ``v``, if any)."""
        if self._known is not None and self._known[0] is v:
            return self._known[1]
        if self.terms is None:
            return np.matmul(self._dense, v[:, :, None])[:, :, 0]
        y = None
        for t in self.terms:
            u = v[:, self._cols(t)]
            if t.R is not None:
                u = u * t.R
            if t.W is not None:
                u = u @ t.W.T if t.W.ndim == 2 else np.matmul(t.W, u[:, :, None])[:, :, 0]
            if y is None and t.L.rows is not None and t.L.starts == (0,) and u.shape[1] == self.k:
                y = t.L.vals[:, 0] * u                     # diag(σ') (W v): no zero fill
            else:
                y = np.zeros(v.shape) if y is None else y
                t.L.matvec(u, y)
        return y

    def rmatvec(self, lam: np.ndarray) -> np.ndarray:
        """``λ D`` for ``λ``: ``B × k`` (the BPTT adjoint step); returns ``B × k``."""
        if self.terms is None:
            return np.matmul(lam[:, None, :], self._dense)[:, 0, :]
        y = np.zeros(lam.shape)
        for t in self.terms:
            mu = t.L.rmatvec(lam)
            if t.W is not None:
                mu = mu @ t.W if t.W.ndim == 2 else np.matmul(mu[:, None, :], t.W)[:, 0, :]
            if t.R is not None:
                mu = mu * t.R
            y[:, self._cols(t)] += mu
        return y

    def matmul(self, M: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``D M`` for ``M``: ``B × k × c``; returns ``B × k × c`` (into ``out`` when given).

        Formed as the dense ``D`` (``O(B k²)``, cached) times ``M`` in one batched product.  For an
        Elman cell with ``θ`` shared by ``B`` replicates the alternative is one product
        ``W [M_1 … M_B]`` (``k × k`` by ``k × Bc``, the state-major layout) followed by the row
        scaling ``diag(σ'_b)``; measured single-threaded (OpenBLAS 0.3.31, SkylakeX; CPU time, c = p
        = k² + 9k) the dense-D batched product was faster at every size tried: k = 16, B = 1/4/16/64:
        9/37/116/580 µs against 21/52/213/1127 µs; k = 32, B = 1/16/64: 83/1930/10046 µs against
        111/2889/15405 µs; k = 64, B = 1/4/64: 1.15/5.8/92 ms against 1.33/7.7/113 ms (the single
        large product alone was no faster than the batch of small ones).
        """
        return np.matmul(self.dense(), M, out=out)

    # ------------------------------------------------------------------ entries
    def diagonal(self) -> np.ndarray:
        """``diag(D)``: ``B × k``.  A stacked level on the rows ``a … a+n−1`` of a term that reads the
        same state entries contributes ``vals · diag(W) · R`` there (no index arrays), a level on other
        rows nothing; other layouts are read through :meth:`entries`."""
        if self.terms is not None and len(self.terms) == 1:       # diag(σ') W (Elman): no zero fill
            t = self.terms[0]
            L = t.L
            if t.cols is None and t.R is None and t.W is not None and L.rows is not None \
                    and L.vals.shape[1] == 1 and L.starts[0] == 0 and L.vals.shape[2] == self.k:
                return L.vals[:, 0] * t.W.diagonal(0, -2, -1)
        out = None if self.terms is None else np.zeros((self.batch, self.k))
        for t in self.terms or ():
            cols, L = self._cols(t), t.L
            n = L.vals.shape[-1]
            spans = [] if L.rows is None else [(r, a) for r, a in enumerate(L.starts)
                                               if a is None or (a < cols.stop and a + n > cols.start)]
            if L.rows is None or any(a != cols.start or n != cols.stop - cols.start for _, a in spans):
                out = None
                break
            for r, a in spans:                            # the factors associated as in dense()
                wr = None if t.W is None else np.diagonal(t.W, axis1=-2, axis2=-1)
                if t.R is not None:
                    wr = t.R if wr is None else wr * t.R
                out[:, a:a + n] += L.vals[:, r] if wr is None else L.vals[:, r] * wr
        if out is not None:
            return out
        index = np.arange(self.k) * (self.k + 1)
        if self.cache.diagonal_plan is None:
            self.cache.diagonal_plan = self.entry_plan(index)
        return self.entries(index, self.cache.diagonal_plan)

    def entries(self, flat: np.ndarray, plan: list | None = None, compiled: bool = True) -> np.ndarray:
        """The values ``D.flat[flat]`` of one replicate's ``k × k`` matrix, per replicate: ``B × E``.

        A stacked gate's term contributes ``vals[r, i] · W[i, l] · R[l]`` at the entries ``(row, col)``
        with ``rows[r, i] = row`` and ``col = cols.start + l`` (``O(E)``); a term with a dense gate
        Jacobian is formed as its ``k × q`` product first.  The factors are multiplied and the terms
        summed in the order of :meth:`dense`, so the values equal ``dense()``'s bit for bit (the masked
        recursion and dense RTRL then see the same ``D_t``).  A term whose ``W`` is masked
        (:attr:`DynamicsTerm.free`) contributes only at ``W``'s free entries, read from ``θ`` in
        its order (one sequential read instead of a gather from the matrix); the products it leaves
        out are ``vals · 0 = 0``, so with finite gate values the sum is the same bit for bit (GRU
        ``k = 128``, density 0.1: each ``W`` term 1 638 entries instead of 4 525, and the compiled
        calls inside SnAp-2's step, after the influence's pass has evicted ``W``, 74 → 37 µs).
        ``plan``: :meth:`entry_plan` of ``flat``,
        kept by a caller that reads the same entries at every step (computed here when omitted).
        ``compiled``: a stacked gate's levels in one compiled call each
        (:func:`~simulations.kernels.add_gate_entries`; warm caches, GRU ``k = 128``, density 0.1,
        4 levels of 4 525 entries: 229 → 97 µs, LSTM ``k = 64``: 190 → 50 µs); ``False``: numpy
        (the reference)."""
        if self.terms is None:
            return self._dense.reshape(self._dense.shape[0], -1)[:, flat]
        plan = self.entry_plan(flat) if plan is None else plan
        out = np.zeros((self.batch, flat.size))
        for t, levels in zip(self.terms, plan):
            for r, e, i, l, q in levels:
                if r is None:                              # dense gate: the term's product, gathered
                    if t.W is None:
                        out[:, e] += t.L.vals[:, i, l] * (1.0 if t.R is None else t.R[:, l])
                    else:
                        A = t.W if t.R is None else t.W * t.R[:, None, :]
                        out[:, e] += t.L.matmul(A, self.k)[:, i, l]
                    continue
                if compiled:                               # the same products, one compiled call
                    es = (e.start, _NO_INDEX) if isinstance(e, slice) else (0, e)
                    W = _NO_MATRIX if t.W is None else (t.free.values[:, None, :] if q is not None
                                                        else t.W if t.W.ndim == 3 else t.W[None])
                    add_gate_entries(out, *es, t.L.vals, r, i, W, l, _NO_INDEX if q is None else q,
                                     _NO_ROW if t.R is None else t.R, t.W is not None, t.R is not None)
                    continue
                wr = None if t.W is None else t.W[..., i, l] if q is None else t.free.values[:, q]
                if t.R is not None:                        # the factors associated as in dense()
                    wr = t.R[:, l] if wr is None else wr * t.R[:, l]
                out[:, e] += t.L.vals[:, r, i] if wr is None else t.L.vals[:, r, i] * wr
        return out

    def entry_plan(self, flat: np.ndarray) -> list:
        """Per term, per level: ``(r, entries e, gate columns i, read columns l, free entries q)``
        hit by ``flat`` (for a dense gate ``r = None`` and ``i`` are the rows; ``q``: for a masked
        ``W`` (:attr:`DynamicsTerm.free`), the places of ``W[i, l]`` among its free entries, whose
        other entries the level leaves out; else ``None``); a stacked gate's entries in the
        order ``(l, i)``, in which ``W`` (column-major, like ``θ``'s blocks) is read in order: after
        a step of the influence has evicted it from the caches, reading a 128-unit GRU's three ``W``
        at 13 600 places took about 380 µs in the entries' order, 240 µs in this one.  A function of
        the cell's layout and ``flat`` only: the same for every step of a cell; ``None`` for a
        dense ``D``."""
        if self.terms is None:
            return None
        row, col = np.divmod(np.asarray(flat), self.k)
        plan = []
        for t in self.terms:
            cols = self._cols(t)
            inside = (col >= cols.start) & (col < cols.stop)
            levels = []
            if t.L.rows is None:
                e = np.flatnonzero(inside)
                levels.append((None, as_slice(e), row[e], col[e] - cols.start, None))
                plan.append(levels)
                continue
            where = None
            if t.free is not None and t.W is not None:    # W's free entries: their place in θ's block
                where = np.full(t.W.shape[-2:], -1, dtype=np.intp)
                where[t.free.i, t.free.j] = np.arange(t.free.i.size)
            for r, rows in enumerate(t.L.rows):
                inv = np.full(self.k, -1, dtype=np.intp)
                inv[rows] = np.arange(rows.size)
                i = inv[row]
                ok = inside & (i >= 0)
                if t.W is None:
                    ok &= i == col - cols.start
                e = np.flatnonzero(ok)
                e = e[np.lexsort((i[e], col[e]))]      # W's column-major order: W read in order
                l = col[e] - cols.start
                q = None
                if where is not None:
                    q = where[i[e], l]
                    e, l, q = e[q >= 0], l[q >= 0], q[q >= 0]
                levels.append((r, as_slice(e), i[e], l, q))
            plan.append(levels)
        return plan
