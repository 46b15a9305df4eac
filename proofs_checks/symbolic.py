"""Symbolic derivations with sympy (THEORY.md §2.3, §3).

Each cell is written down again here, independently of the numeric engine, straight from the
equations of THEORY §3.  sympy differentiates it to obtain ``D = ∂F/∂s`` and ``I = ∂F/∂θ`` and the
total derivative of the unrolled loss ``L_T`` (T ≤ 3), which are compared with the engine's
``linearize``, RTRL recursion and BPTT adjoint.  Expressions are only ever evaluated through
``lambdify`` (with common-subexpression elimination); nothing is simplified.

Rounding bound used for the comparisons: evaluating an expression with ``n`` arithmetic
operations in float64 has a forward error of at most ``γ_n = nε/(1−nε)`` times the value obtained
with absolute values throughout; we use ``n`` = sympy's operation count of the largest compared
entry and the magnitude ``max(1, |value|)`` (activations are bounded by 1 in absolute value and
their derivatives too).  A doubled bound covers the two independent evaluations being compared.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from rtrl_validation.simulations.cells.dense import DenseEquationCell
from rtrl_validation.simulations.cells.symbolic import EquationCell

EPS = np.finfo(float).eps


def gamma(n: int) -> float:
    """``γ_n = nε / (1 − nε)``, the standard float64 forward-error constant."""
    return n * EPS / (1.0 - n * EPS)


def _sig(a):
    return 1 / (1 + sp.exp(-a))


#: the parameter matrices of each cell of THEORY §3 in the documented order of ``θ`` (rows, columns:
#: "s" the hidden size, "x" the inputs, 1 a bias column), written here from the equations and the
#: layout convention of ``simulations/jacobians.py`` — not read from the engine's blocks
PARAMETERS = {
    "elman": [("W", "s", "s"), ("U", "s", "x"), ("b", "s", 1)],
    "contractive-elman": [("W", "s", "s"), ("U", "s", "x"), ("b", "s", 1)],
    "gru": [m for g in "zrh" for m in ((f"W_{g}", "s", "s"), (f"U_{g}", "s", "x"), (f"b_{g}", "s", 1))],
    "gru-reset-after": [m for g in "zr" for m in ((f"W_{g}", "s", "s"), (f"U_{g}", "s", "x"), (f"b_{g}", "s", 1))]
    + [("W_h", "s", "s"), ("b_hr", "s", 1), ("U_h", "s", "x"), ("b_h", "s", 1)],
    "lstm": [m for g in "ifgo" for m in ((f"W_{g}", "s", "s"), (f"U_{g}", "s", "x"), (f"b_{g}", "s", 1))],
}


def _matrices(cell):
    """Parameter symbols ``θ`` and the matrices they fill, from :data:`PARAMETERS`: ``θ`` is the
    concatenation of the matrices in that order, each in column-major order with the entries its
    mask (``cell.masks``, the cell's configuration) switches off skipped (THEORY §3's column-stacked
    ``vec([W U b])`` for a dense Elman cell).  A cell built from its equations
    (``EquationCell``, ``DenseEquationCell``) that has no entry there is laid out by its own blocks:
    its symbolic form is its own expansion, so the comparison checks its factored ``D`` and ``I``,
    not a layout written independently."""
    if cell.name not in PARAMETERS:
        if isinstance(cell, (EquationCell, DenseEquationCell)):
            return _block_matrices(cell)
        raise ValueError(f"no parameter layout for cell {cell.name!r}: add its matrices, in the order of θ, "
                         "to rtrl_validation.proofs_checks.symbolic.PARAMETERS")
    size = {"s": cell.hidden, "x": cell.m, 1: 1}
    theta, mats = [], {}
    for name, rows, cols in PARAMETERS[cell.name]:
        n_out, n_in = size[rows], size[cols]
        mask = cell.masks.get(name)
        mask = np.ones((n_out, n_in), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        A = sp.zeros(n_out, n_in)
        for j in range(n_in):                       # column-major
            for i in range(n_out):
                if mask[i, j]:
                    A[i, j] = sp.Symbol(f"{name}_{i}_{j}", real=True)
                    theta.append(A[i, j])
        mats[name] = A
    return theta, mats


def _block_matrices(cell):
    """Parameter symbols ``θ`` in the engine's layout (``cell.blocks``) and the matrices they fill."""
    theta, mats = [], {}
    for b in cell.blocks:
        A = sp.zeros(b.n_out, b.n_in)
        for i, j in zip(b.idx_i, b.idx_j):
            A[int(i), int(j)] = sp.Symbol(f"{b.name}_{i}_{j}", real=True)
            theta.append(A[int(i), int(j)])
        mats[b.name] = A
    return theta, mats


