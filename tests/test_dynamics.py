"""The factored Jacobians (THEORY.md §1, §3): every product of the factored ``D_t`` and ``I_t``
equals the same product with their dense arrays, for every cell, dense and sparse weights, ``θ``
shared by the replicates and one ``θ`` per replicate.

Bounds: an entry of ``D_t v`` is a sum over the terms and the ``k`` state entries of products of
at most four factors (gate Jacobian, weight, column scale, ``v``); the standard forward-error
bound for sums of products (Higham §3.5) gives ``|fl(x) − x| ≤ γ_n Σ|products|`` with ``n`` the
number of roundings along any one product and the sum, so two summation orders differ by at most
``2 γ_n M`` with ``M = (Σ_terms |L||W||R| E) |v|``; ``n = 2k + 8`` covers the ``k``-term sum, the
dense reset-gate Jacobian of the standard GRU (itself a ``k``-term sum), four multiplications and up
to five terms.  ``M`` is evaluated in float64 from the absolute factors (its own relative error,
``γ_n``, is second order).  Equalities that involve no reordering are asserted exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.symbolic import gamma
from rtrl_validation.simulations.cells import CELLS, make_cell
from rtrl_validation.simulations.estimators import make_estimator
from rtrl_validation.simulations.estimators.masked import influence_rounding_bound
from rtrl_validation.simulations.estimators.signs import SignReplay, all_sign_sequences
from rtrl_validation.simulations.estimators import uoro as uoro_module
from rtrl_validation.simulations.jacobians import (DynamicsJacobian, DynamicsTerm, GateJacobian, Linearization, block_outer,
                                   merge_blocks, outer_into)
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence

B = 3


def linearization(name, density, per_replicate, seed=0, hidden=4):
    rng = np.random.default_rng(seed)
    cell = make_cell(name, hidden, 3, density=density, mask_seed=seed + 1)
    theta = cell.init(rng, scale=1.5, batch=B if per_replicate else None)
    s = rng.uniform(-0.9, 0.9, (B, cell.k))
    return cell, theta, cell.linearize(theta, s, rng.standard_normal((B, 3))), rng


def magnitude(dyn: DynamicsJacobian) -> np.ndarray:
    """``Σ_terms |L| |W| |R| E`` (``B × k × k``): the factored form with absolute factors."""
    terms = tuple(DynamicsTerm(GateJacobian(np.abs(t.L.vals), t.L.rows, t.L.starts),
                               None if t.W is None else np.abs(t.W), None if t.R is None else np.abs(t.R), t.cols)
                  for t in dyn.terms)
    return DynamicsJacobian(dyn.k, terms).dense()


CASES = [(name, density, per) for name in CELLS for density in (1.0, 0.5) for per in (False, True)]


@pytest.mark.parametrize("name,density,per_replicate", CASES)
def test_factored_products_equal_the_dense_jacobian(name, density, per_replicate):
    cell, theta, lin, rng = linearization(name, density, per_replicate)
    dyn, k = lin.dynamics, cell.k
    D = dyn.dense()
    M = magnitude(dyn)
    g = gamma(2 * k + 8)
    v, lam = rng.standard_normal((B, k)), rng.standard_normal((B, k))
    ref = np.matmul(D, v[:, :, None])[:, :, 0]
    assert np.all(np.abs(dyn.matvec(v) - ref) <= 2 * g * np.matmul(M, np.abs(v)[:, :, None])[:, :, 0])
    ref = np.matmul(lam[:, None, :], D)[:, 0, :]
    assert np.all(np.abs(dyn.rmatvec(lam) - ref) <= 2 * g * np.matmul(np.abs(lam)[:, None, :], M)[:, 0, :])
    idx = np.arange(k)                  # single entries: the same products in the same order as dense()
    np.testing.assert_array_equal(dyn.diagonal(), D[:, idx, idx])
    flat = rng.choice(k * k, size=2 * k, replace=False)
    np.testing.assert_array_equal(dyn.entries(flat), D.reshape(B, -1)[:, flat])
    np.testing.assert_array_equal(dyn.entries(flat, compiled=False), D.reshape(B, -1)[:, flat])   # numpy reference
    flat = np.sort(flat)[: k]
    np.testing.assert_array_equal(dyn.entries(flat), D.reshape(B, -1)[:, flat])
    flat = np.arange(k * k)             # every entry: the levels' entries are slices
    np.testing.assert_array_equal(dyn.entries(flat), D.reshape(B, -1))
    A = rng.standard_normal((B, k, 5))
    np.testing.assert_array_equal(dyn.matmul(A), np.matmul(D, A))
    # the products are not vacuous: they see every term
    assert np.max(np.abs(ref)) > 1e6 * 2 * g * np.max(M) * np.max(np.abs(lam))


@pytest.mark.parametrize("name,per_replicate", [(name, per) for name in CELLS for per in (False, True)])
def test_a_masked_w_is_read_at_its_free_entries_in_thetas_order(name, per_replicate):
    """A masked ``W``'s terms carry its free entries (views of ``θ``), and ``entries`` reads them
    there, in ``θ``'s order, and nowhere else: reading all of ``D``, the plan's places ``q`` are
    every free entry in order, each ``W[i, l]``, and every entry the plan leaves out is a
    structural zero of ``W`` (a dense gate Jacobian's term, the standard GRU's reset gate, is
    formed as its product).  (The values themselves are checked against ``dense()`` bit for bit
    in the test above.)"""
    cell, theta, lin, rng = linearization(name, 0.5, per_replicate)
    dyn, k = lin.dynamics, cell.k
    masked = [t for t in dyn.terms if t.free is not None]
    assert masked, "a cell at density 0.5 has a masked W"
    plan = dyn.entry_plan(np.arange(k * k))
    for t, levels in zip(dyn.terms, plan):
        if t.free is None:
            assert all(q is None for *_, q in levels)
            continue
        assert np.shares_memory(t.free.values, theta)
        W = t.W if t.W.ndim == 3 else t.W[None]
        np.testing.assert_array_equal(W[:, t.free.i, t.free.j], t.free.values)
        zero = np.ones(W.shape[1:], dtype=bool)
        zero[t.free.i, t.free.j] = False
        assert np.all(W[:, zero] == 0.0)
        for r, e, i, l, q in levels:
            if r is None:                 # a dense gate Jacobian: its product with W, gathered
                assert q is None
                continue
            np.testing.assert_array_equal(q, np.arange(t.free.i.size))     # all of D: every free entry, in order
            np.testing.assert_array_equal(W[:, i, l], t.free.values[:, q])


@pytest.mark.parametrize("name,density", [(name, d) for name in CELLS for d in (1.0, 0.5)])
def test_dense_jacobian_is_the_sum_of_its_terms(name, density):
    """``dense()`` (with its one-pass Elman shortcut) against the terms multiplied out one by one."""
    cell, theta, lin, rng = linearization(name, density, False)
    k, ref = cell.k, 0.0
    for t in lin.dynamics.terms:
        cols = slice(0, k) if t.cols is None else t.cols
        q = cols.stop - cols.start
        W = np.eye(q) if t.W is None else t.W
        R = np.ones((B, q)) if t.R is None else t.R
        block = np.zeros((B, k, k))
        block[:, :, cols] = np.matmul(t.L.dense(k), W * R[:, None, :])
        ref = ref + block
    assert np.all(np.abs(lin.D - ref) <= 2 * gamma(2 * k + 8) * magnitude(lin.dynamics))


def test_shared_theta_is_one_product_for_all_replicates():
    """θ shared (``W``: ``k × k``) and the same θ copied per replicate (``W``: ``B × k × k``) agree."""
    cell, theta, lin, rng = linearization("gru", 1.0, False)
    lin_b = cell.linearize(np.tile(theta, (B, 1)), lin.I.sources["s"], lin.I.sources["x"])
    assert lin.dynamics.terms[1].W.ndim == 2 and lin_b.dynamics.terms[1].W.ndim == 3
    v = rng.standard_normal((B, cell.k))
    bound = 2 * gamma(2 * cell.k + 8) * np.matmul(magnitude(lin.dynamics), np.abs(v)[:, :, None])[:, :, 0]
    assert np.all(np.abs(lin.dynamics.matvec(v) - lin_b.dynamics.matvec(v)) <= bound)
    assert np.all(np.abs(lin.D - lin_b.D) <= 2 * gamma(2 * cell.k + 8) * magnitude(lin.dynamics))


def test_entry_assignment_replaces_the_factors():
    """An edited ``D`` (as the mutation tests build it) is what every product then uses."""
    cell, theta, lin, rng = linearization("lstm", 1.0, False)
    D = lin.dynamics.copy()
    D[:, 0, :] *= -1.0
    E = lin.D.copy()
    E[:, 0, :] *= -1.0
    assert D.terms is None and lin.dynamics.terms is not None
    v = rng.standard_normal((B, cell.k))
    np.testing.assert_array_equal(D.dense(), E)
    np.testing.assert_array_equal(D.matvec(v), np.matmul(E, v[:, :, None])[:, :, 0])
    np.testing.assert_array_equal(D.rmatvec(v), np.matmul(v[:, None, :], E)[:, 0, :])
    np.testing.assert_array_equal(D.diagonal(), E[:, np.arange(cell.k), np.arange(cell.k)])
    np.testing.assert_array_equal(Linearization(lin.state, E, lin.I).D, E)


# ------------------------------------------------------------------ I_t
@pytest.mark.parametrize("name,density,per_replicate", CASES)
def test_immediate_jacobian_products(name, density, per_replicate):
    """``λ I`` by outer products (into a new array, into ``out``, accumulated, scaled), ``‖λ I‖`` from the
    factors' norms, and ``J += I`` on views of a larger buffer, against the dense ``I``."""
    cell, theta, lin, rng = linearization(name, density, per_replicate)
    I, k, p = lin.I, cell.k, cell.p
    Id = I.dense()
    lam = rng.standard_normal((B, k))
    ref = np.einsum("bk,bkp->bp", lam, Id)
    mag = np.einsum("bk,bkp->bp", np.abs(lam), np.abs(Id))
    assert np.all(np.abs(I.rmatvec(lam) - ref) <= 2 * gamma(k + 4) * mag)
    out = rng.standard_normal((B, p))
    scale = rng.uniform(0.5, 2.0, B)
    acc = I.rmatvec(lam, out=out.copy(), add=True, scale=scale)
    assert np.all(np.abs(acc - (out + scale[:, None] * ref)) <= 2 * gamma(k + 6) * (np.abs(out) + scale[:, None] * mag))
    norms = I.rmatvec_norms(lam)
    assert np.all(np.abs(norms - np.linalg.norm(ref, axis=1)) <= gamma(2 * (k + p) + 8) * np.linalg.norm(mag, axis=1))
    big = rng.standard_normal((B, k + 1, p))
    J = big[:, :k]                      # a view: each matrix contiguous, replicates k + 1 rows apart
    expect = J + Id
    I.add_to(J)
    assert np.all(np.abs(J - expect) <= gamma(1) * np.abs(expect))
    assert np.all(big[:, k] == big[:, k])


