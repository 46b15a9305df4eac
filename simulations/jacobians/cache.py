"""What a cell's factored Jacobians derive once from its fixed layout and reuse at every step.

The cell owns one :class:`LayoutCache` and hands it to the :class:`~.immediate.ImmediateJacobian`
and :class:`~.dynamics.DynamicsJacobian` of each of its steps; every field is a function of the
cell's blocks and gate layouts only (never of ``θ``, ``s`` or ``x``), filled on first use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LayoutCache:
    groups: tuple | None = None                # merged parameter blocks (blocks.merge_blocks)
    unit_major: np.ndarray | None = None       # p: θ's columns in unit-major order (blocks.unit_major)
    diagonal_levels: bool | None = None        # every level of every merged block on a row range
    scatter: dict = field(default_factory=dict)  # (block name, level) -> (rows, cols) of its nonzeros in k × p
    diagonal_plan: list | None = None          # DynamicsJacobian.entry_plan of diag(D)'s flat indices
