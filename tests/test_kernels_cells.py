"""The gates' pre-activations in one compiled pass (:mod:`simulations.kernels_cells`) against
their numpy reference, and the cells that use it against the definition of ``θ``'s layout.

Each pre-activation is a sum of ``n`` products (``n`` the inputs of its blocks, the bias counted),
summed in different orders by the kernel and by numpy's products, so the two differ by at most
``2 γ_{n+1} Σ|A||v|`` (Higham §3.5: each is within ``γ_{n+1} Σ|A||v|`` of the exact sum); the
refreshed matrices are copies, equal exactly, and nothing else is written.  Hand mutations fail these tests: a full block's
fourth column of a pass read one column back, the last columns' products scaled by ``1 + 1e-7``,
a masked entry's source read from the next column, a masked entry added to the next output row,
the copy into the store skipped, a refreshed masked matrix multiplied without its last column,
a current matrix (``CURRENT``) multiplied without its last column, and ``θ``'s
first row used for every replicate.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.kernels_cells import CURRENT, FREE, REFRESH, affine_gates, affine_gates_reference

#: densities ≥ 1/8 multiply a refreshed masked matrix, 0.1 scatters its free entries unless the
#: matrix is current (then ≥ 1/12 multiplies it), 0.05 always scatters (every kind)
CASES = [("elman", 1.0), ("elman", 0.3), ("gru", 1.0), ("gru", 0.4), ("gru-reset-after", 1.0),
         ("gru-reset-after", 0.25), ("gru-reset-after", 0.1), ("lstm", 1.0), ("lstm", 0.3), ("lstm", 0.1),
         ("gru-reset-after", 0.05)]


def _plans(cell):
    """Every plan the cell's forward map uses, with its two sources' widths."""
    from rtrl_validation.simulations.cells import elman, gru, lstm
    if cell.name == "gru-reset-after":
        return [cell._plan(("z", "r", "hh", "h"), gru.SOURCES)]
    if cell.name == "gru":
        return [cell._plan(("z", "r"), gru.SOURCES), cell._plan(("h",), gru.RESET_SOURCES)]
    if cell.name == "lstm":
        return [cell._plan(lstm.GATES, lstm.SOURCES)]
    return [cell._plan(("a",), elman.SOURCES)]


@pytest.mark.parametrize("name,density", CASES)
@pytest.mark.parametrize("theta_rows,B", [(1, 1), (3, 3), (1, 3)])
@pytest.mark.parametrize("mode", [FREE, REFRESH, CURRENT])
def test_affine_gates_equal_the_reference(name, density, theta_rows, B, mode):
    """``θ`` of one row (shared by ``B`` replicates) or one row per replicate; the matrices zero
    (``FREE``, ``REFRESH``: written only by a refresh) or holding ``θ``'s entries (``CURRENT``:
    read, never written)."""
    rng = np.random.default_rng(3)
    cell = make_cell(name, 7, 5, density=density, mask_seed=2)
    theta = cell.init(rng, batch=theta_rows)
    u, w = rng.standard_normal((B, cell.k)), rng.standard_normal((B, cell.m))
    P = cell._weights(theta)
    current = np.zeros_like(P.gather[2]) if P.gather is not None else np.zeros((theta.shape[0], 0))
    for blk in cell.blocks:
        if not blk.full:
            current[:, cell._store_offsets[blk.name] + blk.idx_j * blk.n_out + blk.idx_i] = theta[:, blk.cols]
    refresh = mode == REFRESH
    for plan in _plans(cell):
        store = current if mode == CURRENT else np.zeros_like(current)
        stores, outs = [], []
        for kernel in (affine_gates, affine_gates_reference):
            st = store.copy()
            a = np.full((B, plan.n), np.nan)
            kernel(theta, u, w, plan.table, plan.entries, st, mode, a)
            stores.append(st)
            outs.append(a)
        mag = np.empty((B, plan.n))
        affine_gates_reference(np.abs(theta), np.abs(u), np.abs(w), plan.table, plan.entries, store.copy(), FREE,
                               mag)
        terms = {}                                                 # products per gate
        for blk, _code, sl in plan.parts:
            terms[sl.start] = terms.get(sl.start, 0) + blk.n_in
        n = max(terms.values())
        assert np.all(np.abs(outs[0] - outs[1]) <= 2 * gamma(n + 1) * mag)
        assert np.max(mag) > 0
        expect = store.copy()                                      # the copies, nothing else written
        if refresh:
            for blk, _code, _sl in plan.parts:
                if not blk.full:
                    expect[:, cell._store_offsets[blk.name] + blk.idx_j * blk.n_out + blk.idx_i] = theta[:, blk.cols]
        np.testing.assert_array_equal(stores[0], expect)
        np.testing.assert_array_equal(stores[1], expect)


def _blocks(cell, theta):
    """θ's blocks as matrices, from the definition of its layout."""
    mats = {}
    for b in cell.blocks:
        A = np.zeros(theta.shape[:-1] + (b.n_out, b.n_in))
        A[..., b.idx_i, b.idx_j] = theta[..., b.cols]
        mats[b.name] = A
    return mats


