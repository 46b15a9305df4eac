"""Compiled products that read a weight matrix once for two purposes (THEORY.md §3, §4).

UORO's step starts from ``D_t s̃ = diag(σ') W s̃`` and the forward step computes ``[W U b] â``;
with one replicate both are matrix-vector products over the same ``k × (k+m+1)`` weights, which
at ``k = 256`` (535 KB) are read from L2 or beyond at each use.  BLAS has no product of one matrix
with two vectors that streams the matrix once at the speed of its matrix-vector product (a
``q × 2`` matrix product runs 6–7× slower than one ``gemv`` in OpenBLAS 0.3), so
:func:`two_matvecs` does it in one pass.  Reference: :func:`two_matvecs_reference`.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def two_matvecs(At, a, t, z, w):
    """``z = A a`` and ``w = A[:, :k] t`` in one pass over ``A`` (``n × q``, given as its transpose
    ``At``: ``q × n``, C-contiguous, i.e. ``A`` column-major as ``θ`` stores it)::

        z[i] = Σ_j A[i, j] a[j],        w[i] = Σ_{j < k} A[i, j] t[j]

    ``a``: ``q``; ``t``: ``k ≤ q``; ``z``, ``w``: ``n`` (overwritten).  Four columns of ``A`` at a
    time (their four products summed in pairs, then added to ``z`` and ``w``): one load and store of
    ``z`` and ``w`` per four columns instead of one per column, which made the pass as slow as two
    ``gemv``; the sums are of ``q`` (``k``) products in another order than numpy's."""
    n, k, q = z.shape[0], t.shape[0], At.shape[0]
    for i in range(n):
        z[i] = 0.0
        w[i] = 0.0
    j = 0
    while j + 4 <= k:
        c0, c1, c2, c3 = At[j], At[j + 1], At[j + 2], At[j + 3]
        a0, a1, a2, a3 = a[j], a[j + 1], a[j + 2], a[j + 3]
        t0, t1, t2, t3 = t[j], t[j + 1], t[j + 2], t[j + 3]
        for i in range(n):
            x0, x1, x2, x3 = c0[i], c1[i], c2[i], c3[i]
            z[i] += (x0 * a0 + x1 * a1) + (x2 * a2 + x3 * a3)
            w[i] += (x0 * t0 + x1 * t1) + (x2 * t2 + x3 * t3)
        j += 4
    while j < k:
        col, aj, tj = At[j], a[j], t[j]
        for i in range(n):
            z[i] += col[i] * aj
            w[i] += col[i] * tj
        j += 1
    while j + 4 <= q:
        c0, c1, c2, c3 = At[j], At[j + 1], At[j + 2], At[j + 3]
        a0, a1, a2, a3 = a[j], a[j + 1], a[j + 2], a[j + 3]
        for i in range(n):
            z[i] += (c0[i] * a0 + c1[i] * a1) + (c2[i] * a2 + c3[i] * a3)
        j += 4
    while j < q:
        col, aj = At[j], a[j]
        for i in range(n):
            z[i] += col[i] * aj
        j += 1


@numba.njit(cache=True, nogil=True)
def two_matvecs_batched(At, a, t, z, w):
    """:func:`two_matvecs` for each replicate ``b``: ``At[b]`` (``q × n``, ``B`` of them, or one
    shared by all), ``a``: ``B × q``, ``t``: ``B × k``, ``z``, ``w``: ``B × n``; one call."""
    shared = At.shape[0] == 1
    for b in range(a.shape[0]):
        two_matvecs(At[0] if shared else At[b], a[b], t[b], z[b], w[b])


def two_matvecs_reference(At, a, t, z, w):
    """numpy reference of :func:`two_matvecs`."""
    z[...] = At.T @ a
    w[...] = At[:t.shape[0]].T @ t
