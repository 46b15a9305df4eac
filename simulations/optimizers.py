"""Step sizes and optimisers of online training (THEORY.md §5): ``θ_{t+1} = θ_t + u_t`` with the
update ``u_t`` computed from the accumulated gradient estimate.

An optimiser is an ``init`` / ``update`` pair over explicit state, in the shape of optax's
``GradientTransformation``: ``init(x) -> state`` and ``update(grads, state, alpha) ->
(updates, state)``; the caller adds ``updates`` to its parameters.  Rows are independent
replicates (``B × n``); a row whose gradient is zero (it received none: TBPTT between blocks, a
copy task between recall steps) does not move, and Adam does not advance its state.  The step size ``α_t`` comes from a
:class:`Schedule` evaluated by the training loop for a chunk of steps at once, so that every
optimiser sees the same ``α_t``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

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
    """``init(x) -> state``; ``update(grads, state, alpha) -> (updates, state)``."""

    name: str

    def init(self, x: np.ndarray): ...

    def update(self, grads: np.ndarray, state, alpha: float) -> tuple[np.ndarray, object]: ...


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


#: optimisers by name (the ``optimizer`` option of the learning experiment)
OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str) -> Optimizer:
    """``"sgd"`` or ``"adam"`` with default hyper-parameters; ``ValueError`` for other names."""
    try:
        return OPTIMIZERS[name]()
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}") from None
