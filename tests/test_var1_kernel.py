"""The compiled VAR(1)-teacher recursion (:func:`~simulations.data.kernels.var1_teacher_steps`)
against the numpy loop it replaced (:meth:`VAR1Teacher._steps_reference`), warmup included.

Both paths take the same ``x_0``, ``s*_0`` and ``ε``; they differ only by rounding.  Rounding bound
(float64, ``u = 2⁻⁵³``, ``γ_n = n u / (1 − n u)``; Higham §3.1: a sum of ``n`` terms, in any order
and with or without fused multiply-adds, is within ``γ_n Σ|terms|``), per replicate in the
Euclidean norm, superscripts ``c`` (compiled) and ``r`` (reference)::

    Δx_t ≤ ‖A‖ Δx_{t−1} + γ_{m+1} Σ_{c,r} ‖|A||x_{t−1}| + |ε_t|‖                  (x_t = A x_{t−1} + ε_t)
    Δz_t ≤ ‖W*‖ Δs_{t−1} + ‖U*‖ Δx_t + γ_q Σ_{c,r} ‖|W*||s_{t−1}| + |U*||x_t| + |b*|‖   (q = k + m + 1)
    Δs_t ≤ Δz_t                          (identity)
    Δs_t ≤ Δz_t + 2 · 4u √k              (tanh: 1-Lipschitz; each path's tanh within 4 ulp, and
                                          |tanh| < 1 has ulp ≤ u)
    Δy_t ≤ ‖V*‖ Δs_t + γ_{k+2} Σ_{c,r} ‖|V*||s_t| + |c*| + |σ_y η_t|‖            (the same η_t)

with ``Δx_0 = Δs_0 = 0``.  ``‖W*‖ = teacher_rho < 1`` and ``‖A‖ = ar < 1``, so the bound settles at
a multiple ``1 / (1 − teacher_rho)`` of one step's rounding instead of growing with ``t``
(at most 2·10⁻¹³ here, against 10⁻¹⁶–10⁻¹⁵ measured).  The 4 ulp of
the compiled ``tanh`` is :func:`~simulations.kernels.tanh_into`'s bound (tested in
``tests/test_online_kernel.py``); numpy's ``tanh`` is checked to 4 ulp of ``math.tanh`` on the
run's own pre-activations (``math.tanh`` taken as the correctly rounded value, as there).  A
dropped term, an index off by one or a wrong time index in the kernel moves the paths orders of
magnitude outside the bound (the bias dropped, ``U*``'s row ``j − 1``, ``ε_{t−1}``, ``x_{t−1}`` in
place of ``x_t``, ``Aᵀ`` for ``A``, ``W*``'s last column dropped: each fails every case here).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.data.var1 import TeacherState

U = 2.0 ** -53


def gamma(n: int) -> float:
    return n * U / (1.0 - n * U)


def norm(a: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis."""
    return np.sqrt(np.sum(a * a, axis=-1))


def state_bounds(proc, eps, xc, sc, xr, sr, x0, s0):
    """``(Δx_t, Δs_t)`` of the module docstring for ``t = 1 … T`` (``T × B`` each)."""
    P = proc.teacher.unpack(proc.teacher_theta)
    W, Um, b = P["W"], P["U"], P["b"][:, 0]
    k, m = proc.hidden, proc.m
    nA, nW, nU = (np.linalg.norm(M, 2) for M in (proc.A, W, Um))
    tanh_err = 8 * U * math.sqrt(k) if proc.activation == "tanh" else 0.0
    T, B = eps.shape[:2]
    dx, ds = np.zeros((T, B)), np.zeros((T, B))
    dx_prev, ds_prev = np.zeros(B), np.zeros(B)
    for t in range(T):
        mag_x = sum(norm(np.abs(x) @ np.abs(proc.A).T + np.abs(eps[t]))
                    for x in ((xc[t - 1], xr[t - 1]) if t else (x0, x0)))
        dx[t] = nA * dx_prev + gamma(m + 1) * mag_x
        mag_z = sum(norm(np.abs(s) @ np.abs(W).T + np.abs(x[t]) @ np.abs(Um).T + np.abs(b))
                    for s, x in (((sc[t - 1], xc), (sr[t - 1], xr)) if t else ((s0, xc), (s0, xr))))
        ds[t] = nW * ds_prev + nU * dx[t] + gamma(k + m + 1) * mag_z + tanh_err
        dx_prev, ds_prev = dx[t], ds[t]
    return dx, ds


