"""The cell interface shared by every recurrent core (THEORY.md §1, §3).

A cell maps ``(θ, s_{t-1}, x_t) -> s_t`` with a leading replicate axis ``B`` on ``s`` (``B × k``)
and ``x`` (``B × m``).  ``θ`` is ``(p,)`` (shared by all replicates) or ``(B, p)`` (one per
replicate).  ``linearize`` also returns ``D_t`` and ``I_t`` in factored form
(:class:`~simulations.jacobians.DynamicsJacobian`, :class:`~simulations.jacobians.ImmediateJacobian`),
both built from the same gate Jacobians ``∂s'/∂a``.
"""
from __future__ import annotations

import numpy as np

from ..jacobians import (DynamicsJacobian, DynamicsTerm, FreeEntries, GateJacobian, ImmediateJacobian, LayoutCache, Linearization,
                         level_starts, make_blocks, merge_blocks)
from .. import aligned
from ..seeding import as_generator
from .weights import AffinePlan, HeldTheta, HeldWeights, MaskedWeights, Weights, affine_plan


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def random_mask(rng: np.random.Generator, n_out: int, n_in: int, density: float) -> np.ndarray:
    """Boolean ``n_out × n_in`` mask with exactly ``max(1, round(density·n_out·n_in))`` ones."""
    n = n_out * n_in
    keep = max(1, int(round(density * n)))
    flat = np.zeros(n, dtype=bool)
    flat[rng.choice(n, size=keep, replace=False)] = True
    return flat.reshape(n_out, n_in)


def check_sizes(hidden, inputs, density):
    for name, v in (("hidden", hidden), ("inputs", inputs)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} size must be a positive integer, got {v!r}")
    if isinstance(density, bool) or not isinstance(density, (int, float, np.floating)) \
            or not (0.0 < float(density) <= 1.0):
        raise ValueError(f"density must be in (0, 1], got {density!r}")


