"""Exact RTRL's influence step on an Elman cell, register-blocked, with the credit row summed in
registers (THEORY.md §2.1, §3).

Exact RTRL's step on a small network is the product ``D_t J_{t−1}`` (``k × k`` by ``k × p``),
``I_t``'s ``k (k+m+1)`` entries and the gradient's row ``c_t J_t``.  BLAS ``dgemm`` forms the product
well enough in a call of its own, but ``I_t`` must then be added and ``c_t J_t`` read in more passes
over the ``k × p`` result, and at Elman ``k = 16`` with 64 replicates that result (3.3 MB) has left the
L2 by the time they read it.  :func:`elman_influence_and_credit` forms a block of ``r ≤ _ROWS`` rows
and ``v ≤ _VECTORS`` vectors of columns of ``D_t J_{t−1}`` in registers, one vector FMA per input row
and accumulator, adds ``I_t``'s entries where the block holds them, stores the block, and adds
``c_R · row`` into the block's columns of the credit row while the rows are still in registers.
``J_t`` overwrites ``J_{t−1}`` (a block of columns depends only on the same columns of ``J_{t−1}``;
the block's first rows wait in an L1 scratch until its last rows have read them), so the step
streams one ``k × p`` buffer, not two.  numba's vectoriser does not produce this loop, so it is written in LLVM IR (:func:`_emit_block`), as
the sparse kernels are (:mod:`simulations.kernels_sparse`).

Reference (numpy): :func:`elman_influence_reference`.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .kernels_sparse import _LANES, _i64, _splat

_jit = numba.njit(cache=True, nogil=True)

#: rows and vectors of a block: ``_ROWS · _VECTORS`` accumulators, ``_VECTORS`` loads and ``_ROWS``
#: broadcasts per input row (AVX-512: 32 registers of 8 numbers; AVX2: 16 of 4)
_ROWS, _VECTORS = (8, 3) if _LANES == 8 else (4, 3)
#: columns of a block (:func:`elman_influence_and_credit`'s ``scratch`` holds ``k`` rows of them)
WIDTH = _VECTORS * _LANES
#: zeros on each side of ``â`` in :func:`elman_influence_and_credit`'s ``v``: a block's row that holds
#: part of ``Â_t``'s row reads all its vectors from ``v`` without a mask
PAD = WIDTH


def _contiguous(*arrays) -> bool:
    """Every argument typed as a contiguous float64 array (the intrinsics below index their data by
    pointer): anything else is a typing error, not wrong numbers."""
    return all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == types.float64 for a in arrays)


def _emit_block(context, builder, signature, args, nr: int, nv: int) -> None:
    """LLVM IR of :func:`_block` for ``nr`` rows and ``nv`` vectors (see there)."""
    D_, X_, out_, G_, u_, v_, c_, k_, ld_, n_, r0_, j0_, ldo_, jo_, first_ = args[:15]
    a = signature.args
    Dd, Xd, Od, Gd, Ud, Vd, Cd = (context.make_array(a[i])(context, builder, x).data
                                  for i, x in ((0, D_), (1, X_), (2, out_), (3, G_), (4, u_), (5, v_), (6, c_)))
    f64, i64 = ir.DoubleType(), ir.IntType(64)
    vt = ir.VectorType(f64, _LANES)
    vp = vt.as_pointer()
    zero = ir.Constant(vt, [0.0] * _LANES)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{_LANES}f64")
    k, ld, n, r0, j0, ldo, jo = (_i64(builder, x) for x in (k_, ld_, n_, r0_, j0_, ldo_, jo_))

    def broadcast(x):
        return _splat(builder, x, vt)

    def vectors(row):
        return [builder.bitcast(builder.gep(row, [ir.Constant(i64, _LANES * v)]), vp) for v in range(nv)]

    acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(nr)]
    for row in acc:
        for x in row:
            builder.store(zero, x)
    dcol = builder.gep(Dd, [r0])
    with cgutils.for_range_slice(builder, ir.Constant(i64, 0), k, ir.Constant(i64, 1), inc=True) as (l, _):
        xs = [builder.load(ptr, align=8) for ptr in vectors(builder.gep(Xd, [builder.add(builder.mul(l, ld), j0)]))]
        dl = builder.gep(dcol, [builder.mul(l, k)])
        for i in range(nr):
            d = broadcast(builder.load(builder.gep(dl, [ir.Constant(i64, i)])))
            for v in range(nv):
                builder.store(builder.call(fma, [d, xs[v], builder.load(acc[i][v])]), acc[i][v])
    gp = vectors(builder.gep(Gd, [j0]))
    first = builder.icmp_signed("!=", _i64(builder, first_), ir.Constant(i64, 0))
    g = [builder.select(first, zero, builder.load(ptr, align=8)) for ptr in gp]
    for i in range(nr):
        R = builder.add(r0, ir.Constant(i64, i))
        uR = broadcast(builder.load(builder.gep(Ud, [R])))
        cR = broadcast(builder.load(builder.gep(Cd, [R])))
        start = builder.mul(R, n)                          # Â's row R: v at columns R·n … R·n + n − 1
        meets = builder.and_(builder.icmp_signed("<", start, builder.add(j0, ir.Constant(i64, nv * _LANES))),
                             builder.icmp_signed(">", builder.add(start, n), j0))
        with builder.if_then(meets, likely=False):         # lanes off [0, n) read the padding's zeros
            base = builder.gep(Vd, [builder.add(builder.sub(j0, start), ir.Constant(i64, PAD))])
            for v, x in enumerate(acc[i]):
                av = builder.load(builder.bitcast(builder.gep(base, [ir.Constant(i64, _LANES * v)]), vp), align=8)
                builder.store(builder.call(fma, [uR, av, builder.load(x)]), x)
        for v, ptr in enumerate(vectors(builder.gep(Od, [builder.add(builder.mul(R, ldo), jo)]))):
            xv = builder.load(acc[i][v])
            builder.store(xv, ptr, align=8)
            g[v] = builder.call(fma, [cR, xv, g[v]])
    for v, ptr in enumerate(gp):
        builder.store(g[v], ptr, align=8)


@intrinsic
def _block(typingctx, D, X, out, G, u, v, credit, k, ld, n, r0, j0, ldo, jo, first, nr, nv):
    """Rows ``r0 … r0+nr−1`` and the ``nv · _LANES`` columns from ``j0`` of ``Y = D X + diag(u) Â``
    and of ``G = credit · Y`` (:func:`elman_influence_and_credit`), ``Y``'s entries stored into
    ``out``'s rows of ``ldo`` numbers from column ``jo``::

        Y[R, j] = Σ_{l<k} D[l·k + R] · X[l·ld + j]  (+ u[R] · v[PAD + j − R·n] if 0 ≤ j − R·n < n)
        out[R·ldo + jo + (j − j0)] = Y[R, j],   G[j] = (0 if first else G[j]) + Σ_R credit[R] · Y[R, j]

    ``D`` (``k × k``, column-major), ``X`` (``k × ld``, rows of ``ld`` numbers), ``out`` (rows of ``ldo``
    numbers), ``G`` (``ld``),
    ``u``, ``credit`` (``k``), ``v`` (``n`` numbers between :data:`PAD` zeros on each side): 1-D
    contiguous float64; ``1 ≤ nr ≤ _ROWS``, ``1 ≤ nv ≤ _VECTORS`` (one loop per pair, chosen by a
    switch: the accumulators must be registers)."""
    if not _contiguous(D, X, out, G, u, v, credit):
        return None
    sig = types.void(D, X, out, G, u, v, credit, k, ld, n, r0, j0, ldo, jo, first, nr, nv)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        done = builder.append_basic_block("block.done")
        key = builder.add(builder.mul(_i64(builder, args[15]), ir.Constant(i64, _VECTORS + 1)), _i64(builder, args[16]))
        switch = builder.switch(key, done)
        for nr in range(1, _ROWS + 1):
            for nv in range(1, _VECTORS + 1):
                case = builder.append_basic_block(f"block.{nr}.{nv}")
                switch.add_case(ir.Constant(i64, nr * (_VECTORS + 1) + nv), case)
                builder.position_at_end(case)
                _emit_block(context, builder, signature, args, nr, nv)
                builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _copy_rows(typingctx, src, dst, rows, ld, j0, nv):
    """``dst[R·ld + j0 + c] = src[R·WIDTH + c]`` for ``R < rows``, ``c < nv · _LANES``, a vector at a time
    (``src``, ``dst``: 1-D contiguous float64)."""
    if not _contiguous(src, dst):
        return None
    sig = types.void(src, dst, rows, ld, j0, nv)

    def codegen(context, builder, signature, args):
        src_, dst_, rows_, ld_, j0_, nv_ = args
        Sd, Dd = (context.make_array(signature.args[i])(context, builder, x).data for i, x in ((0, src_), (1, dst_)))
        i64 = ir.IntType(64)
        vp = ir.VectorType(ir.DoubleType(), _LANES).as_pointer()
        rows, ld, j0, nv = (_i64(builder, x) for x in (rows_, ld_, j0_, nv_))
        with cgutils.for_range(builder, rows) as R:
            s0 = builder.mul(R.index, ir.Constant(i64, WIDTH))
            d0 = builder.add(builder.mul(R.index, ld), j0)
            with cgutils.for_range(builder, nv) as v:
                c = builder.mul(v.index, ir.Constant(i64, _LANES))
                x = builder.load(builder.bitcast(builder.gep(Sd, [builder.add(s0, c)]), vp), align=8)
                builder.store(x, builder.bitcast(builder.gep(Dd, [builder.add(d0, c)]), vp), align=8)
        return context.get_dummy_value()

    return sig, codegen


@_jit
def elman_influence_and_credit(D, J, G, u, v, credit, ahead, scratch):
    """Exact RTRL's influence step on an Elman cell, in place, and its credit row (THEORY §2.1, §3)::

        J ← J_t = D_t J_{t−1} + I_t = D_t J_{t−1} + diag(σ') Â_t,      G = c_t J_t

    with ``D_t = diag(σ') W``, ``Â_t``'s row ``R`` holding ``â = [s_{t−1}; x_t; 1]`` at columns
    ``R n … R n + n − 1`` (θ's entries of ``W``'s, ``U``'s and ``b``'s row ``R`` in the unit-major
    order) and zeros elsewhere.

    Parameters
    ----------
    D : ndarray, shape (k * k,)
        ``D_t`` column-major (``D[l·k + R] = D_t[R, l] = σ'_R θ[l·k + R]``: one contiguous pass over
        θ's first ``k²`` numbers), contiguous.
    J : ndarray, shape (k * p,)
        ``J_{t−1}``'s ``k`` rows of ``p`` numbers, contiguous; receives ``J_t``.
    G : ndarray, shape (p,)
        Receives ``c_t J_t`` (unit-major, as ``J``'s columns).
    u : ndarray, shape (k,)
        ``σ'``.
    v : ndarray, shape (n + 2 PAD,)
        ``â`` (``n = k + m + 1`` numbers, ``k n ≤ p``) between :data:`PAD` zeros on each side (a block
        that holds ``Â_t``'s row only in part reads the zeros).
    credit : ndarray, shape (k,)
        ``c_t``.
    ahead : ndarray, shape (k * p,)
        The next replicate's ``J_{t−1}``: its lines are requested from memory during the product.
    scratch : ndarray, shape (k * WIDTH,)
        Holds a block of columns' first rows until the block's last rows have read ``J_{t−1}``.

    Each entry is ``Σ_l D_t[R, l] J[l, j]`` summed in order of ``l`` with one fused multiply-add each
    (OpenBLAS's order on the machines measured: bit-equal to ``np.matmul``), then (``Â_t``'s
    entries) ``+ σ'_R â_j`` fused; ``G`` adds the rows in order of ``R``, one fused multiply-add each.
    Blocks of :data:`WIDTH` columns (``_VECTORS`` vectors) across the row, then one block of the
    whole vectors left, then the columns after the last whole vector in scalar code (the same
    order, each product rounded before its sum); within a block, the rows in near-equal blocks of
    at most ``_ROWS``, all but the last stored into ``scratch`` and copied into ``J`` once the last
    has been formed.  In place, ``J_t`` needs no second ``k × p`` buffer, and its stores meet the
    lines ``J_{t−1}`` has just brought into the cache: with 64 replicates at Elman k = 16 two buffers
    are 3.5 MB each, beyond the L2, and every store into the other one read its line from the L3
    first."""
    k = credit.shape[0]
    p = G.shape[0]
    n = v.shape[0] - 2 * PAD
    blocks = (k + _ROWS - 1) // _ROWS
    pv = p - p % _LANES
    j0 = 0
    while j0 < pv:
        nv = min(_VECTORS, (pv - j0) // _LANES)
        r0, nr = 0, 0
        for rb in range(blocks):
            nr = (k - r0) // (blocks - rb)
            last = rb == blocks - 1                      # in place; the rows before it wait in scratch
            _block(D, J, J if last else scratch, G, u, v, credit, k, p, n, r0, j0, p if last else WIDTH,
                   j0 if last else 0, rb == 0, nr, nv)
            r0 += nr
        _copy_rows(scratch, J, k - nr, p, j0, nv)
        _prefetch_block(ahead, k, p, j0, nv)
        j0 += nv * _LANES
    for j in range(pv, p):
        g = 0.0
        for R in range(k):
            acc = 0.0
            for l in range(k):
                acc += D[l * k + R] * J[l * p + j]
            if 0 <= j - R * n < n:
                acc += u[R] * v[PAD + j - R * n]
            scratch[R] = acc
            g += credit[R] * acc
        G[j] = g
        for R in range(k):
            J[R * p + j] = scratch[R]


def elman_influence_reference(D: np.ndarray, X: np.ndarray, u: np.ndarray, ahat: np.ndarray,
                              credit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's ``(J_t, c_t J_t)`` for :func:`elman_influence_and_credit` (``D``: ``k × k``, ``X``:
    ``k × p``, ``u``, ``credit``: ``k``, ``ahat``: ``n`` unpadded)."""
    k, p = X.shape
    n = ahat.shape[0]
    A = np.zeros((k, p), dtype=X.dtype)
    for R in range(k):
        A[R, R * n:(R + 1) * n] = ahat
    out = D @ X + u[:, None] * A
    return out, credit @ out


@intrinsic
def _update_rows(typingctx, G, th, alpha, k, n, kv, acc):
    """``θ[j·k + r] += −(α G[r·n + j])`` for ``j < n`` and ``r < kv`` (a multiple of ``_LANES``), a vector
    of ``θ`` at a time with ``G``'s numbers gathered across its rows; ``acc[0] += Σ g²`` over these
    entries and ``acc[1] += Σ_{j<k} g²`` (``W``'s), in any order.  ``G``: ``k n``, ``th``: ``n k``,
    ``acc``: 2, 1-D contiguous float64."""
    if not _contiguous(G, th, acc):
        return None
    sig = types.void(G, th, alpha, k, n, kv, acc)

    def codegen(context, builder, signature, args):
        G_, th_, alpha_, k_, n_, kv_, acc_ = args
        a = signature.args
        Gd, Td, Ad = (context.make_array(a[i])(context, builder, x).data for i, x in ((0, G_), (1, th_), (6, acc_)))
        f64, i64, i32, i1 = ir.DoubleType(), ir.IntType(64), ir.IntType(32), ir.IntType(1)
        vt, it = ir.VectorType(f64, _LANES), ir.VectorType(i64, _LANES)
        vp = vt.as_pointer()
        zero = ir.Constant(vt, [0.0] * _LANES)
        k, n, kv = (_i64(builder, x) for x in (k_, n_, kv_))

        def splat(x, t):
            return _splat(builder, x, t)

        ptrs = ir.VectorType(f64.as_pointer(), _LANES)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vt, [ptrs, i32, ir.VectorType(i1, _LANES), vt]),
            f"llvm.masked.gather.v{_LANES}f64.v{_LANES}p0")
        every = ir.Constant(ir.VectorType(i1, _LANES), [1] * _LANES)
        al = splat(alpha_, vt)
        # byte offsets of G[(r0 + L)·n] from G[r0·n]: L·n·8
        rows = builder.mul(ir.Constant(it, list(range(_LANES))), splat(builder.mul(n, ir.Constant(i64, 8)), it))
        tot = cgutils.alloca_once_value(builder, zero)
        wsum = cgutils.alloca_once_value(builder, zero)
        base = builder.ptrtoint(Gd, i64)
        with cgutils.for_range(builder, n) as jl:
            j = jl.index
            inw = builder.icmp_signed("<", j, k)
            col = splat(builder.add(base, builder.mul(j, ir.Constant(i64, 8))), it)
            with cgutils.for_range_slice(builder, ir.Constant(i64, 0), kv, ir.Constant(i64, _LANES),
                                         inc=True) as (r0, _):
                addr = builder.add(builder.add(col, rows),
                                   splat(builder.mul(builder.mul(r0, n), ir.Constant(i64, 8)), it))
                g = builder.call(gather, [builder.inttoptr(addr, ptrs), ir.Constant(i32, 8), every, zero])
                tp = builder.bitcast(builder.gep(Td, [builder.add(builder.mul(j, k), r0)]), vp)
                builder.store(builder.fadd(builder.load(tp, align=8), builder.fneg(builder.fmul(al, g))), tp, align=8)
                sq = builder.fmul(g, g)
                builder.store(builder.fadd(builder.load(wsum), builder.select(inw, sq, zero)), wsum)
                builder.store(builder.fadd(builder.load(tot), sq), tot)
        for i, x in ((0, tot), (1, wsum)):
            v = builder.load(x)
            h = builder.extract_element(v, ir.Constant(i32, 0))
            for L in range(1, _LANES):
                h = builder.fadd(h, builder.extract_element(v, ir.Constant(i32, L)))
            ptr = builder.gep(Ad, [ir.Constant(i64, i)])
            builder.store(builder.fadd(builder.load(ptr), h), ptr)
        return context.get_dummy_value()

    return sig, codegen


@_jit
def credit_update(G, th, alpha, k, n, acc):
    """The SGD update ``θ ← θ − α g_t`` from the unit-major credit row ``G = c_t J_t`` (``k n``, as
    :func:`elman_influence_and_credit` leaves it): ``θ[j·k + r] += −(α G[r·n + j])`` as the unfused
    update moves it, along θ (``n k``), ``G``'s numbers gathered a vector of rows at a time (the rows
    beyond the last whole vector in scalar code); ``acc`` (2) receives ``‖g_t‖²`` and its part over
    ``W``'s entries (``j < k``), summed in any order (relative error ``≤ k n u``)."""
    acc[0] = 0.0
    acc[1] = 0.0
    kv = k - k % _LANES
    if kv > 0:
        _update_rows(G, th, alpha, k, n, kv, acc)
    tot, w = 0.0, 0.0
    for j in range(n):
        for r in range(kv, k):
            gv = G[r * n + j]
            th[j * k + r] += -(alpha * gv)
            if j < k:
                w += gv * gv
            else:
                tot += gv * gv
    acc[0] += tot + w
    acc[1] += w


@intrinsic
def _fma(typingctx, x, y, z):
    """``x y + z`` rounded once (``llvm.fma.f64``)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64] * 3), "llvm.fma.f64")
        return builder.call(fn, list(args))

    return sig, codegen


@intrinsic
def _preactivation_rows(typingctx, th, ah, z, k, kv):
    """``z[r] = Σ_j th[j·k + r] · ah[j]`` for ``r < kv`` (a multiple of ``_LANES``), a vector of rows at
    a time, the sum in order of ``j`` with one fused multiply-add each.  1-D contiguous float64."""
    if not _contiguous(th, ah, z):
        return None
    sig = types.void(th, ah, z, k, kv)

    def codegen(context, builder, signature, args):
        th_, ah_, z_, k_, kv_ = args
        a = signature.args
        Td, Ad, Zd = (context.make_array(a[i])(context, builder, x).data for i, x in ((0, th_), (1, ah_), (2, z_)))
        n = context.make_array(a[1])(context, builder, ah_).nitems
        f64, i64 = ir.DoubleType(), ir.IntType(64)
        vt = ir.VectorType(f64, _LANES)
        vp = vt.as_pointer()
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{_LANES}f64")
        k, kv = _i64(builder, k_), _i64(builder, kv_)
        acc = cgutils.alloca_once(builder, vt)
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), kv, ir.Constant(i64, _LANES), inc=True) as (r0, _):
            builder.store(ir.Constant(vt, [0.0] * _LANES), acc)
            with cgutils.for_range(builder, n) as jl:
                j = jl.index
                x = builder.load(builder.bitcast(builder.gep(Td, [builder.add(builder.mul(j, k), r0)]), vp), align=8)
                v = _splat(builder, builder.load(builder.gep(Ad, [j])), vt)
                builder.store(builder.call(fma, [x, v, builder.load(acc)]), acc)
            builder.store(builder.load(acc), builder.bitcast(builder.gep(Zd, [r0]), vp), align=8)
        return context.get_dummy_value()

    return sig, codegen


@_jit
def preactivation(th, ah, z):
    """``z = A â`` (THEORY §1: the Elman cell's pre-activation ``W s_{t−1} + U x_t + b``), ``A = [W U b]``
    column-major in θ (``th[j·k + r] = A[r, j]``).

    Parameters
    ----------
    th : ndarray, shape (k * n,)
    ah : ndarray, shape (n,)
        ``â = [s_{t−1}; x_t; 1]``.
    z : ndarray, shape (k,)
        Receives ``A â``: each entry the sum over ``j`` in order, one fused multiply-add each (a
        vector of rows at a time; the rows after the last whole vector in scalar code, the same
        order)."""
    k = z.shape[0]
    kv = k - k % _LANES
    if kv > 0:
        _preactivation_rows(th, ah, z, k, kv)
    n = ah.shape[0]
    for r in range(kv, k):
        acc = 0.0
        for j in range(n):
            acc = _fma(th[j * k + r], ah[j], acc)
        z[r] = acc


@intrinsic
def _prefetch_block(typingctx, A, k, ld, j0, nv):
    """Ask the cache for the lines of ``A[l·ld + j0 + L·v]`` (``l < k``, ``v < nv``; ``L = _LANES``),
    never faults."""
    sig = types.void(A, k, ld, j0, nv)

    def codegen(context, builder, signature, args):
        A_, k_, ld_, j0_, nv_ = args
        i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
        prefetch = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                  "llvm.prefetch.p0")
        Ad = context.make_array(signature.args[0])(context, builder, A_).data
        k, ld, j0, nv = (_i64(builder, x) for x in (k_, ld_, j0_, nv_))
        with cgutils.for_range(builder, k) as rows:
            base = builder.add(builder.mul(rows.index, ld), j0)
            with cgutils.for_range(builder, nv) as vs:
                ptr = builder.gep(Ad, [builder.add(base, builder.mul(vs.index, ir.Constant(i64, _LANES)))])
                builder.call(prefetch, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                                        ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@_jit
def prefetch(A):
    """Ask the cache for every line of the contiguous 1-D ``A`` (read soon, not now)."""
    _prefetch_block(A, 1, 0, 0, (A.shape[0] + _LANES - 1) // _LANES)