def _apply(f, v):
    return v.applyfunc(f)


def _elman(cell, P, s, x):
    z = P["W"] * s + P["U"] * x + P["b"]
    return z if getattr(cell, "activation", "tanh") == "identity" else _apply(sp.tanh, z)


def _gru_gates(P, s, x):
    z = _apply(_sig, P["W_z"] * s + P["U_z"] * x + P["b_z"])
    r = _apply(_sig, P["W_r"] * s + P["U_r"] * x + P["b_r"])
    return z, r


def _gru(cell, P, s, x):
    z, r = _gru_gates(P, s, x)
    h = _apply(sp.tanh, P["W_h"] * r.multiply_elementwise(s) + P["U_h"] * x + P["b_h"])
    return (sp.ones(*z.shape) - z).multiply_elementwise(s) + z.multiply_elementwise(h)


def _gru_reset_after(cell, P, s, x):
    z, r = _gru_gates(P, s, x)
    h = _apply(sp.tanh, r.multiply_elementwise(P["W_h"] * s + P["b_hr"]) + P["U_h"] * x + P["b_h"])
    return (sp.ones(*z.shape) - z).multiply_elementwise(s) + z.multiply_elementwise(h)


def _lstm(cell, P, s, x):
    n = cell.hidden
    h, c = s[:n, :], s[n:, :]
    a = {g: P[f"W_{g}"] * h + P[f"U_{g}"] * x + P[f"b_{g}"] for g in "ifgo"}
    i, f, o = (_apply(_sig, a[g]) for g in "ifo")
    g = _apply(sp.tanh, a["g"])
    c_new = f.multiply_elementwise(c) + i.multiply_elementwise(g)
    h_new = o.multiply_elementwise(_apply(sp.tanh, c_new))
    return h_new.col_join(c_new)


#: cell name -> symbolic F(θ-matrices, s, x) written from THEORY §3
SYMBOLIC_CELLS = {
    "elman": _elman,
    "contractive-elman": _elman,
    "gru": _gru,
    "gru-reset-after": _gru_reset_after,
    "lstm": _lstm,
}



def update_of(cell):
    """The symbolic ``F(cell, P, s, x)`` of a cell: written here for the built-in cells; a cell
    built from its equations (:class:`~rtrl_validation.simulations.cells.symbolic.EquationCell`)
    gives its own, expanded without units or gates (its ``D`` and ``I`` are then checked against
    sympy's Jacobian of that expression); a :class:`~rtrl_validation.simulations.cells.dense.DenseEquationCell`
    its user's update."""
    if isinstance(cell, (EquationCell, DenseEquationCell)):
        return lambda cell, P, s, x: cell.expanded(P, s, x)
    if cell.name in SYMBOLIC_CELLS:
        return SYMBOLIC_CELLS[cell.name]
    raise ValueError(f"no symbolic form of cell {cell.name!r}: write it with Equations "
                     f"(rtrl_validation.simulations.cells.symbolic)")

