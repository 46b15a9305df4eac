"""Compiled kernels of sparse SnAp-n on the panel layout of its influence (THEORY.md §4, "SnAp-n").

A column class ``u`` (one unit of one gate) has ``r`` stored rows ``R_u`` and parameter columns
that share them; the classes with the same rows (the gates of one unit, typically) share their
pairs, and their values are stored together as one ``r × n`` *panel*, row-major (``n``: their
columns; the ``n`` values of one row side by side; with ``B`` replicates each value is ``B``
numbers, replicates last).  The recursion's product at the stored entries is then, row by row of
the panel,

    (D J̃)[R_u[a], :] = Σ_{l : D[R_u[a], R_u[l]] ≠ 0} D[R_u[a], R_u[l]] · J̃[R_u[l], :]

a sum over the row's structural pairs ``t`` (CSR order: ``rowptr``) of a scalar times a
contiguous row of ``n`` numbers.  The pairs read the panel's old rows, so each panel is first
copied into a scratch panel whose rows are padded to whole vectors of ``L`` numbers (``L`` =
:data:`_LANES`: 8 with AVX-512, else 4; aligned loads),
while the next panel is requested from memory (with one replicate: a share of it before each row's
sums, into L2, which the panel step measured 2–5% faster than requesting it all during the copy),
and the new rows are written into the panel's place.
The vector kernel (:func:`_rows`, :func:`_rows_step`) keeps up to 96 numbers of an output row (24 with AVX2) in
``L``-wide vector accumulators while the row's pairs stream past, so each pair costs one broadcast and
one vector FMA per ``L`` numbers with its operand loaded from L1 or L2; a wider row takes several
passes.  numba's vectoriser does not produce this loop (with ``reassoc`` it vectorises over the
pairs, with gathers; without it the row stays scalar), so it is written in LLVM IR
(:func:`_emit_rows`).  A pass whose length is not a multiple of ``L`` takes its last vector ``L`` numbers
before its end, overlapping the previous one (the overlapped numbers are computed twice,
identically); a row shorter than ``L`` is summed in scalar code.  A row's pairs are summed with one
fused multiply-add each, in a fixed order.  With one replicate, the gradient's ``c_R · row`` is
taken from each row while it is in registers (:func:`_rows_step`), and the step's ``+ I_t`` (with
its part of the gradient) once the panel's rows are stored (:func:`_add_injection`).

References (numpy): :func:`panel_pair_sums_reference`, :func:`panel_gradient_reference`.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .aligned import aligned_start

_jit = numba.njit(cache=True, nogil=True)


def _vector_shape() -> tuple[int, int]:
    """``(lanes, chunks)``: doubles per vector register of the CPU numba compiles for, and vectors
    held per pass over a row's pairs, so that a pass's accumulators (:func:`_emit_rows`: ``S·nc``
    for the sums and ``nc`` for the gradient) stay in registers: 8 and 12 with AVX-512 (32
    registers of 8; from 8 vectors on one set of sums, so at most 24 accumulators), else 4 and 6
    (AVX2: 16 registers of 4; 8-wide vectors there take two registers each and a pass of 8 spilled
    its accumulators: sparse SnAp-2's step took 1.2–1.4× as long on a Zen 3 CPU).  Passes of 12
    vectors rather than 8 with AVX-512: fewer passes over each row's pairs, each pair's index and
    ``D`` value loaded fewer times (GRU ``k = 128``, density 0.1, 140 numbers a row on average: two
    passes instead of three); measured on an Intel Xeon (AVX-512, three alternations of 11 pairs):
    SnAp-2's FLOP rate at GRU ``k = 64`` 0.49 → 0.51–0.53, ``k = 128`` 0.24–0.25 → 0.26–0.27, and
    its step against exact RTRL's 0.33–0.37 → 0.32 (10 vectors: about the same)."""
    from llvmlite import binding
    from numba.core import config
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else binding.get_host_cpu_features().flatten()
    return (8, 12) if "+avx512f" in features.split(",") else (4, 6)


_LANES, _MAX_CHUNKS = _vector_shape()        # doubles per vector; vectors per pass over a row's pairs


def _i64(builder, x):
    """``x`` (an integer of at most 64 bits) as a signed 64-bit integer."""
    return x if x.type.width == 64 else builder.sext(x, ir.IntType(64))


def _splat(builder, x, vt):
    """The scalar ``x`` in every lane of a vector of type ``vt``."""
    i32 = ir.IntType(32)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(i32, 0))
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count))