def test_merged_blocks_keep_the_layout():
    """Merging a gate's consecutive unmasked blocks changes no number of ``λ I``."""
    for name in CELLS:
        cell, theta, lin, rng = linearization(name, 1.0, False)
        lg = lin.I.left_gates(rng.standard_normal((B, cell.k)))
        merged = merge_blocks(cell.blocks)
        assert len(merged) == len({b.gate for b in cell.blocks})
        each = block_outer(cell.blocks, cell.p, lambda b: lin.I.sources[b.source], lambda b: lg[b.gate])
        np.testing.assert_array_equal(block_outer(merged, cell.p, lin.I.source, lambda b: lg[b.gate]), each)


def test_outer_products_one_replicate_and_batch_last():
    """The rank-one BLAS path (one replicate) and the numpy paths give the same grids."""
    rng = np.random.default_rng(3)
    v, w, base = rng.standard_normal((1, 7)), rng.standard_normal((1, 5)), rng.standard_normal((1, 7, 5))
    out = base.copy()
    outer_into(out, v, w, add=True)
    ref = base + v[:, :, None] * w[:, None, :]
    assert np.all(np.abs(out - ref) <= gamma(1) * (np.abs(base) + np.abs(ref)))
    outer_into(out, v, w)
    np.testing.assert_array_equal(out, v[:, :, None] * w[:, None, :])
    V, W = rng.standard_normal((4, 7)), rng.standard_normal((4, 5))
    last = np.zeros((7, 5, 4))
    outer_into(last, V, W, batch_last=True)
    np.testing.assert_array_equal(last, (V[:, :, None] * W[:, None, :]).transpose(1, 2, 0))


