"""The VAR(1)-teacher recursion compiled with numba (:class:`~simulations.data.var1.VAR1Teacher`).

The numpy loop over time steps (one matrix product and one teacher step per step) took about 5 µs
per step at hidden 16, inputs 8, more than half the compiled online training step it feeds (about
8 µs); here the whole recursion over ``t`` and the replicates is one call (about 0.2 µs per step).
The arithmetic is the numpy loop's up to the order of the products' sums and the ``tanh``
(:func:`~simulations.kernels.tanh_into`, within 4 ulp); ``tests/test_var1_kernel.py`` holds the
two paths within a rounding bound.
"""
from __future__ import annotations

import numba
import numpy as np

from ..kernels import tanh_into


@numba.njit(cache=True, nogil=True)
def var1_teacher_steps(At, G, tanh, x0, s0, eps, xs, ss):
    """``T`` steps of the VAR(1) input chain and the teacher Elman cell (THEORY.md §5 "Setting")::

        x_t = A x_{t−1} + ε_t,        s*_t = σ(W* s*_{t−1} + U* x_t + b*)

    for every replicate ``b``, with ``σ = tanh`` (``tanh``) or the identity.  Each sum runs over its
    terms in order: ``A x_{t−1}`` over ``j`` then ``+ ε_t``; the pre-activation ``Gᵀ â`` over
    ``â = [s*_{t−1}; x_t; 1]``.  Loops: steps, then each sum's terms, then replicates, then units,
    so that with several replicates an accumulator's consecutive updates are not back to back (the
    steps are a chain of dependent sums); each replicate's arithmetic is the same whatever ``B``.

    Parameters
    ----------
    At : ndarray, shape (m, m)
        ``Aᵀ`` (C-contiguous: ``At[j, i] = A[i, j]``).
    G : ndarray, shape (k + m + 1, k)
        ``[W* U* b*]ᵀ`` (C-contiguous), so that a source ``â_j`` scales the row ``G[j]``.
    tanh : bool
        ``σ = tanh`` if true, else the identity.
    x0 : ndarray, shape (B, m)
        ``x_0`` (the last input of the previous call).
    s0 : ndarray, shape (B, k)
        ``s*_0``.
    eps : ndarray, shape (T, B, m)
        The innovations ``ε_1 … ε_T``.
    xs : ndarray, shape (T, B, m)
        Output: ``x_1 … x_T``.
    ss : ndarray, shape (T, B, k)
        Output: ``s*_1 … s*_T``.
    """
    T, B, m = eps.shape
    k = G.shape[1]
    x = x0.copy()
    s = s0.copy()
    xn = np.empty((B, m))
    z = np.empty((B, k))
    bits = np.empty(B * k, dtype=np.int64)
    zf, sf = z.reshape(B * k), s.reshape(B * k)
    for t in range(T):
        xn[:] = 0.0
        for j in range(m):                                       # A x_{t−1}
            for b in range(B):
                a = x[b, j]
                for i in range(m):
                    xn[b, i] += At[j, i] * a
        for b in range(B):                                       # + ε_t
            for i in range(m):
                xn[b, i] += eps[t, b, i]
        z[:] = 0.0
        for j in range(k):                                       # W* s*_{t−1}
            for b in range(B):
                a = s[b, j]
                for r in range(k):
                    z[b, r] += G[j, r] * a
        for j in range(m):                                       # + U* x_t
            for b in range(B):
                a = xn[b, j]
                for r in range(k):
                    z[b, r] += G[k + j, r] * a
        for b in range(B):                                       # + b*
            for r in range(k):
                z[b, r] += G[k + m, r]
        if tanh:
            tanh_into(zf, sf, bits)
        else:
            sf[:] = zf
        x[:] = xn
        xs[t] = xn
        ss[t] = s
