"""Compiled kernels of sparse SnAp-n on the panel layout of its influence (THEORY.md §4, "SnAp-n").

A column class ``u`` (one unit of one gate) has ``r`` stored rows ``R_u`` and ``n`` parameter
columns that share them; its values are stored as one ``r × n`` *panel*, row-major (the ``n``
values of one row side by side; with ``B`` replicates each value is ``B`` numbers, replicates last).
The recursion's product at the stored entries is then, row by row of the panel,

    (D J̃)[R_u[a], :] = Σ_{l : D[R_u[a], R_u[l]] ≠ 0} D[R_u[a], R_u[l]] · J̃[R_u[l], :]

a sum over the row's structural pairs ``t`` (CSR order: ``rowptr``) of a scalar times a
contiguous row of ``n`` numbers.  :func:`panel_pair_sums` keeps a whole output row (up to 64
numbers) in eight 8-wide vector accumulators while the pairs stream past, so each pair costs one
vector FMA per 8 numbers with its operand loaded from L1.  numba's vectoriser does not produce this
loop (with ``reassoc`` it vectorises over the pairs, with gathers; without it the row stays scalar),
so the row is written in LLVM IR (:func:`_row_kernel`).  A row whose length is not a multiple of 8
takes its last vector at ``n − 8``, overlapping the previous one (the overlapped numbers are
computed twice, identically); a row shorter than 8 is summed in scalar code.  Every sum over a
row's pairs runs in CSR order, one fused multiply-add per pair.

References (numpy): :func:`panel_pair_sums_reference`, :func:`panel_gradient_reference`.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_jit = numba.njit(cache=True, nogil=True)
_LANES = 8                      # doubles per vector register (AVX-512; LLVM splits it on narrower targets)
_MAX_CHUNKS = 8                 # vectors held per pass over a row's pairs


def _row_kernel(nc: int):
    """An intrinsic summing one panel row's pairs into ``nc`` vectors of 8 numbers::

        out[ob + j] = Σ_{t0 ≤ t < t1} D[tpd[t]] · J[soff[t]·scale + j]

    for ``j`` in the chunks ``j0 + 8c`` (``c < nc − 1``) and ``jlast`` (the last chunk).  ``D``,
    ``J``, ``out``: 1-D contiguous float64; ``tpd``, ``soff``: 1-D contiguous intp."""

    @intrinsic
    def row(typingctx, D, tpd, soff, scale, t0, t1, j0, jlast, J, out, ob):
        sig = types.void(D, tpd, soff, scale, t0, t1, j0, jlast, J, out, ob)

        def codegen(context, builder, signature, args):
            D_, tpd_, soff_, scale_, t0_, t1_, j0_, jlast_, J_, out_, ob_ = args
            a = signature.args
            Dd = context.make_array(a[0])(context, builder, D_).data
            Td = context.make_array(a[1])(context, builder, tpd_).data
            Sd = context.make_array(a[2])(context, builder, soff_).data
            Jd = context.make_array(a[8])(context, builder, J_).data
            Od = context.make_array(a[9])(context, builder, out_).data
            f64, i64, i32 = ir.DoubleType(), ir.IntType(64), ir.IntType(32)
            vt = ir.VectorType(f64, _LANES)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 f"llvm.fma.v{_LANES}f64")
            offsets = [builder.add(j0_, ir.Constant(i64, _LANES * c)) for c in range(nc - 1)] + [jlast_]
            acc = [cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * _LANES)) for _ in range(nc)]
            with cgutils.for_range_slice(builder, t0_, t1_, ir.Constant(i64, 1), inc=True) as (t, _):
                dv = builder.load(builder.gep(Dd, [builder.load(builder.gep(Td, [t]))]))
                dvv = builder.insert_element(ir.Constant(vt, ir.Undefined), dv, ir.Constant(i32, 0))
                dvv = builder.shuffle_vector(dvv, ir.Constant(vt, ir.Undefined),
                                             ir.Constant(ir.VectorType(i32, _LANES), [0] * _LANES))
                s = builder.mul(builder.load(builder.gep(Sd, [t])), scale_)
                for c in range(nc):
                    x = builder.load(builder.bitcast(builder.gep(Jd, [builder.add(s, offsets[c])]), vt.as_pointer()),
                                     align=8)
                    builder.store(builder.call(fma, [dvv, x, builder.load(acc[c])]), acc[c])
            for c in range(nc):
                builder.store(builder.load(acc[c]),
                              builder.bitcast(builder.gep(Od, [builder.add(ob_, offsets[c])]), vt.as_pointer()), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return row


_row1, _row2, _row3, _row4, _row5, _row6, _row7, _row8 = (_row_kernel(nc) for nc in range(1, _MAX_CHUNKS + 1))


@_jit
def _vector_row(D, tpd, soff, scale, t0, t1, J, out, ob, n):
    """One panel row of ``n ≥ 8`` numbers (:func:`_row_kernel`), 64 at a time."""
    j0 = 0
    while n - j0 > 64:
        _row8(D, tpd, soff, scale, t0, t1, j0, j0 + 56, J, out, ob)
        j0 += 64
    nc = (n - j0 + 7) // 8
    last = n - 8
    if nc == 1:
        _row1(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 2:
        _row2(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 3:
        _row3(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 4:
        _row4(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 5:
        _row5(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 6:
        _row6(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    elif nc == 7:
        _row7(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)
    else:
        _row8(D, tpd, soff, scale, t0, t1, j0, last, J, out, ob)


@_jit
def panel_pair_sums(D, tpd, soff, rowptr, obase, width, rbeg, J):
    """``J̃ ← (D_t J̃)`` at the stored entries of a panel-layout influence, in place (THEORY.md §4,
    SnAp-n).

    Output row ``R`` (one stored row of one column class) is ``width[R]`` entries from
    ``obase[R]``; its pairs are ``t = rowptr[R] … rowptr[R+1]−1``, each ``D[tpd[t]]`` times the
    ``width[R]`` entries from ``soff[t]``, all in the same class's panel::

        J[obase[R] + i, b] ← Σ_t D[tpd[t], b] · J[soff[t] + i, b]

    A class's pairs read only its own panel (its rows ``R = rbeg[v] … rbeg[v+1]−1``, consecutive in
    ``J``), so each panel is computed into a scratch panel that stays in L1 and then copied back.
    ``D``: ``|d| × B`` or ``|d| × 1`` (shared by the replicates); ``J``: ``S × B`` (C-contiguous).
    With one replicate, or ``D`` shared, a row's ``width·B`` numbers are contiguous and summed by
    the vector kernel; otherwise by a loop over the replicates.
    """
    B = J.shape[1]
    Jf = J.reshape(J.size)
    most = 0
    for v in range(rbeg.shape[0] - 1):
        most = max(most, (rbeg[v + 1] - rbeg[v]) * width[rbeg[v]])
    panel = np.empty(most * B)
    shared = B == 1 or D.shape[1] == 1
    Df = np.ascontiguousarray(D[:, 0])
    for v in range(rbeg.shape[0] - 1):
        first = obase[rbeg[v]] * B
        for R in range(rbeg[v], rbeg[v + 1]):
            n, ob, t0, t1 = width[R] * B, obase[R] * B - first, rowptr[R], rowptr[R + 1]
            if shared and n >= _LANES:
                _vector_row(Df, tpd, soff, B, t0, t1, Jf, panel, ob, n)
            elif shared:
                for i in range(n):
                    s = 0.0
                    for t in range(t0, t1):
                        s += Df[tpd[t]] * Jf[soff[t] * B + i]
                    panel[ob + i] = s
            else:
                for i in range(width[R]):
                    for b in range(B):
                        s = 0.0
                        for t in range(t0, t1):
                            s += D[tpd[t], b] * J[soff[t] + i, b]
                        panel[ob + i * B + b] = s
        size = (obase[rbeg[v + 1] - 1] + width[rbeg[v + 1] - 1]) * B - first
        Jf[first:first + size] = panel[:size]


def panel_pair_sums_reference(D, tpd, soff, rowptr, obase, width, rbeg, J):
    """numpy reference of :func:`panel_pair_sums` (the same products, summed by ``np.add.at``)."""
    counts = np.diff(rowptr)
    row_of_pair = np.repeat(np.arange(obase.size), counts)
    n = width[row_of_pair]
    pair = np.repeat(np.arange(tpd.size), n)
    i = np.arange(pair.size) - np.repeat(np.cumsum(n) - n, n)
    out = np.zeros_like(J)
    np.add.at(out, obase[row_of_pair][pair] + i, D[tpd[pair]] * J[soff[pair] + i])
    J[...] = out


@_jit
def panel_gradient(credit, J, rbeg, obase, srow, cbeg, ccols, g):
    """``ĝ_t = c_t J̃_t`` on a panel-layout influence (THEORY.md §2.1)::

        g[b, ccols[cbeg[v] + i]] = Σ_R credit[b, srow[R]] · J[obase[R] + i, b]

    over the stored rows ``R = rbeg[v] … rbeg[v+1]−1`` of the ``v``-th class with columns (in row
    order), ``i`` < its ``cbeg[v+1] − cbeg[v]`` columns.  ``credit``: ``B × k``; ``J``: ``S × B``;
    ``g``: ``B × p`` (columns outside every class are left untouched)."""
    B = J.shape[1]
    Jf = J.reshape(J.size)
    acc = np.empty((np.max(np.diff(cbeg)) if cbeg.size > 1 else 0) * B)
    for v in range(rbeg.shape[0] - 1):
        n = cbeg[v + 1] - cbeg[v]
        m = n * B
        for i in range(m):
            acc[i] = 0.0
        for R in range(rbeg[v], rbeg[v + 1]):
            row = Jf[obase[R] * B:obase[R] * B + m]
            if B == 1:
                cr = credit[0, srow[R]]
                for i in range(m):
                    acc[i] += cr * row[i]
            else:
                for i in range(n):
                    for b in range(B):
                        acc[i * B + b] += credit[b, srow[R]] * row[i * B + b]
        for i in range(n):
            c = ccols[cbeg[v] + i]
            for b in range(B):
                g[b, c] = acc[i * B + b]


def panel_gradient_reference(credit, J, rbeg, obase, srow, cbeg, ccols, g):
    """numpy reference of :func:`panel_gradient`."""
    for v in range(rbeg.size - 1):
        R = np.arange(rbeg[v], rbeg[v + 1])
        n = cbeg[v + 1] - cbeg[v]
        P = J[obase[R][:, None] + np.arange(n)]                     # r × n × B
        g[:, ccols[cbeg[v]:cbeg[v + 1]]] = np.einsum("rb,rnb->bn", credit[:, srow[R]].T, P)
