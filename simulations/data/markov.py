"""Regime-switching inputs driven by a finite-state Markov chain, with a lagged-memory target
(THEORY.md §5: TBPTT(τ) is biased when the data's memory exceeds τ).

    z_t ~ Markov(P),  P = stay·I + (1 − stay)/(S − 1)·(11ᵀ − I)
    x_t = μ_{z_t} + σ_x ε_t,                      ε_t ~ N(0, I_m)
    y_t = w · x_{t − lag} + σ_y η_t,              η_t ~ N(0, 1)

``(z_t, x_{t−lag}, …, x_t)`` is a Markov chain on a finite set times a Gaussian window; it is
geometrically ergodic with rate ``|λ₂(P)| = |stay − (1 − stay)/(S − 1)|`` (``< 1`` for
``0 < stay < 1``).  The target needs ``lag`` steps of memory: the part ``w·σ_x ε_{t−lag}`` of it
cannot be predicted from fewer than ``lag + 1`` recent inputs.  Regime means ``μ`` and readout
weights ``w`` are drawn from ``seed`` (the problem definition); sampling uses the run's generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataProcess
from .var1 import check_unit


@dataclass
class RegimeState:
    z: np.ndarray          # B: current regime
    hist: np.ndarray       # B × lag × m: the last ``lag`` inputs, oldest first


class MarkovRegime(DataProcess):
    """Markov-switching Gaussian inputs, target ``y_t = w·x_{t−lag} + σ_y η_t`` (mse)."""

    name = "markov-lag"
    loss = "mse"
    n_out = 1

    def __init__(self, inputs: int = 2, states: int = 3, stay: float = 0.9, lag: int = 4,
                 input_noise: float = 0.5, noise: float = 0.1, seed: int = 0):
        if isinstance(states, bool) or not isinstance(states, (int, np.integer)) or states < 2:
            raise ValueError(f"a regime chain needs states >= 2, got {states!r}")
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 0:
            raise ValueError(f"memory lag must be a non-negative integer, got {lag!r}")
        check_unit("stay", stay, closed_low=False)
        if not (input_noise > 0 and noise >= 0):
            raise ValueError("input_noise must be > 0 and noise >= 0")
        self.m, self.states, self.stay, self.lag = int(inputs), int(states), float(stay), int(lag)
        self.input_noise, self.noise, self.seed = float(input_noise), float(noise), seed
        off = (1.0 - stay) / (states - 1)
        self.P = np.full((states, states), off) + (stay - off) * np.eye(states)
        rng = np.random.default_rng(seed)
        self.means = rng.standard_normal((states, inputs))
        w = rng.standard_normal(inputs)
        self.w = w / np.linalg.norm(w)
        self._cum = np.cumsum(self.P, axis=1)
        self._cum[:, -1] = 1.0

    @property
    def mixing_rate(self) -> float:
        """``|λ₂(P)|``: the chain forgets its start like ``|λ₂|^t``."""
        return abs(self.stay - (1.0 - self.stay) / (self.states - 1))

    def with_noise(self, noise: float) -> "MarkovRegime":
        """The same process with target noise ``noise`` (``0``: the clean target, same ``∇L``)."""
        return MarkovRegime(self.m, self.states, self.stay, self.lag, self.input_noise, noise, self.seed)

    def init(self, rng: np.random.Generator, batch: int) -> RegimeState:
        z = rng.integers(self.states, size=batch)            # uniform = the stationary law of P
        state = RegimeState(z, np.zeros((batch, self.lag, self.m)))
        if self.lag:
            state, _ = self._inputs(state, self.lag, rng)
        return state

    def _inputs(self, state, T, rng):
        B = state.z.shape[0]
        u = rng.random((T, B))
        eps = rng.standard_normal((T, B, self.m))
        zs = np.empty((T, B), dtype=np.intp)
        z = state.z
        for t in range(T):
            z = (u[t][:, None] > self._cum[z]).sum(axis=1)
            zs[t] = z
        xs = self.means[zs] + self.input_noise * eps
        full = np.concatenate([np.swapaxes(state.hist, 0, 1), xs], axis=0)  # (lag + T) × B × m
        hist = np.swapaxes(full[full.shape[0] - self.lag:], 0, 1).copy()
        return RegimeState(z, hist), full

    def sample(self, state: RegimeState, T: int, rng: np.random.Generator):
        state, full = self._inputs(state, T, rng)
        xs = full[self.lag:]
        ys = (full[:T] @ self.w)[..., None]                 # w · x_{t−lag}
        if self.noise > 0:
            ys = ys + self.noise * rng.standard_normal(ys.shape)
        return state, xs, ys