def _emit_rows(context, builder, signature, args, nc: int, step: bool) -> None:
    """LLVM IR of :func:`_rows` (``step``: of :func:`_rows_step`) for ``nc`` vectors per row (see there)."""
    S = 4 if nc <= 2 else 2 if nc < 8 else 1
    D_, tpd_, sidx_, rowptr_, R0_, R1_, j0_, jlast_, X_, x0_, xs_, out_, ob_, rs_ = args[:14]
    a = signature.args
    Dd, Td, Sd, Pd = (context.make_array(a[i])(context, builder, x).data
                      for i, x in ((0, D_), (1, tpd_), (2, sidx_), (3, rowptr_)))
    Xd = context.make_array(a[8])(context, builder, X_).data
    Od = context.make_array(a[11])(context, builder, out_).data
    f64, i64 = ir.DoubleType(), ir.IntType(64)
    vt = ir.VectorType(f64, _LANES)
    vp = vt.as_pointer()
    zero = ir.Constant(vt, [0.0] * _LANES)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{_LANES}f64")
    acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nc)] for _ in range(S)]

    def load(ptr, i, conv=False):
        x = builder.load(builder.gep(ptr, [i]))
        return _i64(builder, x) if conv else x

    def broadcast(x):
        return _splat(builder, x, vt)

    last = builder.sub(jlast_, j0_)                  # the last chunk's place after the first

    def chunks(row):
        """Pointers to the chunks of the row whose first chunk is at ``row`` (constant displacements
        but the last: fewer registers)."""
        return [builder.bitcast(builder.gep(row, [ir.Constant(i64, _LANES * c) if c < nc - 1 else last]), vp)
                for c in range(nc)]

    def pair(t, sets):
        dvv = broadcast(load(Dd, load(Td, t, True)))
        row = builder.gep(Xd, [builder.add(builder.add(x0_, j0_), builder.mul(load(Sd, t, True), xs_))])
        for c, ptr in enumerate(chunks(row)):
            x = builder.load(ptr, align=8)
            builder.store(builder.call(fma, [dvv, x, builder.load(sets[c])]), sets[c])

    if step:
        credit_, srow_, G_, share_, ahead_ = args[15:]
        Cd, Rd, Gd = (context.make_array(a[i])(context, builder, x).data
                      for i, x in ((15, credit_), (16, srow_), (17, G_)))
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                  "llvm.prefetch.p0")
        gacc = [cgutils.alloca_once_value(builder, zero) for _ in range(nc)]
        for x in gacc:
            builder.store(zero, x)

    with cgutils.for_range_slice(builder, R0_, R1_, ir.Constant(i64, 1), inc=True) as (R, _):
        if step:                                       # this row's share of the next panel, asked of L2
            p0 = builder.add(ahead_, builder.mul(builder.sub(R, R0_), share_))
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), share_, ir.Constant(i64, _LANES),
                                         inc=True) as (f, _):
                builder.call(prefetch, [builder.bitcast(builder.gep(Od, [builder.add(p0, f)]), i8p),
                                        ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)])
        for sets in acc:
            for x in sets:
                builder.store(zero, x)
        t0 = builder.load(builder.gep(Pd, [R]))
        t1 = builder.load(builder.gep(Pd, [builder.add(R, ir.Constant(i64, 1))]))
        whole = builder.add(t0, builder.mul(builder.sdiv(builder.sub(t1, t0), ir.Constant(i64, S)), ir.Constant(i64, S)))
        with cgutils.for_range_slice(builder, t0, whole, ir.Constant(i64, S), inc=True) as (t, _):
            for k in range(S):
                pair(builder.add(t, ir.Constant(i64, k)), acc[k])
        with cgutils.for_range_slice(builder, whole, t1, ir.Constant(i64, 1), inc=True) as (t, _):
            pair(t, acc[0])
        base = builder.add(ob_, builder.mul(builder.sub(R, R0_), rs_))
        where = chunks(builder.gep(Od, [builder.add(base, j0_)]))
        cr = broadcast(load(Cd, load(Rd, R, True))) if step else None
        for c in range(nc):
            total = builder.load(acc[0][c])
            for k in range(1, S):
                total = builder.fadd(total, builder.load(acc[k][c]))
            builder.store(total, where[c], align=8)
            if step:                                   # ĝ += c_R (D J̃)_R from the registers
                builder.store(builder.call(fma, [cr, total, builder.load(gacc[c])]), gacc[c])
    if step:
        for c, ptr in enumerate(chunks(builder.gep(Gd, [j0_]))):
            builder.store(builder.load(gacc[c]), ptr, align=8)


