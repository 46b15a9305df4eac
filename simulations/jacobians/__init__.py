"""Structured Jacobians of a recurrent core (THEORY.md §1, §3), one concept per module:

* :mod:`.blocks`: the parameter layout (named blocks of ``θ``, merging, unit-major order);
* :mod:`.products`: outer-product kernels (``v ⊗ w`` per replicate, block by block into ``θ``'s layout);
* :mod:`.gates`: gate Jacobians ``G_g = ∂s_t/∂a_g`` (stacked diagonals or dense);
* :mod:`.immediate`: ``I_t = ∂F/∂θ`` factored as ``G_g[:, i] · v_j`` per block;
* :mod:`.dynamics`: ``D_t = ∂F/∂s`` as a sum of factored terms ``L · W · diag(R) · E``;
* :mod:`.cache`: what a cell's Jacobians derive once from its layout (:class:`LayoutCache`, owned by the cell);
* :mod:`.linearization`: one step's ``(s_t, D_t, I_t)``.

Operators are named alike on every factored matrix ``A``: ``matvec`` (``A v``), ``rmatvec``
(``λ A``), ``matmul`` (``A M``); a batch of replicates runs on the leading axis.
"""
from __future__ import annotations

from .blocks import ParamBlock, as_slice, make_blocks, merge_blocks, unit_major, unit_major_blocks
from .cache import LayoutCache
from .dynamics import DynamicsJacobian, DynamicsTerm, FreeEntries
from .gates import GateJacobian, level_starts
from .immediate import EntryInjection, ImmediateJacobian
from .linearization import KroneckerFactors, Linearization
from .products import block_outer, outer_into, row_dot

__all__ = ["ParamBlock", "as_slice", "make_blocks", "merge_blocks", "unit_major", "unit_major_blocks",
           "LayoutCache", "DynamicsJacobian", "DynamicsTerm", "FreeEntries", "GateJacobian", "level_starts",
           "EntryInjection", "ImmediateJacobian", "KroneckerFactors", "Linearization", "block_outer", "outer_into", "row_dot"]
