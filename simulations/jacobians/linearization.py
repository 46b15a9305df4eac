"""One step of a recurrent core: ``s_t``, ``D_t`` and ``I_t`` (THEORY.md §1)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .dynamics import DynamicsJacobian
from .immediate import ImmediateJacobian


@dataclass(slots=True)
class KroneckerFactors:
    """The step of a cell in Kronecker form with one unmasked parameter block (THEORY.md §3,
    Elman): ``s_t = σ(A â_t)`` with ``A = [W U b]`` and ``θ`` holding ``A`` column-major (entry
    ``(r, j)`` at column ``j·k + r``), so that

        D_t = diag(σ') W,        I_t[r, j·k + r] = σ'_r · â_j        (one nonzero per column).

    ``ahat``: ``B × q`` (``â_t = [s_{t−1}; x_t; 1]``, ``q = p / k``); ``dsigma``: ``B × k``;
    ``W``: ``k × k`` (shared) or ``B × k × k``, views of ``θ``; ``tangent`` (``B × k``) and ``Dv``
    (``D_t · tangent``, ``B × k``): a product formed with the forward step, or ``None``.
    Estimators read these arrays directly instead of the factored objects (which a
    :class:`Linearization` with factors forms only when asked)."""

    ahat: np.ndarray
    dsigma: np.ndarray
    W: np.ndarray
    tangent: np.ndarray | None = None
    Dv: np.ndarray | None = None

    def diagonal(self) -> np.ndarray:
        """``diag(D_t) = σ' ⊙ diag(W)``: ``B × k``."""
        return self.dsigma * np.diagonal(self.W, axis1=-2, axis2=-1)


class Linearization:
    """One step of the core: ``s_t`` (``B × k``), ``D_t`` (:class:`DynamicsJacobian`, factored) and
    ``I_t`` (:class:`ImmediateJacobian`).  ``D`` is the dense ``B × k × k`` array (formed on first
    use, cached); a dense array passed as ``dynamics`` is wrapped.

    A cell in Kronecker form passes its :class:`KroneckerFactors` and a ``build`` function instead
    of ``dynamics`` and ``I``: the two are then formed from the same arrays on first access, so that
    an estimator that reads only the factors does not pay for them."""

    __slots__ = ("state", "factors", "_dynamics", "_I", "_build")

    def __init__(self, state: np.ndarray, dynamics=None, I: ImmediateJacobian | None = None,
                 factors: KroneckerFactors | None = None,
                 build: Callable[[], tuple[DynamicsJacobian, ImmediateJacobian]] | None = None):
        if (dynamics is None or I is None) and build is None:
            raise ValueError("a linearization needs D_t and I_t, or a function that forms them")
        if dynamics is not None and not isinstance(dynamics, DynamicsJacobian):
            dynamics = DynamicsJacobian.from_dense(dynamics)
        self.state, self.factors = state, factors
        self._dynamics, self._I, self._build = dynamics, I, build

    def _formed(self) -> None:
        self._dynamics, self._I = self._build()

    def fresh(self) -> Linearization:
        """The same step with nothing formed or remembered (``D_t``, ``I_t`` of a cell in
        Kronecker form, the dense ``D_t`` and a remembered product ``D_t v`` of the factored one):
        an estimator's step on it pays what it pays on a new linearization.  The ``cost``
        experiment steps along linearizations formed in advance through this."""
        if self._build is not None:
            return Linearization(self.state, factors=self.factors, build=self._build)
        D = self._dynamics                      # a dense-only D_t keeps its matrix: it is the data
        D = dataclasses.replace(D, _dense=None if D.terms is not None else D._dense, _known=None)
        return Linearization(self.state, D, self._I, factors=self.factors)

    @property
    def dynamics(self) -> DynamicsJacobian:
        if self._dynamics is None:
            self._formed()
        return self._dynamics

    @property
    def I(self) -> ImmediateJacobian:
        if self._I is None:
            self._formed()
        return self._I

    @property
    def D(self) -> np.ndarray:
        return self.dynamics.dense()
