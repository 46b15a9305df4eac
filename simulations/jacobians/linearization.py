"""One step of a recurrent core: ``s_t``, ``D_t`` and ``I_t`` (THEORY.md §1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dynamics import DynamicsJacobian
from .immediate import ImmediateJacobian


@dataclass
class Linearization:
    """One step of the core: ``s_t`` (``B × k``), ``D_t`` (:class:`DynamicsJacobian`, factored) and
    ``I_t`` (:class:`ImmediateJacobian`).  ``D`` is the dense ``B × k × k`` array (formed on first
    use, cached); a dense array passed as ``dynamics`` is wrapped."""

    state: np.ndarray
    dynamics: DynamicsJacobian
    I: ImmediateJacobian

    def __post_init__(self):
        if not isinstance(self.dynamics, DynamicsJacobian):
            self.dynamics = DynamicsJacobian.from_dense(self.dynamics)

    @property
    def D(self) -> np.ndarray:
        return self.dynamics.dense()
