"""RFLO (Murray 2019; THEORY.md §4): SnAp-1 without the self-recurrent term of ``D_t``.

``J̃_t = ((D_t − diag D_t) J̃_{t−1} + I_t) ⊙ M_1``: the whole diagonal of ``D_t`` is dropped.
What that removes, per cell:

* Elman: ``σ'(z_i) W_ii``, the only term SnAp-1 keeps, so ``J̃_t = I_t`` (the immediate trace);
* GRU (both variants): ``∂s'_i/∂s_i``, i.e. the leak ``1 − z_i`` and the weight terms through
  ``W_z,ii``, ``W_r,ii``, ``W_h,ii``.  Columns with one row in ``M_1`` (all of the reset-after
  cell; the ``z`` and ``h`` gates of the standard cell) then hold ``J̃_t = I_t``; the reset-gate
  columns of the standard cell hold the rows of ``nz(W_h)`` and keep the off-diagonal terms of
  ``D_t`` among those rows;
* LSTM: ``∂h'_j/∂h_j`` and ``∂c'_j/∂c_j = f_j`` (the forget-gate carry), keeping the two
  cross terms ``∂h'_j/∂c_j`` and ``∂c'_j/∂h_j`` that ``M_1`` (rows ``h_j, c_j``) holds.

A cheap, biased baseline: ``O(p)`` memory and time like SnAp-1.
"""
from __future__ import annotations

from .masked import MaskedInfluence


class RFLO(MaskedInfluence):
    name = "rflo"
    order = 1
    drop_diagonal = True