def reconstruct(proc, B, T, seed):
    """``x_0`` and the innovations of ``init`` (warmup) and ``sample`` (``T`` steps) from ``seed``,
    drawn in the order the process draws them, and the targets' noise ``η``."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((B, proc.m))
    eps = proc._chol * rng.standard_normal((proc.warmup + T, B, proc.m))
    eta = rng.standard_normal((T, B, proc.n_out))
    return x0, eps, eta


@pytest.mark.parametrize("activation", ["tanh", "identity"])
@pytest.mark.parametrize("B", [1, 5])
def test_compiled_recursion_within_rounding_bound_of_numpy_loop(activation, B):
    proc = VAR1Teacher(hidden=6, inputs=3, n_out=2, activation=activation, teacher_rho=0.8, ar=0.7, noise=0.3,
                       out_scale=2.0, seed=5, warmup=150)
    T, seed = 60, 11
    x0, eps, eta = reconstruct(proc, B, T, seed)
    s0 = np.zeros((B, proc.hidden))
    xc, sc = proc._steps(TeacherState(x0, s0), eps)
    xr, sr = proc._steps_reference(TeacherState(x0, s0), eps)
    dx, ds = state_bounds(proc, eps, xc, sc, xr, sr, x0, s0)
    assert np.all(norm(xc - xr) <= dx)
    assert np.all(norm(sc - sr) <= ds)
    if activation == "tanh":                                # numpy's tanh within the bound's 4 ulp
        P = proc.teacher.unpack(proc.teacher_theta)
        z = np.concatenate([s0[None], sr[:-1]]) @ P["W"].T + xr @ P["U"].T + P["b"][:, 0]
        exact = np.vectorize(math.tanh)(z)
        assert np.all(np.abs(np.tanh(z) - exact) <= 4 * np.spacing(np.abs(exact)))

    # the public path: init (warmup) and sample draw x_0, ε and η in that order, on either path
    V, c = proc.teacher_readout.unpack(proc.teacher_phi)
    W0 = proc.warmup
    for compiled, xp, sp in ((True, xc, sc), (False, xr, sr)):
        proc.compiled = compiled
        rng = np.random.default_rng(seed)
        state = proc.init(rng, B)
        state, xs, ys = proc.sample(state, T, rng)
        np.testing.assert_array_equal(xs, xp[W0:])
        np.testing.assert_array_equal(state.x, xp[-1])
        np.testing.assert_array_equal(state.s, sp[-1])
        np.testing.assert_array_equal(ys, proc.teacher_readout.predict(proc.teacher_phi, sp[W0:]) + 0.3 * eta)
        if compiled:
            yc = ys
    mag_y = sum(norm(np.abs(s) @ np.abs(V).T + np.abs(c) + np.abs(0.3 * eta)) for s in (sc[W0:], sr[W0:]))
    dy = np.linalg.norm(V, 2) * ds[W0:] + gamma(proc.hidden + 2) * mag_y
    assert np.all(norm(yc - ys) <= dy)


def test_zero_steps_leave_the_state():
    proc = VAR1Teacher(hidden=3, inputs=2, seed=1, warmup=0)
    rng = np.random.default_rng(0)
    state = proc.init(rng, 4)
    after, xs, ys = proc.sample(state, 0, rng)
    assert xs.shape == (0, 4, 2) and ys.shape == (0, 4, 1)
    np.testing.assert_array_equal(after.x, state.x)
    np.testing.assert_array_equal(after.s, state.s)
