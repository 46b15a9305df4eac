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

        z[i] = Σ_j A[i, j] a[j],        w[i] = Σ_{j < k} A[i, j] t[j]        (j in order)

    ``a``: ``q``; ``t``: ``k ≤ q``; ``z``, ``w``: ``n`` (overwritten)."""
    n, k = z.shape[0], t.shape[0]
    for i in range(n):
        z[i] = 0.0
        w[i] = 0.0
    for j in range(At.shape[0]):
        col, aj = At[j], a[j]
        if j < k:
            tj = t[j]
            for i in range(n):
                z[i] += col[i] * aj
                w[i] += col[i] * tj
        else:
            for i in range(n):
                z[i] += col[i] * aj


def two_matvecs_reference(At, a, t, z, w):
    """numpy reference of :func:`two_matvecs`."""
    z[...] = At.T @ a
    w[...] = At[:t.shape[0]].T @ t
