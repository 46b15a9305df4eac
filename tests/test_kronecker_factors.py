"""The Kronecker factors of an Elman step (``KroneckerFactors``) and the estimator steps that read
them: the factors describe the same ``D_t`` and ``I_t`` as the factored objects, and SnAp-1, RFLO,
UORO and KF-RTRL give bit-identical numbers whether they read the factors or the objects."""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.simulations import make_cell
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators.base import linearize_for
from rtrl_validation.simulations.jacobians import Linearization


def _objects_only(lin):
    """The same linearization without its factors (the estimators' general path)."""
    return Linearization(lin.state, lin.dynamics, lin.I)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("tangent", [False, True])
def test_factors_describe_the_factored_jacobians(batch, tangent):
    cell = make_cell("elman", 5, 3)
    rng = np.random.default_rng(0)
    theta, s, x = cell.init(rng, batch=batch), rng.standard_normal((batch, 5)), rng.standard_normal((batch, 3))
    v = rng.standard_normal((batch, 5)) if tangent else None
    lin = cell.linearize(theta, s, x, v)
    f = lin.factors
    assert f is not None and lin._dynamics is None           # the objects are formed only when read
    ahat = np.concatenate([s, x, np.ones((batch, 1))], axis=1)
    np.testing.assert_array_equal(f.ahat, ahat)
    D, I = lin.D, lin.I.dense()
    np.testing.assert_array_equal(f.diagonal(), np.diagonal(D, axis1=1, axis2=2))
    q = ahat.shape[1]
    for r in range(5):                                    # I[r, j·k + r] = σ'_r â_j, zero elsewhere
        cols = np.arange(q) * 5 + r
        np.testing.assert_array_equal(I[:, r, cols], f.dsigma[:, r, None] * ahat)
        assert not np.delete(I[:, r, :], cols, axis=1).any()
    np.testing.assert_allclose(D, f.dsigma[:, :, None] * np.broadcast_to(f.W, D.shape), rtol=0, atol=0)
    if tangent:
        np.testing.assert_allclose(f.Dv, np.einsum("bij,bj->bi", D, v), rtol=1e-13, atol=1e-15)
        assert lin.dynamics.matvec(v) is f.Dv
    else:
        assert f.Dv is None


def test_masked_elman_has_no_factors():
    cell = make_cell("elman", 6, 2, density=0.5)
    rng = np.random.default_rng(1)
    lin = cell.linearize(cell.init(rng, batch=1), rng.standard_normal((1, 6)), rng.standard_normal((1, 2)))
    assert lin.factors is None


@pytest.mark.parametrize("spec", ["snap-1", "rflo", "uoro", "kf-rtrl"])
@pytest.mark.parametrize("batch", [1, 4])
def test_steps_on_factors_equal_the_general_path(spec, batch):
    """The same estimator run twice on the same path, once reading the factors and once the
    factored objects: every gradient and the final state are bit-identical (any change of
    arithmetic in the factor path, e.g. a wrong ``diag(D_t)``, fails here)."""
    cell = make_cell("elman", 7, 3)
    rng = np.random.default_rng(2)
    theta = cell.init(rng, batch=batch)
    xs = rng.standard_normal((12, batch, 3))
    credits = rng.standard_normal((12, batch, 7))
    runs = []
    for strip in (False, True):
        est = parse_estimator(spec)
        r = np.random.default_rng(3)
        st, s, gs = est.init(cell, theta, batch, r), np.zeros((batch, 7)), []
        for t in range(12):
            lin = linearize_for(est, st, cell, theta, s, xs[t])
            if strip:
                lin = _objects_only(lin)
            else:
                assert lin.factors is not None
            st, g = est.step(st, lin, credits[t], r)
            gs.append(g)
            s = lin.state
        runs.append((np.array(gs), est.export_state(st)))
    (g0, s0), (g1, s1) = runs
    np.testing.assert_array_equal(g0, g1)
    assert np.abs(g0).max() > 0
    for key in s0:
        np.testing.assert_array_equal(np.asarray(s0[key]), np.asarray(s1[key]))