def _switch_on_chunks(context, builder, signature, args, nc_, step):
    """One copy of :func:`_emit_rows` per number of vectors ``nc`` (the accumulators must be
    registers), chosen by a switch on ``nc_``."""
    done = builder.append_basic_block("rows.done")
    switch = builder.switch(nc_, done)
    for nc_value in range(1, _MAX_CHUNKS + 1):
        block = builder.append_basic_block(f"rows.{nc_value}")
        switch.add_case(ir.Constant(nc_.type, nc_value), block)
        builder.position_at_end(block)
        _emit_rows(context, builder, signature, args, nc_value, step)
        builder.branch(done)
    builder.position_at_end(done)
    return context.get_dummy_value()


@intrinsic
def _rows(typingctx, D, tpd, sidx, rowptr, R0, R1, j0, jlast, X, x0, xs, out, ob, rs, nc):
    """Sum the pairs of the panel rows ``R0 … R1−1`` (one class: equal widths) into ``nc ≤ _MAX_CHUNKS``
    vectors of ``_LANES`` numbers per row::

        out[ob + (R − R0)·rs + j] = Σ_{rowptr[R] ≤ t < rowptr[R+1]} D[tpd[t]] · X[x0 + sidx[t]·xs + j]

    for ``j`` in the chunks ``j0 + _LANES·c`` (``c < nc − 1``) and ``jlast`` (the last chunk).  ``D``,
    ``X``, ``out``: 1-D contiguous float64; ``rowptr``: 1-D contiguous intp; ``tpd``, ``sidx``: 1-D
    contiguous int32 (half the bytes of the index stream) or intp.
    One loop per ``nc`` (the accumulators must be registers), chosen by a switch.

    A vector FMA waits for the previous one on the same accumulator (4 cycles), so a row's pairs
    are split round-robin over ``S`` sets of accumulators (``S = 4`` for one or two vectors, 2 for
    three to seven, 1 from eight on, which are eight independent sums already), each summed in
    order and the sets added at the end, ``((a₀ + a₁) + a₂) + a₃``: a fixed order of the same
    products."""
    sig = types.void(D, tpd, sidx, rowptr, R0, R1, j0, jlast, X, x0, xs, out, ob, rs, nc)

    def codegen(context, builder, signature, args):
        return _switch_on_chunks(context, builder, signature, args, args[14], False)

    return sig, codegen


