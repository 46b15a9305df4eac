"""The compiled loops (:mod:`simulations.kernels`) and the paths that use them, against the numpy
paths they replace.

* ``ImmediateJacobian.add_to`` in ``θ``'s and in the unit-major column order, with and without the
  credit row ``out += λ I``, against the dense ``I``: each entry is one addition (and for ``λ I`` a
  sum over the gate levels of three-factor products), so ``|error| ≤ γ_n Σ|terms|`` (Higham §3.5)
  with ``n`` the roundings along one term.
* The fused SnAp-1/RFLO step (one pass per block) against ``update`` then ``gradient``, and the
  fused UORO step against ``update`` then ``gradient`` with the same signs: bounds as in
  ``test_dynamics.py``, from the float64 rounding of the recursion.
* The panel kernels of sparse SnAp-n (:mod:`simulations.kernels_sparse`) and their numpy references
  against the dense masked product ``(D J̃) ⊙ M`` and ``c J̃``; the one-pass step against ``update``
  then ``gradient``; :func:`~simulations.kernels_fused.two_matvecs` against numpy's products.  Hand
  mutations fail them: a row's last pass widened past the pass width (``_WIDE``), a vector's load offset shifted,
  the FMA's operand replaced, a scalar tail or gradient term scaled by ``1 + 1e-7``, ``I_t``'s
  entries scaled likewise, the gradient read one entry off, ``A[:, :k] t`` scaled likewise; in the
  one-pass kernel: the panel copy's last vector dropped, a full pass followed by one reaching back,
  the gradient's last vector dropped, ``I_t`` halved, ``ĝ`` without ``I_t``'s share, the panel's
  first row's credit for every row's ``I_t`` share, ``ĝ`` from one of two sets of sums, a panel
  without rows leaving its gradient columns unwritten, an ``I_t`` product shifted by one in its
  run, ``ĝ``'s ``I_t`` share without ``c_R``, one input for a whole run (and runs allowed across
  rows crash the process); with one
  ``D_t`` per replicate, one replicate's values scaled on the way back or replicate 0's read for all;
  in the masked SnAp-1/RFLO step (:func:`~simulations.kernels.diagonal_masked_step`): ``v`` read at
  the entry's unit instead of its input (SnAp-1, RFLO), ``d`` read at the input, the next unit's
  credit, replicate 0's ``d`` for all, the gradient scaled by ``1 + 1e-7``, ``w`` of the next
  replicate; in UORO's step on a masked block (:func:`~simulations.kernels.rank_one_masked_step`):
  ``w`` read at the input, ``α`` dropped, the norm's ``v`` read at the unit, the gradient scaled by
  ``α``, the block's squares left out of ``‖θ̃‖²``.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import make_estimator, parse_estimator
from rtrl_validation.simulations.estimators.masked import influence_rounding_bound
from rtrl_validation.simulations.estimators.signs import SignReplay
from rtrl_validation.simulations.jacobians import merge_blocks, row_dot, unit_major

try:
    from test_dynamics import B, CASES, linearization
except ImportError:  # tests collected as a package
    from tests.test_dynamics import B, CASES, linearization


def test_unit_major_is_a_permutation_that_makes_rows_consecutive():
    cell = make_cell("elman", 5, 3)
    pos = unit_major(cell.blocks, cell.p)
    assert np.array_equal(np.sort(pos), np.arange(cell.p))
    lin = cell.linearize(cell.init(np.random.default_rng(0)), np.full((1, 5), 0.5), np.ones((1, 3)))
    Iu = np.zeros_like(lin.I.dense())
    Iu[:, :, pos] = lin.I.dense()
    n_in = merge_blocks(cell.blocks)[0].n_in                     # W, U, b merged: â = [s; x; 1]
    for i in range(cell.k):                                      # row i: its n_in nonzeros side by side
        assert np.array_equal(np.flatnonzero(Iu[0, i]), np.arange(i * n_in, (i + 1) * n_in))


@pytest.mark.parametrize("name,density", [("elman", 1.0), ("lstm", 1.0), ("gru", 0.5), ("elman", 0.3)])
def test_unit_major_to_theta_is_the_inverse_permutation(name, density):
    from rtrl_validation.simulations.jacobians import unit_major_blocks
    from rtrl_validation.simulations.kernels import unit_major_to_theta
    cell = make_cell(name, 4, 3, density=density, mask_seed=2)
    pos = unit_major(cell.blocks, cell.p)
    big = np.random.default_rng(0).standard_normal((2, 5, cell.p))
    dst = np.full((2, cell.p), np.nan)
    unit_major_to_theta(big[:, 4], dst, unit_major_blocks(cell.blocks))      # a strided row, as in RTRL
    np.testing.assert_array_equal(dst, big[:, 4, pos])


@pytest.mark.parametrize("units_first", [False, True])
@pytest.mark.parametrize("name,density,per_replicate", CASES)
def test_add_to_with_the_credit_row(name, density, per_replicate, units_first):
    """``J += I`` and ``out += λ I`` in one call, on views of a ``B × (k+1) × p`` buffer (the fused
    RTRL step's layout), in either column order, against the dense ``I``."""
    cell, theta, lin, rng = linearization(name, density, per_replicate)
    I, k, p = lin.I, cell.k, cell.p
    pos = unit_major(cell.blocks, p) if units_first else np.arange(p)
    Id = np.zeros((B, k, p))
    Id[:, :, pos] = I.dense()
    lam = rng.standard_normal((B, k))
    big = rng.standard_normal((B, k + 1, p))
    J, out = big[:, :k], big[:, k]
    expect_J, expect_out = J + Id, out + np.einsum("bk,bkp->bp", lam, Id)
    mag = np.abs(out) + np.einsum("bk,bkp->bp", np.abs(lam), np.abs(Id))
    I.add_to(J, lam, out, units_first=units_first)
    assert np.all(np.abs(J - expect_J) <= gamma(1) * np.abs(expect_J))
    assert np.all(np.abs(out - expect_out) <= 2 * gamma(k + 4) * mag)


def test_add_to_broadcasts_a_batch_of_one():
    cell, theta, lin, rng = linearization("lstm", 1.0, False)
    lin1 = cell.linearize(theta, rng.uniform(-0.9, 0.9, (1, cell.k)), rng.standard_normal((1, 3)))
    J = np.zeros((B, cell.k, cell.p))
    lin1.I.add_to(J, units_first=True)
    ref = np.zeros_like(J)
    ref[:, :, unit_major(cell.blocks, cell.p)] = lin1.I.dense()
    np.testing.assert_array_equal(J, ref)


def _path(cell, batch, steps, rng):
    theta = cell.init(rng, scale=1.5)
    s, lins, credits = np.zeros((batch, cell.k)), [], []
    for _ in range(steps):
        lin = cell.linearize(theta, s, rng.standard_normal((batch, cell.m)))
        s = lin.state
        lins.append(lin)
        credits.append(rng.standard_normal((batch, cell.k)))
    return theta, lins, credits


@pytest.mark.parametrize("spec", ["snap-1", "rflo"])
@pytest.mark.parametrize("name,density", [("elman", 1.0), ("contractive-elman", 1.0), ("gru-reset-after", 1.0),
                                          ("gru-reset-after", 0.4), ("gru-reset-after", 0.1)])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_diagonal_step_equals_update_then_gradient(spec, name, density, batch):
    """Unmasked blocks as grids (:func:`~simulations.kernels.diagonal_influence_step`), masked
    blocks at their free entries (:func:`~simulations.kernels.diagonal_masked_step`; a masked
    Elman cell is not a grid: its ``D_t`` has no diagonal entry where ``W``'s is masked)."""
    rng = np.random.default_rng(11)
    cell = make_cell(name, 5, 3, density=density, mask_seed=4)
    theta, lins, credits = _path(cell, batch, 6, rng)
    fused, plain = parse_estimator(spec), parse_estimator(spec)
    a, b = fused.init(cell, theta, batch), plain.init(cell, theta, batch)
    for t, (lin, c) in enumerate(zip(lins, credits)):
        a, ga = fused.step(a, lin, c)
        b = plain.update(b, lin)
        b, gb = plain.gradient(b, c)
        E = influence_rounding_bound(lins[:t + 1], cell.k)       # any order of the same sums
        Jb = plain.influence(b)
        assert np.all(np.abs(fused.influence(a) - Jb) <= 2 * E)
        bound = 2 * gamma(cell.k + 2) * np.einsum("bk,bkp->bp", np.abs(c), np.abs(Jb) + E) \
            + np.einsum("bk,bkp->bp", np.abs(c), 2 * E)
        assert np.all(np.abs(ga - gb) <= bound)
    assert a.structure.fused, "the fused plan was not used"
    assert any(b.entries is not None for b in a.structure.fused) == (density < 1)
    assert np.max(np.abs(ga)) > 0


@pytest.mark.parametrize("name,density", [("elman", 1.0), ("gru", 1.0), ("lstm", 1.0), ("gru-reset-after", 0.4),
                                          ("lstm", 0.3), ("elman", 0.4)])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_uoro_step_equals_update_then_gradient(name, density, batch):
    """From the same state and the same signs, one fused step and one ``update`` + ``gradient``
    give the same ``s̃``, ``θ̃`` and ``ĝ`` up to rounding.  Both paths compute ``ρ₀`` from the same
    sums; ``ρ₁ = sqrt(‖νᵀ I‖/√k)`` comes from sums of squares added in another order (relative
    error ``≤ γ_n``, ``n`` the number of terms), which moves ``s̃`` and ``α = 1/(ρ₁·factor)`` by that
    relative amount; the rank-one addition ``X + α v w`` rounds three times each way; ``ĝ = γ X``
    with ``γ = (c s̃)·factor``."""
    rng = np.random.default_rng(12)
    cell = make_cell(name, 4, 3, density=density, mask_seed=6)
    theta, lins, credits = _path(cell, batch, 5, rng)
    est = make_estimator("uoro")
    signs = np.where(rng.random((5, batch, cell.k)) < 0.5, -1.0, 1.0)
    replay = SignReplay(signs)
    st = est.init(cell, theta, batch)
    for lin in lins[:4]:
        st = est.update(st, lin, replay)
    twin = est.init(cell, theta, batch)
    twin.s, twin.direction, twin.factor = st.s.copy(), st.direction.copy(), st.factor.copy()
    X0, c = st.direction.copy(), credits[4]
    a, ga = est.step(st, lins[4], c, SignReplay(signs[4:]))
    b = est.update(twin, lins[4], SignReplay(signs[4:]))
    b, gb = est.gradient(b, c)
    rel = gamma(2 * (cell.p + cell.k) + 8)                             # any sum of squares here
    rho1 = b.scales[:, 1:]
    np.testing.assert_array_equal(a.factor, b.factor)                  # ρ₀: the same sums
    ds = 4 * rel * (np.abs(b.s) + 2 * rho1)
    assert np.all(np.abs(a.s - b.s) <= ds)
    added = np.abs(b.direction - X0)                                   # |α v w| up to rounding
    dX = 2 * gamma(3) * (np.abs(X0) + added) + 4 * rel * added
    assert np.all(np.abs(a.direction - b.direction) <= dX)
    gam = (row_dot(c, b.s) * b.factor)[:, None]
    dgam = np.abs(b.factor)[:, None] * (row_dot(np.abs(c), ds) + gamma(cell.k) * row_dot(np.abs(c), np.abs(b.s)))[:, None]
    assert np.all(np.abs(ga - gb) <= dgam * (np.abs(b.direction) + dX) + np.abs(gam) * (dX + gamma(2) * np.abs(b.direction)))
    assert np.max(np.abs(ga)) > 0
    # the squared norm the fused pass leaves for the next ρ₀ (a reassociated sum of p squares)
    sq = row_dot(a.direction, a.direction)
    assert np.all(np.abs(a.sq - sq) <= gamma(cell.p) * sq)


def _pair_sums(st, kernel):
    """``(D J̃)`` at the stored entries by the structure's own layout: class panels, in place
    (:func:`~simulations.kernels_sparse.panel_pair_sums` or its numpy reference) or column-major
    (:func:`~simulations.kernels.class_pair_sums`)."""
    from rtrl_validation.simulations.kernels import class_pair_sums
    from rtrl_validation.simulations.kernels_sparse import panel_pair_sums, panel_pair_sums_reference

    def run(D, J):
        P = st.panels
        if P is None:
            out = np.full_like(J, np.nan)
            tpd, ta, tb, qoff, by_class, coff = st.pairs_by_class
            class_pair_sums(D, tpd, ta, tb, qoff, st.class_rows[1], by_class, coff, st.col_start, J, out)
            return out
        (panel_pair_sums if kernel == "compiled" else panel_pair_sums_reference)(
            D, P.tpd, P.sidx, P.rowptr, P.obase, P.width, P.rbeg, J)               # in place
        return J
    return run


# (cell, hidden, inputs, density, n): small panels (rows of fewer than a vector), a class with more
# columns than one pass takes (``_WIDE``: the vector kernel's outer loop and its overlapping last
# vector), SnAp-1 of a grid structure (column-major storage)
PAIR_CASES = [("gru", 6, 2, 0.3, 2), ("lstm", 6, 2, 0.5, 2), ("elman", 6, 2, 0.2, 3), ("gru-reset-after", 6, 2, 1.0, 1),
              ("elman", 6, 2, 0.4, 1), ("elman", 9, 75, 0.5, 2), ("gru-reset-after", 12, 13, 0.3, 2)]


@pytest.mark.parametrize("name,hidden,inputs,density,n", PAIR_CASES)
@pytest.mark.parametrize("batch,shared", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("kernel", ["compiled", "reference"])
def test_pair_sums_are_the_masked_product(name, hidden, inputs, density, n, batch, shared, kernel):
    """SnAp-n's ``(D J̃)`` at the stored entries against the dense ``(D_t J̃) ⊙ M``: each entry is a
    sum of at most ``k`` products, so ``|error| ≤ γ_k Σ|D||J̃|`` (Higham §3.5) in either order (a
    fused multiply-add rounds once instead of twice)."""
    from rtrl_validation.simulations.estimators.masked import build_structure
    rng = np.random.default_rng(13)
    cell = make_cell(name, hidden, inputs, density=density, mask_seed=4)
    st = build_structure(cell, n)
    assert not st.dense
    M = st.mask()
    Dd = rng.standard_normal((1 if shared else batch, cell.k, cell.k)) * cell.patterns()[0]
    Jd = rng.standard_normal((batch, cell.k, cell.p)) * M
    J = np.ascontiguousarray(Jd[:, st.rows, st.cols].T)                     # nnz × B
    D = np.ascontiguousarray(Dd.reshape(Dd.shape[0], -1)[:, st.d_index].T)  # |d| × B
    out = _pair_sums(st, kernel)(D, J)
    ref = (np.matmul(Dd, Jd) * M)[:, st.rows, st.cols].T
    mag = (np.matmul(np.abs(Dd), np.abs(Jd)) * M)[:, st.rows, st.cols].T
    assert np.all(np.abs(out - ref) <= gamma(cell.k) * mag)
    assert np.count_nonzero(ref) > 0.5 * ref.size


def test_panel_layout_covers_the_cases():
    """The cases above reach every branch of the panel kernel: rows shorter than a vector, rows
    whose length is not a multiple of a vector, rows longer than one pass, and the column-major
    layout."""
    from rtrl_validation.simulations.estimators.masked import build_structure
    from rtrl_validation.simulations.kernels_sparse import _LANES, _WIDE
    widths, layouts = [], set()
    for name, hidden, inputs, density, n in PAIR_CASES:
        st = build_structure(make_cell(name, hidden, inputs, density=density, mask_seed=4), n)
        layouts.add(st.panels is None)
        if st.panels is not None:
            widths.extend(st.panels.width)
    w = np.asarray(widths)
    assert layouts == {True, False}
    assert np.any(w < _LANES) and np.any((w > _LANES) & (w % _LANES != 0)) and np.any(w > _WIDE)


@pytest.mark.parametrize("name,hidden,inputs,density,n", PAIR_CASES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel", ["compiled", "reference"])
def test_panel_gradient_is_credit_times_influence(name, hidden, inputs, density, n, batch, kernel):
    """``ĝ = c J̃`` on the panel layout against the dense product: a sum of at most ``k`` products
    per column, ``|error| ≤ γ_k Σ|c||J̃|``."""
    from rtrl_validation.simulations.estimators.masked import build_structure
    from rtrl_validation.simulations.kernels_sparse import panel_gradient, panel_gradient_reference
    rng = np.random.default_rng(14)
    cell = make_cell(name, hidden, inputs, density=density, mask_seed=4)
    st = build_structure(cell, n)
    if st.panels is None:
        pytest.skip("column-major layout")
    P = st.panels
    Jd = rng.standard_normal((batch, cell.k, cell.p)) * st.mask()
    J = np.ascontiguousarray(Jd[:, st.rows, st.cols].T)
    c = rng.standard_normal((batch, cell.k))
    g = np.full((batch, cell.p), np.nan)
    (panel_gradient if kernel == "compiled" else panel_gradient_reference)(c, J, P.rbeg, P.obase, P.srow, P.cbeg,
                                                                          P.ccols, g)
    ref = np.einsum("bk,bkp->bp", c, Jd)
    assert np.all(np.abs(g - ref) <= gamma(cell.k) * np.einsum("bk,bkp->bp", np.abs(c), np.abs(Jd)))


def _gradient_bound(c, J, E, k):
    """Bound on two computations of ``ĝ = c J̃`` from influences within ``E`` of ``J`` (one of them
    ``J``): each is a sum of at most ``k`` products after an error of at most ``2E`` in ``J̃``."""
    return (2 * gamma(k + 2) * np.einsum("bk,bkp->bp", np.abs(c), np.abs(J) + E)
            + np.einsum("bk,bkp->bp", np.abs(c), 2 * E))


# (cell, hidden, inputs, density, n): rows shorter than a vector (the per-class loops; 3 numbers in the
# last case, shorter than AVX2's 4), rows of a
# vector or more (products, + I_t and ĝ row by row in the vector kernel, with one replicate), rows of
# exactly one pass (``_WIDE`` numbers: 96 with AVX-512, 24 with AVX2; the Elman cells with 90 and 21
# inputs), rows of up to a vector more (two passes, ``_WIDE − _LANES`` + the rest, since a last pass
# shorter than a vector would reach back: 99–101 and 25–27 numbers) and rows of several passes
STEP_CASES = [("gru-reset-after", 5, 3, 0.3, 2), ("lstm", 5, 3, 0.5, 2), ("gru", 5, 3, 0.4, 2), ("elman", 5, 3, 0.3, 3),
              ("lstm", 5, 3, 1.0, 1), ("gru-reset-after", 12, 13, 0.3, 2), ("lstm", 8, 20, 0.5, 2),
              ("elman", 6, 61, 0.5, 2), ("elman", 6, 90, 0.5, 2), ("elman", 6, 21, 0.5, 2), ("elman", 6, 2, 0.2, 3)]


def test_panel_step_cases_cover_the_kernel():
    """The cases below reach rows shorter than a vector, rows of a vector or more, a row of exactly
    one pass and rows of up to a vector more (split ``_WIDE − _LANES`` + the rest)."""
    from rtrl_validation.simulations.estimators.masked import build_structure
    from rtrl_validation.simulations.kernels_sparse import _LANES, _WIDE
    w = np.concatenate([build_structure(make_cell(name, hidden, inputs, density=density, mask_seed=3), n).panels.width
                        for name, hidden, inputs, density, n in STEP_CASES])
    assert np.any(w < _LANES) and np.any((w >= _LANES) & (w < _WIDE)) and np.any(w == _WIDE) \
        and np.any((w > _WIDE) & (w < _WIDE + _LANES)) and np.any(w > _WIDE + _LANES)


@pytest.mark.parametrize("name,hidden,inputs,density,n", STEP_CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_panel_step_equals_update_then_gradient(name, hidden, inputs, density, n, batch):
    """SnAp-n's one-pass step on the panel layout (:func:`~simulations.kernels_sparse.panel_step`:
    products, ``+ I_t`` from its factors, ``ĝ`` while the panel is in L1) against ``update`` then
    ``gradient``: the same sums up to rounding (bounds as in the fused SnAp-1 test)."""
    rng = np.random.default_rng(15)
    cell = make_cell(name, hidden, inputs, density=density, mask_seed=3)
    theta, lins, credits = _path(cell, batch, 6, rng)
    fused, plain = parse_estimator(f"snap-{n}"), parse_estimator(f"snap-{n}")
    a, b = fused.init(cell, theta, batch), plain.init(cell, theta, batch)
    assert a.structure.panels is not None
    for t, (lin, c) in enumerate(zip(lins, credits)):
        a, ga = fused.step(a, lin, c)
        b = plain.update(b, lin)
        b, gb = plain.gradient(b, c)
        E = influence_rounding_bound(lins[:t + 1], cell.k)
        Jb = plain.influence(b)
        assert np.all(np.abs(fused.influence(a) - Jb) <= 2 * E)
        assert np.all(np.abs(ga - gb) <= _gradient_bound(c, Jb, E, cell.k))
    assert a.structure.panel_injection is not None, "the fused step was not used"
    assert np.max(np.abs(ga)) > 0


@pytest.mark.parametrize("batch", [1, 3])
def test_panel_step_writes_every_gradient_column(batch):
    """A panel whose columns reach no stored row (here: a sparse GRU at its exact order) still gets its
    gradient columns, zero: the one-pass step into a NaN-filled ``ĝ`` against ``update`` then
    ``gradient``."""
    from rtrl_validation.simulations.estimators.masked import exact_order
    rng = np.random.default_rng(16)
    cell = make_cell("gru", 4, 2, density=0.3, mask_seed=2)
    spec = f"snap-{exact_order(cell)}"
    fused, plain = parse_estimator(spec), parse_estimator(spec)
    theta, lins, credits = _path(cell, batch, 3, rng)
    a, b = fused.init(cell, theta, batch), plain.init(cell, theta, batch)
    P = a.structure.panels
    assert np.any(np.diff(P.rbeg) == 0), "no panel without rows"
    for t, (lin, c) in enumerate(zip(lins, credits)):
        ga = np.full((batch, cell.p), np.nan)
        a, _ = fused._panel_step(a, lin, c, None, out=ga)
        b = plain.update(b, lin)
        b, gb = plain.gradient(b, c)
        E = influence_rounding_bound(lins[:t + 1], cell.k)
        assert np.all(np.abs(ga - gb) <= _gradient_bound(c, plain.influence(b), E, cell.k))
    empty = P.ccols[np.concatenate([np.arange(P.cbeg[v], P.cbeg[v + 1]) for v in np.flatnonzero(np.diff(P.rbeg) == 0)])]
    assert np.all(ga[:, empty] == 0.0) and np.max(np.abs(ga)) > 0


@pytest.mark.parametrize("name,density,batch", [("gru-reset-after", 0.25, None), ("lstm", 0.3, 3),
                                                ("elman", 0.5, 2), ("gru", 1.0, None)])
def test_masked_matrices_follow_theta_in_place(name, density, batch):
    """The forward map's masked blocks (kept in buffers, refreshed by the compiled gather
    ``scatter_free``) equal the numpy reference ``scatter_free_reference`` and ``unpack`` exactly (a
    copy), before and after an in-place change of ``θ``; masked entries stay zero."""
    from rtrl_validation.simulations.kernels import scatter_free_reference
    cell = make_cell(name, 5, 3, density=density, mask_seed=1)
    rng = np.random.default_rng(0)
    theta = cell.init(rng, batch=batch)
    for _ in range(2):
        P = cell._matrices(theta)
        gather = cell._views[1].gather
        if gather is not None:
            th2, src, store, dst = gather
            ref = np.zeros_like(store)
            scatter_free_reference(th2, src, ref, dst)
            np.testing.assert_array_equal(store, ref)
        for b in cell.blocks:
            A = np.zeros(theta.shape[:-1] + (b.n_out, b.n_in))
            A[..., b.idx_i, b.idx_j] = theta[..., b.cols]                # the definition of θ's layout
            np.testing.assert_array_equal(P[b.name], A)
            np.testing.assert_array_equal(cell.unpack(theta)[b.name], A)
        s, x = rng.standard_normal((theta.reshape(-1, cell.p).shape[0], cell.k)), np.ones((1, cell.m))
        np.testing.assert_array_equal(cell.step(theta, s, x), cell.step(theta.copy(), s, x))
        theta += 0.1 * rng.standard_normal(theta.shape)                  # in place, as the optimiser does


@pytest.mark.parametrize("name,density", [("elman", 1.0), ("contractive-elman", 1.0), ("elman", 0.4)])
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_kf_rtrl_step_equals_update_then_gradient(name, density, batch):
    """The compiled KF-RTRL step (``kronecker_step``) against the numpy ``update`` + ``gradient``
    from the same state and signs.  Both form the same ``D_t A``; the four norms are sums of at
    most ``n = k² `` squares in another order (relative error ``≤ γ_n`` each), so ``p₁, p₂`` (square
    roots of ratios of two norms) agree within ``r = 2γ_n``; ``u`` and ``A`` are two products and
    a sum on each side (``γ_3`` each) of factors that differ by ``r``; ``c_t A`` is a sum of ``k``
    products (``γ_k`` each side) and ``ĝ`` one product of it with ``u``."""
    rng = np.random.default_rng(13)
    cell = make_cell(name, 4, 3, density=density, mask_seed=3)
    theta, lins, credits = _path(cell, batch, 6, rng)
    est = make_estimator("kf-rtrl")
    signs = np.where(rng.random((6, batch, 2)) < 0.5, -1.0, 1.0)
    replay = SignReplay(signs)
    st = est.init(cell, theta, batch)
    for lin in lins[:5]:
        st = est.update(st, lin, replay)
    twin = est.init(cell, theta, batch)
    twin.u, twin.A = st.u.copy(), st.A.copy()
    lin, c = lins[5], credits[5]
    DA = np.abs(lin.dynamics.matmul(twin.A))
    a, ga = est.step(st, lin, c, SignReplay(signs[5:]))
    b = est.update(twin, lin, SignReplay(signs[5:]))
    b, gb = est.gradient(b, c)
    r = 2 * gamma(cell.k * cell.k + cell.m + 1)
    np.testing.assert_allclose(a.scales, b.scales, rtol=r, atol=0)
    p1, p2 = b.scales[:, :1], b.scales[:, 1:]
    ahat = np.abs(np.concatenate([lin.I.sources[s] for s in b.layout.sources], axis=1))
    du = (r + 2 * gamma(3)) * (np.abs(twin.u) * p1 + ahat * p2)
    assert np.all(np.abs(a.u - b.u) <= du)
    sig = np.abs(lin.I.gates[b.layout.gate].vals[:, 0, :])
    dA = (r + 2 * gamma(3)) * (DA / p1[:, :, None] + sig[:, :, None] * np.eye(cell.k) / p2[:, :, None])
    assert np.all(np.abs(a.A - b.A) <= dA)
    absA = np.abs(b.A) + dA
    cA = np.matmul(np.abs(c)[:, None, :], absA)[:, 0, :]                   # ≥ |c A| on either side
    dcA = np.matmul(np.abs(c)[:, None, :], dA)[:, 0, :] + 2 * gamma(cell.k) * cA
    u, ac = b.layout.ucol, b.layout.acol
    bound = du[:, u] * cA[:, ac] + (np.abs(b.u) + du)[:, u] * dcA[:, ac] + 2 * gamma(1) * np.abs(gb)
    assert np.all(np.abs(ga - gb) <= bound)
    assert np.max(np.abs(ga)) > 0


@pytest.mark.parametrize("kernel", ["compiled", "reference"])
def test_two_matvecs_are_the_two_products(kernel):
    """``A a`` and ``A[:, :k] t`` in one pass over ``A`` against numpy's products: sums of ``q``
    products in another order, ``|error| ≤ γ_q Σ|A||a|`` (Higham §3.5)."""
    from rtrl_validation.simulations.kernels_fused import two_matvecs, two_matvecs_reference
    rng = np.random.default_rng(16)
    n, k, q = 37, 29, 41
    A = np.asfortranarray(rng.standard_normal((n, q)))              # column-major, as θ stores it
    a, t = rng.standard_normal(q), rng.standard_normal(k)
    z, w = np.full(n, np.nan), np.full(n, np.nan)
    (two_matvecs if kernel == "compiled" else two_matvecs_reference)(A.T, a, t, z, w)
    assert np.all(np.abs(z - A @ a) <= gamma(q) * (np.abs(A) @ np.abs(a)))
    assert np.all(np.abs(w - A[:, :k] @ t) <= gamma(k) * (np.abs(A[:, :k]) @ np.abs(t)))


@pytest.mark.parametrize("shared", [True, False])
def test_two_matvecs_batched_are_each_replicates_products(shared):
    """:func:`two_matvecs_batched`: each replicate's two products (its own ``A`` or one shared),
    within the same bound as one replicate's."""
    from rtrl_validation.simulations.kernels_fused import two_matvecs_batched
    rng = np.random.default_rng(18)
    B, n, k, q = 4, 13, 11, 19
    A = rng.standard_normal((1 if shared else B, q, n))               # each A column-major: its transpose
    a, t = rng.standard_normal((B, q)), rng.standard_normal((B, k))
    z, w = np.full((B, n), np.nan), np.full((B, n), np.nan)
    two_matvecs_batched(A, a, t, z, w)
    for b in range(B):
        Ab = A[0 if shared else b].T
        assert np.all(np.abs(z[b] - Ab @ a[b]) <= gamma(q) * (np.abs(Ab) @ np.abs(a[b])))
        assert np.all(np.abs(w[b] - Ab[:, :k] @ t[b]) <= gamma(k) * (np.abs(Ab[:, :k]) @ np.abs(t[b])))


@pytest.mark.parametrize("density,batch,shared", [(1.0, 1, True), (1.0, 3, True), (1.0, 3, False), (0.5, 1, True),
                                                  (0.5, 3, False)])
def test_linearize_with_a_tangent_forms_D_times_it(density, batch, shared):
    """``linearize(θ, s, x, tangent)`` forms ``D_t · tangent`` with the forward product (one read of
    ``W``); it equals ``D_t``'s own product and the state equals the plain forward step's, up to
    the rounding of sums of ``k + m + 1`` products in another order."""
    rng = np.random.default_rng(17)
    cell = make_cell("elman", 6, 3, density=density, mask_seed=2)
    theta = cell.init(rng) if shared else cell.init(rng, batch=batch)
    s, x, t = (rng.standard_normal((batch, n)) for n in (cell.k, cell.m, cell.k))
    fused, plain = cell.linearize(theta, s, x, t), cell.linearize(theta, s, x)
    q = cell.k + cell.m + 1
    W = plain.D                                                            # diag(σ') W, B × k × k
    bound = gamma(q + 2) * np.einsum("bij,bj->bi", np.abs(W), np.abs(t))
    assert np.all(np.abs(fused.dynamics.matvec(t) - np.einsum("bij,bj->bi", W, t)) <= bound)
    assert fused.dynamics.matvec(t) is fused.dynamics.matvec(t)           # the remembered product
    P = cell.unpack(theta)
    A = np.concatenate([np.broadcast_to(P[n], (batch,) + P[n].shape[-2:]) for n in ("W", "U", "b")], axis=-1)
    ahat = np.concatenate([s, x, np.ones((batch, 1))], axis=1)
    mag = np.einsum("bij,bj->bi", np.abs(A), np.abs(ahat))                 # tanh is 1-Lipschitz
    assert np.all(np.abs(fused.state - plain.state) <= 2 * gamma(q) * mag)
