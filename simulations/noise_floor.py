"""The stochastic-approximation noise floor of ``‖∇L‖`` near a stationary point (THEORY.md §5,
"Rates"): what a correct online gradient method reaches with steps ``α_t``.

Near a stationary point ``θ*`` with Hessian ``H`` (symmetric, ``d × d``), the error
``e_t = θ_t − θ*`` of ``θ_{t+1} = θ_t − α_t (∇L(θ_t) + ξ_t)`` follows, to first order,

    e_{t+1} = (I − α_t H) e_t − α_t ξ_t,

where ``ξ_t`` is the gradient estimate's error.  For an RTRL estimate along an ergodic path the
errors are correlated over the chain's memory; with steps small against that memory they act like
white noise with the long-run covariance ``S = Σ_h Cov(ξ_0, ξ_h)``.  Then ``∇L(θ_t) ≈ H e_t`` and

    E‖∇L(θ_t)‖² ≈ ‖H m_t‖² + tr(H C_t H),   C_{t+1} = A_t C_t A_tᵀ + α_t² S,   m_{t+1} = A_t m_t,

with ``A_t = I − α_t H``; for the mean ``ē`` of the iterates at a set of steps (a Polyak average)
the same recursion carries ``K_t = E[u_t e_tᵀ]`` and ``M_t = Cov(u_t)`` of the running sum ``u_t``.
In the eigenbasis of ``H`` every recursion is elementwise, and the floors read only the diagonals
(:func:`diagonal_recursion`, compiled: ``O(d)`` per step, 10⁶ steps in a fraction of a second).  Directions with ``λ ≈ 0`` (symmetries
of the parameterisation: the loss is flat along them) carry noise but no gradient.

:func:`floor` returns the predicted ``√(tr(H C_t H))`` at chosen steps, the Polyak floor and the
linearised transient ``‖H m‖`` from a start ``e_0`` (a horizon diagnostic: where the transient is
still above the floor, the run is too short to show the floor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class Floor:
    """Predicted noise floors (see module docstring).

    ``iterate``: ``√(tr(H C_t H))`` at the requested steps (``n``); ``polyak``: ``√(tr(H M H))/|S|``
    for the mean of the iterates at the averaging steps ``S``; ``transient_iterate`` (``n``) and
    ``transient_polyak``: ``‖H m‖`` of the linearised mean from ``e_0``; ``relaxation``:
    ``exp(−λ⁺_min Σ α_t)`` at the end (``λ⁺_min`` the smallest eigenvalue above the flat tolerance);
    ``negative``: the number of eigenvalues below ``−tol·λ_max`` (a saddle: no floor)."""

    iterate: np.ndarray
    polyak: float
    transient_iterate: np.ndarray
    transient_polyak: float
    relaxation: float
    negative: int


def floor(H, S, alphas, at, average, e0=None, flat_tol: float = 1e-8) -> Floor:
    """The floors of the linearised recursion over ``t = 1 … T`` (``alphas``: ``α_1 … α_T``).

    Parameters
    ----------
    H : (d, d) array
        Hessian of ``L`` at ``θ*`` (symmetrised).
    S : (d, d) array
        Long-run covariance of the gradient estimate's error at ``θ*``.
    alphas : (T,) array
        Step sizes; step ``t`` uses ``alphas[t − 1]``.
    at : (n,) int array
        Steps (``1 … T``) at which the iterate floor is returned.
    average : (N,) int array
        Steps whose iterates are averaged (the Polyak average).
    e0 : (d,) array, optional
        Start error ``θ_0 − θ*`` for the linearised transient (zero if omitted).
    """
    H = 0.5 * (np.asarray(H, dtype=float) + np.asarray(H, dtype=float).T)
    lam, Q = np.linalg.eigh(H)
    tol = flat_tol * max(np.abs(lam).max(), np.finfo(float).tiny)
    negative = int(np.sum(lam < -tol))
    lam = np.where(np.abs(lam) <= tol, 0.0, lam)
    St = Q.T @ np.asarray(S, dtype=float) @ Q
    d = lam.size
    m = np.zeros(d) if e0 is None else Q.T @ np.asarray(e0, dtype=float)
    at_steps = np.array(sorted(set(int(t) for t in at if 1 <= int(t) <= len(alphas))), dtype=np.int64)
    avg_mask = np.zeros(len(alphas) + 1, dtype=np.bool_)
    avg_mask[[int(t) for t in average if 1 <= int(t) <= len(alphas)]] = True
    alphas = np.asarray(alphas, dtype=float)
    c_at, m_at, c_m, u_m = diagonal_recursion(lam, np.ascontiguousarray(np.diag(St)), alphas, at_steps, avg_mask,
                                              np.array(m, dtype=float))
    n = max(len(set(int(t) for t in average)), 1)
    pos = lam[lam > 0]
    relax = float(np.exp(-pos.min() * alphas.sum())) if pos.size else 1.0
    with np.errstate(over="ignore", invalid="ignore"):    # a saddle (negative λ) grows: reported as inf
        it = np.array([np.sqrt(max(np.sum(c * lam ** 2), 0.0)) for c in c_at])      # tr(H C H), H diagonal
        tr_it = np.array([np.linalg.norm(lam * mm) for mm in m_at])
        return Floor(it, float(np.sqrt(max(np.sum(c_m * lam ** 2), 0.0)) / n), tr_it,
                     float(np.linalg.norm(lam * u_m) / n), relax, negative)


@numba.njit(cache=True, nogil=True)
def diagonal_recursion(lam, s, alphas, at, average, m):
    """The recursions of :func:`floor` in the eigenbasis of ``H``, on the diagonals they need.

    ``tr(H C H)`` and ``tr(H M H)`` read only the diagonals of ``C``, ``M`` (``H`` is diagonal
    there), and every recursion is elementwise, so the diagonals evolve alone:
    ``c ← a² c + α_t² s``, ``k ← a k`` then at averaging steps ``μ ← μ + 2k + c``, ``k ← k + c``, with
    ``a = 1 − α_t λ`` and ``s = diag(S)``; the mean ``m ← a m`` and its running sum ``u``.
    Returns ``c`` and ``m`` at the steps ``at`` (``n × d`` each), ``μ`` and ``u`` (``d``).
    ``average``: bool per step ``0 … T``.
    """
    d = lam.size
    c, k, mu, u = np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(d)
    c_at, m_at = np.empty((at.size, d)), np.empty((at.size, d))
    j = 0
    for t in range(1, alphas.size + 1):
        al = alphas[t - 1]
        for i in range(d):
            a = 1.0 - al * lam[i]
            c[i] = c[i] * (a * a) + al ** 2 * s[i]
            k[i] = k[i] * a
            m[i] = m[i] * a
        if average[t]:
            for i in range(d):
                mu[i] = mu[i] + ((k[i] + k[i]) + c[i])
                k[i] = k[i] + c[i]
                u[i] = u[i] + m[i]
        if j < at.size and at[j] == t:
            c_at[j] = c
            m_at[j] = m
            j += 1
    return c_at, m_at, mu, u


def hessian(grad, x, h: float = 1e-5) -> np.ndarray:
    """Symmetrised central-difference Jacobian of an exact gradient ``grad: (d,) -> (d,)`` at ``x``."""
    x = np.asarray(x, dtype=float)
    d = x.size
    J = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        J[:, i] = (grad(x + e) - grad(x - e)) / (2 * h)
    return 0.5 * (J + J.T)


def long_run_covariance(window_means: np.ndarray, window: int) -> np.ndarray:
    """``S`` from means of non-overlapping windows of ``window`` steps (``W × P × d``: windows ×
    independent paths × coordinates): ``window ·`` the covariance of the window means about their
    grand mean (batch means; windows long against the chain's memory)."""
    x = np.asarray(window_means, dtype=float).reshape(-1, window_means.shape[-1])
    x = x - x.mean(axis=0)
    return window * (x.T @ x) / (x.shape[0] - 1)