class Cell:
    """Base class.  Subclasses set ``name``, ``state_size`` and implement ``_specs``, ``_forward``
    and ``_structure``.

    ``hidden``: number of units; ``k``: state size (``2·hidden`` for the LSTM); ``m``: inputs;
    ``p``: number of free core parameters; ``density``: fraction of recurrent weights kept
    (a fixed random mask drawn from ``mask_seed``; masked entries are not parameters).
    ``masks`` (name -> bool array) overrides the random masks for chosen blocks.
    """

    name = "cell"
    #: ``∂s'/∂a`` of every gate is a stack of diagonals (one state row per unit and stack level)
    state_factor = 1
    #: True when the cell has the form ``s' = σ(W â)`` with ``â = [s; x; 1]`` (KF-RTRL applies)
    kronecker_form = False
    #: ``_forward(P, s, x, jac, tangent)`` also forms ``D_t · tangent`` with the forward product
    shares_tangent_product = False

    def __init__(self, hidden: int, inputs: int, density: float = 1.0, mask_seed: int = 0,
                 masks: dict | None = None):
        check_sizes(hidden, inputs, density)
        self.hidden, self.m, self.density = int(hidden), int(inputs), float(density)
        self.k = self.state_factor * self.hidden
        self.mask_seed = mask_seed
        specs = self._specs()
        masks = dict(masks or {})
        if density < 1.0:
            rng = np.random.default_rng(mask_seed)
            for name, _g, _s, n_out, n_in, recurrent in specs:
                if recurrent and name not in masks:
                    masks[name] = random_mask(rng, n_out, n_in, density)
        self.masks = {n: np.asarray(v, dtype=bool) for n, v in masks.items()}
        self.blocks, self.p = make_blocks(specs, self.masks)
        self.block = {b.name: b for b in self.blocks}
        self._layout_cache = LayoutCache()
        self._row_layouts: dict = {}
        self._constant: dict = {}
        self._views = None
        self._held: HeldTheta | None = None
        self._plans: dict = {}
        sizes = {b.name: b.n_out * b.n_in for b in self.blocks if not b.full}
        starts = np.cumsum([0] + list(sizes.values()))
        self._store_offsets = dict(zip(sizes, (int(a) for a in starts)))
        self._store_size = int(starts[-1])

    def __getstate__(self):
        """Pickled (to a worker) without its caches: the views of the last ``θ`` and a hold, whose
        writable alias would not survive as a view of ``θ``."""
        state = self.__dict__.copy()
        state["_views"], state["_held"] = None, None
        return state

    def __repr__(self):
        return (f"{type(self).__name__}(hidden={self.hidden}, inputs={self.m}, "
                f"density={self.density}, k={self.k}, p={self.p})")

    # ----------------------------------------------------------------- layout
    def _specs(self):
        """``[(name, gate, source, n_out, n_in, recurrent), ...]``."""
        raise NotImplementedError

    def mask(self, name: str) -> np.ndarray:
        b = self.block[name]
        M = np.zeros((b.n_out, b.n_in), dtype=bool)
        M[b.idx_i, b.idx_j] = True
        return M

    def unpack(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """``θ`` (``p`` or ``B × p``) -> name -> matrix (``n_out × n_in`` or ``B × n_out × n_in``).

        Unmasked blocks are views of ``θ`` (they follow in-place changes of ``θ``); masked blocks
        are new arrays.  The forward map reads :meth:`_matrices` instead, which keeps the masked
        blocks in place."""
        P = self._matrices(theta)
        return {b.name: (P[b.name] if b.full else P[b.name].copy()) for b in self.blocks}

    def _matrices(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`unpack` for the forward map: the matrices of :meth:`_weights`, masked blocks refreshed."""
        P = self._weights(theta)
        P.refresh()
        return P

    def _weights(self, theta: np.ndarray, matrices: bool = True) -> Weights:
        """``θ``'s blocks as matrices for one call of the forward map (:class:`~.weights.Weights`).

        For the last ``θ`` array seen, unmasked blocks are views of it (and so are the merged
        blocks of :func:`~simulations.jacobians.merge_blocks`, under their merged names, e.g.
        ``"W+U+b"``), and masked blocks live in buffers kept with those views (column-major, like
        the views) and refreshed from ``θ``'s free entries once per call, by the compiled
        pre-activation pass (:meth:`~.weights.Weights.affine`) or, when a matrix is read first, by
        one compiled gather (:func:`~simulations.kernels.scatter_free`), so that they too follow
        in-place changes of ``θ``.  The matrices of a masked block are therefore overwritten by the
        next call with the same ``θ`` array: like the views, they describe ``θ`` as it is now.
        ``matrices``: the call reads the matrices (:class:`~.weights.Weights`); a forward step does not.
        A held ``θ`` (:meth:`hold`) keeps its weights, whose matrices its writer keeps current."""
        hit = self._views
        if hit is None or hit[0] is not theta:
            held = self._held
            if held is not None and held.theta is theta:
                self._views = (theta, held.weights)
                return held.weights
            # a float64 array is used as it is (np.asarray(·, dtype=float) returns a new view of an
            # array whose dtype object is another float64 descriptor, e.g. one made by a compiled
            # function, and the views would then be rebuilt at every call)
            arr = theta if isinstance(theta, np.ndarray) and theta.dtype == np.float64 else np.asarray(theta, dtype=float)
            if arr.shape[-1] != self.p:
                raise ValueError(f"theta has {arr.shape[-1]} entries, {self.name} needs p={self.p}")
            lead = arr.shape[:-1]
            theta2 = arr.reshape(-1, self.p)
            mats = {b.name: arr[..., b.cols].reshape(lead + (b.n_in, b.n_out)).swapaxes(-1, -2)
                    for b in self.blocks if b.full}        # unmasked: column-major vec, a view
            masked = [b for b in self.blocks if not b.full]
            gather = None
            if masked:
                store = aligned.zeros((theta2.shape[0], self._store_size))     # read as θ is: at 64 bytes
                for b in masked:
                    a = self._store_offsets[b.name]
                    mats[b.name] = store[:, a:a + b.n_out * b.n_in].reshape(lead + (b.n_in, b.n_out)).swapaxes(-1, -2)
                src = np.concatenate([b.offset + np.arange(b.size) for b in masked]).astype(np.intp)
                dst = np.concatenate([self._store_offsets[b.name] + b.idx_j * b.n_out + b.idx_i
                                      for b in masked]).astype(np.intp)     # increasing: sequential writes
                gather = (theta2, src, store, dst)
            mats = {b.name: mats[b.name] for b in self.blocks}
            for g in merge_blocks(self.blocks):          # merged unmasked blocks (W+U+b): one view
                if "+" in g.name:
                    mats[g.name] = arr[..., g.cols].reshape(lead + (g.n_in, g.n_out)).swapaxes(-1, -2)
            P = Weights(mats, theta2) if gather is None else MaskedWeights(mats, theta2, gather)
            hit = (theta if arr is theta else None, P)
            if arr is theta:
                self._views = hit
        return hit[1].begin(matrices)

    def hold(self, theta: np.ndarray) -> HeldTheta:
        """Hold ``θ`` (``p`` or ``B × p``, float64) for a writer that changes it in place, such as
        the training loop's optimiser: ``θ`` becomes read-only, the writer writes through
        :attr:`~.weights.HeldTheta.writable` and calls :meth:`~.weights.HeldTheta.written` after
        each write, which copies ``θ``'s free entries into the masked matrices once (THEORY.md §3,
        ``θ``'s layout).  Until :meth:`~.weights.HeldTheta.release`, the forward map reads those
        matrices as they are: a forward step or ``linearize`` multiplies a masked block at least
        1/12 full through its matrix (:data:`~.weights.CURRENT_ENOUGH`) and copies nothing, as the
        dense cell reads its views of ``θ``.
        A write through another view of ``θ``'s memory made before the hold is not seen: the
        writer must own ``θ``.  A cell without masked blocks locks nothing (``writable`` is ``θ``)."""
        if all(b.full for b in self.blocks):
            return HeldTheta(theta, theta, None, self)
        held = self._held
        if held is not None and held.theta is theta:
            return held                                 # held already: the same writer's alias
        if not (isinstance(theta, np.ndarray) and theta.dtype == np.float64 and theta.flags.writeable):
            raise ValueError("a held theta must be a writable float64 array (one held elsewhere is read-only)")
        if held is not None:
            held.release()
        weights = HeldWeights(self._weights(theta, matrices=True))
        writable = theta.view()
        theta.flags.writeable = False
        self._held = HeldTheta(theta, writable, weights, self)
        self._views = (theta, weights)
        return self._held

    def _forget(self, held: HeldTheta) -> None:
        """``held`` released: its weights no longer read (the next call builds or refreshes them)."""
        if self._held is held:
            self._held = None
        if self._views is not None and self._views[1] is held.weights:
            self._views = None

    def _plan(self, gates: tuple[str, ...], sources: dict[str, tuple[int, int]]) -> AffinePlan:
        """The :class:`~.weights.AffinePlan` of ``gates`` with ``sources`` (built once per cell)."""
        key = (gates, id(sources))          # kept with ``sources``, so that its id is not reused
        hit = self._plans.get(key)
        if hit is None:
            hit = self._plans[key] = (sources, affine_plan(self.blocks, gates, sources, self._store_offsets))
        return hit[1]

    def pack(self, mats: dict[str, np.ndarray]) -> np.ndarray:
        """Inverse of :meth:`unpack` (masked entries are dropped)."""
        lead = np.asarray(mats[self.blocks[0].name]).shape[:-2]
        theta = np.empty(lead + (self.p,))
        for b in self.blocks:
            theta[..., b.cols] = np.asarray(mats[b.name])[..., b.idx_i, b.idx_j]
        return theta

    def init(self, rng: np.random.Generator, scale: float = 1.0, batch: int | None = None) -> np.ndarray:
        """Random ``θ``: recurrent weights ``N(0, scale²/(density·hidden))``, input weights
        ``N(0, 1/m)``, biases ``N(0, 0.1²)``.  Shape ``(p,)`` or ``(batch, p)``; ``rng``: a
        Generator or an integer seed."""
        rng = as_generator(rng)
        lead = () if batch is None else (batch,)
        theta = np.empty(lead + (self.p,))
        for b in self.blocks:
            if b.source == "one":
                sd = 0.1
            elif b.recurrent:
                sd = scale / np.sqrt(self.density * self.hidden)
            else:
                sd = 1.0 / np.sqrt(b.n_in)
            theta[..., b.cols] = sd * rng.standard_normal(lead + (b.size,))
        return theta

    # ----------------------------------------------------------------- dynamics
    def _forward(self, mats, s, x, jac):
        """Return ``s'`` and, when ``jac``, ``(D, gates, sources)`` with ``D`` a
        :class:`~simulations.jacobians.DynamicsJacobian` (see :meth:`_dynamics`)."""
        raise NotImplementedError

    def step(self, theta, s, x) -> np.ndarray:
        """``s_t = F(s_{t-1}, x_t; θ)``: ``B × k``."""
        return self._forward(self._weights(theta, matrices=False), s, x, False)[0]

    def linearize(self, theta, s, x, tangent: np.ndarray | None = None) -> Linearization:
        """``(s_t, D_t, I_t)`` with ``D_t = ∂F/∂s`` and ``I_t = ∂F/∂θ``, both factored (``lin.D`` is
        the dense ``B × k × k`` array, formed on demand).  ``tangent`` (``B × k``, optional): a vector
        whose product ``D_t · tangent`` the step will need (:meth:`~simulations.estimators.base.Estimator.tangent`);
        a cell with ``shares_tangent_product`` forms it in the same product with the weights as its
        forward step (``W [s, tangent]``: one read of ``W``), the others when it is asked for."""
        if tangent is not None and self.shares_tangent_product:
            s_new, D, gates, sources = self._forward(self._weights(theta), s, x, True, tangent)
        else:
            s_new, D, gates, sources = self._forward(self._weights(theta), s, x, True)
        I = ImmediateJacobian(self.k, self.p, self.blocks, gates, sources, self._layout_cache)
        return Linearization(s_new, D, I)

    # ----------------------------------------------------------------- structure
    def _structure(self):
        """``(D_pattern k × k, {gate: G_pattern k × n})`` from the weight masks alone."""
        raise NotImplementedError

    def patterns(self) -> tuple[np.ndarray, np.ndarray]:
        """Structural nonzero patterns of ``D`` (``k × k``) and ``I`` (``k × p``), from the masks."""
        Dp, Gp = self._structure()
        Ip = np.zeros((self.k, self.p), dtype=bool)
        for b in self.blocks:
            Ip[:, b.cols] = Gp[b.gate][:, b.idx_i]
        return Dp.astype(bool), Ip

    def _free(self, P: Weights, name: str) -> FreeEntries | None:
        """The free entries of block ``name`` when it is masked (views of ``θ``'s block, ``B' × nnz``,
        from ``P``, the :class:`~.weights.Weights` of the call), for the term of ``D_t`` whose ``W``
        it is (:class:`~simulations.jacobians.DynamicsTerm`); ``None`` for an unmasked block.  Kept
        in ``P`` (views, so they follow ``θ`` as its matrices do): a call costs a dictionary
        lookup, not a slice and an object per block and step."""
        try:
            return P.free_entries[name]
        except KeyError:
            b = self.block[name]
            hit = P.free_entries[name] = None if b.full else FreeEntries(P.theta[:, b.cols], b.idx_i, b.idx_j)
            return hit

    def _stacked(self, vals, layout="units"):
        """A stacked-diagonal gate Jacobian (``vals``: ``B × R × n``, or ``B × n`` for one level) on the
        row layout ``layout`` of :meth:`_rows` (built once per cell, with its consecutive-range starts)."""
        hit = self._row_layouts.get(layout)
        if hit is None:
            rows = np.atleast_2d(np.asarray(self._rows(layout), dtype=np.intp))
            hit = self._row_layouts[layout] = (rows, level_starts(rows))
        return GateJacobian(vals if vals.ndim == 3 else vals[:, None, :], *hit)

    def _ones(self, batch: int) -> np.ndarray:
        """The constant source ``1`` (``batch × 1``; one shared read-only array per batch size)."""
        ones = self._constant.get(batch)
        if ones is None:
            ones = self._constant[batch] = np.ones((batch, 1))
            ones.flags.writeable = False
        return ones

    def _rows(self, layout):
        """Rows (``R × n``) of a named stacked layout; ``"units"``: state row ``i`` for unit ``i``."""
        if layout == "units":
            return np.arange(self.k)
        raise KeyError(layout)

    def _dynamics(self, *terms) -> DynamicsJacobian:
        """``D_t = Σ L · W · diag(R) · E`` from ``(L, W, R, cols, free)`` tuples (trailing entries
        optional; ``free``: :meth:`_free` of a masked ``W``)."""
        return DynamicsJacobian(self.k, tuple(DynamicsTerm(*t) for t in terms), self._layout_cache)


def matvec(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``A v`` for ``A`` of shape ``n × q`` (shared: one matrix product ``v Aᵀ`` for all replicates)
    or ``B × n × q`` (one per replicate), and ``v`` of shape ``B × q``."""
    return v @ A.T if A.ndim == 2 else np.matmul(A, v[..., None])[..., 0]
