"""Estimated floating-point operations per time step of a cell + readout + estimator (THEORY.md §2, §4).

Counts per replicate of the arithmetic the implementations perform, with a multiply-add counted
as 2 FLOPs.  ``D_t`` is held dense (``k × k``), ``I_t`` factored (``nI = nnz(I)`` structural
nonzeros, from ``cell.patterns()``).  They are the "per FLOP" axis of the learning experiment and
the basis of its cost pairing: estimates of arithmetic, not timings.

Per step:

* cell (every estimator): forward ``2p``; ``D_t`` from the recurrent blocks ``2·Σ n_out·n_in``;
  ``I_t``'s nonzeros ``nI``;
* readout ``V s + c`` with credit and ``∂ℓ/∂φ`` (``n_out`` outputs): ``6·k·n_out``;
* the estimator: its own :meth:`~simulations.estimators.base.Estimator.flops` (the formula lives
  with the estimator: the masked influence recursion of RTRL, SnAp-n and RFLO, UORO, KF-RTRL,
  TBPTT).
"""
from __future__ import annotations


def immediate_nnz(cell) -> float:
    """``nnz(I)``: the structural nonzeros of the immediate Jacobian ``I_t`` (``cell.patterns()``)."""
    return float(cell.patterns()[1].sum())


def estimator_flops(cell, estimator) -> float:
    """The estimator's own FLOPs per step and replicate: ``estimator.flops(cell)``.

    An estimator without a FLOP model raises ``NotImplementedError``."""
    return estimator.flops(cell)


def step_flops(cell, estimator, n_out: int) -> dict[str, float]:
    """FLOPs per step and replicate: ``{"cell", "readout", "estimator", "total"}``."""
    recurrent = sum(b.n_out * b.n_in for b in cell.blocks if b.recurrent)
    out = {"cell": 2.0 * cell.p + 2.0 * recurrent + immediate_nnz(cell), "readout": 6.0 * cell.k * n_out,
           "estimator": estimator_flops(cell, estimator)}
    out["total"] = out["cell"] + out["readout"] + out["estimator"]
    return out
