"""SnAp-n, RFLO, UORO and KF-RTRL (THEORY.md §4): the masked recursion, the identities, storage.

Every comparison of two float64 computations of the same recursion uses the derived rounding
bound ``2·E_T`` of :func:`influence_rounding_bound` (dot products of at most ``k + 1`` terms,
propagated through ``|D_t|``); a mismatch in the mask or the pair lists is an ``O(1)`` error.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.simulations.cells import CELLS, make_cell
from rtrl_validation.simulations.estimators import ESTIMATORS, make_estimator, parse_estimator
from rtrl_validation.simulations.estimators.masked import exact_order, influence_rounding_bound
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence

T = 6


def trajectory(cell, theta, xs):
    """Linearizations along the data path ``xs`` (``T × B × m``)."""
    s, lins = np.zeros((xs.shape[1], cell.k)), []
    for x in xs:
        lins.append(cell.linearize(theta, s, x))
        s = lins[-1].state
    return lins


def run(est, cell, theta, lins, rng=None):
    state = est.init(cell, theta, lins[0].state.shape[0], rng)
    for lin in lins:
        state = est.update(state, lin, rng)
    return est.influence(state), state


def masked_reference(lins, M, drop_diagonal=False):
    """``J̃_t = (D_t J̃ + I_t) ⊙ M`` with dense arrays (the definition, THEORY §4)."""
    J = 0.0
    for lin in lins:
        D = lin.D.copy()
        if drop_diagonal:
            idx = np.arange(D.shape[1])
            D[:, idx, idx] = 0.0
        J = (np.matmul(D, J) if np.ndim(J) else 0.0) + lin.I.dense()
        J = J * M
    return J


def beyond_rounding(A, B, bound, factor=100.0) -> bool:
    """Some entry differs by more than ``factor`` times its rounding bound."""
    return bool(np.any(np.abs(A - B) > factor * bound))


def setup(name, density, seed=0, hidden=5, batch=2, masks=None):
    rng = np.random.default_rng(seed)
    cell = make_cell(name, hidden, 2, density=density, mask_seed=seed + 7, masks=masks)
    theta = cell.init(rng, scale=1.5)
    xs = rng.standard_normal((T, batch, 2))
    return cell, theta, trajectory(cell, theta, xs)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("batch", [1, 2])
def test_snap_is_the_masked_recursion(name, density, batch):
    """The sparse path computes exactly ``(D J̃ + I) ⊙ M_n`` for every cell, order, density and batch
    size (one replicate takes the rank-one BLAS updates, several the batch-last broadcasts)."""
    cell, theta, lins = setup(name, density, batch=batch)
    bound = 2.0 * influence_rounding_bound(lins, cell.k)
    for n in (1, 2, 3):
        est = make_estimator("snap", n=n)
        J, _ = run(est, cell, theta, lins)
        ref = masked_reference(lins, est.structure(cell).mask())
        assert np.all(np.abs(J - ref) <= bound), f"snap-{n}"
    est = make_estimator("rflo")
    J, _ = run(est, cell, theta, lins)
    assert np.all(np.abs(J - masked_reference(lins, est.structure(cell).mask(), True)) <= bound)


@pytest.mark.parametrize("name", list(CELLS))
def test_snap_equals_rtrl_from_the_exact_order(name):
    """SnAp-n = RTRL for n ≥ n* (the closure of the reachability); SnAp-(n*−1) is biased."""
    cell, theta, lins = setup(name, 0.25, seed=3, hidden=6)
    n_star = exact_order(cell)
    J, _ = run(make_estimator("rtrl"), cell, theta, lins)
    bound = 2.0 * influence_rounding_bound(lins, cell.k)
    for n in (n_star, n_star + 1):
        Jn, _ = run(make_estimator("snap", n=n), cell, theta, lins)
        assert np.all(np.abs(Jn - J) <= bound)
    if n_star > 1:
        Jb, _ = run(make_estimator("snap", n=n_star - 1), cell, theta, lins)
        assert beyond_rounding(Jb, J, bound)


def test_chain_network_needs_the_full_path_length():
    """A directed chain 0 → 1 → … → k−1 (with self-loops): n* = k, the closure is not all ones, so
    the sparse path is the one that becomes exact."""
    k = 6
    W = np.eye(k, dtype=bool) | np.eye(k, k=-1, dtype=bool)
    cell, theta, lins = setup("elman", 1.0, seed=4, hidden=k, masks={"W": W})
    assert exact_order(cell) == k
    est = make_estimator("snap", n=k)
    assert not est.structure(cell).dense
    J, _ = run(make_estimator("rtrl"), cell, theta, lins)
    bound = 2.0 * influence_rounding_bound(lins, k)
    assert np.all(np.abs(run(est, cell, theta, lins)[0] - J) <= bound)
    assert beyond_rounding(run(make_estimator("snap", n=k - 1), cell, theta, lins)[0], J, bound)


@pytest.mark.parametrize("name", ["elman", "gru", "gru-reset-after"])
def test_snap1_equals_rtrl_when_D_is_diagonal(name):
    """Diagonal recurrent weights make ``D_t`` diagonal; then SnAp-1 is exact.  (The LSTM's ``D``
    couples ``h_j`` and ``c_j`` even then, so it is not in this list.)"""
    k = 5
    eye = np.eye(k, dtype=bool)
    rng = np.random.default_rng(5)
    cell = make_cell(name, k, 2, masks={b.name: eye for b in make_cell(name, k, 2).blocks if b.recurrent})
    theta = cell.init(rng, scale=1.5)
    lins = trajectory(cell, theta, rng.standard_normal((T, 2, 2)))
    assert np.count_nonzero(np.abs(lins[-1].D[0]) * ~eye) == 0
    J, _ = run(make_estimator("rtrl"), cell, theta, lins)
    J1, _ = run(make_estimator("snap", n=1), cell, theta, lins)
    assert np.all(np.abs(J1 - J) <= 2.0 * influence_rounding_bound(lins, k))


def test_storage_follows_the_mask():
    """SnAp-1 of a dense Elman cell holds one number per parameter; SnAp-2 of a sparse one holds
    ``Σ_i q_i |{i} ∪ out(i)|`` (``q_i`` parameters feed unit ``i``), about ``p(1 + dk)``; neither
    state holds a ``k × p`` array."""
    rng = np.random.default_rng(0)
    dense = make_cell("elman", 32, 3)
    st = make_estimator("snap", n=1).init(dense, dense.init(rng), 4)
    assert st.J.size == 4 * dense.p

    k, d = 64, 0.1
    cell = make_cell("elman", k, 3, density=d, mask_seed=1)
    W = cell.mask("W")
    q = W.sum(axis=1) + cell.m + 1
    reach2 = (W | np.eye(k, dtype=bool)).sum(axis=0)         # |{i} ∪ {l : W[l, i] ≠ 0}|
    est = make_estimator("snap", n=2)
    st = est.init(cell, cell.init(rng), 4)
    assert st.J.size == 4 * int(np.sum(q * reach2)) == 4 * est.stored(st)
    assert 0.8 < est.stored(st) / (cell.p * (1 + d * k)) < 1.2
    assert not est.structure(cell).dense


def test_rflo_of_elman_is_the_immediate_jacobian():
    cell, theta, lins = setup("elman", 1.0)
    J, _ = run(make_estimator("rflo"), cell, theta, lins)
    assert np.array_equal(J, lins[-1].I.dense())


@pytest.mark.parametrize("spec", ["rtrl", "snap-1", "snap-2", "rflo", "uoro", "kf-rtrl"])
@pytest.mark.parametrize("density", [1.0, 0.4])
@pytest.mark.parametrize("batch", [1, 3])
def test_gradient_is_credit_times_influence(spec, density, batch):
    cell, theta, lins = setup("elman", density, batch=batch)
    est = parse_estimator(spec)
    rng = np.random.default_rng(1)
    J, state = run(est, cell, theta, lins, rng)
    c = rng.standard_normal((J.shape[0], cell.k))
    _, g = est.gradient(state, c)
    assert g.shape == (J.shape[0], cell.p)
    np.testing.assert_allclose(g, np.einsum("bk,bkp->bp", c, J), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(CELLS))
def test_exact_snap_gradient_matches_bptt(name):
    rng = np.random.default_rng(2)
    cell = make_cell(name, 4, 2, density=0.3, mask_seed=2)
    theta = cell.init(rng)
    ro = LinearReadout(cell.k, 2)
    phi = ro.init(rng)
    xs, ys = rng.standard_normal((T, 3, 2)), rng.standard_normal((T, 3, 2))
    ref = run_sequence(cell, theta, ro, phi, xs, ys, make_estimator("bptt")).grad_theta
    g = run_sequence(cell, theta, ro, phi, xs, ys, make_estimator("snap", n=exact_order(cell))).grad_theta
    np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-13)


def test_rtrl_keeps_dense_storage_and_initial_influence():
    cell, theta, lins = setup("gru", 1.0)
    est = make_estimator("rtrl")
    J0 = np.random.default_rng(3).standard_normal((2, cell.k, cell.p))
    st = est.init(cell, theta, 2, J0=J0)
    assert st.J.shape == (2, cell.k, cell.p)
    np.testing.assert_array_equal(est.influence(st), J0)
    snap = make_estimator("snap", n=1)
    sst = snap.init(cell, theta, 2, J0=J0)
    np.testing.assert_array_equal(snap.influence(sst), J0 * snap.structure(cell).mask())
    assert not np.any(snap.influence(snap.reset(sst)))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_snap_order_must_be_positive_integer(bad):
    with pytest.raises(ValueError, match="SnAp order n must be an integer >= 1"):
        make_estimator("snap", n=bad)


def test_bad_specs_give_one_clear_line():
    with pytest.raises(ValueError, match="SnAp order"):
        parse_estimator("snap-0")
    with pytest.raises(ValueError, match="density must be in"):
        make_cell("elman", 4, 2, density=1.5)


@pytest.mark.parametrize("name", ["gru", "gru-reset-after", "lstm"])
def test_kf_rtrl_refuses_unsupported_cells(name):
    cell = make_cell(name, 3, 2)
    with pytest.raises(ValueError, match="kf-rtrl needs a cell of the form") as err:
        make_estimator("kf-rtrl").init(cell, cell.init(np.random.default_rng(0)), 1)
    assert "\n" not in str(err.value)


def test_every_estimator_runs_on_every_supported_cell():
    rng = np.random.default_rng(4)
    for name in CELLS:
        cell = make_cell(name, 3, 2, density=0.5, mask_seed=1)
        theta, ro = cell.init(rng), LinearReadout(cell.k, 1)
        xs, ys = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 1))
        for est in ESTIMATORS:
            estimator = make_estimator(est)
            if not estimator.applies_to(cell):
                assert est == "kf-rtrl" and name not in ("elman", "contractive-elman")
                continue
            res = run_sequence(cell, theta, ro, ro.init(rng), xs, ys, estimator, rng)
            assert res.grad_theta.shape == (2, cell.p) and np.all(np.isfinite(res.grad_theta))


def test_uoro_guards_zero_norms():
    """A zero input and state keep every norm at zero: the guarded scales stay finite."""
    cell = make_cell("elman", 3, 2)
    theta = np.zeros(cell.p)
    lins = trajectory(cell, theta, np.zeros((3, 2, 2)))
    for name in ("uoro", "kf-rtrl"):
        J, _ = run(make_estimator(name), cell, theta, lins, np.random.default_rng(0))
        assert np.all(np.isfinite(J))


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("density", [1.0, 0.4])
def test_factored_rmatvec_is_the_dense_left_product(name, density):
    """``νᵀ I_t`` from the factored ``I_t`` (outer products for unmasked blocks, UORO's product)
    equals the product with the dense ``I_t``."""
    rng = np.random.default_rng(6)
    cell = make_cell(name, 4, 3, density=density, mask_seed=1)
    lin = cell.linearize(cell.init(rng), rng.standard_normal((3, cell.k)), rng.standard_normal((3, 3)))
    lam = rng.standard_normal((3, cell.k))
    np.testing.assert_allclose(lin.I.rmatvec(lam), np.einsum("bk,bkp->bp", lam, lin.I.dense()),
                               rtol=1e-13, atol=1e-15)