@pytest.mark.parametrize("name,density", CASES)
@pytest.mark.parametrize("batch,theta_rows", [(1, None), (3, 3), (3, None)])
def test_cells_step_and_linearize_agree_with_the_numpy_path(name, density, batch, theta_rows):
    """A cell's forward step and linearization (compiled pass when each replicate has its ``θ``;
    numpy products when ``θ`` is shared by several) against the same cell with the compiled pass
    disabled: states within the rounding of a pre-activation through a Lipschitz-1 gate, the
    factored ``D_t`` and ``I_t`` likewise, and the masked matrices ``D_t`` reads equal to
    ``θ``'s blocks."""
    from rtrl_validation.simulations.cells import weights
    rng = np.random.default_rng(1)
    cell = make_cell(name, 6, 4, density=density, mask_seed=5)
    theta = cell.init(rng, batch=theta_rows)
    s, x = 0.5 * rng.standard_normal((batch, cell.k)), rng.standard_normal((batch, cell.m))
    c = max(np.abs(theta).max(), np.abs(s).max(), np.abs(x).max(), 1.0)
    # a pre-activation differs by at most 2 γ_{n+1} Σ|A||v| ≤ 2 γ_{n+1} (k+m+1) c² between the paths;
    # s', D_t and I_t are at most two gate layers of functions of it with derivatives ≤ 1, times
    # factors bounded by c: Lipschitz ≤ (1 + c)³ (the rest of the arithmetic is the same numpy code)
    tol = 2 * gamma(cell.k + cell.m + 2) * (cell.k + cell.m + 1) * c ** 2 * (1 + c) ** 3
    got_step = cell.step(theta, s, x)
    lin = cell.linearize(theta, s, x)
    ref_cell = make_cell(name, 6, 4, density=density, mask_seed=5)
    orig = weights.Weights.compiled
    try:
        weights.Weights.compiled = lambda self, batch: False
        ref_step = ref_cell.step(theta, s, x)
        ref = ref_cell.linearize(theta, s, x)
    finally:
        weights.Weights.compiled = orig
    assert np.max(np.abs(got_step - ref_step)) <= tol
    np.testing.assert_array_equal(lin.state, got_step)
    assert np.max(np.abs(lin.D - ref.D)) <= tol
    assert np.max(np.abs(lin.I.dense() - ref.I.dense())) <= tol
    mats = _blocks(cell, theta)
    for t in lin.dynamics.terms:                       # D_t's weight factors are θ's blocks
        if t.W is not None:
            assert any(np.array_equal(t.W, A) for A in mats.values())


@pytest.mark.parametrize("name,density", CASES)
def test_one_input_row_is_broadcast_to_every_replicate(name, density):
    """``x`` of one row beside ``s`` of three (and the reverse): the step equals the step with that
    row repeated, on the compiled pass (one ``θ`` row per replicate) as on numpy's products (before
    this, the compiled pass read the rows past ``x``'s first from outside the array).  The unmasked
    Elman cell's one product over ``[s; x; 1]`` refuses unequal batches instead."""
    rng = np.random.default_rng(8)
    cell = make_cell(name, 5, 3, density=density, mask_seed=1)
    if name == "elman" and density == 1.0:          # one product over [s; x; 1]: equal batches or a clear error
        with pytest.raises(ValueError):
            cell.step(cell.init(rng), rng.standard_normal((3, cell.k)), rng.standard_normal((1, cell.m)))
        return
    for theta in (cell.init(rng, batch=3), cell.init(rng)):
        s, x = rng.standard_normal((3, cell.k)), rng.standard_normal((1, cell.m))
        np.testing.assert_array_equal(cell.step(theta, s, x), cell.step(theta, s, np.repeat(x, 3, axis=0)))
        s1, x3 = s[:1], rng.standard_normal((3, cell.m))
        np.testing.assert_array_equal(cell.step(theta, s1, x3), cell.step(theta, np.repeat(s1, 3, axis=0), x3))


@pytest.mark.parametrize("name", ["gru-reset-after", "lstm", "elman"])
def test_a_step_leaves_the_masked_matrices_to_be_refreshed_when_read(name):
    """``step`` reads ``θ``'s free entries only; the matrices read afterwards (``unpack``, a
    ``linearize``) still describe ``θ`` after an in-place change."""
    rng = np.random.default_rng(2)
    cell = make_cell(name, 5, 3, density=0.3, mask_seed=1)
    theta = cell.init(rng)
    s, x = rng.standard_normal((1, cell.k)), rng.standard_normal((1, cell.m))
    cell.linearize(theta, s, x)
    theta += 0.1 * rng.standard_normal(theta.shape)            # in place, as the optimiser does
    cell.step(theta, s, x)
    lin = cell.linearize(theta, s, x)
    for b in cell.blocks:
        A = np.zeros((b.n_out, b.n_in))
        A[b.idx_i, b.idx_j] = theta[b.cols]
        np.testing.assert_array_equal(cell.unpack(theta)[b.name], A)
    ws = [t.W for t in lin.dynamics.terms if t.W is not None]
    for b in cell.blocks:
        if b.recurrent:
            A = np.zeros((b.n_out, b.n_in))
            A[b.idx_i, b.idx_j] = theta[b.cols]
            assert any(np.array_equal(W, A) for W in ws), b.name