# ------------------------------------------------------------------ estimators on the factored form
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("batch", [1, 2])
def test_fused_rtrl_step_equals_update_then_gradient(name, batch):
    """``[D; cD] J`` in one product gives the same ``J_t`` and ``g_t = c J_t`` as the two passes."""
    rng = np.random.default_rng(4)
    cell = make_cell(name, 3, 2)
    theta = cell.init(rng, scale=1.5)
    est = make_estimator("rtrl")
    a, b = est.init(cell, theta, batch), est.init(cell, theta, batch)
    s, lins = np.zeros((batch, cell.k)), []
    for _ in range(5):
        lin = cell.linearize(theta, s, rng.standard_normal((batch, 2)))
        s, c = lin.state, rng.standard_normal((batch, cell.k))
        lins.append(lin)
        a, ga = est.step(a, lin, c)
        b = est.update(b, lin)
        b, gb = est.gradient(b, c)
        E = influence_rounding_bound(lins, cell.k)
        Ja, Jb = est.influence(a), est.influence(b)
        assert np.all(np.abs(Ja - Jb) <= 2 * E)
        bound = 2 * gamma(cell.k + 2) * np.einsum("bk,bkp->bp", np.abs(c), np.abs(Jb) + E) \
            + np.einsum("bk,bkp->bp", np.abs(c), 2 * E)
        assert np.all(np.abs(ga - gb) <= bound)


