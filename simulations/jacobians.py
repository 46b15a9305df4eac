"""Structured Jacobians of a recurrent core (THEORY.md §1, §3).

Every cell writes its pre-activations as sums of matrix-vector products ``a_g = Σ A v`` over the
parameter blocks ``A`` of a gate ``g``.  The immediate Jacobian then factors block by block:

    I_t[:, col(A, i, j)] = G_g[:, i] · v_j,        G_g = ∂s_t/∂a_g  (k × n_g),

so ``I_t`` is never stored as a ``k × p`` matrix; it is kept as the gate Jacobians ``G_g`` and the
block inputs ``v``.  ``G_g`` is either a stack of "diagonals" (each state row depends on one unit
of the gate: Elman, GRU reset-after, LSTM) or dense (the reset gate of the standard GRU).

The dynamics Jacobian factors the same way (:class:`DynamicsJacobian`):

    D_t = Σ_terms L · W · diag(R) · E,

with ``L`` a gate Jacobian, ``W`` a recurrent weight matrix (or the identity), ``R`` an optional
column scaling and ``E`` the selection of the state entries the term reads.  For an Elman cell
``D_t = diag(σ') W``: products with ``D_t`` cost one product with ``W`` plus ``O(k)``, and
replicates that share ``θ`` share one product with ``W``.

Parameter layout (one convention, used everywhere): ``θ`` is the concatenation of the cell's
blocks in declaration order; inside a block of shape ``n_out × n_in`` the free (unmasked) entries
are taken in column-major order, i.e. ``vec(A)`` with masked entries skipped.  For a dense Elman
cell this is exactly THEORY's column-stacked layout ``θ = vec([W U b])``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.linalg.blas import dger

from .kernels import add_diagonal_outer

_NONE = np.zeros((0, 0))


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


#: ``Σ_n a[b, n] c[b, n]`` per row ``b`` (one pass, no temporaries; numpy < 2: einsum)
row_dot = getattr(np, "vecdot", None) or (lambda a, c: np.einsum("bn,bn->b", a, c))


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


# --------------------------------------------------------------------------- outer products
def outer_into(out: np.ndarray, v: np.ndarray, w: np.ndarray, add: bool = False,
               batch_last: bool = False) -> None:
    """In place ``out[b] = v[b] ⊗ w[b]`` (or ``+=`` when ``add``) for every replicate ``b``.

    ``v``: ``B × a``, ``w``: ``B × n``; ``out``: ``B × a × n`` (any strides), or ``a × n × B`` when
    ``batch_last``.  One replicate with a C-contiguous grid is a rank-one BLAS update in place
    (``dger``), about twice as fast here as numpy's broadcast product; several replicates are one
    ``einsum`` (measured 22 µs against 35 µs for the broadcast product at a = 21, n = 16, B = 64).
    This is the one kernel behind every outer-product block of ``I_t`` (:class:`ImmediateJacobian`)
    and the Kronecker-factored gradient of KF-RTRL.
    """
    if out.shape[-1 if batch_last else 0] == 1:
        grid = out[..., 0] if batch_last else out[0]
        if grid.flags.c_contiguous and grid.size:
            if not add:
                grid.fill(0.0)
            dger(1.0, w[0], v[0], a=grid.T, overwrite_a=True)     # grid.T is Fortran-ordered: in place
            return
    spec = "bj,bi->jib" if batch_last else "bj,bi->bji"               # a batch of 1 broadcasts
    if add:
        out += np.einsum(spec, v, w)
    else:
        np.einsum(spec, v, w, out=out)


def block_outer(blocks, p: int, left, right, out: np.ndarray | None = None, add: bool = False) -> np.ndarray:
    """The ``B × p`` matrix in the θ layout whose column ``col(A, i, j)`` is ``left(A)[:, j] · right(A)[:, i]``.

    ``left(A)``: ``B × n_in``, ``right(A)``: ``B × n_out`` for each block ``A``.  An unmasked block is
    the outer product ``left ⊗ right`` written into its ``n_in × n_out`` grid of columns without index
    gathers (:func:`outer_into`); a masked block gathers its free entries.  ``out`` (``B × p``,
    C-contiguous) receives the result (``add``: accumulates into it).
    """
    if out is None:
        B = max(left(blocks[0]).shape[0], right(blocks[0]).shape[0])
        out = np.zeros((B, p)) if add else np.empty((B, p))
    B, contiguous = out.shape[0], out.flags.c_contiguous
    for blk in blocks:
        v, w = left(blk), right(blk)
        if blk.full and contiguous:
            grid = out[:, blk.cols]
            grid.shape = (B, blk.n_in, blk.n_out)           # a view of ``out`` (setting shape never copies)
            outer_into(grid, v, w, add)
        elif add:
            out[:, blk.cols] += w[:, blk.idx_i] * v[:, blk.idx_j]
        else:
            out[:, blk.cols] = w[:, blk.idx_i] * v[:, blk.idx_j]
    return out


# --------------------------------------------------------------------------- gate Jacobians
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

    def left_matmul(self, A: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
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

    def rmatmul(self, lam: np.ndarray) -> np.ndarray:
        """``λ G`` for ``λ`` of shape ``B × k``; returns ``B × n``."""
        if self.rows is None:
            return np.matmul(lam[:, None, :], self.vals)[:, 0, :]
        out = lam[:, self._level(0)] * self.vals[:, 0, :]
        for r in range(1, self.vals.shape[1]):
            out += lam[:, self._level(r)] * self.vals[:, r, :]
        return out


# --------------------------------------------------------------------------- I_t
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
    _inputs: dict = field(default_factory=dict, repr=False)

    @property
    def batch(self) -> int:
        return next(iter(self.sources.values())).shape[0]

    @property
    def groups(self) -> tuple[ParamBlock, ...]:
        """The blocks with consecutive unmasked blocks of a gate merged (:func:`merge_blocks`; cached per cell)."""
        groups = self._flat.get("groups")
        if groups is None:
            groups = self._flat["groups"] = merge_blocks(self.blocks)
        return groups

    def source(self, blk: ParamBlock) -> np.ndarray:
        """The input ``v`` of a block (``B × n_in``); of a merged block, its inputs concatenated."""
        if isinstance(blk.source, str):
            return self.sources[blk.source]
        v = self._inputs.get(blk.source)
        if v is None:
            v = self._inputs[blk.source] = np.concatenate([self.sources[s] for s in blk.source], axis=1)
        return v

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
        :meth:`rmatmul`.
        """
        pos = self._flat.get("unit_major") if units_first else None
        if units_first and pos is None:
            pos = self._flat["unit_major"] = unit_major(self.blocks, self.p)
        diagonal = self._flat.get("diagonal_levels")        # every level of every block on a row range
        if diagonal is None:
            diagonal = self._flat["diagonal_levels"] = all(
                blk.full and self.gates[blk.gate].rows is not None and None not in self.gates[blk.gate].starts
                for blk in self.groups)
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
                self.rmatmul(lam, out=out, add=True)
            else:
                out[:, pos] += self.rmatmul(lam)

    def _scatter_index(self, blk: ParamBlock, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns (``q`` each) of level ``r`` of a stacked block's nonzeros in ``k × p``."""
        key = ("scatter", blk.name, r)
        idx = self._flat.get(key)
        if idx is None:
            idx = (self.gates[blk.gate].rows[r][blk.idx_i], blk.offset + np.arange(blk.size))
            self._flat[key] = idx
        return idx

    def left_gates(self, lam: np.ndarray) -> dict[str, np.ndarray]:
        """``λ G_g`` (``B × n_g``) for every gate."""
        return {g: G.rmatmul(lam) for g, G in self.gates.items()}

    def rmatmul(self, lam: np.ndarray, out: np.ndarray | None = None, add: bool = False,
                scale: np.ndarray | None = None, left_gates: dict | None = None) -> np.ndarray:
        """``λ I`` (``B × p``) for ``λ``: ``B × k``: the block ``A`` of ``λ I`` is ``v ⊗ (λ G)``
        (:func:`block_outer`).  Cost ``O(p)`` for stacked gates.  ``out`` receives the result
        (``add``: ``out += λ I``); ``scale`` (``B``) multiplies each replicate's row;
        ``left_gates``: :meth:`left_gates` of ``λ`` when already computed."""
        lg = self.left_gates(lam) if left_gates is None else left_gates
        if scale is not None:
            lg = {g: w * scale[:, None] for g, w in lg.items()}
        return block_outer(self.groups, self.p, self.source, lambda b: lg[b.gate], out, add)

    def rmatmul_norms(self, lam: np.ndarray, left_gates: dict | None = None) -> np.ndarray:
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
                    self.parts.append((blk, kind, dst, r, None))
            else:                                          # dense gate: only its structural pattern
                n = G.vals.shape[-1]
                rr, cc = pattern(blk)
                dst = as_slice(locate(rr, blk.offset + cc))
                self.parts.append((blk, "dense", dst, rr * n + blk.idx_i[cc], blk.idx_j[cc]))

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


def as_slice(idx: np.ndarray):
    """A contiguous increasing index array as a slice (a view instead of a gather; cheaper to add into)."""
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


# --------------------------------------------------------------------------- D_t
@dataclass
class DynamicsTerm:
    """One summand ``L · W · diag(R) · E`` of ``D_t`` (``k × k``).

    ``L``: a :class:`GateJacobian` (``k × n``); ``W``: ``n × q`` (shared by the replicates),
    ``B × n × q`` (one per replicate) or ``None`` (the identity, ``n = q``); ``R``: ``B × q`` or
    ``None``; ``cols``: the ``q`` consecutive state entries the term reads (``E`` selects them).
    """

    L: GateJacobian
    W: np.ndarray | None = None
    R: np.ndarray | None = None
    cols: slice | None = None


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
    _flat: dict = field(default_factory=dict, repr=False)
    _dense: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_dense(cls, D: np.ndarray) -> "DynamicsJacobian":
        """A dense ``B × k × k`` array as a dynamics Jacobian (no factors)."""
        D = np.asarray(D, dtype=float)
        return cls(D.shape[-1], None, {}, D)

    # ------------------------------------------------------------------ array-like behaviour
    @property
    def batch(self) -> int:
        return self._dense.shape[0] if self.terms is None else self.terms[0].L.vals.shape[0]

    @property
    def shape(self) -> tuple:
        return (self.batch, self.k, self.k)

    def copy(self) -> "DynamicsJacobian":
        return DynamicsJacobian(self.k, self.terms, self._flat,
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
                L.left_matmul(A, self.k, out[:, :, cols])
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
        """``D v`` for ``v``: ``B × k``; returns ``B × k``."""
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
            mu = t.L.rmatmul(lam)
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
        index = self._flat.get("diagonal")
        if index is None:
            index = self._flat["diagonal"] = np.arange(self.k) * (self.k + 1)
        return self.entries(index)

    def entries(self, flat: np.ndarray) -> np.ndarray:
        """The values ``D.flat[flat]`` of one replicate's ``k × k`` matrix, per replicate: ``B × E``.

        A stacked gate's term contributes ``vals[r, i] · W[i, l] · R[l]`` at the entries ``(row, col)``
        with ``rows[r, i] = row`` and ``col = cols.start + l`` (``O(E)``); a term with a dense gate
        Jacobian is formed as its ``k × q`` product first.  The factors are multiplied and the terms
        summed in the order of :meth:`dense`, so the values equal ``dense()``'s bit for bit (the masked
        recursion and dense RTRL then see the same ``D_t``)."""
        if self.terms is None:
            return self._dense.reshape(self._dense.shape[0], -1)[:, flat]
        plan = self._entry_plan(flat)
        out = np.zeros((self.batch, flat.size))
        for t, levels in zip(self.terms, plan):
            for r, e, i, l in levels:
                if r is None:                              # dense gate: the term's product, gathered
                    if t.W is None:
                        out[:, e] += t.L.vals[:, i, l] * (1.0 if t.R is None else t.R[:, l])
                    else:
                        A = t.W if t.R is None else t.W * t.R[:, None, :]
                        out[:, e] += t.L.left_matmul(A, self.k)[:, i, l]
                    continue
                wr = None if t.W is None else t.W[..., i, l]   # the factors associated as in dense()
                if t.R is not None:
                    wr = t.R[:, l] if wr is None else wr * t.R[:, l]
                out[:, e] += t.L.vals[:, r, i] if wr is None else t.L.vals[:, r, i] * wr
        return out

    def _entry_plan(self, flat: np.ndarray) -> list:
        """Per term, per level: ``(r, entries e, gate columns i, read columns l)`` hit by ``flat``
        (for a dense gate ``r = None`` and ``i`` are the rows); cached per cell and index array."""
        key = ("entries", id(flat))
        hit = self._flat.get(key)
        if hit is not None and hit[0] is flat:
            return hit[1]
        row, col = np.divmod(np.asarray(flat), self.k)
        plan = []
        for t in self.terms:
            cols = self._cols(t)
            inside = (col >= cols.start) & (col < cols.stop)
            levels = []
            if t.L.rows is None:
                e = np.flatnonzero(inside)
                levels.append((None, as_slice(e), row[e], col[e] - cols.start))
            else:
                for r, rows in enumerate(t.L.rows):
                    inv = np.full(self.k, -1, dtype=np.intp)
                    inv[rows] = np.arange(rows.size)
                    i = inv[row]
                    ok = inside & (i >= 0)
                    if t.W is None:
                        ok &= i == col - cols.start
                    e = np.flatnonzero(ok)
                    levels.append((r, as_slice(e), i[e], col[e] - cols.start))
            plan.append(levels)
        self._flat[key] = (flat, plan)
        return plan


@dataclass
class Linearization:
    """One step of the core: ``s_t`` (``B × k``), ``D_t`` (:class:`DynamicsJacobian`, factored) and
    ``I_t`` (:class:`ImmediateJacobian`).  ``D`` is the dense ``B × k × k`` array (formed on first
    use, cached); a dense array passed as ``dynamics`` is wrapped."""

    state: np.ndarray
    dynamics: DynamicsJacobian
    I: ImmediateJacobian

    def __post_init__(self):
        if not isinstance(self.dynamics, DynamicsJacobian):
            self.dynamics = DynamicsJacobian.from_dense(self.dynamics)

    @property
    def D(self) -> np.ndarray:
        return self.dynamics.dense()
