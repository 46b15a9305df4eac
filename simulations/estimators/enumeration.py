"""Exact expectation over the random signs of UORO / KF-RTRL (THEORY.md §4 "unbiased"), by
enumeration: for tiny sizes every sign sequence is run as one replicate (the batch axis), so
``E[J̃_T]`` over signs is a finite average, compared with exact RTRL's ``J_T`` within a float64
rounding bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .masked import UNIT_ROUNDOFF, influence_rounding_bound
from .rtrl import RTRL
from .signs import SignReplay, all_sign_sequences


@dataclass
class Expectation:
    """``mean``: the average of ``J̃_T`` over all ``sequences`` sign sequences (``k × p``);
    ``exact``: RTRL's ``J_T``; ``bound``: entrywise rounding bound on ``|mean − exact|``."""

    mean: np.ndarray
    exact: np.ndarray
    bound: np.ndarray
    sequences: int

    @property
    def error(self) -> float:
        return float(np.max(np.abs(self.mean - self.exact)))

    @property
    def ratio(self) -> float:
        """``max |mean − exact| / bound`` (``≤ 1``: equal to rounding; ``inf`` if an entry with a
        zero bound differs)."""
        err = np.abs(self.mean - self.exact)
        if np.any(err[self.bound <= 0] > 0):
            return float("inf")
        pos = self.bound > 0
        return float(np.max(err[pos] / self.bound[pos])) if pos.any() else 0.0


def _magnitudes(name, mag, state, lin):
    """Entrywise bounds on the absolute terms of the two factors (same scales as the estimator).

    UORO: ``S ← ρ₀|D|S + ρ₁``, ``Θ ← Θ/ρ₀ + 1ᵀ|I|/ρ₁``.  KF-RTRL: ``U ← p₁U + p₂|â|``,
    ``𝒜 ← |D|𝒜/p₁ + diag|σ'|/p₂``.  The computed factors differ from the exact ones (for the
    computed scales) by at most ``γ_{T(k+6)}`` times these.
    """
    a, b = state.scales[:, 0], state.scales[:, 1]
    aD = np.abs(lin.D)
    if name == "uoro":
        S, Th = mag if mag else (0.0, 0.0)
        S = np.broadcast_to(S, aD.shape[:2])
        S = a[:, None] * np.matmul(aD, S[:, :, None])[:, :, 0] + b[:, None]
        Th = Th / a[:, None] + np.abs(lin.I.dense()).sum(axis=1) / b[:, None]
        return S, Th
    lay = state.layout
    U, A = mag if mag else (0.0, 0.0)
    ahat = np.abs(np.concatenate([lin.I.sources[src] for src in lay.sources], axis=1))
    sig = np.abs(lin.I.gates[lay.gate].vals[:, 0, :])
    U = a[:, None] * U + b[:, None] * ahat
    A = np.matmul(aD, np.broadcast_to(A, aD.shape)) / a[:, None, None]
    k = aD.shape[1]
    A[:, np.arange(k), np.arange(k)] += sig / b[:, None]
    return U, A


def _run(estimator, cell, theta, xs, batch, rng, track=None):
    """Run ``estimator`` over the data path ``xs`` (``T × m``, shared by ``batch`` replicates);
    returns ``(state, lins, mag)`` with ``mag`` the :func:`_magnitudes` when ``track``."""
    state = estimator.init(cell, theta, batch, rng)
    s, mag, lins = np.zeros((batch, cell.k)), None, []
    for x in xs:
        lin = cell.linearize(theta, s, np.broadcast_to(x, (batch, x.size)))
        s = lin.state
        state = estimator.update(state, lin, rng)
        if track:
            mag = _magnitudes(estimator.name, mag, state, lin)
        lins.append(lin)
    return state, lins, mag


def expected_influence(estimator, cell, theta, xs, shift: float = 0.0) -> Expectation:
    """``E_signs[J̃_T]`` of ``estimator`` (a ``UORO`` or ``KFRTRL`` instance) on one data path
    ``xs`` (``T × m``), by running all ``2^(w·T)`` sign sequences batched (``w`` signs per step).
    ``shift ≠ 0`` weights the sequences as signs of mean ``shift`` would (a biased variant).

    Rounding bound: each factor carries relative error ``γ_{T(k+6)}`` against its magnitude
    recursion (:func:`_magnitudes`), the product one more rounding and the average
    ``⌈log₂ 2^{wT}⌉ + 1`` more, so ``|mean − E| ≤ γ_N · mean(|factor₁| |factor₂|ᵀ)`` with
    ``N = 2T(k+6) + wT + 2``; RTRL's own error adds ``2 E_T`` (:func:`influence_rounding_bound`).
    """
    xs = np.asarray(xs, dtype=float)
    T, k = xs.shape[0], cell.k
    signs = all_sign_sequences(estimator.signs_per_step(cell), T)
    B = signs.shape[1]
    weights = np.prod(0.5 * (1.0 + shift * signs), axis=(0, 2))           # B, sums to 1
    state, _, mag = _run(estimator, cell, theta, xs, B, SignReplay(signs), track=True)
    mean = np.tensordot(weights, estimator.influence(state), axes=1)
    if estimator.name == "uoro":
        size = np.tensordot(weights, mag[0][:, :, None] * mag[1][:, None, :], axes=1)
    else:
        lay = state.layout
        size = np.tensordot(weights, mag[0][:, None, lay.ucol] * mag[1][:, :, lay.acol], axes=1)

    exact = RTRL()
    ex_state, lins, _ = _run(exact, cell, theta, xs, 1, None)
    n = 2 * T * (k + 6) + int(np.log2(B)) + 2
    gamma = n * UNIT_ROUNDOFF / (1.0 - n * UNIT_ROUNDOFF)
    bound = gamma * size + 2.0 * influence_rounding_bound(lins, k)[0]
    return Expectation(mean, exact.influence(ex_state)[0].copy(), bound, B)
