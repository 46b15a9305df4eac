"""The estimator interface (docs/architecture.md "Estimators"; THEORY.md §2, §4).

An estimator tracks (an estimate of) the influence ``J_t = ds_t/dθ`` and turns credits into
gradient estimates, as an ``init`` / ``update`` / ``gradient`` / ``flush`` set of pure-looking
methods over an explicit ``state`` and an explicit ``numpy.random.Generator``:

* ``init(cell, theta, batch, rng) -> state``
* ``update(state, lin, rng) -> state`` with ``lin`` the step's :class:`~simulations.jacobians.Linearization`
* ``gradient(state, credit) -> (state, g)``: ``g`` (``B × p``) is the gradient contribution that
  becomes available at this step (``c_t J_t`` for forward methods; a block's gradient for TBPTT)
* ``flush(state) -> (state, g)``: what is still pending at the end of a sequence.
* ``step(state, lin, credit, rng) -> (state, g)``: ``update`` then ``gradient`` (the credit ``c_t``
  depends only on ``s_t``, known before the influence update); estimators may fuse the two.

Forward-mode estimators also expose ``influence(state) -> B × k × p`` (dense, for checks).
Estimators may update arrays inside ``state`` in place; callers treat a state as owned.

What consumers may rely on is declared, not probed: :attr:`Estimator.capabilities`
(:class:`Capabilities`: online or not, holds an influence, stochastic), :meth:`Estimator.applies_to`
(the cells it runs on) and the cost model :meth:`Estimator.flops` (FLOPs per step and replicate,
:mod:`simulations.flops`) and :meth:`Estimator.memory` (numbers held per replicate).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..plain import restore, to_plain

_ZERO = np.zeros(())                   # an online estimator's flushed gradient: read-only, broadcast
_ZERO.flags.writeable = False


@dataclass(frozen=True)
class Capabilities:
    """What an estimator declares about itself.

    ``online``: ``gradient`` returns ``c_t J_t`` at every step (false for TBPTT / BPTT, whose
    gradient arrives per block); ``holds_influence``: ``influence(state)`` gives ``J̃_t``
    (``B × k × p``); ``stochastic``: it draws random numbers, so replicates differ.
    """

    online: bool = True
    holds_influence: bool = True
    stochastic: bool = False


class Estimator:
    name = "estimator"
    capabilities = Capabilities()

    def require_cell(self, cell) -> None:
        """Raise ``ValueError`` (one line) when the estimator does not run on ``cell``; by default
        it runs on every cell."""

    def applies_to(self, cell) -> bool:
        """Whether the estimator runs on ``cell`` (:meth:`require_cell` accepts it)."""
        try:
            self.require_cell(cell)
        except ValueError:
            return False
        return True

    def flops(self, cell) -> float:
        """The estimator's own floating-point operations per step and replicate (formula with the
        estimator; :mod:`simulations.flops` adds the cell's and the readout's)."""
        raise NotImplementedError(f"{self.name} declares no FLOP model")

    def memory(self, cell) -> float:
        """Numbers the estimator holds per replicate between steps (its memory model)."""
        raise NotImplementedError(f"{self.name} declares no memory model")

    def init(self, cell, theta, batch: int, rng: np.random.Generator):
        raise NotImplementedError

    def update(self, state, lin, rng: np.random.Generator):
        raise NotImplementedError

    def gradient(self, state, credit: np.ndarray):
        raise NotImplementedError

    def step(self, state, lin, credit: np.ndarray, rng: np.random.Generator = None):
        """One time step: ``update`` with ``lin``, then ``gradient`` with ``credit``."""
        state = self.update(state, lin, rng)
        return self.gradient(state, credit)

    def tangent(self, state) -> np.ndarray | None:
        """A ``B × k`` vector whose product ``D_t · v`` the next step needs (``None``: none), for
        :meth:`~simulations.cells.base.Cell.linearize` to form with the forward step."""
        return None

    def flush(self, state):
        """The gradient held back until the end of a sequence (BPTT's adjoint): ``(state, g)``,
        ``g``: ``B × p``.  An online estimator holds none back: ``g`` is a read-only zero array
        that takes no memory (a ``B × p`` zero fill was half a SnAp-1 step at Elman k = 256)."""
        return state, np.broadcast_to(_ZERO, (state.batch, state.p))

    def influence(self, state) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not hold an influence matrix")

    def influence_norms(self, state) -> np.ndarray:
        """``‖J̃_t‖_F`` per replicate (``B``; the trainer's divergence check): by default from
        :meth:`influence`; an estimator whose influence has a closed-form norm overrides it."""
        J = self.influence(state)
        J = J.reshape(J.shape[0], -1)
        return np.sqrt(np.einsum("bi,bi->b", J, J))

    def reset(self, state):
        """Forget the influence (start of an independent sequence); default re-creates nothing."""
        raise NotImplementedError

    #: state fields derived from the cell alone: not saved, kept from a fresh ``init``
    static_state: tuple[str, ...] = ()

    def export_state(self, state) -> dict:
        """``state`` as plain data (numbers, arrays, lists, dicts; :mod:`simulations.plain`), for checkpoints."""
        return to_plain(state, self.static_state)

    def restore_state(self, template, plain: dict, cell):
        """The state saved by :meth:`export_state`, written into ``template`` (a fresh ``init``
        for ``cell`` with the same batch); returns the restored state."""
        return restore(template, plain)

    def __repr__(self):
        return self.label

    @property
    def label(self) -> str:
        return self.name


def linearize_for(estimator: Estimator, state, cell, theta, s, x):
    """``cell.linearize(θ, s, x)`` for the next step of ``estimator`` from ``state``: with the
    estimator's :meth:`~Estimator.tangent` when the cell forms ``D_t · tangent`` in its forward
    product (``cell.shares_tangent_product``)."""
    if cell.shares_tangent_product:
        tangent = estimator.tangent(state)
        if tangent is not None:
            return cell.linearize(theta, s, x, tangent)
    return cell.linearize(theta, s, x)
