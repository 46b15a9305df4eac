"""Exact RTRL's register-blocked Elman influence step with its credit row
(:mod:`simulations.kernels_dense`) against numpy in extended precision.

``J_t = D_t J_{t−1} + diag(σ') Â_t`` entry by entry is a sum of ``k`` products plus (``Â_t``'s
entries) ``σ'_R â_j``: with ``u = 2⁻⁵³`` and ``γ_n = n u / (1 − n u)`` (Higham §3.1, §3.5),
``|J_t − exact| ≤ γ_{k+1} M`` entrywise, ``M = |D_t| |J_{t−1}| + |σ'| |Â_t|``, for any order of the
sum; ``G = c_t J_t`` sums ``k`` more products of computed entries, so
``|G − exact| ≤ (γ_k (1 + γ_{k+1}) + γ_{k+1}) |c| M ≤ γ_{2k+1} |c| M``.  The reference is numpy's in
``np.longdouble`` (64-bit significand on x86-64), whose own error is ``2¹¹`` times smaller.

The kernel works in place (``J_{t−1}`` in, ``J_t`` out), its scratch filled with NaN.  The shapes
cover one, two and three blocks of rows (``_ROWS``; all but the last held in the scratch), rows of
exactly one block of columns, a last block of fewer vectors, columns after the last whole vector and
rows of fewer numbers than one vector (the scalar path), and ``Â_t``'s rows starting anywhere in a
block.  Hand mutations fail these tests: the credit row's first block adding to the old
``G`` instead of storing; ``D`` read row-major; one input row dropped from the sum; ``â`` read one
number off; ``Â_t`` not scaled by ``σ'``; a block's row taken to hold ``Â_t`` only when it starts
inside the block; the scalar path without ``Â_t``.  :func:`credit_update` (the SGD update from the
credit row) against numpy: its gather's row offsets one number off, ``W``'s part of the sum taken over
one column too many, the scalar rows skipped.  :func:`preactivation` (``z = A â``): ``A`` read
row-major, the last column skipped, the scalar rows' sum started from ``â``'s first number twice.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.simulations.kernels_dense import (_LANES, _ROWS, _VECTORS, PAD, WIDTH, credit_update,
                                                       elman_influence_and_credit, elman_influence_reference,
                                                       preactivation, prefetch)

U = np.finfo(float).eps / 2
ROWS = sorted({1, 2, _ROWS - 1, _ROWS, _ROWS + 1, 2 * _ROWS + 3, 16})
COLS = sorted({1, _LANES - 1, _LANES, _LANES + 3, WIDTH - 1, WIDTH, WIDTH + 1, 2 * WIDTH + _LANES // 2, 400})


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def padded(ahat):
    v = np.zeros(ahat.size + 2 * PAD)
    v[PAD:PAD + ahat.size] = ahat
    return v


def run(D, X, u, ahat, c):
    """The kernel's ``(J_t, c_t J_t)``, ``J_t`` formed in place over a copy of ``X``."""
    k, p = X.shape
    J, G = X.ravel().copy(), np.full(p, np.nan)                     # every number of G must be written
    elman_influence_and_credit(np.ascontiguousarray(D.T).ravel(), J, G, u, padded(ahat), c, X.ravel(),
                               np.full(k * WIDTH, np.nan))
    return J.reshape(k, p), G


def problem(k, p, n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((k, k)), rng.standard_normal((k, p)), rng.uniform(0.1, 1.0, k),
            rng.standard_normal(n), rng.standard_normal(k))


def magnitude(D, X, u, ahat):
    """``M = |D_t| |J_{t−1}| + |σ'| |Â_t|`` (``k × p``)."""
    k, p = X.shape
    n = ahat.size
    A = np.zeros((k, p))
    for R in range(k):
        A[R, R * n:(R + 1) * n] = np.abs(ahat)
    return np.abs(D) @ np.abs(X) + u[:, None] * A


def errors(D, X, u, ahat, c):
    """The kernel's errors over their bounds, entrywise: ``J_t``'s and ``G``'s (each ≤ 1 when within)."""
    k = X.shape[0]
    out, G = run(D, X, u, ahat, c)
    L = np.longdouble
    ref, Gref = elman_influence_reference(D.astype(L), X.astype(L), u.astype(L), ahat.astype(L), c.astype(L))
    M = magnitude(D, X, u, ahat)
    return (np.abs(out - ref) / (gamma(k + 1) * M)).astype(float), \
        (np.abs(G - Gref) / (gamma(2 * k + 1) * (np.abs(c) @ M))).astype(float)