@dataclass
class SymbolicCell:
    """The sympy form of one engine cell: ``F`` (``k × 1``), ``θ`` symbols, ``s``, ``x`` symbols."""

    cell: object
    theta: list
    s: sp.Matrix
    x: sp.Matrix
    F: sp.Matrix

    @classmethod
    def of(cls, cell) -> "SymbolicCell":
        theta, P = _matrices(cell)
        s = sp.Matrix(sp.symbols(f"s0:{cell.k}", real=True))
        x = sp.Matrix(sp.symbols(f"x0:{cell.m}", real=True))
        return cls(cell, theta, s, x, update_of(cell)(cell, P, s, x))

    def jacobians(self):
        """``(D, I)`` as sympy matrices, ``k × k`` and ``k × p`` (THEORY §1)."""
        return self.F.jacobian(self.s), self.F.jacobian(sp.Matrix(self.theta))

    def step_function(self):
        """Numeric ``(θ, s, x) -> (F, D, I)`` from the symbolic expressions (``lambdify`` with cse)."""
        D, I = self.jacobians()
        f = sp.lambdify([self.theta, list(self.s), list(self.x)], [self.F, D, I], modules="numpy", cse=True)
        ops = max(sp.count_ops(e) for e in list(D) + list(I) + list(self.F))
        return f, int(ops)


@dataclass
class Comparison:
    """Entrywise comparison of ``a`` against the reference ``b`` with an entrywise ``bound``."""

    name: str
    max_abs_error: float
    max_rel_error: float     # max|a − b| / max(max|b|, tiny)
    bound: float             # the bound in the same (normwise relative) units
    ratio: float             # max_i |a_i − b_i| / bound_i; passes when ≤ 1

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.ratio) and self.ratio <= 1.0)

    @classmethod
    def of(cls, name, a, b, bound) -> "Comparison":
        a, b = np.asarray(a, float), np.asarray(b, float)
        bound = np.broadcast_to(np.asarray(bound, float), b.shape)
        err = np.abs(a - b)
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(float).tiny)
        ratio = float(np.max(err / bound, initial=0.0)) if np.all(np.isfinite(err)) else np.inf
        return cls(name, float(np.max(err, initial=0.0)), float(np.max(err, initial=0.0) / scale),
                   float(np.max(bound, initial=0.0) / scale), ratio)


def check_jacobians(cell, rng: np.random.Generator, points: int = 3) -> list[Comparison]:
    """``D`` and ``I`` of ``cell.linearize`` against sympy's at ``points`` random ``(θ, s, x)``."""
    sym = SymbolicCell.of(cell)
    f, ops = sym.step_function()
    out = {"F": [], "D": [], "I": []}
    for _ in range(points):
        theta = cell.init(rng)
        s = rng.uniform(-0.9, 0.9, size=(1, cell.k))
        x = rng.standard_normal((1, cell.m))
        Fs, Ds, Is = (np.asarray(v, float) for v in f(list(theta), list(s[0]), list(x[0])))
        lin = cell.linearize(theta, s, x)
        for key, num, ref in (("F", lin.state[0], Fs.ravel()), ("D", lin.D[0], Ds), ("I", lin.I.dense()[0], Is)):
            out[key].append((num, ref))
    comps = []
    for key, pairs in out.items():
        num = np.stack([p[0] for p in pairs])
        ref = np.stack([p[1] for p in pairs])
        bound = 2 * gamma(ops + cell.k + cell.p) * np.maximum(1.0, np.abs(ref))
        comps.append(Comparison.of(f"sympy {key}", num, ref, bound))
    return comps


