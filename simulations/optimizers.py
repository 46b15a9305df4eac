"""Step sizes and optimisers of online training (THEORY.md §5): ``θ_{t+1} = θ_t + u_t`` with the
update ``u_t`` computed from the accumulated gradient estimate.

An optimiser is an ``init`` / ``update`` pair over explicit state, in the shape of optax's
``GradientTransformation``: ``init(x) -> state`` and ``update(grads, state, alpha) ->
(updates, state)``; the caller adds ``updates`` to its parameters.  ``apply(params, grads, state,
alpha, bound)`` does the same to ``params`` in place, in one compiled pass that also returns what
the training loop's divergence test reads (each row's ``‖g‖²`` and how many of its parameters left
``(−bound, bound)``): at every online step the loop otherwise made about six passes over ``B × p``
numbers for SGD and fifteen for Adam.  :func:`apply_by_update` is its numpy reference, and the
``apply`` of an optimiser that has no compiled pass.  Rows are independent
replicates (``B × n``); a row whose gradient is zero (it received none: TBPTT between blocks, a
copy task between recall steps) does not move, and Adam does not advance its state.  The step size ``α_t`` comes from a
:class:`Schedule` evaluated by the training loop for a chunk of steps at once, so that every
optimiser sees the same ``α_t``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numba
import numpy as np


@dataclass(frozen=True)
class Schedule:
    """``α_t = α₀ / (1 + t/t₀)^γ``; ``γ = 0`` is a constant rate.

    The Robbins–Monro conditions ``Σ α_t = ∞``, ``Σ α_t² < ∞`` (THEORY.md §5) hold exactly when
    ``1/2 < γ ≤ 1``.
    """

    alpha0: float
    t0: float = 1000.0
    gamma: float = 0.0

    def __post_init__(self):
        if not (self.alpha0 > 0 and np.isfinite(self.alpha0)):
            raise ValueError(f"learning rate alpha0 must be positive, got {self.alpha0!r}")
        if not self.t0 > 0:
            raise ValueError(f"schedule t0 must be positive, got {self.t0!r}")
        if not (0.0 <= self.gamma <= 1.0):
            raise ValueError(f"schedule exponent gamma must be in [0, 1], got {self.gamma!r}")

    def __call__(self, t) -> float:
        return self.alpha0 / (1.0 + np.asarray(t, dtype=float) / self.t0) ** self.gamma

    @property
    def robbins_monro(self) -> bool:
        return 0.5 < self.gamma <= 1.0

    def require_robbins_monro(self) -> None:
        """Raise ``ValueError`` unless ``Σ α = ∞`` and ``Σ α² < ∞`` (for runs claiming the theorem)."""
        if not self.robbins_monro:
            raise ValueError(f"schedule gamma={self.gamma} violates the theorem's step-size conditions "
                             "(need 1/2 < gamma <= 1 for sum(alpha)=inf and sum(alpha^2)<inf)")


class Optimizer(Protocol):
    """``init(x) -> state``; ``update(grads, state, alpha) -> (updates, state)``; ``apply(params,
    grads, state, alpha, bound) -> (state, sq, outside)`` (see :func:`apply_by_update`)."""

    name: str

    def init(self, x: np.ndarray): ...

    def update(self, grads: np.ndarray, state, alpha: float) -> tuple[np.ndarray, object]: ...

    def apply(self, params: np.ndarray, grads: np.ndarray, state, alpha: float,
              bound: float) -> tuple[object, np.ndarray, np.ndarray]: ...


def apply_by_update(optimizer: Optimizer, params: np.ndarray, grads: np.ndarray, state, alpha: float,
                    bound: float) -> tuple[object, np.ndarray, np.ndarray]:
    """``params += update(grads)`` in place, the reference of :meth:`Optimizer.apply`.

    ``params``, ``grads``: ``B × n``.  Returns the new state, ``sq`` (``B``: ``Σ_j grads[b, j]²``)
    and ``outside`` (``B``: how many entries of the updated row are not in ``(−bound, bound)``,
    a non-finite entry included)."""
    updates, state = optimizer.update(grads, state, alpha)
    params += updates
    return state, np.einsum("bn,bn->b", grads, grads), np.sum(~(np.abs(params) < bound), axis=1).astype(float)


#: entries of a row updated before their statistics are summed (a block stays in L1)
_BLOCK = 512


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _block_stats(g, t, bound):
    """``(Σ g², #{j: |t_j| ≥ bound or non-finite})`` over one block, summed in a vectorised order
    (reassociated: deterministic for a given build and length)."""
    sq = 0.0
    out = 0.0
    for j in range(g.shape[0]):
        sq += g[j] * g[j]
        out += 0.0 if abs(t[j]) < bound else 1.0
    return sq, out


@numba.njit(cache=True, nogil=True)
def sgd_apply(theta, g, alpha, bound, sq, outside):
    """:meth:`SGD.apply`'s pass: ``θ[b, j] ← θ[b, j] + (−(α g[b, j]))`` (the arithmetic of ``update``
    and ``+=``, in that order, no fused multiply-add), with ``sq[b] = Σ_j g[b, j]²`` and
    ``outside[b]`` the count of updated entries not in ``(−bound, bound)``.

    ``theta``, ``g``: ``B × n`` (rows contiguous); ``sq``, ``outside``: ``B``, written."""
    B, n = theta.shape
    for b in range(B):
        s = 0.0
        o = 0.0
        for lo in range(0, n, _BLOCK):
            hi = min(lo + _BLOCK, n)
            tr, gr = theta[b, lo:hi], g[b, lo:hi]
            for j in range(hi - lo):
                tr[j] = tr[j] + (-(alpha * gr[j]))
            a, c = _block_stats(gr, tr, bound)
            s += a
            o += c
        sq[b] = s
        outside[b] = o


@numba.njit(cache=True, nogil=True)
def adam_apply(theta, g, m, v, n, a1, c2, beta1, beta2, eps, bound, sq, outside):
    """:meth:`Adam.apply`'s pass, for the rows with a nonzero gradient (the others keep ``θ``,
    ``m``, ``v`` and their step count ``n``)::

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   θ ← θ + (−((a1 m) / (sqrt(v / c2) + ε)))

    with ``a1[b] = α / (1 − β₁^{n_b+1})`` and ``c2[b] = 1 − β₂^{n_b+1}`` formed by the caller as
    ``update`` forms them; the arithmetic of ``update`` and ``+=`` in the same order, no fused
    multiply-add.  ``sq``, ``outside``: as :func:`sgd_apply`.

    ``theta``, ``g``, ``m``, ``v``: ``B × N`` (rows contiguous); ``n``, ``a1``, ``c2``, ``sq``,
    ``outside``: ``B``."""
    B, N = theta.shape
    k1, k2 = 1.0 - beta1, 1.0 - beta2
    for b in range(B):
        active = False
        for j in range(N):
            if g[b, j] != 0.0:
                active = True
                break
        if active:
            n[b] += 1.0
        s = 0.0
        o = 0.0
        A, C = a1[b], c2[b]
        for lo in range(0, N, _BLOCK):
            hi = min(lo + _BLOCK, N)
            tr, gr, mr, vr = theta[b, lo:hi], g[b, lo:hi], m[b, lo:hi], v[b, lo:hi]
            if active:
                for j in range(hi - lo):
                    gj = gr[j]
                    mj = beta1 * mr[j] + k1 * gj
                    vj = beta2 * vr[j] + k2 * (gj * gj)
                    mr[j] = mj
                    vr[j] = vj
                    tr[j] = tr[j] + (-((A * mj) / (np.sqrt(vj / C) + eps)))
            a, c = _block_stats(gr, tr, bound)
            s += a
            o += c
        sq[b] = s
        outside[b] = o


def _rows(params: np.ndarray, grads: np.ndarray) -> bool:
    """Whether the compiled pass takes these arrays as they are (2-D float64, rows contiguous)."""
    return (params.ndim == 2 and params.shape == grads.shape and params.dtype == np.float64
            and grads.dtype == np.float64 and params.strides[1] == 8 and grads.strides[1] == 8)


class SGDState(NamedTuple):
    """SGD keeps no state."""


class SGD:
    """Plain stochastic gradient descent, ``u_t = −α_t g_t`` (with a Robbins–Monro :class:`Schedule`,
    the stochastic approximation of THEORY.md §5)."""

    name = "sgd"

    def init(self, x: np.ndarray) -> SGDState:
        return SGDState()

    def update(self, grads, state, alpha):
        """``grads``, ``updates``: ``B × n`` (a zero row of ``grads`` gives a zero row)."""
        return -(alpha * grads), state

    def apply(self, params, grads, state, alpha, bound):
        """:func:`apply_by_update` in one compiled pass (:func:`sgd_apply`); same ``params``."""
        if not _rows(params, grads):
            return apply_by_update(self, params, grads, state, alpha, bound)
        sq, outside = np.empty(params.shape[0]), np.empty(params.shape[0])
        sgd_apply(params, grads, float(alpha), float(bound), sq, outside)
        return state, sq, outside


class AdamState(NamedTuple):
    m: np.ndarray        # B × n first moment
    v: np.ndarray        # B × n second moment
    n: np.ndarray        # B: optimiser steps taken by each replicate


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015, bias-corrected), per replicate: a row's moments and step count
    advance only when it is active."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name = "adam"

    def init(self, x: np.ndarray) -> AdamState:
        return AdamState(np.zeros_like(x), np.zeros_like(x), np.zeros(x.shape[0]))

    def update(self, grads, state, alpha):
        """``u[b] = −α_t m̂[b] / (sqrt(v̂[b]) + ε)`` for the rows ``b`` with a nonzero gradient
        (``B × n``); zero, and no step counted, for the others."""
        updates = np.zeros_like(grads)
        active = np.any(grads != 0.0, axis=1)
        if not active.any():
            return updates, state
        rows = slice(None) if active.all() else np.flatnonzero(active)
        m, v, n = state.m, state.v, state.n
        n[rows] += 1
        mr = m[rows] = self.beta1 * m[rows] + (1.0 - self.beta1) * grads[rows]
        vr = v[rows] = self.beta2 * v[rows] + (1.0 - self.beta2) * np.square(grads[rows])
        nr = n[rows][:, None]
        updates[rows] = -((alpha / (1.0 - self.beta1 ** nr)) * mr / (np.sqrt(vr / (1.0 - self.beta2 ** nr)) + self.eps))
        return updates, state

    def apply(self, params, grads, state, alpha, bound):
        """:func:`apply_by_update` in one compiled pass (:func:`adam_apply`); same ``params`` and
        state (the bias corrections formed here with ``update``'s expressions)."""
        m, v, n = state
        if not (_rows(params, grads) and _rows(m, grads) and _rows(v, grads) and n.dtype == np.float64
                and n.flags.c_contiguous):
            return apply_by_update(self, params, grads, state, alpha, bound)
        nr = n + 1
        a1, c2 = alpha / (1.0 - self.beta1 ** nr), 1.0 - self.beta2 ** nr
        sq, outside = np.empty(params.shape[0]), np.empty(params.shape[0])
        adam_apply(params, grads, m, v, n, a1, c2, self.beta1, self.beta2, self.eps, float(bound), sq, outside)
        return state, sq, outside


#: optimisers by name (the ``optimizer`` option of the learning experiment)
OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str) -> Optimizer:
    """``"sgd"`` or ``"adam"`` with default hyper-parameters; ``ValueError`` for other names."""
    try:
        return OPTIMIZERS[name]()
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
