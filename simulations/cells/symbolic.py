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
        self.masks: dict = {}

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

    def mask(self, block: str, mask) -> None:
        """Fix the sparsity of a declared block at every size: ``"diagonal"`` (an IndRNN's
        elementwise recurrence) or a callable ``(n_out, n_in) -> bool array``.  A mask passed
        when the cell is built replaces it; ``density`` leaves masked blocks alone."""
        if not any(b.name == block for b in self.blocks):
            raise ValueError(f"mask for undeclared block {block!r}")
        if mask != "diagonal" if isinstance(mask, str) else not callable(mask):
            raise ValueError(f"a block mask is 'diagonal' or a callable (n_out, n_in) -> bool array, got {mask!r}")
        self.masks[block] = mask

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
                             tuple(self.blocks), F, tuple(self.masks.items()))


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
    masks: tuple = ()

    def __call__(self, hidden: int, inputs: int, density: float = 1.0, mask_seed: int = 0,
                 masks: dict | None = None) -> "EquationCell":
        return EquationCell(self, hidden, inputs, density, mask_seed, masks)

    def fixed_masks(self, shapes: dict) -> dict:
        """The masks declared with :meth:`Equations.mask`, at block shapes ``name -> (n_out, n_in)``."""
        out = {}
        for name, mask in self.masks:
            n_out, n_in = shapes[name]
            out[name] = (np.eye(n_out, n_in, dtype=bool) if isinstance(mask, str)
                         else np.asarray(mask(n_out, n_in), dtype=bool))
            if out[name].shape != (n_out, n_in):
                raise ValueError(f"mask of block {name!r} must be {n_out} × {n_in}, got {out[name].shape}")
        return out

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
    def plan(self) -> "Plan":
        """The chain rule's bookkeeping as plain indices (no sympy left for the time steps)."""
        index = {key: i for i, key in enumerate(self.derivatives)}
        gate_names = tuple(g for g, _ in self.gates)
        blocks = []
        for b in self.blocks:
            kind = "x" if b.source == self.x else "one" if b.source == 1 else "unit"
            unit = self.unit_sources.index(b.source) if kind == "unit" else -1
            blocks.append(BlockPlan(b.name, gate_names.index(b.gate), kind, self.source_name(b.source), unit,
                                    kind == "unit" and b.source in self.state))
        blocks = tuple(blocks)

        def levels(y):
            return tuple((r, index[("F", r, y)]) for r in range(len(self.F)) if ("F", r, y) in index)

        def readers(y):
            return tuple((b, index[("v", b.unit, y)]) for b in blocks if b.kind == "unit"
                         and ("v", b.unit, y) in index)

        later = tuple(tuple((b.name, b.gate, i) for b, i in readers(a)) for a in self.pre_activations)
        reads = tuple((b.gate, b.name, q, None if b.identity else i)
                      for q, sq in enumerate(self.state) for b, i in readers(sq))
        return Plan(blocks, gate_names, tuple(levels(a) for a in self.pre_activations),
                    later, tuple(levels(sq) for sq in self.state), reads)


@dataclass(frozen=True)
class BlockPlan:
    """A block as the time steps see it: ``gate`` index, source ``kind`` (``"x"``, ``"one"`` or
    ``"unit"``), source name, index among the unit sources, and whether the source is a state field
    itself (``∂v/∂s = 1``)."""

    name: str
    gate: int
    kind: str
    source: str
    unit: int
    identity: bool