@pytest.mark.parametrize("k", ROWS)
@pytest.mark.parametrize("p", COLS)
def test_influence_and_credit_row_within_the_rounding_bound(k, p):
    """``Â_t``'s rows of ``n = ⌊p / k⌋`` numbers (none when ``p < k``), the last columns beyond them."""
    e1, e2 = errors(*problem(k, p, p // k, 1000 * k + p))
    assert e1.max() <= 1 and e2.max() <= 1


@pytest.mark.parametrize("k, m", [(16, 8), (11, 3), (16, 0), (3, 40), (9, 2), (1, 1)])
def test_elman_shapes_within_the_rounding_bound(k, m):
    """The loop's shapes: ``p = k (k + m + 1)``, ``Â_t``'s rows end to end."""
    n = k + m + 1
    e1, e2 = errors(*problem(k, k * n, n, 7 * k + m))
    assert e1.max() <= 1 and e2.max() <= 1


@pytest.mark.parametrize("where", ["J", "ahat"])
def test_a_changed_operand_is_seen(where):
    """One number of ``J_{t−1}`` or of ``â`` changed by one part in 10⁹: ``J_t`` and the credit row
    leave the bound."""
    k, m = 16, 8
    n = k + m + 1
    D, X, u, ahat, c = problem(k, k * n, n, 5)
    out, G = run(D, X, u, ahat, c)
    if where == "J":
        X = X.copy()
        X[5, 217] *= 1 + 1e-9
    else:
        ahat = ahat.copy()
        ahat[9] *= 1 + 1e-9
    ref, Gref = elman_influence_reference(D, X, u, ahat, c)
    M = magnitude(D, X, u, ahat)
    assert np.any(np.abs(out - ref) > 2 * gamma(k + 1) * M)
    assert np.any(np.abs(G - Gref) > 2 * gamma(2 * k + 1) * (np.abs(c) @ M))


@pytest.mark.parametrize("k, m", [(16, 8), (5, 3), (11, 3), (8, 0), (2 * _LANES + 3, 4), (1, 1)])
def test_credit_update_against_numpy(k, m):
    """``θ − α g_t`` from the unit-major credit row exactly (the same operations on every entry: gathered
    rows and the scalar rows after the last whole vector), ``‖g_t‖²`` and its part over ``W``'s
    entries within ``p u`` (sums of ``p`` squares in another order)."""
    q = k + m + 1
    p = k * q
    rng = np.random.default_rng(k + 100 * m)
    G, th, alpha = rng.standard_normal(p), rng.standard_normal(p), 0.3
    g = G.reshape(k, q).T.reshape(-1)                                 # θ's order: j·k + r
    th1, acc = th.copy(), np.full(2, np.nan)
    credit_update(G, th1, alpha, k, q, acc)
    np.testing.assert_array_equal(th1, th + -(alpha * g))
    for got, want in ((acc[0], g @ g), (acc[1], g[:k * k] @ g[:k * k])):
        assert abs(got - want) <= p * U * want


@pytest.mark.parametrize("k, m", [(16, 8), (5, 3), (11, 3), (8, 0), (2 * _LANES + 3, 4), (1, 1), (64, 32)])
def test_preactivation_within_the_rounding_bound(k, m):
    """``z = A â``, ``n = k + m + 1`` products summed per entry: ``|z − A â| ≤ γ_n |A| |â|`` against numpy
    in extended precision, on rows in whole vectors and after them."""
    n = k + m + 1
    rng = np.random.default_rng(k + 100 * m)
    th, ah = rng.standard_normal(k * n), rng.standard_normal(n)
    z = np.full(k, np.nan)
    preactivation(th, ah, z)
    A = th.reshape(n, k).T                                            # θ[j·k + r] = A[r, j]
    ref = A.astype(np.longdouble) @ ah.astype(np.longdouble)
    assert np.all(np.abs(z - ref) <= gamma(n) * (np.abs(A) @ np.abs(ah)))


def test_strided_arrays_are_refused():
    """The kernels index their arrays' data by pointer: a strided view is a typing error, not wrong
    numbers."""
    from numba.core.errors import TypingError
    k, n = 8, 5
    th, ah, z = np.zeros(2 * k * n), np.zeros(n), np.zeros(k)
    with pytest.raises(TypingError):
        preactivation(th[::2], ah, z)
    with pytest.raises(TypingError):
        credit_update(np.zeros(2 * k * n)[::2], np.zeros(k * n), 0.1, k, n, np.zeros(2))


def test_prefetch_reads_nothing_and_changes_nothing():
    a = np.arange(13.0)
    prefetch(a)
    np.testing.assert_array_equal(a, np.arange(13.0))