def test_the_uoro_kernel_turns_draws_into_the_signs_rademacher_gives():
    """``sign_draws`` then the compiled step's rule (``u ≥ ½ → +1``) are ``rademacher``'s signs, the
    boundary ``u = ½`` included (with ``D_t s̃ = 0``, ``ρ₀ = 1`` and ``s̃' = ρ₁ ν``)."""
    from rtrl_validation.simulations.estimators.signs import SignReplay, rademacher, sign_draws
    from rtrl_validation.simulations.kernels import kronecker_rank_one_step
    from rtrl_validation.simulations.estimators.uoro import FOLD_RANGE

    def signs(u):
        k = u.shape[1]
        out = kronecker_rank_one_step(np.zeros((1, 2 * k)), np.zeros((1, k)), np.ones(1), np.ones(1), u,
                                      np.ones((1, 2)), np.ones((1, k)), np.zeros((1, k)), np.zeros((1, k)),
                                      *FOLD_RANGE)
        return np.sign(out[1])

    edge = np.array([[0.5, np.nextafter(0.5, 0.0), 0.0, np.nextafter(1.0, 0.0)]])
    np.testing.assert_array_equal(signs(edge), [[1.0, -1.0, -1.0, 1.0]])
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(signs(sign_draws(a, (1, 64))), rademacher(b, (1, 64)))
    replay = np.array([[[1.0, -1.0, -1.0, 1.0]]])
    np.testing.assert_array_equal(signs(sign_draws(SignReplay(replay), (1, 4))), replay[0])


@pytest.mark.parametrize("cell_name", ["elman", "gru", "lstm"])
def test_fresh_linearization_forms_again_and_steps_alike(cell_name):
    """``Linearization.fresh`` (the ``cost`` experiment's timed steps): nothing of the original's
    formed objects or remembered products is kept, and an estimator's step on it gives the numbers
    of its step on a new linearization of the same step."""
    cell = make_cell(cell_name, 4, 3)
    rng = np.random.default_rng(2)
    theta, s, x = cell.init(rng, batch=1), rng.standard_normal((1, cell.k)), rng.standard_normal((1, 3))
    lin = cell.linearize(theta, s, x)
    v = rng.standard_normal((1, cell.k))
    Dv = lin.dynamics.matvec(v)
    lin.D
    lin.dynamics.remember(v, Dv)
    again = lin.fresh()
    assert again.state is lin.state and again.factors is lin.factors
    if lin.factors is not None:
        assert again._dynamics is None and again._I is None
    else:
        assert again.dynamics._known is None and (again.dynamics.terms is None or again.dynamics._dense is None)
    np.testing.assert_array_equal(again.D, lin.D)
    for spec in ("uoro", "snap-2", "rtrl"):
        est = parse_estimator(spec)
        a = est.step(est.init(cell, theta, 1, np.random.default_rng(1)), again, v, np.random.default_rng(3))[1]
        b = est.step(est.init(cell, theta, 1, np.random.default_rng(1)), cell.linearize(theta, s, x), v,
                     np.random.default_rng(3))[1]
        np.testing.assert_array_equal(a, b)


def test_fresh_keeps_a_dense_dynamics_matrix():
    """A linearization given ``D_t`` as a dense array keeps it (it is the data, not a cache)."""
    cell = make_cell("gru", 3, 2)
    rng = np.random.default_rng(4)
    lin = cell.linearize(cell.init(rng, batch=1), rng.standard_normal((1, 3)), rng.standard_normal((1, 2)))
    dense = Linearization(lin.state, lin.D.copy(), lin.I)
    v = rng.standard_normal((1, 3))
    dense.dynamics.remember(v, dense.dynamics.matvec(v))
    again = dense.fresh()
    assert again.dynamics._known is None
    np.testing.assert_array_equal(again.D, lin.D)
    np.testing.assert_array_equal(again.dynamics.matvec(v), dense.dynamics.matvec(v))
