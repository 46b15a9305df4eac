"""A recurrent cell from its equations, written once in sympy (THEORY.md §1, §3).

A cell is described unit by unit: for each unit ``i`` the state has one entry per *field*
(``s`` for an Elman or GRU cell, ``h`` and ``c`` for an LSTM), each *gate* has a pre-activation

    a_g = Σ_{blocks A of g} A v_A,          v_A ∈ {x, 1, an elementwise expression of the unit},

and the new state is an elementwise expression ``s'_r = F_r(s, a)`` of the unit's fields and its
gates' pre-activations.  A block's source ``v_A`` may read the state and the gates declared before
``g`` (the GRU's ``r ⊙ s``).  Example, a minimal gated unit::

    eq = Equations("mgu")
    s, x = eq.s, eq.x
    f = sigmoid(eq.gate("f", W_f=s, U_f=x, b_f=1))
    h = sp.tanh(eq.gate("h", W_h=f * s, U_h=x, b_h=1))
    mgu = eq.update((1 - f) * s + f * h)          # a cell factory: mgu(hidden, inputs, density=...)

From these scalar expressions sympy gives every partial derivative (``sympy.diff``, never
``simplify``; evaluated through one ``lambdify`` with common-subexpression elimination), and the
chain rule over the gates assembles THEORY §1's ``D_t = ∂F/∂s`` and ``I_t = ∂F/∂θ`` in the factored
form the built-in cells use (:mod:`~rtrl_validation.simulations.jacobians`):

    G_g = ∂s'/∂a_g = diag(∂F/∂a_g) + Σ_{h after g} Σ_{A of h} G_h A diag(∂v_A/∂a_g),
    D_t = diag(∂F/∂s) + Σ_g Σ_{A of g} G_g A diag(∂v_A/∂s),
    I_t[:, col(A, i, j)] = G_g[:, i] v_A[j].

``G_g`` is a stack of diagonals unless a later gate reads ``a_g`` through a matrix (then it is
dense, ``B × k × n``, like the standard GRU's reset gate).  The structural nonzero patterns of
``D`` and ``I`` follow the same sums with each partial replaced by "is it identically zero" and
each ``A`` by its mask, so SnAp-n's masks come from the equations themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp

from .base import Cell, check_sizes, matvec
from .base import sigmoid as _sigmoid_numeric
from ..jacobians import GateJacobian


class sigmoid(sp.Function):
    """The logistic function ``σ(a) = 1 / (1 + e^{−a})`` as a sympy function with ``σ' = σ(1 − σ)``;
    evaluated as ``(1 + tanh(a/2))/2`` (no overflow), the form the built-in cells use."""

    def fdiff(self, argindex=1):
        sig = sigmoid(self.args[0])
        return sig * (1 - sig)


#: sympy function name -> numpy implementation, for ``lambdify``
NUMERIC = {"sigmoid": _sigmoid_numeric}


@dataclass(frozen=True)
class BlockSpec:
    """One weight block ``A`` of gate ``gate``: its name and its source ``v_A`` (a sympy expression
    of the unit's fields and earlier gates, the input symbol ``x``, or ``1``)."""

    name: str
    gate: str
    source: sp.Expr


class Equations:
    """Builder of a cell's equations.

    Parameters
    ----------
    name : str
        The cell's name (the key it is registered under).
    state : str or tuple of str
        The state's fields, one entry per unit each (``k = len(state) · hidden``); the state
        vector is the fields stacked, ``s = [field₀; field₁; …]``.
    """

    def __init__(self, name: str, state: str | tuple = "s"):
        fields = (state,) if isinstance(state, str) else tuple(state)
        if not fields or len(set(fields)) != len(fields):
            raise ValueError(f"state fields must be distinct names, got {state!r}")
        self.name = name
        self.fields = fields
        self.state = tuple(sp.Symbol(f, real=True) for f in fields)
        self.x = sp.Symbol("x", real=True)
        self.gates: list[tuple[str, sp.Symbol]] = []
        self.blocks: list[BlockSpec] = []

    @property
    def s(self) -> sp.Symbol:
        """The first (for one-field cells: the only) state field of a unit."""
        return self.state[0]

    def gate(self, name: str, **blocks) -> sp.Symbol:
        """Declare gate ``name`` with pre-activation ``a = Σ A v`` over ``blocks`` (block name ->
        source ``v``: ``eq.x``, ``1``, or an elementwise expression of the unit).  Returns the
        pre-activation's symbol ``a_<name>`` for use in later sources and in the update."""
        if not blocks:
            raise ValueError(f"gate {name!r} needs at least one block")
        if any(g == name for g, _ in self.gates):
            raise ValueError(f"gate {name!r} declared twice")
        known = set(self.state) | {a for _, a in self.gates}
        for block, v in blocks.items():
            v = sp.sympify(v)
            if any(b.name == block for b in self.blocks):
                raise ValueError(f"block {block!r} declared twice")
            if v != self.x and self.x in v.free_symbols:
                raise ValueError(f"block {block!r}: the input x may only be a source on its own")
            if v != self.x and not v.free_symbols <= known:
                raise ValueError(f"block {block!r} reads {sorted(map(str, v.free_symbols - known))}, "
                                 f"which are not state fields or earlier gates")
            self.blocks.append(BlockSpec(block, name, v))
        a = sp.Symbol(f"a_{name}", real=True)
        self.gates.append((name, a))
        return a

    def update(self, *F) -> "CellEquations":
        """The new state, one elementwise expression per field (of the fields and the gates).
        Returns the cell factory :class:`CellEquations`."""
        if len(F) == 1 and isinstance(F[0], (tuple, list)):
            F = tuple(F[0])
        if len(F) != len(self.fields):
            raise ValueError(f"update needs {len(self.fields)} expressions (one per field {self.fields}), "
                             f"got {len(F)}")
        F = tuple(sp.sympify(f) for f in F)
        known = set(self.state) | {a for _, a in self.gates}
        for f in F:
            if not f.free_symbols <= known:
                raise ValueError(f"the update reads {sorted(map(str, f.free_symbols - known))}, which are "
                                 f"not state fields or gates (x enters through a gate's block)")
        return CellEquations(self.name, self.fields, self.state, self.x, tuple(self.gates),
                             tuple(self.blocks), F)


def _nonzero(e) -> bool:
    """Structurally nonzero: the derivative sympy returns is not the literal 0 (no simplification)."""
    return not (e.is_Number and e == 0)


@dataclass(frozen=True, eq=False)
class CellEquations:
    """A cell's equations, derived and compiled once; calling it builds an :class:`EquationCell`.

    ``CellEquations(...)(hidden, inputs, density=1.0, mask_seed=0, masks=None)`` has the signature
    of a built-in cell class, so it can be registered with
    :func:`~rtrl_validation.simulations.registry.register_cell` and named in configs.
    """

    name: str
    fields: tuple
    state: tuple
    x: sp.Symbol
    gates: tuple
    blocks: tuple
    F: tuple

    def __call__(self, hidden: int, inputs: int, density: float = 1.0, mask_seed: int = 0,
                 masks: dict | None = None) -> "EquationCell":
        return EquationCell(self, hidden, inputs, density, mask_seed, masks)

    # ------------------------------------------------------------------ derived structure
    @property
    def pre_activations(self) -> tuple:
        return tuple(a for _, a in self.gates)

    def source_name(self, v) -> str:
        if v == self.x:
            return "x"
        if v == 1:
            return "one"
        return str(v) if v in self.state else f"v:{v}"

    @cached_property
    def unit_sources(self) -> tuple:
        """The distinct elementwise sources (neither ``x`` nor ``1``), in declaration order."""
        out = []
        for b in self.blocks:
            if b.source != self.x and b.source != 1 and b.source not in out:
                out.append(b.source)
        return tuple(out)

    @cached_property
    def derivatives(self) -> dict:
        """The nonzero partials: ``("F", r, sym)`` -> ``∂F_r/∂sym`` and ``("v", i, sym)`` ->
        ``∂v_i/∂sym`` for ``sym`` a state field or a pre-activation (sympy expressions)."""
        syms = self.state + self.pre_activations
        out = {}
        for r, f in enumerate(self.F):
            for y in syms:
                d = sp.diff(f, y)
                if _nonzero(d):
                    out[("F", r, y)] = d
        for i, v in enumerate(self.unit_sources):
            for y in syms:
                d = sp.diff(v, y)
                if _nonzero(d):
                    out[("v", i, y)] = d
        return out

    @cached_property
    def kronecker_form(self) -> bool:
        """``s' = σ(W [s; x; 1])``: one field, one gate whose sources are ``s``, ``x`` and ``1``, and
        an update that reads the state only through the gate (THEORY §4, KF-RTRL)."""
        return (len(self.fields) == 1 and len(self.gates) == 1
                and all(b.source in (self.state[0], self.x, 1) for b in self.blocks)
                and not any(key[0] == "F" and key[2] == self.state[0] for key in self.derivatives))

    # ------------------------------------------------------------------ compiled functions
    @cached_property
    def _args(self) -> list:
        return list(self.state) + list(self.pre_activations)

    def _lambdify(self, exprs):
        return sp.lambdify(self._args, list(exprs), modules=[NUMERIC, "numpy"], cse=True)

    @cached_property
    def source_functions(self) -> tuple:
        """One numeric function per elementwise source (fields, pre-activations -> values)."""
        return tuple(sp.lambdify(self._args, v, modules=[NUMERIC, "numpy"]) for v in self.unit_sources)

    @cached_property
    def update_function(self):
        """``(fields, pre-activations) -> [F_r]``."""
        return self._lambdify(self.F)

    @cached_property
    def jacobian_function(self):
        """``(fields, pre-activations) -> [F_r] + [partials in the order of derivatives]`` (one cse)."""
        return self._lambdify(list(self.F) + list(self.derivatives.values()))

    @cached_property
    def operation_count(self) -> int:
        """sympy's operation count of the update and all partials (for rounding bounds)."""
        return int(sum(sp.count_ops(e) for e in list(self.F) + list(self.derivatives.values())))


class EquationCell(Cell):
    """A :class:`~rtrl_validation.simulations.cells.base.Cell` built from :class:`CellEquations`:
    ``step``, ``linearize`` (factored ``D`` and ``I``) and ``patterns`` all come from the equations.

    Parameters
    ----------
    equations : CellEquations
    hidden, inputs : int
        Units and input size; ``k = len(fields) · hidden``.
    density, mask_seed, masks
        As for every cell: recurrent blocks (those whose source reads the state) are masked at
        random to ``density``; ``masks`` (name -> bool ``n_out × n_in``) fixes chosen blocks' masks.
    """

    def __init__(self, equations: CellEquations, hidden, inputs, density=1.0, mask_seed=0, masks=None):
        check_sizes(hidden, inputs, density)
        self.eq = equations
        self.name = equations.name
        self.state_factor = len(equations.fields)
        self.kronecker_form = equations.kronecker_form
        super().__init__(hidden, inputs, density, mask_seed, masks)

    # ------------------------------------------------------------------ layout
    def _specs(self):
        eq, n = self.eq, self.hidden
        specs = []
        for b in eq.blocks:
            n_in = self.m if b.source == eq.x else 1 if b.source == 1 else n
            recurrent = b.source != eq.x and bool(b.source.free_symbols & set(eq.state))
            specs.append((b.name, b.gate, eq.source_name(b.source), n, n_in, recurrent))
        return specs

    def _rows(self, layout):
        """``layout``: a tuple of field indices; level ``r`` lies on the rows of field ``layout[r]``."""
        units = np.arange(self.hidden)
        return np.stack([q * self.hidden + units for q in layout])

    # ------------------------------------------------------------------ numerics
    def _fields(self, s):
        n = self.hidden
        return [s[:, q * n:(q + 1) * n] for q in range(len(self.eq.fields))]

    def _pre_activations(self, P, s, x):
        """``(fields, pre-activations, sources)``: every gate's ``a_g`` in declaration order and every
        block source's values (``B × n_in``)."""
        eq = self.eq
        fields = self._fields(s)
        B = s.shape[0]
        acts = [None] * len(eq.gates)
        sources = {"x": x, "one": np.ones((B, 1))}
        for q, f in enumerate(eq.fields):
            sources[f] = fields[q]
        gate_index = {g: i for i, (g, _) in enumerate(eq.gates)}
        for b in eq.blocks:
            name = eq.source_name(b.source)
            if name not in sources:
                fn = eq.source_functions[eq.unit_sources.index(b.source)]
                sources[name] = np.broadcast_to(fn(*fields, *acts), (B, self.hidden))
            A = P[b.name]
            term = A[..., 0] if b.source == 1 else matvec(A, sources[name])
            i = gate_index[b.gate]
            acts[i] = term if acts[i] is None else acts[i] + term
        return fields, acts, sources

    def _forward(self, P, s, x, jac):
        eq = self.eq
        fields, acts, sources = self._pre_activations(P, s, x)
        B, n = s.shape[0], self.hidden
        if not jac:
            return (self._stack(eq.update_function(*fields, *acts), B),)
        vals = eq.jacobian_function(*fields, *acts)
        s_new = self._stack(vals[:len(eq.F)], B)
        d = {key: np.broadcast_to(v, (B, n)) for key, v in zip(eq.derivatives, vals[len(eq.F):])}
        gates = self._gate_jacobians(P, d, B)
        terms = self._direct_terms(d)
        for b in eq.blocks:
            if b.source in (eq.x, 1):
                continue
            vi = eq.unit_sources.index(b.source)
            for q, sq in enumerate(eq.state):
                dv = d.get(("v", vi, sq))
                if dv is not None:
                    R = None if b.source == sq else dv
                    terms.append((gates[b.gate], P[b.name], R, self._field_cols(q)))
        return s_new, self._dynamics(*terms), gates, sources

    def _stack(self, F, B):
        return np.concatenate([np.broadcast_to(f, (B, self.hidden)) for f in F], axis=1)

    def _field_cols(self, q):
        return None if len(self.eq.fields) == 1 else slice(q * self.hidden, (q + 1) * self.hidden)

    def _stacked_levels(self, d, y):
        """The stacked diagonal ``diag(∂F_r/∂y)`` over the fields ``r`` where it is nonzero, or None."""
        levels = tuple(r for r in range(len(self.eq.F)) if ("F", r, y) in d)
        if not levels:
            return None
        vals = np.stack([d[("F", r, y)] for r in levels], axis=1)
        return self._stacked(vals, levels)

    def _gate_jacobians(self, P, d, B) -> dict:
        """``G_g = ∂s'/∂a_g`` for every gate, last to first (THEORY §1's chain rule over the gates)."""
        eq, G = self.eq, {}
        for g, a in reversed(eq.gates):
            own = self._stacked_levels(d, a)
            later = [(b, d[("v", eq.unit_sources.index(b.source), a)]) for b in eq.blocks
                     if b.source not in (eq.x, 1) and ("v", eq.unit_sources.index(b.source), a) in d]
            if not later:
                if own is None:
                    own = self._stacked(np.zeros((B, 1, self.hidden)), (0,))
                G[g] = own
                continue
            dense = own.dense(self.k) if own is not None else None
            for b, dv in later:
                A = P[b.name]
                scaled = A * dv[:, None, :]                       # A diag(∂v/∂a_g): B × n × n
                dense = G[b.gate].left_matmul(scaled, self.k, dense)
            G[g] = GateJacobian(dense)
        return G

    def _direct_terms(self, d) -> list:
        """``diag(∂F/∂s)``: one term per field the update reads directly."""
        terms = []
        for q, sq in enumerate(self.eq.state):
            L = self._stacked_levels(d, sq)
            if L is not None:
                terms.append((L, None, None, self._field_cols(q)))
        return terms

    # ------------------------------------------------------------------ whole-cell expression
    def expanded(self, P: dict, s: sp.Matrix, x: sp.Matrix) -> sp.Matrix:
        """``F(s, x)`` as one sympy column (``k × 1``) of the block matrices ``P`` (name -> sympy
        ``n_out × n_in``), ``s`` (``k × 1``) and ``x`` (``m × 1``), with ``σ`` written out as
        ``1/(1 + e^{−a})``: the cell written without units or gates, for independent checks
        (:mod:`rtrl_validation.proofs_checks.symbolic`)."""
        eq, n = self.eq, self.hidden
        units = [{f: s[q * n + i, 0] for q, f in enumerate(eq.state)} for i in range(n)]
        for g, a in eq.gates:
            pre = sp.zeros(n, 1)
            for b in eq.blocks:
                if b.gate != g:
                    continue
                if b.source == eq.x:
                    v = x
                elif b.source == 1:
                    v = sp.Matrix([[1]])
                else:
                    v = sp.Matrix([b.source.xreplace(u) for u in units])
                pre += P[b.name] * v
            for i, u in enumerate(units):
                u[a] = pre[i, 0]
        out = [f.xreplace(u) for f in eq.F for u in units]
        return sp.Matrix(out).replace(sigmoid, lambda a: 1 / (1 + sp.exp(-a)))

    # ------------------------------------------------------------------ structure
    def _structure(self):
        """Patterns from the equations: the sums of :meth:`_gate_jacobians` and :meth:`_forward`
        with every partial replaced by whether it is identically zero and ``A`` by its mask."""
        eq, n, k = self.eq, self.hidden, self.k
        d = eq.derivatives
        eye = np.eye(n, dtype=bool)

        def levels(y):
            M = np.zeros((k, n), dtype=bool)
            for r in range(len(eq.F)):
                if ("F", r, y) in d:
                    M[r * n:(r + 1) * n] = eye
            return M

        G = {}
        for g, a in reversed(eq.gates):
            M = levels(a)
            for b in eq.blocks:
                if b.source not in (eq.x, 1) and ("v", eq.unit_sources.index(b.source), a) in d:
                    M |= (G[b.gate].astype(int) @ self.mask(b.name).astype(int)) > 0
            G[g] = M
        Dp = np.zeros((k, k), dtype=bool)
        for q, sq in enumerate(eq.state):
            cols = slice(q * n, (q + 1) * n)
            Dp[:, cols] |= levels(sq)
            for b in eq.blocks:
                if b.source not in (eq.x, 1) and ("v", eq.unit_sources.index(b.source), sq) in d:
                    Dp[:, cols] |= (G[b.gate].astype(int) @ self.mask(b.name).astype(int)) > 0
        return Dp, G