def unrolled_loss(cell, readout, phi, xs, ys, s0=None):
    """The unrolled composition ``L_T(θ) = Σ_t ℓ(y_t, G(F(…F(s_0, x_1)…, x_t)))`` as one sympy
    expression in the ``θ`` symbols (THEORY §2.3), for one sequence: ``xs`` ``T × m``, ``ys``
    ``T × n_out`` (mse) or ``T`` (xent), numeric ``φ``.  Returns ``(L, θ symbols)``."""
    theta, P = _matrices(cell)
    F = update_of(cell)
    s = sp.zeros(cell.k, 1) if s0 is None else sp.Matrix(np.asarray(s0, float))
    V, c = (sp.Matrix(a) for a in readout.unpack(np.asarray(phi, float)))
    L = sp.Integer(0)
    for t in range(len(xs)):
        s = F(cell, P, s, sp.Matrix(np.asarray(xs[t], float)))
        yhat = V * s + c
        if readout.loss == "mse":
            d = yhat - sp.Matrix(np.asarray(ys[t], float))
            L += sp.Rational(1, 2) * (d.T * d)[0, 0]
        else:
            L += sp.log(sum(sp.exp(v) for v in yhat)) - yhat[int(ys[t])]
    return L, theta


def elementary_program(expr):
    """Split ``expr`` into elementary assignments ``v_j = op(args)`` whose arguments are atoms or
    earlier ``v``'s (one per distinct subexpression: the expression DAG in SSA form).

    Returns ``(assignments, output)``.
    """
    memo, assigns = {}, []

    def visit(e):
        if e.is_Atom:
            return e
        hit = memo.get(e)
        if hit is None:
            node = e.func(*[visit(a) for a in e.args])
            hit = sp.Symbol(f"v{len(assigns)}", real=True)
            assigns.append((hit, node))
            memo[e] = hit
        return hit

    return assigns, visit(expr)


def total_derivative(expr, wrt):
    """``d expr / d wrt`` by the chain rule over ``expr``'s expression DAG (reverse accumulation).

    ``sympy.diff`` on a deeply composed expression revisits every shared subexpression once per
    path to it (its cost grows exponentially with ``T``).  Here :func:`elementary_program` names
    every distinct subexpression ``v_j = e_j(v_<j, θ)`` (one operation each); sympy differentiates
    each ``e_j`` with respect to its direct arguments, and the total derivative is assembled as
    ``v̄_j = Σ_{l>j} v̄_l ∂e_l/∂v_j``, ``dL/dθ = Σ_j v̄_j ∂e_j/∂θ``: the multivariate chain rule over
    the unrolled program, with no reference to ``D_t``, ``I_t`` or any recursion over time steps.

    Returns a function ``θ values -> (len(wrt),)`` (float64).
    """
    assigns, out = elementary_program(expr)
    tracked = set(wrt) | {v for v, _ in assigns}
    lines = list(assigns)          # forward assignments, then adjoints, evaluated in order
    contrib: dict = {}             # symbol -> [(adjoint, partial), ...]

    def push(e, bar):
        for y in e.free_symbols & tracked:
            contrib.setdefault(y, []).append((bar, sp.diff(e, y)))

    if out in tracked:
        contrib[out] = [(sp.Integer(1), sp.Integer(1))]
    else:
        push(out, sp.Integer(1))
    for v, e in reversed(assigns):
        terms = contrib.pop(v, [])
        if not terms:
            continue
        vbar = sp.Symbol(f"bar_{v.name}", real=True)
        lines.append((vbar, sp.Add(*[b * d for b, d in terms])))
        push(e, vbar)
    grads = [sp.Add(*[b * d for b, d in contrib.get(th, [])]) for th in wrt]
    fn = sp.lambdify([list(wrt)], grads, modules="numpy", cse=lambda exprs: (lines, exprs))
    return lambda values: np.asarray(fn(list(values)), dtype=float)


def unrolled_gradient(cell, readout, phi, theta0, xs, ys, s0=None) -> np.ndarray:
    """``dL_T/dθ`` at ``θ₀`` (``p``) by sympy's total derivative of the unrolled composition."""
    L, theta = unrolled_loss(cell, readout, phi, xs, ys, s0)
    return total_derivative(L, theta)(np.asarray(theta0, float))
