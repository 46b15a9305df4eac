"""Running a cell, a readout and an estimator over one batch of sequences.

``xs``: ``T × B × m``; ``ys``: ``T × B × n_out`` (mse) or ``T × B`` (xent).  The sequence loss is
``L_T = Σ_t ℓ_t`` (THEORY.md §1).  The time loop is in Python; everything inside a step is
vectorised over the replicate axis ``B``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimators.base import linearize_for
from .seeding import as_generator


@dataclass
class SequenceResult:
    loss: np.ndarray          # B: L_T
    grad_theta: np.ndarray    # B × p: the estimator's dL_T/dθ
    grad_phi: np.ndarray      # B × q: dL_T/dφ (exact; readout gradients are local)
    states: np.ndarray | None = None   # (T+1) × B × k when recorded


def initial_state(cell, batch, s0=None):
    return np.zeros((batch, cell.k)) if s0 is None else np.array(s0, dtype=float)


def sequence_loss(cell, theta, readout, phi, xs, ys, s0=None) -> np.ndarray:
    """``L_T`` (``B``) by forward steps only; ``θ`` may be ``B × p`` (e.g. finite-difference probes)."""
    s = initial_state(cell, xs.shape[1], s0)
    L = np.zeros(xs.shape[1])
    for t in range(xs.shape[0]):
        s = cell.step(theta, s, xs[t])
        L += readout.evaluate(phi, s, ys[t])[0]
    return L


def run_sequence(cell, theta, readout, phi, xs, ys, estimator, rng=None, s0=None,
                 record_states=False) -> SequenceResult:
    """Loss and gradient estimate of ``L_T`` with ``θ`` held fixed (``Σ_t c_t J_t`` or its adjoint).

    ``rng`` (a seed, a numpy Generator or a sign source of :mod:`~.estimators.signs`) drives a
    stochastic estimator (UORO, KF-RTRL) and is required for one; deterministic estimators need none."""
    if isinstance(rng, (int, np.integer)):
        rng = as_generator(rng)
    elif rng is None and estimator.capabilities.stochastic:
        raise ValueError(f"estimator {estimator.name!r} draws random numbers: pass rng (a seed or a Generator)")
    B = xs.shape[1]
    s = initial_state(cell, B, s0)
    est = estimator.init(cell, theta, B, rng)
    L, g, gphi = np.zeros(B), np.zeros((B, cell.p)), np.zeros((B, readout.q))
    states = [s] if record_states else None
    for t in range(xs.shape[0]):
        lin = linearize_for(estimator, est, cell, theta, s, xs[t])
        s = lin.state
        loss, credit, dphi = readout.evaluate(phi, s, ys[t])
        est, gt = estimator.step(est, lin, credit, rng)
        L += loss
        g += gt
        gphi += dphi
        if record_states:
            states.append(s)
    est, gt = estimator.flush(est)
    g += gt
    return SequenceResult(L, g, gphi, np.stack(states) if record_states else None)
