"""Estimated floating-point operations per time step of a cell + readout + estimator (THEORY.md §2, §4).

Counts per replicate of the arithmetic the implementations perform, with a multiply-add counted
as 2 FLOPs.  ``D_t`` is held dense (``k × k``), ``I_t`` factored (``nI = nnz(I)`` structural
nonzeros, from ``cell.patterns()``).  They are the "per FLOP" axis of the learning experiment and
the basis of its cost pairing: estimates of arithmetic, not timings.

Per step:

* cell (every estimator): forward ``2p``; ``D_t`` from the recurrent blocks ``2·Σ n_out·n_in``;
  ``I_t``'s nonzeros ``nI``;
* readout ``V s + c`` with credit and ``∂ℓ/∂φ`` (``n_out`` outputs): ``6·k·n_out``;
* masked influences (``rtrl``, ``snap-n``, ``rflo``; :mod:`simulations.estimators.masked`):
  ``(D_t J̃) ⊙ M`` costs ``2·pairs`` (the ``(D_ij, J̃_j,col)`` products the recursion forms:
  ``k²p`` for the dense path of exact RTRL, fewer on a sparse mask), ``+ I_t``: ``nI``,
  ``c_t J̃_t``: ``2·nnz(M)``;
* ``uoro``: ``D_t s̃``: ``2k²``; ``νᵀ I_t``: ``2·nI``; norms, ``θ̃`` update and ``(c s̃) θ̃``: ``6p + 4k``;
* ``kf-rtrl``: ``D_t A``: ``2k³``; ``c A`` and its outer product with ``u``: ``2k² + p``;
  ``u``, norms: ``4(k + m + 1)``;
* ``bptt`` / ``tbptt-τ``: one adjoint step ``λ D``: ``2k²``; ``λ I``: ``2·nI``; ``+ c_t``: ``k``
  (independent of ``τ``: the non-overlapping blocks visit each step once).
"""
from __future__ import annotations


def estimator_flops(cell, estimator) -> float:
    """The estimator's own FLOPs per step and replicate (formulas in the module docstring).

    ``estimator``: an instance from :func:`simulations.estimators.parse_estimator`.  An estimator
    without a formula raises ``ValueError``.
    """
    _, Ip = cell.patterns()
    nI, k, p = float(Ip.sum()), cell.k, cell.p
    if hasattr(estimator, "structure"):                  # the masked influence recursion
        st = estimator.structure(cell)
        return 2.0 * st.pairs + nI + 2.0 * st.nnz
    name = estimator.name
    if name == "uoro":
        return 2.0 * k * k + 2.0 * nI + 6.0 * p + 4.0 * k
    if name == "kf-rtrl":
        return 2.0 * k ** 3 + 2.0 * k * k + p + 4.0 * (k + cell.m + 1)
    if name in ("bptt", "tbptt"):
        return 2.0 * k * k + 2.0 * nI + k
    raise ValueError(f"no FLOP formula for estimator {name!r}")


def step_flops(cell, estimator, n_out: int) -> dict[str, float]:
    """FLOPs per step and replicate: ``{"cell", "readout", "estimator", "total"}``."""
    _, Ip = cell.patterns()
    recurrent = sum(b.n_out * b.n_in for b in cell.blocks if b.recurrent)
    out = {"cell": 2.0 * cell.p + 2.0 * recurrent + float(Ip.sum()), "readout": 6.0 * cell.k * n_out,
           "estimator": estimator_flops(cell, estimator)}
    out["total"] = out["cell"] + out["readout"] + out["estimator"]
    return out
