"""The data-process interface: a stateful, seedable stream with a leading replicate axis.

* ``init(rng, batch) -> state``
* ``sample(state, T, rng) -> (state, xs, ys)`` with ``xs``: ``T × B × m`` and ``ys``:
  ``T × B × n_out`` (regression) or ``T × B`` (integer classes).
* ``m``, ``n_out`` and ``loss`` (``"mse"`` or ``"xent"``) attributes tell the readout to build.

Processes that continue across calls (ergodic chains) keep their position in ``state``, so a
long run can be drawn in chunks and checkpointed.
"""
from __future__ import annotations

import numpy as np


class DataProcess:
    name = "process"
    m: int
    n_out: int
    loss = "mse"

    def init(self, rng: np.random.Generator, batch: int):
        raise NotImplementedError

    def sample(self, state, T: int, rng: np.random.Generator):
        raise NotImplementedError
