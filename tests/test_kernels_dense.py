"""The register-blocked product with its credit row (:mod:`simulations.kernels_dense`) against numpy.

``out = D X`` entry by entry is a sum of ``k`` products and ``G = c · out`` a sum of ``k`` more, so
(Higham §3.5) ``|out − D X| ≤ γ_k |D| |X|`` and ``|G − c D X| ≤ γ_{2k} |c| |D| |X|``, entrywise, for
any order of summation.  The shapes cover one and several blocks of rows (``_ROWS``), rows of
exactly one block of columns, a last block that overlaps the one before (``p`` not a multiple of
the block's width), rows of fewer numbers than one block and fewer than one vector (the scalar
path).  Hand mutations fail these tests: the credit row's first block adding to the old ``G``
instead of storing, ``D`` read row-major, one input row dropped from the sum.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations.kernels_dense import (_LANES, _ROWS, _VECTORS, prefetch, product_and_credit,
                                                       product_and_credit_reference)

WIDTH = _LANES * _VECTORS
ROWS = sorted({1, 2, _ROWS - 1, _ROWS, _ROWS + 1, 2 * _ROWS + 3, 16})
COLS = sorted({1, _LANES - 1, _LANES, _LANES + 3, WIDTH - 1, WIDTH, WIDTH + 1, 2 * WIDTH + _LANES // 2, 400})


def run(D, X, c):
    k, p = X.shape
    out, G = np.full(k * p, np.nan), np.full(p, np.nan)            # every number must be written
    product_and_credit(np.ascontiguousarray(D.T).ravel(), X.ravel(), out, G, c, X.ravel())
    return out.reshape(k, p), G


@pytest.mark.parametrize("k", ROWS)
@pytest.mark.parametrize("p", COLS)
def test_product_and_credit_row_within_the_rounding_bound(k, p):
    rng = np.random.default_rng(1000 * k + p)
    D, X, c = rng.standard_normal((k, k)), rng.standard_normal((k, p)), rng.standard_normal(k)
    out, G = run(D, X, c)
    ref, Gref = product_and_credit_reference(D, X, c)
    mag = np.abs(D) @ np.abs(X)
    assert np.all(np.abs(out - ref) <= gamma(k) * mag)
    assert np.all(np.abs(G - Gref) <= gamma(2 * k) * (np.abs(c) @ mag))


def test_a_changed_operand_is_seen():
    """One input number changed by one part in 10⁹: the product's column and the credit row change by
    more than the bound."""
    k, p = 16, 400
    rng = np.random.default_rng(7)
    D, X, c = rng.standard_normal((k, k)), rng.standard_normal((k, p)), rng.standard_normal(k)
    out, G = run(D, X, c)
    X2 = X.copy()
    X2[5, 217] *= 1 + 1e-9
    ref, Gref = product_and_credit_reference(D, X2, c)
    mag = np.abs(D) @ np.abs(X2)
    assert np.any(np.abs(out - ref) > gamma(k) * mag)
    assert np.any(np.abs(G - Gref) > gamma(2 * k) * (np.abs(c) @ mag))


def test_prefetch_reads_nothing_and_changes_nothing():
    a = np.arange(13.0)
    prefetch(a)
    np.testing.assert_array_equal(a, np.arange(13.0))
