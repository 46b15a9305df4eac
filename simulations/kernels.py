"""Fused ``O(p)`` loops of the approximate estimators, compiled with numba.

SnAp-1 and UORO do ``O(p)`` work per step on arrays of ``p`` numbers: an update in place and a
gradient written out.  On one core those passes are bound by memory traffic, and numpy needs one
pass (and one temporary) per operation: SnAp-1's scaling, rank-one addition and gradient took
three passes over ``J̃`` plus a gradient write (about 130 µs at Elman k = 256, p = 66 816), UORO's
norm, rank-one addition and scaled copy likewise.  Each kernel here does the same arithmetic, in
the same order per entry (no fused multiply-add, no reassociation except where stated), in one
pass that updates a row of a parameter block and writes its gradient while the row is in L1.

The same holds for small networks, where a step is dominated by the number of calls rather than
by arithmetic: KF-RTRL's step after ``D_t A`` is one call (:func:`kronecker_step`, about 30 numpy
calls before), and a sparse cell's masked weight matrices are refreshed from ``θ`` by one gather
(:func:`scatter_free`) instead of being formed anew.  Every kernel has a numpy path that the tests
compare it against (``tests/test_kernels.py``).

Layout (the θ layout of :mod:`simulations.jacobians`): a full block at ``off`` of ``n_in`` inputs
and ``n_out`` outputs holds its entry ``(i, j)`` (output ``i``, input ``j``) at column
``off + j·n_out + i``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .aligned import LANES, aligned_empty
from .kernels_dense import PAD, WIDTH, credit_update, elman_influence_and_credit, preactivation, prefetch

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _aligned_copy(a):
    """A copy of the vector ``a`` starting a 64-byte line (:mod:`simulations.aligned`): a short
    operand of a pass over long rows, then loaded without splitting cache lines."""
    A = aligned_empty(1, a.shape[0])[0]
    A[:] = a
    return A


@_jit
def _diagonal_rows(J, g, off, n_in, n_out, d, w, c, v, has_d):
    """The rows of one replicate's SnAp-1/RFLO step (:func:`diagonal_influence_step`), ``J``, ``g``
    flat from ``off``: row ``j`` is ``J̃[(·, j)] ← d ⊙ J̃[(·, j)] + v[j] w`` (``d ≡ 0`` when not
    ``has_d``) and ``ĝ[(·, j)] = c ⊙ J̃[(·, j)]``, written in one loop."""
    for j in range(n_in):
        Jr, gr = J[off + j * n_out:off + (j + 1) * n_out], g[off + j * n_out:off + (j + 1) * n_out]
        vj = v[j]
        if has_d:
            for i in range(n_out):
                x = d[i] * Jr[i] + vj * w[i]
                Jr[i] = x
                gr[i] = c[i] * x
        else:
            for i in range(n_out):
                x = vj * w[i]
                Jr[i] = x
                gr[i] = c[i] * x


@_jit
def diagonal_influence_step(J, g, off, n_in, n_out, d, d0, has_d, c, c0, v, w):
    """One SnAp-1/RFLO step on a full block whose entry ``(i, j)`` sits on state row ``rows[i]``
    (THEORY.md §4, "SnAp-n" with ``n = 1``)::

        J̃[(i, j)] ← d[i] · J̃[(i, j)] + v[j] · w[i]          (in place; ``d ≡ 0`` when not ``has_d``)
        g[(i, j)]  = c[i] · J̃[(i, j)]

    with ``d[i] = D_t[rows[i], rows[i]]``, ``w[i]`` the gate Jacobian on that row and ``v`` the
    block's input, i.e. ``J̃ ← (D_t J̃ + I_t) ⊙ M_1`` and ``ĝ = c_t J̃`` restricted to the block.

    ``J`` is a flat view of the entry-major store (replicates last, ``B`` of them: ``nnz·B``);
    ``d`` (``|d|·B``, the block's values from row ``d0``) and ``c`` (``k·B``, the block's rows
    from ``c0``) likewise; ``g``: ``B × p`` (replicates first, as the trainer reads it);
    ``v``: ``B × n_in``; ``w``: ``B × n_out``.
    """
    B = v.shape[0]
    if B == 1:                                       # contiguous rows: vectorised inner loops
        wr, cr = _aligned_copy(w[0]), _aligned_copy(c[c0:c0 + n_out])
        _diagonal_rows(J, g[0], off, n_in, n_out, _aligned_copy(d[d0:d0 + n_out]) if has_d else cr, wr, cr, v[0],
                       has_d)
        return
    vt, wt = np.ascontiguousarray(v.T), np.ascontiguousarray(w.T)      # replicates last, as J
    J3 = J[off * B:(off + n_in * n_out) * B].reshape((n_in, n_out, B))
    c2 = c[c0 * B:(c0 + n_out) * B].reshape((n_out, B))
    d2 = d[d0 * B:(d0 + n_out) * B].reshape((n_out, B)) if has_d else c2
    for j in range(n_in):
        for i in range(n_out):
            if has_d:
                for b in range(B):
                    J3[j, i, b] = d2[i, b] * J3[j, i, b] + vt[j, b] * wt[i, b]
            else:
                for b in range(B):
                    J3[j, i, b] = vt[j, b] * wt[i, b]
        for b in range(B):                           # the slab is in L1: write ĝ's rows in order
            gr = g[b, off + j * n_out:off + (j + 1) * n_out]
            for i in range(n_out):
                gr[i] = c2[i, b] * J3[j, i, b]


@_jit
def diagonal_masked_step(J, g, off, rows, cols, d, d0, has_d, c, c0, v, w):
    """:func:`diagonal_influence_step` on a masked block, whose free entry ``e`` sits at
    ``(rows[e], cols[e])`` (THEORY.md §4, "SnAp-n" with ``n = 1``)::

        J̃[off + e] ← d[rows[e]] · J̃[off + e] + v[cols[e]] · w[rows[e]]     (``d ≡ 0`` when not ``has_d``)
        g[off + e]  = c[rows[e]] · J̃[off + e]

    with the block's units on consecutive state rows (``d`` from ``d0``, ``c`` from ``c0``).
    ``J``: flat entry-major store (``nnz·B``, replicates last); ``d`` (``|d|·B``), ``c`` (``k·B``)
    likewise; ``g``: ``B × p``; ``rows``, ``cols``: the block's ``size`` entries' output and input
    indices (uint32: no test for a negative index per read); ``v``: ``B × n_in``; ``w``:
    ``B × n_out``.  Reference: the numpy path of ``MaskedInfluence.update`` then ``gradient``.
    """
    B = v.shape[0]
    size = rows.shape[0]
    if B == 1:
        v0, w0 = v[0], w[0]
        Jb, gb, dd, cc = J[off:off + size], g[0, off:off + size], d[d0:], c[c0:]
        if has_d:
            for e in range(size):
                i = rows[e]
                x = dd[i] * Jb[e] + v0[cols[e]] * w0[i]
                Jb[e] = x
                gb[e] = cc[i] * x
        else:
            for e in range(size):
                i = rows[e]
                x = v0[cols[e]] * w0[i]
                Jb[e] = x
                gb[e] = cc[i] * x
        return
    vt, wt = np.ascontiguousarray(v.T), np.ascontiguousarray(w.T)      # replicates last, as J
    J2 = J[off * B:(off + size) * B].reshape((size, B))
    d2 = d[d0 * B:].reshape((-1, B)) if has_d else J2[:0]
    c2 = c[c0 * B:].reshape((-1, B))
    for e in range(size):
        i, j = rows[e], cols[e]
        for b in range(B):
            x = vt[j, b] * wt[i, b]
            if has_d:
                x = d2[i, b] * J2[e, b] + x
            J2[e, b] = x
            g[b, off + e] = c2[i, b] * x


@_jit
def kronecker_diagonal_step(J, W, ds, ahat, c, has_d):
    """:func:`diagonal_influence_step` of one replicate on the single block over ``θ`` of a cell
    in Kronecker form (:class:`~simulations.jacobians.KroneckerFactors`): ``d = σ' ⊙ diag(W)``
    is formed here (as ``KroneckerFactors.diagonal`` forms it), ``v = â``, ``w = σ'``.

    ``J``: ``p × 1`` (the store); ``W``: ``k × k``; ``ds``: ``1 × k``; ``ahat``: ``1 × q``;
    ``c``: ``1 × k``; ``has_d``: SnAp-1 (``True``) or RFLO (``False``).  Returns ``ĝ`` (``1 × p``,
    a new array starting a 64-byte line).
    """
    k, q = ds.shape[1], ahat.shape[1]
    X = aligned_empty(3, (k + LANES - 1) // LANES * LANES)      # d, σ', c: rows of one aligned scratch
    d, w, cr = X[0, :k], X[1, :k], X[2, :k]
    for i in range(k):
        w[i] = ds[0, i]
        cr[i] = c[0, i]
        d[i] = ds[0, i] * W[i, i] if has_d else 0.0
    g = aligned_empty(1, k * q)
    _diagonal_rows(J.reshape(-1), g.reshape(-1), 0, q, k, d, w, cr, ahat[0], has_d)
    return g


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def rank_one_step(X, g, off, n_in, n_out, alpha, v, w, gamma, sq):
    """UORO's update of ``θ̃``'s direction and its gradient on one full block (THEORY.md §4)::

        X[b, (i, j)] += alpha[b] · v[b, j] · w[b, i]          (in place)
        g[b, (i, j)]  = gamma[b] · X[b, (i, j)]
        sq[b]        += Σ X[b, (i, j)]²                        (the new ``‖direction‖²``, for ρ₀)

    ``X``, ``g``: ``B × p``; ``v``: ``B × n_in``; ``w``: ``B × n_out``; ``alpha``, ``gamma``, ``sq``:
    ``B``.  The update and the gradient are computed exactly as written; the sum of squares is
    accumulated in a vectorised order (reassociated; deterministic for a given build and shape).
    Long rows (``n_out ≥ 64``) are passed row by row with ``w[b]`` in an aligned scratch
    (:mod:`simulations.aligned`); short rows (a 16-unit cell), whose per-row loop overhead
    dominates, have ``alpha[b] · v[b, j] · w[b, i]`` formed into a scratch of the block first,
    then one flat pass over the block.
    """
    n = n_in * n_out
    short = n_out < 64
    U = aligned_empty(1, n if short else n_out)[0]
    for b in range(X.shape[0]):
        acc = 0.0
        gb = gamma[b]
        if short:
            for j in range(n_in):
                a = alpha[b] * v[b, j]
                for i in range(n_out):
                    U[j * n_out + i] = a * w[b, i]
            Xb, gr = X[b, off:off + n], g[b, off:off + n]
            for e in range(n):
                x = Xb[e] + U[e]
                Xb[e] = x
                gr[e] = gb * x
                acc += x * x
        else:
            U[:] = w[b]
            for j in range(n_in):
                Xr, gr = X[b, off + j * n_out:off + (j + 1) * n_out], g[b, off + j * n_out:off + (j + 1) * n_out]
                a = alpha[b] * v[b, j]
                for i in range(n_out):
                    x = Xr[i] + a * U[i]
                    Xr[i] = x
                    gr[i] = gb * x
                    acc += x * x
        sq[b] += acc


@_jit
def rank_one_scales(s, Ds, nu, factor, sq, nI, rho):
    """UORO's scalars and ``s̃`` update (THEORY.md §4), per replicate ``b``::

        ρ₀ = sqrt(factor·sqrt(sq) / ‖D_t s̃‖),   ρ₁ = sqrt(nI / sqrt(k))   (1 where a norm is 0 or not finite)
        s̃ ← ρ₀ D_t s̃ + ρ₁ ν    (written to ``s``),    factor ← factor / ρ₀  (in place)

    ``s``, ``Ds``, ``nu``: ``B × k``; ``factor``, ``sq`` (``‖θ̃'s direction‖²``), ``nI``
    (``‖νᵀ I_t‖``): ``B``; ``rho`` (``2 × B``) receives ``(ρ₀, ρ₁)``.
    """
    B, k = s.shape
    rk = np.sqrt(float(k))
    for b in range(B):
        nD = 0.0
        for i in range(k):
            nD += Ds[b, i] * Ds[b, i]
        nD = np.sqrt(nD)
        num0 = factor[b] * np.sqrt(sq[b])
        r0 = np.sqrt(num0 / nD) if 0.0 < num0 < np.inf and 0.0 < nD < np.inf else 1.0
        r1 = np.sqrt(nI[b] / rk) if 0.0 < nI[b] < np.inf else 1.0
        for i in range(k):
            s[b, i] = r0 * Ds[b, i] + r1 * nu[b, i]
        factor[b] = factor[b] / r0
        rho[0, b] = r0
        rho[1, b] = r1


@_jit
def rank_one_masked_step(X, g, off, rows, cols, alpha, v, w, gamma, sq):
    """:func:`rank_one_step` on a masked block, whose free entry ``e`` sits at ``(rows[e], cols[e])``
    (THEORY.md §4)::

        X[b, off + e] += (alpha[b] · w[b, rows[e]]) · v[b, cols[e]]      (in place)
        g[b, off + e]  = gamma[b] · X[b, off + e]
        sq[b]         += Σ_e X[b, off + e]²

    the products in the order of the numpy path (:func:`~simulations.jacobians.products.block_outer`
    with ``w`` scaled by ``α``).  ``rows``, ``cols``: uint32 (no test for a negative index per read).
    """
    n = rows.shape[0]
    for b in range(X.shape[0]):
        acc = 0.0
        ab, gb, vb, wb = alpha[b], gamma[b], v[b], w[b]
        Xb, gr = X[b, off:off + n], g[b, off:off + n]
        for e in range(n):
            x = Xb[e] + (ab * wb[rows[e]]) * vb[cols[e]]
            Xb[e] = x
            gr[e] = gb * x
            acc += x * x
        sq[b] += acc


@_jit
def rank_one_full_step(X, blocks, vs, ws, rows_t, cols_t, s, Ds, nu, factor, sq, credit, rho, fold_lo, fold_hi,
                       sq_new):
    """A whole UORO step (THEORY.md §4): ``‖νᵀ I_t‖² = Σ_blocks ‖v‖² ‖ν G‖²`` over unmasked blocks
    plus the sum of squares of a masked block's entries, then :func:`rank_one_scales` (``s̃``,
    ``θ̃``'s factor, ``ρ₀, ρ₁``), the factor folded into ``X`` (``θ̃``'s direction) when it leaves
    ``[fold_lo, fold_hi]``, and :func:`rank_one_step` (:func:`rank_one_masked_step` for a masked
    block) on every block with ``α = 1/(ρ₁·factor)`` and ``γ = (c s̃)·factor``.

    ``blocks``: one row of ints per block, (θ offset, ``n_in``, ``n_out``, 1) for an unmasked block
    and (θ offset, size, 1, 0) for a masked one (:func:`~simulations.jacobians.unit_major_blocks`);
    ``vs``, ``ws``: tuples of the blocks' inputs (``B × n_in``) and ``ν G`` of their gates
    (``B × n_out``); ``rows_t``, ``cols_t``: tuples of a masked block's entries' outputs and inputs
    (uint32; empty for an unmasked block); ``s`` receives the new ``s̃``; ``factor`` is updated in
    place; ``sq_new`` (zeros) receives the new ``‖direction‖²``.  Returns the gradient (``B × p``,
    a new array starting a 64-byte line).
    """
    B = X.shape[0]
    nI = np.zeros(B)
    for q in range(blocks.shape[0]):
        v, w = vs[q], ws[q]
        if blocks[q, 3] == 0:                          # masked: Σ_e (w[rows[e]] v[cols[e]])²
            rows, cols = rows_t[q], cols_t[q]
            for b in range(B):
                a = 0.0
                for e in range(rows.shape[0]):
                    t = w[b, rows[e]] * v[b, cols[e]]
                    a += t * t
                nI[b] += a
            continue
        for b in range(B):
            a = 0.0
            for j in range(v.shape[1]):
                a += v[b, j] * v[b, j]
            c = 0.0
            for i in range(w.shape[1]):
                c += w[b, i] * w[b, i]
            nI[b] += a * c
    nI = np.sqrt(nI)
    rank_one_scales(s, Ds, nu, factor, sq, nI, rho)
    alpha, gamma = np.empty(B), np.empty(B)
    for b in range(B):
        if not fold_lo <= factor[b] <= fold_hi:
            for e in range(X.shape[1]):
                X[b, e] *= factor[b]
            factor[b] = 1.0
        alpha[b] = 1.0 / (rho[1, b] * factor[b])
        cs = 0.0
        for i in range(s.shape[1]):
            cs += credit[b, i] * s[b, i]
        gamma[b] = cs * factor[b]
    g = aligned_empty(B, X.shape[1])
    for q in range(blocks.shape[0]):
        if blocks[q, 3] == 0:
            rank_one_masked_step(X, g, blocks[q, 0], rows_t[q], cols_t[q], alpha, vs[q], ws[q], gamma, sq_new)
        else:
            rank_one_step(X, g, blocks[q, 0], blocks[q, 1], blocks[q, 2], alpha, vs[q], ws[q], gamma, sq_new)
    return g


@_jit
def kronecker_rank_one_step(X, s, factor, sq, u, ahat, dsigma, Ds, credit, fold_lo, fold_hi):
    """:func:`rank_one_full_step` on the single block over ``θ`` of a cell in Kronecker form
    (:class:`~simulations.jacobians.KroneckerFactors`: ``v = â``, ``w = ν ⊙ σ'``), in one call
    that also turns the draws ``u`` into signs (``ν = +1`` where ``u ≥ ½``, else ``−1``:
    :func:`~simulations.estimators.signs.rademacher`'s rule, which maps signs to themselves) and
    allocates the step's outputs.

    ``X``: ``B × p`` (``θ̃``'s direction, updated in place); ``s``: ``B × k`` (``s̃``); ``factor``,
    ``sq`` (``‖X‖²``): ``B``; ``u``: ``B × k``; ``ahat``: ``B × q``; ``dsigma``, ``Ds``
    (``D_t s̃``), ``credit``: ``B × k``.  Returns ``(g, s̃', factor', ‖X'‖², (ρ₀, ρ₁))``: ``B × p``
    (starting a 64-byte line), ``B × k``, ``B``, ``B``, ``2 × B``, all new arrays.
    """
    B, k = s.shape
    nu, nuG = np.empty((B, k)), np.empty((B, k))
    for b in range(B):
        for i in range(k):
            nu[b, i] = 1.0 if u[b, i] >= 0.5 else -1.0
            nuG[b, i] = nu[b, i] * dsigma[b, i]
    s_new, factor_new, sq_new, rho = np.empty((B, k)), factor.copy(), np.zeros(B), np.empty((2, B))
    blocks = np.array([[0, ahat.shape[1], k, 1]], dtype=np.int64)
    none = np.zeros(0, dtype=np.uint32)
    g = rank_one_full_step(X, blocks, (ahat,), (nuG,), (none,), (none,), s_new, Ds, nu, factor_new, sq, credit, rho,
                           fold_lo, fold_hi, sq_new)
    return g, s_new, factor_new, sq_new, rho


@_jit
def add_diagonal_outer(J, row0, off, n_in, n_out, v, w, lam, out, units_first):
    """One level of a stacked gate on consecutive state rows ``row0 … row0+n_out−1`` added to a
    dense influence (THEORY.md §1, the factored ``I_t``; :meth:`~simulations.jacobians.ImmediateJacobian.add_to`)::

        J[b, row0 + i, col(i, j)] += w[b, i] · v[b, j]
        out[b, col(i, j)]         += lam[b, row0 + i] · w[b, i] · v[b, j]     (when ``lam`` has rows)

    with ``col(i, j) = off + i·n_in + j`` when ``units_first`` (the unit-major order of
    :func:`~simulations.jacobians.unit_major`: each row's entries are consecutive) and
    ``off + j·n_out + i`` (``θ``'s order) otherwise.  ``J``: ``B × k × p`` (any strides); ``v``:
    ``B × n_in``; ``w``: ``B × n_out``; ``lam``: ``B × k`` or empty; ``out``: ``B × p`` (any strides).
    ``v``, ``w``, ``lam`` with one row broadcast over ``B``.
    """
    credit = lam.shape[0] > 0
    for b in range(J.shape[0]):
        bv = b if v.shape[0] > 1 else 0
        bw = b if w.shape[0] > 1 else 0
        bl = b if lam.shape[0] > 1 else 0
        vb = v[bv]
        for i in range(n_out):
            wi = w[bw, i]
            ci = lam[bl, row0 + i] * wi if credit else 0.0
            if units_first:                          # the row's n_in entries side by side
                lo = off + i * n_in
                Jr = J[b, row0 + i, lo:lo + n_in]
                for j in range(n_in):
                    Jr[j] += wi * vb[j]
                if credit:
                    orow = out[b, lo:lo + n_in]
                    for j in range(n_in):
                        orow[j] += ci * vb[j]
            else:
                for j in range(n_in):
                    col = off + j * n_out + i
                    J[b, row0 + i, col] += wi * vb[j]
                    if credit:
                        out[b, col] += ci * vb[j]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def class_pair_sums(D, tpd, ta, tb, qoff, toff, order, coff, col_start, J, out):
    """``(D_t J̃)`` at the stored entries of a sparse influence (THEORY.md §4, SnAp-n).

    A column of class ``u`` (its columns: ``order[coff[u] … coff[u+1]−1]``) stores the
    ``r = toff[u+1] − toff[u]`` rows ``R_u`` of its class at ``col_start[c] …``, and
    ``(D J̃)[R_u[a], c] = Σ_l D[R_u[a], R_u[l]] J̃[R_u[l], c]``: one ``r × r`` block ``D[R_u, R_u]``
    per class, filled from its structural pairs ``t = qoff[u] … qoff[u+1]−1``
    (``D[R_u[ta[t]], R_u[tb[t]]] = D[tpd[t]]``, zero elsewhere), times each of the class's columns.
    ``D``: ``|d| × B`` (or ``|d| × 1``, shared by the replicates); ``J``, ``out``: ``nnz × B``
    (C-contiguous).  Going class by class keeps the block in cache while its columns stream past.
    With one replicate each entry's sum over ``l`` is vectorised (reassociated; deterministic
    for a given build); with several, the sum runs over ``l`` in order for every replicate.
    """
    B = J.shape[1]
    nb = 1 if D.shape[1] == 1 else B
    acc = np.empty(B)
    for u in range(coff.shape[0] - 1):
        if coff[u + 1] == coff[u]:
            continue
        r = toff[u + 1] - toff[u]
        if B == 1:
            D1 = np.zeros((r, r))
            for t in range(qoff[u], qoff[u + 1]):
                D1[ta[t], tb[t]] = D[tpd[t], 0]
            Jf = J.reshape(J.shape[0])               # contiguous: the sums over l vectorise
            for ci in range(coff[u], coff[u + 1]):
                base = col_start[order[ci]]
                x = Jf[base:base + r]
                for a in range(r):
                    s = 0.0
                    for l in range(r):
                        s += D1[a, l] * x[l]
                    out[base + a, 0] = s
            continue
        Db = np.zeros((r, r, nb))                    # replicates innermost, as in J
        for t in range(qoff[u], qoff[u + 1]):
            for b in range(nb):
                Db[ta[t], tb[t], b] = D[tpd[t], b]
        for ci in range(coff[u], coff[u + 1]):
            base = col_start[order[ci]]
            for a in range(r):
                acc[:] = 0.0
                for l in range(r):
                    if nb == 1:
                        dv = Db[a, l, 0]
                        for b in range(B):
                            acc[b] += dv * J[base + l, b]
                    else:
                        for b in range(B):
                            acc[b] += Db[a, l, b] * J[base + l, b]
                for b in range(B):
                    out[base + a, b] = acc[b]


@_jit
def unit_major_to_theta(src, dst, blocks):
    """``dst[b, c] = src[b, pos[c]]`` for the unit-major order ``pos`` of
    :func:`~simulations.jacobians.unit_major`, without its index array: a full block (``blocks`` row
    ``(offset, n_in, n_out, 1)``) is the transpose of its ``n_out × n_in`` grid, any other block
    (``(offset, size, 1, 0)``) a copy.  ``src``, ``dst``: ``B × p`` (any strides)."""
    for b in range(src.shape[0]):
        for q in range(blocks.shape[0]):
            off, n_in, n_out, full = blocks[q, 0], blocks[q, 1], blocks[q, 2], blocks[q, 3]
            if full:
                for j in range(n_in):
                    for i in range(n_out):
                        dst[b, off + j * n_out + i] = src[b, off + i * n_in + j]
            else:
                for e in range(off, off + n_in):
                    dst[b, e] = src[b, e]



@_jit
def scatter_free(theta, src, store, dst):
    """The free entries of masked weight blocks copied into their matrices (THEORY.md §3, ``θ``'s
    layout): ``store[b, dst[e]] = theta[b, src[e]]`` for every replicate ``b`` (``theta``:
    ``B × p``, ``store``: ``B × n``, entries outside ``dst`` untouched).  Reference:
    :func:`scatter_free_reference`."""
    for b in range(theta.shape[0]):
        for e in range(src.shape[0]):
            store[b, dst[e]] = theta[b, src[e]]


def scatter_free_reference(theta, src, store, dst):
    """numpy reference of :func:`scatter_free`."""
    store[:, dst] = theta[:, src]


@_jit
def _balance(num, den):
    """``sqrt(num / den)``, and 1 where either is zero or not finite (UORO's and KF-RTRL's ``ρ``)."""
    return np.sqrt(num / den) if 0.0 < num < np.inf and 0.0 < den < np.inf else 1.0


@_jit
def kronecker_step(DA, sig, ahat, u, c, credit, ucol, acol, u_new, A_new, g, scales):
    """One KF-RTRL step after ``D_t A`` (THEORY.md §4), per replicate ``b``::

        p₁ = sqrt(‖D_t A‖ / ‖u‖),  p₂ = sqrt(‖σ'‖ / ‖â‖)       (1 where a norm is 0 or not finite)
        u ← (c₁ p₁) u + (c₂ p₂) â,     A ← (c₁ / p₁) D_t A + diag((c₂ / p₂) σ')
        ĝ[e] = u[ucol[e]] · (c_t A)[acol[e]]

    ``DA``, ``A_new``: ``B × k × k``; ``sig``: ``B' × k`` and ``ahat``: ``B' × a`` (``B' = 1``
    broadcasts); ``u``, ``u_new``: ``B × a``; ``c``: ``B × 2`` signs; ``credit``: ``B × k``;
    ``ucol``, ``acol``: ``p`` ints; ``g``: ``B × p``; ``scales``: ``B × 2`` receives ``(p₁, p₂)``.
    The products are those of the numpy path (``KFRTRL.update`` then ``gradient``); the sums of
    squares and ``c_t A`` are added in index order.
    """
    B, k = DA.shape[0], DA.shape[1]
    a = u.shape[1]
    cA = np.empty(k)
    for b in range(B):
        bs = b if sig.shape[0] > 1 else 0
        ba = b if ahat.shape[0] > 1 else 0
        sDA = 0.0
        for i in range(k):
            for j in range(k):
                sDA += DA[b, i, j] * DA[b, i, j]
        su, ss, sa = 0.0, 0.0, 0.0
        for j in range(a):
            su += u[b, j] * u[b, j]
            sa += ahat[ba, j] * ahat[ba, j]
        for i in range(k):
            ss += sig[bs, i] * sig[bs, i]
        p1 = _balance(np.sqrt(sDA), np.sqrt(su))
        p2 = _balance(np.sqrt(ss), np.sqrt(sa))
        scales[b, 0], scales[b, 1] = p1, p2
        cu, ca = c[b, 0] * p1, c[b, 1] * p2
        for j in range(a):
            u_new[b, j] = cu * u[b, j] + ca * ahat[ba, j]
        fa, fd = c[b, 0] / p1, c[b, 1] / p2
        for i in range(k):
            for j in range(k):
                A_new[b, i, j] = fa * DA[b, i, j]
            A_new[b, i, i] += fd * sig[bs, i]
        for j in range(k):
            cA[j] = 0.0
        for i in range(k):
            ci = credit[b, i]
            for j in range(k):
                cA[j] += ci * A_new[b, i, j]
        for e in range(ucol.shape[0]):
            g[b, e] = u_new[b, ucol[e]] * cA[acol[e]]


# --------------------------------------------------------------------------- online Elman training
#: influence modes of :func:`elman_online_steps`
MODE_RTRL, MODE_SNAP1, MODE_TBPTT, MODE_UORO = 0, 1, 2, 3


@_jit
def _gram(theta, b, k):
    """``W`` of replicate ``b`` (``W[r, l] = θ[b, l·k + r]``) and the eigenpairs of ``WᵀW`` (ascending)."""
    W = np.empty((k, k))
    for r in range(k):
        for l in range(k):
            W[r, l] = theta[b, l * k + r]
    lam, V = np.linalg.eigh(W.T @ W)
    return W, lam, V


@_jit
def _clip_singular(theta, b, k, radius):
    """Project replicate ``b``'s ``W`` onto ``‖W‖₂ ≤ radius`` (THEORY §3, the Frobenius-nearest point:
    singular values clipped): ``W ← W (I − Σ_{σ_j > radius} (1 − radius/σ_j) v_j v_jᵀ)`` with ``σ_j²``,
    ``v_j`` the eigenpairs of ``WᵀW``.  Returns ``‖W‖₂`` before the projection."""
    W, lam, V = _gram(theta, b, k)
    top = np.sqrt(max(lam[k - 1], 0.0))
    if top <= radius:
        return top
    for j in range(k):
        sj = np.sqrt(max(lam[j], 0.0))
        if sj > radius:
            f = 1.0 - radius / sj
            Wv = W @ V[:, j]
            for r in range(k):
                for l in range(k):
                    theta[b, l * k + r] -= f * Wv[r] * V[l, j]
    return top


#: Cody–Waite split of ln 2 (``_LN2_HI`` has trailing zero bits, so ``n·_LN2_HI`` is exact for |n| < 2¹¹)
_LN2_HI, _LN2_LO, _INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
#: Taylor coefficients ``1/j!`` of ``expm1``, ``j = 2 … 13``
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(j) for j in range(2, 14))


@_jit
def one_minus_square(s):
    """``1 − s ⊙ s`` (``tanh' = 1 − tanh²``) for ``s``: ``B × k``, as a new ``B × k`` array, each
    entry rounded as numpy's ``1.0 - s * s``."""
    out = np.empty(s.shape)
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            out[b, i] = 1.0 - s[b, i] * s[b, i]
    return out


@_jit
def tanh_into(z, out, bits):
    """``out = tanh(z)`` (``n`` numbers) without calls into libm, so that both loops vectorise (the
    ``tanh`` of a 16-unit cell took a third of a SnAp-1 step with 64 replicates).

    ``tanh|z| = −e / (2 + e)`` with ``e = expm1(−2|z|)`` and ``|z|`` capped at 20 (``1 − tanh 20 <
    2⁻⁵⁴``: 1 in double); ``expm1(x) = 2ⁿ expm1(r) + (2ⁿ − 1)`` with ``x = n ln 2 + r``, ``|r| ≤ ln 2 / 2``
    (Cody–Waite), ``expm1(r)`` by Taylor's series to ``r¹³`` (remainder below 10⁻¹⁷ relative) and
    ``2ⁿ`` written as bits (``bits``: ``n`` int64 scratch).  Rounding: the reduction, Horner's rule,
    the scaling and the quotient, at most 4 ulp (3 measured; numpy's own ``tanh`` is within 3 ulp of
    the correctly rounded value here).  ``±0``, ``±∞`` and NaN map as ``tanh`` does."""
    pw = bits.view(np.float64)
    for r in range(z.size):
        a = abs(z[r])
        x = -2.0 * (a if a <= 20.0 else 20.0)
        nf = np.floor(x * _INV_LN2 + 0.5)
        q = (x - nf * _LN2_HI) - nf * _LN2_LO
        h = _C12 + q * _C13
        h = _C11 + q * h
        h = _C10 + q * h
        h = _C9 + q * h
        h = _C8 + q * h
        h = _C7 + q * h
        h = _C6 + q * h
        h = _C5 + q * h
        h = _C4 + q * h
        h = _C3 + q * h
        h = _C2 + q * h
        out[r] = q + (q * q) * h
        bits[r] = (np.int64(nf) + 1023) << 52
    for r in range(z.size):
        e = pw[r] * out[r] + (pw[r] - 1.0)
        t = np.copysign(-e / (2.0 + e), z[r])
        out[r] = t if z[r] == z[r] else z[r]


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _sum_squares(x):
    """``Σ_c x_c²`` summed in any order (reassociated, so vectorised: a sequential sum of ``p``
    numbers waits ``p`` add latencies); relative rounding error ``≤ n u`` in any order."""
    acc = 0.0
    for c in range(x.size):
        acc += x[c] * x[c]
    return acc


@_jit
def _fused_update_pass(J, th, d, w, v, c, alpha, k, part, sum_x2):
    """One replicate's influence step (SnAp-1's ``J̃``, or UORO's ``θ̃`` direction with ``d ≡ 1``),
    its gradient and the SGD update in one pass (:func:`elman_online_steps` with ``fuse``), ``J``,
    ``th``: ``p`` (θ's order)::

        x = d[r] J[j·k + r] + v[j] w[r] → J[j·k + r],   g = c[r] x,   θ[j·k + r] += −(α g)

    as the unfused paths compute them (SnAp-1: ``d = diag(D_t)``, ``w = σ'``, ``v = â``, ``c = c_t``;
    UORO: ``d = 1``, ``w = ν ⊙ σ'``, ``v = â / (ρ₁ factor)``, ``c ≡ (c_t s̃) factor``).  ``part``
    (``3 × k``) receives per row ``r`` the running sums ``Σ_j g²``, ``Σ_{j<k} g²`` (``W``'s entries)
    and, with ``sum_x2``, ``Σ_j x²``, so that the pass keeps no reduction per row."""
    part[...] = 0.0
    g2, w2, x2 = part[0], part[1], part[2]
    for j in range(v.shape[0]):
        Jr, tr = J[j * k:(j + 1) * k], th[j * k:(j + 1) * k]
        a = v[j]
        acc = g2 if j >= k else w2
        for r in range(k):
            x = d[r] * Jr[r] + a * w[r]
            Jr[r] = x
            gv = c[r] * x
            tr[r] = tr[r] + -(alpha * gv)
            acc[r] += gv * gv
            if sum_x2:
                x2[r] += x * x
    for r in range(k):
        g2[r] += w2[r]


@_jit
def _within(x, bound):
    """Every entry of ``x`` in ``(−bound, bound)`` (false for a non-finite entry); branch-free."""
    ok = True
    for c in range(x.size):
        ok &= (-bound < x[c]) & (x[c] < bound)
    return ok


@_jit
def _add_input_and_credit(Jb, ds, ah, credit, g):
    """``J_t = D_t J_{t−1} + I_t`` in place and ``g_t = c_t D_t J_{t−1} + c_t I_t`` (THEORY §2.1), used
    at the first step of a TBPTT block (``Jb`` zero, so ``J_t = I_t``): ``Jb`` (``(k+1) × p``) holds
    ``D_t J_{t−1}`` in its first ``k`` rows and ``c_t D_t J_{t−1}`` in its last, columns unit-major
    (``I_t``'s row ``r`` is ``σ'_r â`` at columns ``r (k+m+1) …``), so only ``I_t``'s ``k (k+m+1)``
    entries are read and written; ``g`` in θ's order (column ``j·k + r`` at unit-major
    ``r·(k+m+1) + j``), ``g[j·k + r] = Jb[k, ·] + (c_r σ'_r) â_j``."""
    k, ncols = ds.shape[0], ah.shape[0]
    gk = Jb[k]
    for r in range(k):
        dr, cr = ds[r], credit[r] * ds[r]
        row = Jb[r, r * ncols:(r + 1) * ncols]
        last = gk[r * ncols:(r + 1) * ncols]
        for j in range(ncols):
            row[j] += dr * ah[j]
            g[j * k + r] = last[j] + cr * ah[j]


@_jit
def elman_online_steps(theta, phi, s, J3, J2, jpos, X, ut, ufac, usq, urho, nus, fold, mode, tau, tanh, xs,
                       ys, alphas, update_now, t0, learn, train_readout, radius, upper, g_acc, gphi_acc, gblock,
                       w_loss, w_gnorm, w_g, w_gphi, record_grad, blowup, loss_out, gnorm_out, fuse):
    """Online training steps of an Elman cell ``s_t = σ(W s_{t−1} + U x_t + b)`` (``σ`` = tanh or the
    identity) with a linear readout and the squared loss, SGD and the contraction projection
    (THEORY.md §2 "Online RTRL", §3, §5): the loop of :class:`simulations.training.OnlineTrainer`
    for ``n = xs.shape[0]`` steps, compiled.

    Per step and replicate ``b``: ``â = [s_{t−1}; x_t; 1]``, ``s_t = σ(A â)`` with ``A = [W U b]``
    (``θ[b, j·k + r] = A[r, j]``); ``ŷ = V s_t + c``, ``δ = ŷ − y``, ``ℓ = ½‖δ‖²``, credit
    ``c_t = Vᵀ δ``, ``∂ℓ/∂φ = [vec(s δᵀ); δ]`` (THEORY §1); ``D_t = diag(σ') W``,
    ``I_t[r, j·k + r] = σ'_r â_j`` (§3) and

    * ``mode = MODE_RTRL``: ``J_t = D_t J_{t−1} + I_t``, ``g_t = c_t J_t`` (§2.1), replicate by
      replicate: ``D_t`` formed column-major (one contiguous pass), then ``J_t`` in place and
      ``c_t J_t`` into the last row in one register-blocked pass
      (:func:`~simulations.kernels_dense.elman_influence_and_credit`, which also asks the cache for the
      next replicate's ``J_{t−1}`` and ``θ``), then ``g_t`` read off the last row into θ's order
      (:func:`unit_major_to_theta`; with ``fuse``, :func:`~simulations.kernels_dense.credit_update`
      moves ``θ`` by ``−α_t g_t`` and sums ``‖g_t‖²`` instead, as for SnAp-1 below) while the row is in
      the L1 (with 64 replicates at Elman k = 16, ``J3`` is 3.5 MB, beyond the L2).
      ``J3``: ``B × (k+1) × p`` (the estimator's ``full``), ``J_{t−1}`` in the first ``k`` rows,
      ``J_t`` after the step; the last row receives ``c_t J_t``.  Columns in the unit-major order
      (``jpos``, unused here): θ's column
      ``j·k + r`` at ``r·(k+m+1) + j``, so ``I_t``'s row ``r`` is contiguous;
    * ``mode = MODE_SNAP1``: the same restricted to the entries ``(c mod k, c)`` (§4, SnAp-1); ``J2``:
      ``B × p``, θ's column ``c`` at entry ``jpos[c]``.  ``fuse`` (the caller's promise: ``jpos`` is
      the identity, every step updates and ``g_acc`` starts at zero, no window gradient): at a
      step with ``update_now``, one pass per replicate writes ``J̃``, adds ``−α_t g_t`` to ``θ`` and
      sums ``‖g_t‖²`` and ``‖g_t‖²`` over ``W``'s entries in ``k`` running sums each (the same
      ``θ``, ``J̃`` as the unfused path; the norms summed in another order);
    * ``mode = MODE_TBPTT``: RTRL with ``J`` restarted from zero at each block of ``tau`` steps (the
      first step ``t`` with ``(t − 1) mod τ = 0``, where ``J_t = I_t``: :func:`_add_input_and_credit`) and
      ``Σ_block c_t J_t`` delivered at the block's last
      step (TBPTT(τ)'s gradient in forward mode; ``gblock`` holds the running sum);
    * ``mode = MODE_UORO``: UORO's step (§4) with the arithmetic of :meth:`UORO.step
      <simulations.estimators.uoro.UORO.step>` (:func:`rank_one_full_step`): ``ν = nus[i, b]``,
      ``D_t s̃ = σ' ⊙ (W s̃)``, ``‖νᵀ I_t‖ = ‖â‖ ‖ν ⊙ σ'‖``, the scales of :func:`rank_one_scales`,
      ``s̃`` (``ut``: ``B × k``) and ``θ̃ = ufac · X`` (``X``: ``B × p`` in θ's order) updated in place,
      the factor folded into ``X`` when it leaves ``[fold[0], fold[1]]``, ``g_t = (c_t s̃) θ̃``;
      ``usq`` (``B``) holds ``‖X‖²`` and ``urho`` (``B × 2``) the last ``(ρ₀, ρ₁)``; with ``fuse`` (as for
      SnAp-1) the rank-one addition, ``g_t`` and the SGD update are one pass (:func:`_fused_update_pass`).

    Then the window sums (``w_*``), the accumulators ``g_acc``, ``gphi_acc`` and, where
    ``update_now``, SGD ``θ ← θ − α_t g`` (for TBPTT only when some gradient has arrived), the
    projection ``‖W‖₂ ≤ radius`` (``radius ≤ 0``: none) of every replicate as soon as one leaves the
    set, and ``φ ← φ − α_t ∂φ``.  ``upper`` (``B``) is a certified bound on each ``‖W‖₂``: after an
    SVD it is the top singular value; an update adds ``α‖ΔW‖_F``; singular values are computed only
    when a bound exceeds ``radius``.

    Stops after the first step at which a replicate leaves the bounds of the trainer (non-finite
    loss, ``|s|``, ``‖g_t‖`` or, when learning, ``|θ|`` not below ``blowup``).  Returns the number
    of steps done; ``loss_out``, ``gnorm_out`` (``B``) hold the last step's ``ℓ`` and ``‖g_t‖``.
    """
    n, B, m = xs.shape
    k = s.shape[1]
    p = theta.shape[1]
    n_out = ys.shape[2]
    nk = n_out * k
    ncols = k + m + 1
    ahp = np.zeros(ncols + 2 * PAD)                   # â between zeros (elman_influence_and_credit)
    Dt = np.empty(k * k)                               # D_t, column-major (RTRL, TBPTT)
    scratch = np.empty(k * WIDTH)                      # elman_influence_and_credit's first rows of a block
    ah = ahp[PAD:PAD + ncols]                          # â
    ds, credit, dphi = np.empty(k), np.empty(k), np.empty(phi.shape[1])        # σ', c_t, ∂ℓ/∂φ
    z = np.empty(k)
    cds = np.empty(k)
    Ds = np.empty(k)
    sig = np.empty(k)                                  # tanh(z)
    bits = np.empty(k, dtype=np.int64)
    rk = np.sqrt(float(k))
    delta = np.empty(n_out)
    GN2 = np.zeros(B)                                  # fused SnAp-1 step: ‖g_t‖², ‖g_t‖² over W
    DW = np.zeros(B)
    part = np.empty((3, k))
    sums = np.empty(2)                                 # exact RTRL's fused update: ‖g_t‖², ‖g_t‖² over W
    ones, cg, va = np.ones(k), np.empty(k), np.empty(ncols)     # UORO's fused pass: d ≡ 1, c ≡ γ, v = α_u â
    g = np.empty(p)
    g2d = g.reshape((1, p))
    theta_order = np.array([[0, ncols, k, 1]])        # [W U b]: one full block (unit_major_to_theta)
    for i in range(n):
        t = t0 + i + 1
        out = False
        fused = mode != MODE_TBPTT and fuse and learn and update_now[i]
        for b in range(B):
            for r in range(k):
                ah[r] = s[b, r]
            for j in range(m):
                ah[k + j] = xs[i, b, j]
            ah[k + m] = 1.0
            th = theta[b]
            preactivation(th, ah, z)                               # z = A â
            if tanh:
                tanh_into(z, sig, bits)
            for r in range(k):
                sn = sig[r] if tanh else z[r]
                ds[r] = 1.0 - sn * sn if tanh else 1.0
                s[b, r] = sn
            loss = 0.0
            for o in range(n_out):
                yh = 0.0
                for r in range(k):
                    yh += phi[b, r * n_out + o] * s[b, r]
                d = (yh + phi[b, nk + o]) - ys[i, b, o]
                delta[o] = d
                loss += d * d
            loss_out[b] = 0.5 * loss
            for r in range(k):
                acc = 0.0
                for o in range(n_out):
                    acc += delta[o] * phi[b, r * n_out + o]
                credit[r] = acc
                for o in range(n_out):
                    dphi[r * n_out + o] = s[b, r] * delta[o]
            for o in range(n_out):
                dphi[nk + o] = delta[o]
            # the influence and the gradient estimate
            if mode == MODE_UORO:
                preactivation(th[:k * k], ut[b], z)                    # W s̃
                nD, aa, cc = 0.0, 0.0, 0.0
                for r in range(k):
                    Ds[r] = ds[r] * z[r]
                    nD += Ds[r] * Ds[r]
                for j in range(ncols):
                    aa += ah[j] * ah[j]
                for r in range(k):
                    cds[r] = nus[i, b, r] * ds[r]                      # ν G
                    cc += cds[r] * cds[r]
                nI = np.sqrt(aa * cc)
                nD = np.sqrt(nD)
                num0 = ufac[b] * np.sqrt(usq[b])
                r0 = np.sqrt(num0 / nD) if 0.0 < num0 < np.inf and 0.0 < nD < np.inf else 1.0
                r1 = np.sqrt(nI / rk) if 0.0 < nI < np.inf else 1.0
                for r in range(k):
                    ut[b, r] = r0 * Ds[r] + r1 * nus[i, b, r]
                fac = ufac[b] / r0
                urho[b, 0], urho[b, 1] = r0, r1
                if not fold[0] <= fac <= fold[1]:
                    for c in range(p):
                        X[b, c] *= fac
                    fac = 1.0
                ufac[b] = fac
                alpha_u = 1.0 / (r1 * fac)
                cs = 0.0
                for r in range(k):
                    cs += credit[r] * ut[b, r]
                gamma = cs * fac
                if fused:                                              # with the SGD update, one pass
                    for j in range(ncols):
                        va[j] = alpha_u * ah[j]
                    cg[:] = gamma
                    _fused_update_pass(X[b], th, ones, cds, va, cg, alphas[i], k, part, True)
                    GN2[b], DW[b], usq[b] = part[0].sum(), part[1].sum(), part[2].sum()
                else:
                    Xb = X[b]
                    for j in range(ncols):                             # θ̃ += (ν G) ⊗ â / (ρ₁ factor)
                        a = alpha_u * ah[j]
                        Xr = Xb[j * k:(j + 1) * k]
                        for r in range(k):
                            Xr[r] = Xr[r] + a * cds[r]
                    for c in range(p):
                        g[c] = gamma * Xb[c]
                    usq[b] = _sum_squares(Xb)
            elif mode == MODE_SNAP1 and fused:
                for r in range(k):
                    z[r] = ds[r] * theta[b, r * k + r]                 # D_t's diagonal
                _fused_update_pass(J2[b], th, z, ds, ah, credit, alphas[i], k, part, False)
                GN2[b], DW[b] = part[0].sum(), part[1].sum()
            elif mode == MODE_SNAP1:
                for r in range(k):
                    z[r] = ds[r] * theta[b, r * k + r]                 # D_t's diagonal
                for j in range(ncols):
                    for r in range(k):
                        c = j * k + r
                        e = jpos[c]
                        v = z[r] * J2[b, e] + ah[j] * ds[r]
                        J2[b, e] = v
                        g[c] = credit[r] * v
            elif mode == MODE_TBPTT and (t - 1) % tau == 0:
                J3[b] = 0.0                                            # J_{t−1} = 0: J_t = I_t
                _add_input_and_credit(J3[b], ds, ah, credit, g)
            else:
                for l in range(k):                                     # D_t = diag(σ') W, column-major
                    for r in range(k):
                        Dt[l * k + r] = ds[r] * th[l * k + r]
                bn = b + 1 if b + 1 < B else b
                prefetch(theta[bn])                                    # the next replicate's θ, and its
                elman_influence_and_credit(Dt, J3[b, :k].ravel(), J3[b, k], ds, ahp, credit,
                                           J3[bn, :k].ravel(), scratch)            # J_{t−1} in the product
                if fused:
                    credit_update(J3[b, k], th, alphas[i], k, ncols, sums)
                    GN2[b], DW[b] = sums[0], sums[1]
                else:
                    unit_major_to_theta(J3[b, k:], g2d, theta_order)           # g_t in θ's order
            if mode == MODE_TBPTT:
                for c in range(p):
                    gblock[b, c] += g[c]
                if t % tau == 0:
                    for c in range(p):
                        g[c] = gblock[b, c]
                        gblock[b, c] = 0.0
                else:
                    g[:] = 0.0
            loss = loss_out[b]
            gn = np.sqrt(GN2[b] if fused else _sum_squares(g))
            gnorm_out[b] = gn
            w_loss[b] += loss
            w_gnorm[b] += gn
            if record_grad:
                for c in range(p):
                    w_g[b, c] += g[c]
                for c in range(dphi.size):
                    w_gphi[b, c] += dphi[c]
            if learn:
                if not fused:                                      # fused: θ has moved already
                    for c in range(p):
                        g_acc[b, c] += g[c]
                for c in range(dphi.size):
                    gphi_acc[b, c] += dphi[c]
            for r in range(k):
                if not (-blowup < s[b, r] < blowup):
                    out = True
            if not (gn < blowup) or not np.isfinite(loss):
                out = True
        if learn and update_now[i]:
            alpha = alphas[i]
            moved = mode != MODE_TBPTT
            if not moved:
                for b in range(B):
                    for c in range(p):
                        if g_acc[b, c] != 0.0:
                            moved = True
            if moved:
                for b in range(B):
                    if fused:
                        dw = DW[b]
                    else:
                        dw = _sum_squares(g_acc[b, :k * k])
                        for c in range(p):
                            theta[b, c] += -(alpha * g_acc[b, c])
                            g_acc[b, c] = 0.0
                    upper[b] += alpha * np.sqrt(dw) * (1.0 + 1e-12)
                    if radius > 0.0 and upper[b] > radius:
                        upper[b] = min(_clip_singular(theta, b, k, radius), radius) * (1.0 + 1e-12)
                        out |= not _within(theta[b], blowup)
                    else:
                        out |= not _within(theta[b], blowup)
            if train_readout:
                for b in range(B):
                    for c in range(gphi_acc.shape[1]):
                        phi[b, c] += -(alpha * gphi_acc[b, c])
            for b in range(B):
                for c in range(gphi_acc.shape[1]):
                    gphi_acc[b, c] = 0.0
        if learn and i == 0:                       # later steps: θ is checked where it moves
            for b in range(B):
                out |= not _within(theta[b], blowup)
        if out:
            return i + 1
    return n


@_jit
def top_singular_values(W):
    """The largest singular value of each ``W[b]`` (``B × k × k`` -> ``B``), from the top eigenvalue of
    ``W[b]ᵀ W[b]`` (numpy's batched ``svd`` costs about 60 µs for eight ``8 × 8`` matrices, this about 40)."""
    out = np.empty(W.shape[0])
    for b in range(W.shape[0]):
        Wb = np.ascontiguousarray(W[b])
        out[b] = np.sqrt(max(np.linalg.eigvalsh(Wb.T @ Wb)[-1], 0.0))
    return out


@_jit
def add_gate_entries(out, e0, e, vals, r, i, W, l, q, R, has_w, has_r):
    """One level of a stacked gate's term of ``D_t`` at selected entries
    (:meth:`~simulations.jacobians.dynamics.DynamicsJacobian.entries`)::

        out[b, e_j] += vals[b, r, i_j] · (W[b, i_j, l_j] · R[b, l_j])       (j < len(i))

    the factors associated as there (``W · R`` first; either may be absent: ``has_w``, ``has_r``).
    ``out``: ``B × E``; ``e``: the entries (or, when empty, ``e0 + j``); ``vals``: ``B × levels × n``;
    ``i``, ``l``: ``len(i)``; ``W``: ``B_W × k × q`` and ``R``: ``B_R × q`` with ``B_W``, ``B_R``
    1 (shared) or ``B``.  ``q`` (when not empty): ``W`` is a masked matrix's free entries,
    ``B_W × 1 × nnz`` (:class:`~simulations.jacobians.dynamics.FreeEntries`), and
    ``W[b, i_j, l_j]`` is read as ``W[b, 0, q_j]``."""
    B, n = out.shape[0], i.shape[0]
    slice_, free = e.shape[0] == 0, q.shape[0] > 0
    for b in range(B):
        bw = b if W.shape[0] > 1 else 0
        br = b if R.shape[0] > 1 else 0
        for j in range(n):
            ij, lj = i[j], l[j]
            v = vals[b, r, ij]
            if has_w:
                w = W[bw, 0, q[j]] if free else W[bw, ij, lj]
                if has_r:
                    w = w * R[br, lj]
                v = v * w
            elif has_r:
                v = v * R[br, lj]
            out[b, e0 + j if slice_ else e[j]] += v
