"""The estimator interface (DESIGN.md "Core interfaces").

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
"""
from __future__ import annotations

import numpy as np


class Estimator:
    name = "estimator"
    #: True when ``gradient`` returns ``c_t J_t`` at every step (an online method).
    online = True

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

    def flush(self, state):
        return state, np.zeros((state.batch, state.p))

    def influence(self, state) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not hold an influence matrix")

    def reset(self, state):
        """Forget the influence (start of an independent sequence); default re-creates nothing."""
        raise NotImplementedError

    def __repr__(self):
        return self.label

    @property
    def label(self) -> str:
        return self.name