@intrinsic
def _rows_step(typingctx, D, tpd, sidx, rowptr, R0, R1, j0, jlast, X, x0, xs, out, ob, rs, nc, credit, srow, G, share,
               ahead):
    """:func:`_rows` (one replicate), and the products' part of ``ĝ`` from the row's registers::

        G[j] = Σ_R credit[srow[R]] · out[ob + (R − R0)·rs + j]     (rows in order, one FMA each)

    for ``j`` in the chunks of :func:`_rows` (``+ I_t`` and its part of ``ĝ`` come after the
    panel: :func:`_add_injection`).  Before its sums, row ``R`` asks L2 for ``share`` numbers of
    ``out`` from ``ahead + (R − R0)·share`` (a 64-byte line per ``_LANES``; ``share = 0``: none):
    the next panel, requested a little at a time while this one is computed."""
    sig = types.void(D, tpd, sidx, rowptr, R0, R1, j0, jlast, X, x0, xs, out, ob, rs, nc, credit, srow, G, share,
                     ahead)

    def codegen(context, builder, signature, args):
        return _switch_on_chunks(context, builder, signature, args, args[14], True)

    return sig, codegen


@intrinsic
def _copy_rows(typingctx, src, s0, ss, dst, d0, ds, r, n, ahead):
    """Copy ``r`` rows of ``n ≥ _LANES`` numbers, ``dst[d0 + a·ds + j] = src[s0 + a·ss + j]``, a vector of ``_LANES`` at
    a time (the last one at ``n − _LANES``, overlapping the one before), and ask the cache for the
    ``src`` numbers ``ahead`` further on (the next panel, read while this one is computed; ``ahead
    = 0``: the lines being copied, nothing more):
    ``src[s0 + ahead + a·ss + j]`` for ``j`` at every ``_LANES``-th number (a 64-byte line once or twice; a prefetch past
    the end of ``src`` does nothing: it never faults)."""
    sig = types.void(src, s0, ss, dst, d0, ds, r, n, ahead)

    def codegen(context, builder, signature, args):
        src_, s0_, ss_, dst_, d0_, ds_, r_, n_, ahead_ = args
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                  "llvm.prefetch.p0")
        Sd = context.make_array(signature.args[0])(context, builder, src_).data
        Dd = context.make_array(signature.args[3])(context, builder, dst_).data
        i64 = ir.IntType(64)
        vp = ir.VectorType(ir.DoubleType(), _LANES).as_pointer()
        last = builder.sub(n_, ir.Constant(i64, _LANES))

        def move(so, do):
            v = builder.load(builder.bitcast(builder.gep(Sd, [so]), vp), align=8)
            builder.store(v, builder.bitcast(builder.gep(Dd, [do]), vp), align=8)

        with cgutils.for_range(builder, r_) as loop:
            so = builder.add(s0_, builder.mul(loop.index, ss_))
            do = builder.add(d0_, builder.mul(loop.index, ds_))
            lanes = ir.Constant(i64, _LANES)
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), last, lanes, inc=True) as (j, _):
                move(builder.add(so, j), builder.add(do, j))
                ahead = builder.gep(Sd, [builder.add(builder.add(so, ahead_), j)])
                builder.call(prefetch, [builder.bitcast(ahead, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                        ir.Constant(i32, 1)])
            move(builder.add(so, last), builder.add(do, last))
        return context.get_dummy_value()

    return sig, codegen


_WIDE = _LANES * _MAX_CHUNKS                 # numbers per pass over a row's pairs


@_jit
def _pass_width(left):
    """The numbers of the next pass over a row's pairs when ``left ≥ _LANES`` remain: at most
    ``_WIDE``, and leaving none or at least ``_LANES`` (so that no pass reaches back into the one
    before it)."""
    if left <= _WIDE:
        return left
    return _WIDE if left - _WIDE >= _LANES else _WIDE - _LANES


@_jit
def _vector_rows(D, tpd, sidx, rowptr, R0, R1, X, x0, xs, out, ob, n):
    """The panel rows ``R0 … R1−1`` of ``n ≥ _LANES`` numbers each (:func:`_rows`), ``_WIDE`` at a time."""
    j0 = 0
    while j0 < n:
        w = _pass_width(n - j0)
        _rows(D, tpd, sidx, rowptr, R0, R1, j0, j0 + w - _LANES, X, x0, xs, out, ob, n, (w + _LANES - 1) // _LANES)
        j0 += w


@_jit
def _vector_rows_step(D, tpd, sidx, rowptr, R0, R1, X, x0, xs, out, ob, n, credit, srow, G, share, ahead):
    """:func:`_vector_rows` with the products' part of ``ĝ`` into ``G``, the first pass asking L2
    for ``share`` numbers a row from ``ahead`` (:func:`_rows_step`)."""
    j0 = 0
    while j0 < n:
        w = _pass_width(n - j0)
        _rows_step(D, tpd, sidx, rowptr, R0, R1, j0, j0 + w - _LANES, X, x0, xs, out, ob, n,
                   (w + _LANES - 1) // _LANES, credit, srow, G, share if j0 == 0 else 0, ahead)
        j0 += w


@_jit
def _add_injection(R0, R1, runs, rruns, islot, igate, isrc, gv, av, credit, srow, Jf, ob, n, G, E):
    """The panel's ``+ I_t`` once its products are stored (rows ``R0 … R1−1`` of ``n`` numbers from
    ``ob`` in ``Jf``), and its part of ``ĝ``: for each of row ``R``'s entries ``q``, in runs of
    consecutive slots (run ``u = rruns[R] … rruns[R+1]−1``: ``q = runs[u] … runs[u+1]−1``, its
    slots ``islot[runs[u]] + 0, 1, …``), ``e = fl(gv[igate[q]] · av[isrc[q]])``::

        Jf[islot[q]] += e,        G[islot[q] − ob − (R − R0)·n] += fl(credit[srow[R]] · e)

    The update rounds as ``update`` does, ``fl(products + e)``; ``ĝ`` as ``Σ_R c_R (D J̃)_R``
    (:func:`_rows_step`) plus ``Σ_R c_R e_R``, the same sum split in two.  Apart from the row
    kernel, whose registers hold whole vectors: a scalar added to a number just stored by a
    vector, then read back as part of a vector, stalls the store queue (GRU ``k = 128``, density
    0.1, one replicate: 150 µs of a 1.56 ms step).  A run's products are formed first, into
    ``E``, then added to ``Jf`` and ``G`` in a loop over contiguous numbers (GRU ``k = 128``,
    density 0.1: 17 714 entries in 128 runs; all of a step's, timed alone, 134 → 86 µs)."""
    for R in range(R0, R1):
        c = credit[srow[R]]
        base = ob + (R - R0) * n
        for u in range(rruns[R], rruns[R + 1]):
            q0, s0 = runs[u], islot[runs[u]]
            m = runs[u + 1] - q0
            for t in range(m):
                E[t] = gv[igate[q0 + t]] * av[isrc[q0 + t]]
            row, part = Jf[s0:s0 + m], G[s0 - base:s0 - base + m]
            for t in range(m):
                row[t] += E[t]
                part[t] += c * E[t]


@_jit
def _load_panel(v, obase, width, rbeg, Jf, B, X, x0, ahead=True):
    """Copy the ``v``-th panel (``r`` rows of ``n = width·B`` numbers from ``first`` in ``Jf``,
    ``J``'s flat view) into ``X`` from ``x0``, each row padded to ``xs``, a multiple of ``_LANES`` numbers, so
    that the rows the pairs read start at whole vectors, and (``ahead``) ask the cache for the next
    panel meanwhile (:func:`_copy_rows`); returns ``(first, n, xs)``."""
    R0, R1 = rbeg[v], rbeg[v + 1]
    first = obase[R0] * B
    n = width[R0] * B                                # the panel's rows have one width
    xs = (n + _LANES - 1) // _LANES * _LANES
    if n >= _LANES:
        _copy_rows(Jf, first, n, X, x0, xs, R1 - R0, n, (R1 - R0) * n if ahead else 0)
    else:
        for a in range(R1 - R0):
            for i in range(n):
                X[x0 + a * xs + i] = Jf[first + a * n + i]
    return first, n, xs


@_jit
def _replicate_products(v, DT, tpd, sidx, rowptr, obase, width, rbeg, Jf, B, X, x0, Y):
    """The ``v``-th panel of ``(D_t J̃)`` with one ``D_t`` per replicate (``DT``: ``B × |d|``) and rows
    of at least 8 values: replicate by replicate, its values copied out of ``Jf`` (replicates
    last) into ``X`` (rows padded to whole vectors), summed by the vector kernel into ``Y`` and
    copied back."""
    R0, R1 = rbeg[v], rbeg[v + 1]
    w = width[R0]
    xs = (w + _LANES - 1) // _LANES * _LANES
    first = obase[R0] * B
    for b in range(B):
        for a in range(R1 - R0):
            for i in range(w):
                X[x0 + a * xs + i] = Jf[first + (a * w + i) * B + b]
        _vector_rows(DT[b], tpd, sidx, rowptr, R0, R1, X, x0, xs, Y, 0, w)
        for j in range((R1 - R0) * w):
            Jf[first + j * B + b] = Y[j]


@_jit
def _class_products(v, Df, D, DT, tpd, sidx, rowptr, obase, width, rbeg, Jf, B, X, x0, Y, shared):
    """The ``v``-th panel of ``(D_t J̃)``, in place in ``Jf``, from its copy in ``X``
    (:func:`_load_panel`; with one ``D_t`` per replicate and rows of ``_LANES`` or more,
    :func:`_replicate_products`)."""
    R0, R1 = rbeg[v], rbeg[v + 1]
    w = width[R0]
    if not shared and w >= _LANES:
        _replicate_products(v, DT, tpd, sidx, rowptr, obase, width, rbeg, Jf, B, X, x0, Y)
        return
    first, n, xs = _load_panel(v, obase, width, rbeg, Jf, B, X, x0)
    if shared and n >= _LANES:
        _vector_rows(Df, tpd, sidx, rowptr, R0, R1, X, x0, xs, Jf, first, n)
    elif shared:
        for R in range(R0, R1):
            ob, t0, t1 = first + (R - R0) * n, rowptr[R], rowptr[R + 1]
            for i in range(n):
                s = 0.0
                for t in range(t0, t1):
                    s += Df[tpd[t]] * X[x0 + sidx[t] * xs + i]
                Jf[ob + i] = s
    else:
        for R in range(R0, R1):
            ob, t0, t1 = first + (R - R0) * n, rowptr[R], rowptr[R + 1]
            for i in range(w):
                for b in range(B):
                    s = 0.0
                    for t in range(t0, t1):
                        s += D[tpd[t], b] * X[x0 + sidx[t] * xs + i * B + b]
                    Jf[ob + i * B + b] = s


@_jit
def _scratch(width, rbeg, B):
    """An aligned scratch for the largest panel, rows padded to whole vectors; returns it
    and its aligned start."""
    most = 0
    for v in range(rbeg.shape[0] - 1):
        most = max(most, (rbeg[v + 1] - rbeg[v]) * ((width[rbeg[v]] * B + _LANES - 1) // _LANES * _LANES))
    X = np.empty(most + _LANES)
    return X, aligned_start(X)


@_jit
def _panel_buffers(D, J, width, rbeg):
    """What a pass over the panels works with: ``B``, ``J`` flat, the aligned scratch and its
    start (:func:`_scratch`), whether ``D`` is one for all replicates, ``D``'s first column and its
    transpose (contiguous), and the per-replicate buffer (empty when shared)."""
    B = J.shape[1]
    X, x0 = _scratch(width, rbeg, B)
    shared = B == 1 or D.shape[1] == 1
    return (B, J.reshape(J.size), X, x0, shared, np.ascontiguousarray(D[:, 0]), np.ascontiguousarray(D.T),
            np.empty(0 if shared else X.size))


@_jit
def panel_pair_sums(D, tpd, sidx, rowptr, obase, width, rbeg, J):
    """``J̃ ← (D_t J̃)`` at the stored entries of a panel-layout influence, in place (THEORY.md §4,
    SnAp-n).

    Output row ``R`` (one stored row of panel ``v``) is ``width[R]`` entries from
    ``obase[R]``; its pairs are ``t = rowptr[R] … rowptr[R+1]−1``, each ``D[tpd[t]]`` times the
    ``width[R]`` entries of the panel's row ``sidx[t]`` (its ``sidx[t]``-th stored row, from
    ``obase[rbeg[v] + sidx[t]]``), all in the same panel::

        J[obase[R] + i, b] ← Σ_t D[tpd[t], b] · J[obase[rbeg[v] + sidx[t]] + i, b]

    A panel's pairs read only the panel (its rows ``R = rbeg[v] … rbeg[v+1]−1``, consecutive in
    ``J``), so each panel is copied into a scratch panel that stays in L1, its rows padded to whole
    vectors, and computed from there into its place.  ``D``: ``|d| × B`` or ``|d| × 1`` (shared by
    the replicates); ``J``: ``S × B`` (C-contiguous).  With one replicate, or ``D`` shared, a row's
    ``width·B`` numbers are contiguous and summed by the vector kernel; otherwise by a loop over the
    replicates.
    """
    B, Jf, X, x0, shared, Df, DT, Y = _panel_buffers(D, J, width, rbeg)
    for v in range(rbeg.shape[0] - 1):
        if rbeg[v + 1] > rbeg[v]:                    # (a panel of columns that reach no row has none)
            _class_products(v, Df, D, DT, tpd, sidx, rowptr, obase, width, rbeg, Jf, B, X, x0, Y, shared)


@_jit
def panel_step(D, tpd, sidx, rowptr, obase, width, rbeg, J, islot, igate, isrc, iptr, runs, rruns, gv, av, credit, srow,
               cbeg, ccols, g):
    """One SnAp-n step on a panel-layout influence, panel by panel while the panel is in L1
    (THEORY.md §2.1, §4)::

        J̃ ← (D_t J̃) ⊙ M + I_t,        ĝ = c_t J̃

    ``(D_t J̃)`` as in :func:`panel_pair_sums`; ``I_t``'s structural nonzeros ``q`` of the ``v``-th
    panel (``iptr[v] … iptr[v+1]−1``; of stored row ``R``: the runs ``rruns[R] … rruns[R+1]−1`` of
    consecutive slots, run ``u`` the nonzeros ``runs[u] … runs[u+1]−1``) as products of
    their factors, ``J[islot[q], b] += gv[b, igate[q]] · av[b, isrc[q]]`` (``gv``: the gate
    Jacobians' values, ``av``: the blocks' inputs, one row broadcast over the replicates); then
    ``ĝ`` as in :func:`panel_gradient`.  ``g``: ``B × p``.  With one replicate and rows of at least
    ``_LANES`` numbers, ``ĝ``'s products are summed row by row while the row's vectors are in
    registers (:func:`_rows_step`), then ``+ I_t`` and its part of ``ĝ`` are added
    (:func:`_add_injection`)."""
    B, Jf, X, x0, shared, Df, DT, Y = _panel_buffers(D, J, width, rbeg)
    acc = np.empty((np.max(np.diff(cbeg)) if cbeg.size > 1 else 0) * B + _LANES)
    E = np.empty(acc.size)                           # one run of I_t's products (a run lies in one panel row)
    g_each, a_each = int(gv.shape[0] > 1), int(av.shape[0] > 1)     # 0: one row for every replicate
    for v in range(rbeg.shape[0] - 1):
        R0, R1 = rbeg[v], rbeg[v + 1]
        if R1 == R0:                                 # columns that reach no row: ĝ = 0 there
            for i in range(cbeg[v], cbeg[v + 1]):
                for b in range(B):
                    g[b, ccols[i]] = 0.0
            continue
        if B == 1 and width[R0] >= _LANES:
            first, n, xs = _load_panel(v, obase, width, rbeg, Jf, B, X, x0, False)
            nxt = (rbeg[v + 2] - R1) * width[R1] if v + 2 < rbeg.shape[0] and rbeg[v + 2] > R1 else 0
            share = (nxt + (R1 - R0) * _LANES - 1) // ((R1 - R0) * _LANES) * _LANES     # of the next panel, a row
            _vector_rows_step(Df, tpd, sidx, rowptr, R0, R1, X, x0, xs, Jf, first, n, credit[0], srow, acc, share,
                              first + (R1 - R0) * n)
            _add_injection(R0, R1, runs, rruns, islot, igate, isrc, gv[0], av[0], credit[0], srow, Jf, first, n, acc, E)
            for i in range(n):
                g[0, ccols[cbeg[v] + i]] = acc[i]
            continue
        _class_products(v, Df, D, DT, tpd, sidx, rowptr, obase, width, rbeg, Jf, B, X, x0, Y, shared)
        for q in range(iptr[v], iptr[v + 1]):
            e = islot[q] * B
            for b in range(B):
                Jf[e + b] += gv[b * g_each, igate[q]] * av[b * a_each, isrc[q]]
        _class_gradient(v, credit, Jf, obase, srow, rbeg, cbeg, ccols, g, acc, B)


def panel_pair_sums_reference(D, tpd, sidx, rowptr, obase, width, rbeg, J):
    """numpy reference of :func:`panel_pair_sums` (the same products, summed by ``np.add.at``)."""
    counts = np.diff(rowptr)
    row_of_pair = np.repeat(np.arange(obase.size), counts)
    class_of_row = np.repeat(np.arange(rbeg.size - 1), np.diff(rbeg))
    soff = obase[rbeg[class_of_row[row_of_pair]] + sidx]
    n = width[row_of_pair]
    pair = np.repeat(np.arange(tpd.size), n)
    i = np.arange(pair.size) - np.repeat(np.cumsum(n) - n, n)
    out = np.zeros_like(J)
    np.add.at(out, obase[row_of_pair][pair] + i, D[tpd[pair]] * J[soff[pair] + i])
    J[...] = out


@_jit
def _class_gradient(v, credit, Jf, obase, srow, rbeg, cbeg, ccols, g, acc, B):
    """The ``v``-th panel's columns of ``ĝ = c J̃`` from the panel."""
    n = cbeg[v + 1] - cbeg[v]
    m = n * B
    for i in range(m):
        acc[i] = 0.0
    for R in range(rbeg[v], rbeg[v + 1]):
        o = obase[R] * B
        row = Jf[o:o + m]
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


@_jit
def panel_gradient(credit, J, rbeg, obase, srow, cbeg, ccols, g):
    """``ĝ_t = c_t J̃_t`` on a panel-layout influence (THEORY.md §2.1)::

        g[b, ccols[cbeg[v] + i]] = Σ_R credit[b, srow[R]] · J[obase[R] + i, b]

    over the stored rows ``R = rbeg[v] … rbeg[v+1]−1`` of the ``v``-th panel (in row
    order), ``i`` < its ``cbeg[v+1] − cbeg[v]`` columns.  ``credit``: ``B × k``; ``J``: ``S × B``;
    ``g``: ``B × p`` (columns outside every panel are left untouched)."""
    B = J.shape[1]
    acc = np.empty((np.max(np.diff(cbeg)) if cbeg.size > 1 else 0) * B)
    Jf = J.reshape(J.size)
    for v in range(rbeg.shape[0] - 1):
        _class_gradient(v, credit, Jf, obase, srow, rbeg, cbeg, ccols, g, acc, B)


def panel_gradient_reference(credit, J, rbeg, obase, srow, cbeg, ccols, g):
    """numpy reference of :func:`panel_gradient`."""
    for v in range(rbeg.size - 1):
        R = np.arange(rbeg[v], rbeg[v + 1])
        n = cbeg[v + 1] - cbeg[v]
        P = J[obase[R][:, None] + np.arange(n)]                     # r × n × B
        g[:, ccols[cbeg[v]:cbeg[v + 1]]] = np.einsum("rb,rnb->bn", credit[:, srow[R]].T, P)