@dataclass(frozen=True)
class Plan:
    """Indices into the partials (the order of :attr:`CellEquations.derivatives`):

    * ``own[g]``: ``(r, i)``: ``∂F_r/∂a_g`` is partial ``i`` (the stacked levels of ``G_g``);
    * ``later[g]``: ``(block, h, i)``: a block of gate ``h`` whose source has ``∂v/∂a_g`` = partial ``i``;
    * ``direct[q]``: ``(r, i)``: ``∂F_r/∂s_q`` is partial ``i``;
    * ``reads``: ``(g, block, q, i)``: the block (of gate ``g``) reads field ``q`` with ``∂v/∂s_q`` =
      partial ``i`` (``None``: the source is the field itself).
    """

    blocks: tuple
    gate_names: tuple
    own: tuple
    later: tuple
    direct: tuple
    reads: tuple


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
        self.hidden, self.m = int(hidden), int(inputs)
        shapes = {spec[0]: (spec[3], spec[4]) for spec in self._specs()}
        masks = {**equations.fixed_masks(shapes), **(masks or {})}
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
        return [s[:, q * n:(q + 1) * n] for q in range(self.state_factor)]

    def _pre_activations(self, P, s, x):
        """``(fields, pre-activations, sources)``: every gate's ``a_g`` in declaration order and every
        block source's values (``B × n_in``)."""
        eq = self.eq
        fields = self._fields(s)
        B = s.shape[0]
        acts = [None] * len(eq.gates)
        sources = {"x": x}
        sources.update(zip(eq.fields, fields))
        for b in eq.plan.blocks:
            A = P[b.name]
            if b.kind == "one":
                term = A[..., 0]
            else:
                v = sources.get(b.source)
                if v is None:
                    v = sources[b.source] = self._full(eq.source_functions[b.unit](*fields, *acts), B)
                term = matvec(A, v)
            acts[b.gate] = term if acts[b.gate] is None else acts[b.gate] + term
        sources["one"] = np.ones((B, 1))
        return fields, acts, sources

    def _full(self, v, B):
        """A ``B × n`` array from a lambdified value (a constant comes back as a scalar)."""
        return v if np.ndim(v) == 2 else np.full((B, self.hidden), v, dtype=float)

    def _forward(self, P, s, x, jac):
        eq = self.eq
        fields, acts, sources = self._pre_activations(P, s, x)
        B = s.shape[0]
        if not jac:
            return (self._stack(eq.update_function(*fields, *acts), B),)
        vals = eq.jacobian_function(*fields, *acts)
        nF = len(eq.F)
        s_new = self._stack(vals[:nF], B)
        d = [self._full(v, B) for v in vals[nF:]]
        gates = self._gate_jacobians(P, d, B)
        plan = eq.plan
        terms = [(self._levels(lv, d), None, None, self._field_cols(q)) for q, lv in enumerate(plan.direct) if lv]
        terms += [(gates[plan.gate_names[g]], P[name], None if i is None else d[i], self._field_cols(q))
                  for g, name, q, i in plan.reads]
        return s_new, self._dynamics(*terms), gates, sources

    def _stack(self, F, B):
        if len(F) == 1:
            return self._full(F[0], B)
        return np.concatenate([self._full(f, B) for f in F], axis=1)

    def _field_cols(self, q):
        return None if self.state_factor == 1 else slice(q * self.hidden, (q + 1) * self.hidden)

    def _levels(self, levels, d):
        """The stacked diagonal ``diag(∂F_r/∂y)`` over the fields ``r`` of ``levels`` (``(r, i)`` pairs)."""
        vals = d[levels[0][1]][:, None, :] if len(levels) == 1 else np.stack([d[i] for _, i in levels], axis=1)
        return self._stacked(vals, tuple(r for r, _ in levels))

    def _gate_jacobians(self, P, d, B) -> dict:
        """``G_g = ∂s'/∂a_g`` for every gate, last to first (THEORY §1's chain rule over the gates)."""
        plan, G = self.eq.plan, {}
        for g in reversed(range(len(plan.gate_names))):
            own, later = plan.own[g], plan.later[g]
            if not later:
                G[plan.gate_names[g]] = (self._levels(own, d) if own
                                         else self._stacked(np.zeros((B, 1, self.hidden)), (0,)))
                continue
            dense = self._levels(own, d).dense(self.k) if own else None
            for name, h, i in later:
                scaled = P[name] * d[i][:, None, :]                  # A diag(∂v/∂a_g): B × n × n
                dense = G[plan.gate_names[h]].matmul(scaled, self.k, dense)
            G[plan.gate_names[g]] = GateJacobian(dense)
        return G

    # ------------------------------------------------------------------ structure
    def _structure(self):
        """Patterns from the equations: the sums of :meth:`_gate_jacobians` and :meth:`_forward`
        with every partial replaced by "present" (not identically zero) and ``A`` by its mask."""
        plan, n, k = self.eq.plan, self.hidden, self.k
        eye = np.eye(n, dtype=bool)

        def levels(lv):
            M = np.zeros((k, n), dtype=bool)
            for r, _ in lv:
                M[r * n:(r + 1) * n] = eye
            return M

        def through(gate, block):
            return (G[plan.gate_names[gate]].astype(int) @ self.mask(block).astype(int)) > 0

        G = {}
        for g in reversed(range(len(plan.gate_names))):
            M = levels(plan.own[g])
            for name, h, _ in plan.later[g]:
                M |= through(h, name)
            G[plan.gate_names[g]] = M
        Dp = np.zeros((k, k), dtype=bool)
        for q, lv in enumerate(plan.direct):
            Dp[:, q * n:(q + 1) * n] |= levels(lv)
        for g, name, q, _ in plan.reads:
            Dp[:, q * n:(q + 1) * n] |= through(g, name)
        return Dp, G

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