def test_step_keeps_a_redefined_update():
    """A subclass that changes ``update`` (here: influence restarted every step, so ``g_t = c_t I_t``) is
    not bypassed by the fused ``step`` that ``run_sequence`` calls."""
    from rtrl_validation.simulations.estimators.rtrl import RTRL

    class Immediate(RTRL):
        def update(self, state, lin, rng=None):
            state.J[...] = 0.0
            return super().update(state, lin, rng)

    rng = np.random.default_rng(5)
    cell = make_cell("elman", 3, 2)
    theta, ro = cell.init(rng), LinearReadout(cell.k, 1)
    phi = ro.init(rng)
    xs, ys = rng.standard_normal((4, 1, 2)), rng.standard_normal((4, 1, 1))
    g = run_sequence(cell, theta, ro, phi, xs, ys, Immediate()).grad_theta
    ref, s = 0.0, np.zeros((1, cell.k))
    for x, y in zip(xs, ys):
        lin = cell.linearize(theta, s, x)
        s = lin.state
        ref = ref + lin.I.rmatvec(ro.evaluate(phi, s, y)[1])
    np.testing.assert_allclose(g, ref, rtol=1e-13, atol=1e-15)


def test_uoro_factor_fold_keeps_the_estimate(monkeypatch):
    """Folding ``θ̃``'s scalar factor into its direction (forced at every step) changes no estimate
    beyond rounding: the same signs give the same ``s̃ θ̃ᵀ``."""
    rng = np.random.default_rng(6)
    cell = make_cell("gru-reset-after", 3, 2)
    theta = cell.init(rng)
    xs = rng.standard_normal((6, 1, 2))
    signs = all_sign_sequences(cell.k, 6)[:, :2]

    def run():
        est = make_estimator("uoro")
        st, s, replay = est.init(cell, theta, 2), np.zeros((2, cell.k)), SignReplay(signs)
        for x in xs:
            lin = cell.linearize(theta, s, np.repeat(x, 2, axis=0))
            s = lin.state
            st = est.update(st, lin, replay)
        return est.influence(st)

    lazy = run()
    monkeypatch.setattr(uoro_module, "FOLD_RANGE", (1.0, 1.0))
    eager = run()
    assert np.max(np.abs(lazy)) > 0
    np.testing.assert_allclose(lazy, eager, rtol=gamma(6 * (cell.k + 8)) * 10, atol=0)
