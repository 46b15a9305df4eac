"""Arrays whose first number starts a cache line (64 bytes, one vector of 8 doubles).

numpy places a large array 16 bytes past a page boundary, so each 64-byte vector load or store of
a compiled pass over it spans two cache lines.  On a pass over an influence store at Elman
k = 256 (``J̃`` read and written, ``ĝ`` written, 3 × 534 kB) that costs 1.6× the aligned pass
(17.2 against 10.8 µs measured; ``docs/guide/benchmarks.md``).  The stores of a step's long
passes (SnAp-1's ``J̃``, UORO's direction, their ``ĝ``) are allocated here; the kernels copy
the step's short vectors (``k`` numbers) into aligned scratch (:func:`aligned_empty`).
"""
from __future__ import annotations

import numba
import numpy as np

#: doubles per 64-byte vector
LANES = 8


def empty(shape) -> np.ndarray:
    """``np.empty(shape)`` (float64, C order) starting at a multiple of 64 bytes."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    n = 1
    for d in shape:
        n *= int(d)
    return aligned_empty(1, n).reshape(shape)


def copy(a) -> np.ndarray:
    """A float64 C-order copy of ``a`` starting at a multiple of 64 bytes."""
    a = np.asarray(a, dtype=float)
    out = empty(a.shape)
    out[...] = a
    return out


def zeros(shape) -> np.ndarray:
    """``np.zeros(shape)`` starting at a multiple of 64 bytes."""
    out = empty(shape)
    out[...] = 0.0
    return out


def is_aligned(a: np.ndarray) -> bool:
    """Whether ``a``'s first number starts a 64-byte line."""
    return a.ctypes.data % (8 * LANES) == 0


@numba.njit(cache=True, nogil=True)
def aligned_start(X):
    """The first index of the float64 array ``X`` at a multiple of 64 bytes."""
    return (-(X.ctypes.data // 8)) % LANES


@numba.njit(cache=True, nogil=True)
def aligned_empty(B, n):
    """A new ``B × n`` float64 array starting at a multiple of 64 bytes."""
    X = np.empty(B * n + LANES)
    x0 = aligned_start(X)
    return X[x0:x0 + B * n].reshape((B, n))
