"""A cell from whole-vector sympy equations, with dense Jacobians (THEORY.md §1).

For cells that mix units other than through a weight block (a softmax or a normalisation across
the state), which :mod:`.symbolic`'s unit-by-unit equations cannot write.  The user gives the
weight blocks' shapes and ``F(P, s, x)`` on sympy matrices::

    def update(P, s, x):
        e = (P["W"] * s + P["U"] * x + P["b"]).applyfunc(sp.exp)
        return e / sum(e)

    softmax_rnn = DenseEquations("softmax-rnn", {"W": ("k", "k"), "U": ("k", "m"), "b": ("k", 1)}, update)
    cell = softmax_rnn(hidden=4, inputs=2)

At each size the toolkit writes ``F`` out entry by entry, differentiates it (``Matrix.jacobian``,
never ``simplify``) and evaluates the structurally nonzero entries of ``F``, ``D = ∂F/∂s`` and
``I = ∂F/∂θ`` with one ``lambdify`` (common-subexpression elimination), vectorised over the
replicate axis.  The patterns of ``D`` and ``I`` are those entries.

Cost, the price of generality: every step evaluates and stores ``D`` (``B × k × k``) and ``I``
(``B × k × p``, one dense gate per block) instead of the factored form, so ``linearize`` costs
``O(k·p)`` time and memory per replicate (``O(k³)`` for a dense recurrent block) against ``O(p)``
for a factored cell; the symbolic derivation at construction grows the same way and is meant for
small ``k`` (tens of units).  Each block is one "gate" of ``size = n_out·n_in`` columns fed by the
constant source 1, so every estimator runs on the cell unchanged.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import sympy as sp

from ..jacobians import GateJacobian, ImmediateJacobian, Linearization
from ..seeding import as_generator
from .base import Cell, check_sizes, random_mask
from .symbolic import NUMERIC, sigmoid


def _size(dim, hidden: int, k: int, m: int) -> int:
    return {"k": k, "m": m, "hidden": hidden}[dim] if isinstance(dim, str) else int(dim)


class DenseEquations:
    """A cell factory from block shapes and a whole-vector update.

    Parameters
    ----------
    name : str
        The cell's name.
    blocks : dict
        Block name -> ``(n_out, n_in)``, each an int or ``"k"`` (state size), ``"m"`` (inputs) or
        ``"hidden"``; in ``θ``'s order.  Blocks with ``n_in = "k"`` are recurrent (masked by
        ``density``).
    update : callable
        ``update(P, s, x) -> F``: ``P`` name -> sympy matrix of the block's shape, ``s`` ``k × 1``,
        ``x`` ``m × 1``; returns ``k × 1``.
    state_factor : int
        ``k = state_factor · hidden``.
    """

    def __init__(self, name: str, blocks: dict, update: Callable, state_factor: int = 1):
        if not blocks:
            raise ValueError("a cell needs at least one weight block")
        self.name, self.blocks, self.update, self.state_factor = name, dict(blocks), update, int(state_factor)
        self.kronecker_form = False

    def __call__(self, hidden: int, inputs: int, density: float = 1.0, mask_seed: int = 0,
                 masks: dict | None = None) -> "DenseEquationCell":
        return DenseEquationCell(self, hidden, inputs, density, mask_seed, masks)


class DenseEquationCell(Cell):
    """A :class:`~rtrl_validation.simulations.cells.base.Cell` from :class:`DenseEquations`
    (dense ``D`` and ``I``; see the module's cost note).  ``θ`` holds each block's free entries in
    column-major order, as for every cell; :meth:`matrices` gives the blocks as matrices."""

    def __init__(self, equations: DenseEquations, hidden, inputs, density=1.0, mask_seed=0, masks=None):
        check_sizes(hidden, inputs, density)
        self.eq = equations
        self.name = equations.name
        self.state_factor = equations.state_factor
        self.kronecker_form = False
        k = self.state_factor * int(hidden)
        self.shapes = {b: (_size(o, hidden, k, inputs), _size(i, hidden, k, inputs))
                       for b, (o, i) in equations.blocks.items()}
        self.recurrent = {b: i == "k" for b, (_, i) in equations.blocks.items()}
        masks = dict(masks or {})
        if density < 1.0:                      # drawn in the blocks' own shapes, as for every cell
            rng = np.random.default_rng(mask_seed)
            for b, (n_out, n_in) in self.shapes.items():
                if self.recurrent[b] and b not in masks:
                    masks[b] = random_mask(rng, n_out, n_in, density)
        vec_masks = {b: np.asarray(M, dtype=bool).T.reshape(-1, 1) for b, M in masks.items()}
        super().__init__(hidden, inputs, density, mask_seed, vec_masks)
        self._compiled = _compile(equations, int(hidden), int(inputs), self._mask_key())

    def _specs(self):
        # each block is one gate of n_out·n_in rows (its column-major vec) fed by the constant 1
        return [(b, b, "one", n_out * n_in, 1, self.recurrent[b]) for b, (n_out, n_in) in self.shapes.items()]

    def _mask_key(self) -> tuple:
        return tuple((b.name, tuple(b.idx_i.tolist())) for b in self.blocks)

    def matrices(self, theta) -> dict:
        """name -> the block as a matrix (``n_out × n_in``, or ``B × n_out × n_in``)."""
        arr = np.asarray(theta, dtype=float)
        out = {}
        for b in self.blocks:
            n_out, n_in = self.shapes[b.name]
            A = np.zeros(arr.shape[:-1] + (n_out * n_in,))
            A[..., b.idx_i] = arr[..., b.cols]
            out[b.name] = np.swapaxes(A.reshape(arr.shape[:-1] + (n_in, n_out)), -1, -2)
        return out

    def init(self, rng, scale: float = 1.0, batch: int | None = None) -> np.ndarray:
        """Random ``θ``: recurrent blocks ``N(0, scale²/(density·k))``, blocks with one column
        ``N(0, 0.1²)``, other blocks ``N(0, 1/n_in)``.  Shape ``(p,)`` or ``(batch, p)``."""
        rng = as_generator(rng)
        lead = () if batch is None else (batch,)
        theta = np.empty(lead + (self.p,))
        for b in self.blocks:
            n_in = self.shapes[b.name][1]
            sd = (scale / np.sqrt(self.density * self.k) if self.recurrent[b.name]
                  else 0.1 if n_in == 1 else 1.0 / np.sqrt(n_in))
            theta[..., b.cols] = sd * rng.standard_normal(lead + (b.size,))
        return theta

    # ------------------------------------------------------------------ numerics
    def _evaluate(self, theta, s, x, which):
        fn, positions = self._compiled[which]
        th = np.asarray(theta, dtype=float)
        cols = list(th.T) if th.ndim == 2 else list(th)
        return fn(cols, list(s.T), list(x.T)), positions

    def _scatter(self, values, positions, shape):
        B = shape[0]
        out = np.zeros(shape)
        if values:
            vals = np.array([np.broadcast_to(v, (B,)) for v in values])          # E × B
            out[(slice(None),) + tuple(positions)] = vals.T
        return out

    def step(self, theta, s, x) -> np.ndarray:
        values, positions = self._evaluate(theta, s, x, "F")
        return self._scatter(values, positions, (s.shape[0], self.k))

    def linearize(self, theta, s, x) -> Linearization:
        B = s.shape[0]
        values, (nF, nD, F_pos, D_pos, I_pos) = self._evaluate(theta, s, x, "FDI")
        s_new = self._scatter(values[:nF], F_pos, (B, self.k))
        D = self._scatter(values[nF:nF + nD], D_pos, (B, self.k, self.k))
        I = self._scatter(values[nF + nD:], I_pos, (B, self.k, self.p))
        gates = {}
        for b in self.blocks:                  # a gate's columns are the block's vec, masked ones zero
            G = I[:, :, b.cols] if b.full else np.zeros((B, self.k, b.n_out))
            if not b.full:
                G[:, :, b.idx_i] = I[:, :, b.cols]
            gates[b.name] = GateJacobian(G)
        imm = ImmediateJacobian(self.k, self.p, self.blocks, gates, {"one": np.ones((B, 1))}, self._layout_cache)
        return Linearization(s_new, D, imm)

    def expanded(self, P: dict, s: sp.Matrix, x: sp.Matrix) -> sp.Matrix:
        """``F(s, x)`` as a sympy column of this cell's blocks ``P`` in the engine's layout (name ->
        the block's ``vec`` as an ``n_out·n_in × 1`` matrix), with ``σ`` written out: for
        independent checks (:mod:`rtrl_validation.proofs_checks.symbolic`)."""
        mats = {}
        for name, (n_out, n_in) in self.shapes.items():
            mats[name] = sp.Matrix(n_out, n_in, lambda i, j, v=P[name]: v[j * n_out + i, 0])
        F = sp.Matrix(self.eq.update(mats, s, x))
        return F.replace(sigmoid, lambda a: 1 / (1 + sp.exp(-a)))

    # ------------------------------------------------------------------ structure
    def _structure(self):
        """Patterns: the structurally nonzero entries of sympy's ``D`` and ``I``."""
        _, (_, _, _, D_pos, I_pos) = self._compiled["FDI"]
        Dp = np.zeros((self.k, self.k), dtype=bool)
        Dp[D_pos] = True
        Ip = np.zeros((self.k, self.p), dtype=bool)
        Ip[I_pos] = True
        G = {}
        for b in self.blocks:
            M = np.zeros((self.k, b.n_out), dtype=bool)
            M[:, b.idx_i] = Ip[:, b.cols]
            G[b.name] = M
        return Dp, G


@lru_cache(maxsize=32)
def _compile(eq: DenseEquations, hidden: int, inputs: int, mask_key: tuple) -> dict:
    """sympy's ``F``, ``D``, ``I`` at one size and mask: numeric functions of ``(θ columns, s
    columns, x columns)`` returning the structurally nonzero entries, and where they go."""
    k = eq.state_factor * hidden
    theta, P = [], {}
    for name, free in mask_key:
        o, i = eq.blocks[name]
        n_out, n_in = _size(o, hidden, k, inputs), _size(i, hidden, k, inputs)
        A = sp.zeros(n_out, n_in)
        for pos in free:
            sym = sp.Symbol(f"{name}_{pos % n_out}_{pos // n_out}", real=True)
            A[pos % n_out, pos // n_out] = sym
            theta.append(sym)
        P[name] = A
    s = sp.Matrix(sp.symbols(f"s0:{k}", real=True))
    x = sp.Matrix(sp.symbols(f"x0:{inputs}", real=True))
    F = sp.Matrix(eq.update(P, s, x))
    if F.shape != (k, 1):
        raise ValueError(f"update must return a {k} × 1 matrix, got {F.shape}")

    def nonzero(M):
        pos = [(i, j) for i in range(M.rows) for j in range(M.cols) if not (M[i, j].is_Number and M[i, j] == 0)]
        return [M[i, j] for i, j in pos], (np.array([p[0] for p in pos], dtype=np.intp),
                                           np.array([p[1] for p in pos], dtype=np.intp))

    Fv, F_pos = nonzero(F)
    Dv, D_pos = nonzero(F.jacobian(s))
    Iv, I_pos = nonzero(F.jacobian(sp.Matrix(theta)))
    args = [theta, list(s), list(x)]
    modules = [NUMERIC, "numpy"]
    rows = (F_pos[0],)
    return {"F": (sp.lambdify(args, Fv, modules=modules, cse=True), rows),
            "FDI": (sp.lambdify(args, Fv + Dv + Iv, modules=modules, cse=True),
                    (len(Fv), len(Dv), rows, D_pos, I_pos))}
