"""UORO and KF-RTRL are unbiased (THEORY.md §4), proved exactly.

1. **Algebra (sympy)**: one step of each estimator, with symbolic ``D``, ``I`` (or ``â``, ``σ'``),
   symbolic previous factors and symbolic scales, averaged over every sign of that step, equals
   ``D J̃ + I`` (with ``J̃`` the previous product).  The UORO scale ``ρ₁`` is a symbol shared by
   ``ν`` and ``−ν`` (it depends on ``‖νᵀI‖``, which is even in ``ν``); ``ρ₀``, ``p₁``, ``p₂`` do not
   depend on the step's signs.  By induction ``E[J̃_t] = J_t``.
2. **Enumeration (float64)**: for ``k = 2`` and ``T ≤ 4`` every sign sequence is run as one
   replicate (:func:`simulations.estimators.enumeration.expected_influence`), so the expectation
   over signs is a finite average; it must equal exact RTRL's ``J_T`` within a derived rounding
   bound.  Signs with a shifted mean must fail the same comparison.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import make_estimator
from rtrl_validation.simulations.estimators.enumeration import Expectation, expected_influence
from rtrl_validation.simulations.experiments.base import Verdict


def uoro_step_residual(k: int = 2, p: int = 3) -> sp.Matrix:
    """``E_ν[s̃' θ̃'ᵀ] − (D s̃ θ̃ᵀ + I)`` for one UORO step, symbolically (``k × p``; zero when
    unbiased)."""
    D = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"D{i}{j}"))
    I = sp.Matrix(k, p, lambda i, j: sp.Symbol(f"I{i}{j}"))
    s = sp.Matrix(k, 1, lambda i, _: sp.Symbol(f"s{i}"))
    th = sp.Matrix(p, 1, lambda i, _: sp.Symbol(f"th{i}"))
    rho0 = sp.Symbol("rho0", positive=True)
    total = sp.zeros(k, p)
    signs = list(itertools.product((-1, 1), repeat=k))
    for nu in signs:
        key = min(nu, tuple(-x for x in nu))                  # ρ₁(ν) = ρ₁(−ν)
        rho1 = sp.Symbol("rho1_" + "".join("p" if x > 0 else "m" for x in key), positive=True)
        v = sp.Matrix(k, 1, list(nu))
        s_new = rho0 * D * s + rho1 * v
        th_new = th / rho0 + (v.T * I).T / rho1
        total += s_new * th_new.T
    return sp.expand(total / len(signs) - (D * s * th.T + I))


def kf_step_residual(k: int = 2, a: int = 3) -> sp.Matrix:
    """``E_c[u'ᵀ ⊗ A'] − (uᵀ ⊗ D A + âᵀ ⊗ diag σ')`` for one KF-RTRL step, symbolically."""
    D = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"D{i}{j}"))
    A = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"A{i}{j}"))
    u = sp.Matrix(1, a, lambda _, j: sp.Symbol(f"u{j}"))
    ah = sp.Matrix(1, a, lambda _, j: sp.Symbol(f"a{j}"))
    sig = sp.diag(*[sp.Symbol(f"g{i}") for i in range(k)])
    p1, p2 = sp.symbols("p1 p2", positive=True)
    total = sp.zeros(k, k * a)
    for c1, c2 in itertools.product((-1, 1), repeat=2):
        total += sp.kronecker_product(c1 * p1 * u + c2 * p2 * ah, c1 * D * A / p1 + c2 * sig / p2)
    return sp.expand(total / 4 - (sp.kronecker_product(u, D * A) + sp.kronecker_product(ah, sig)))


def exact_expectation(estimator: str, cell: str = "elman", hidden: int = 2, steps: int = 4,
                      seed: int = 0, shift: float = 0.0, scale: float = 1.5) -> Expectation:
    """Enumerate every sign sequence of ``estimator`` on a random ``θ`` and data path (``seed``)."""
    rng = np.random.default_rng(seed)
    c = make_cell(cell, hidden, 1)
    theta = c.init(rng, scale=scale)
    xs = rng.standard_normal((steps, c.m))
    return expected_influence(make_estimator(estimator), c, theta, xs, shift=shift)


def verdicts(steps: int = 4, seed: int = 0, shift: float = 0.2) -> list[Verdict]:
    """The exact unbiasedness checks of UORO and KF-RTRL as report verdicts."""
    out = []
    for name, residual in (("uoro", uoro_step_residual), ("kf-rtrl", kf_step_residual)):
        res = residual()
        zero = res == sp.zeros(*res.shape)
        out.append(Verdict(f"{name}: one step is unbiased (sympy)", bool(zero),
                           "E over the step's signs of the new product minus (D·J̃ + I) simplifies to "
                           + ("0" if zero else "a nonzero expression")))
        e = exact_expectation(name, steps=steps, seed=seed)
        out.append(Verdict(f"{name}: E over all sign sequences = RTRL (k=2, T={steps})", e.ratio <= 1.0,
                           f"{e.sequences} sequences; max|E J̃ − J| = {e.error:.2e}, "
                           f"{e.ratio:.3f} of the float64 rounding bound", e.ratio, 1.0))
        b = exact_expectation(name, steps=steps, seed=seed, shift=shift)
        out.append(Verdict(f"{name}: signs with mean {shift} are detected as biased", b.ratio > 1.0,
                           f"max|E J̃ − J| = {b.error:.2e} = {b.ratio:.3g} × the rounding bound", b.ratio, 1.0))
    return out
