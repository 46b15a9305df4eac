"""Readouts ``ŷ = G(s; φ)`` and losses ``ℓ(y, ŷ)``; their credit ``c_t = ∂ℓ_t/∂s_t`` (THEORY.md §1).

``φ = [vec(V), c]`` for the linear readout ``ŷ = V s + c`` (``V``: ``n_out × k``, column-major).
``φ`` is ``(q,)`` or ``(B, q)``.  States ``s``: ``B × k``.
"""
from __future__ import annotations

import numpy as np

from .seeding import as_generator


class LinearReadout:
    """Linear readout with ``loss`` ``"mse"`` (``ℓ = ½‖ŷ − y‖²``, ``y``: ``B × n_out``) or
    ``"xent"`` (softmax cross-entropy in nats, ``y``: ``B`` integer classes)."""

    LOSSES = ("mse", "xent")

    def __init__(self, k: int, n_out: int, loss: str = "mse"):
        if loss not in self.LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(self.LOSSES)}")
        if k <= 0 or n_out <= 0:
            raise ValueError("readout sizes must be positive")
        self.k, self.n_out, self.loss = int(k), int(n_out), loss
        self.q = self.n_out * self.k + self.n_out

    def init(self, rng: np.random.Generator, batch: int | None = None) -> np.ndarray:
        """Random ``φ``: ``V`` entries ``N(0, 1/k)``, ``c = 0``; ``rng``: a Generator or an integer seed."""
        rng = as_generator(rng)
        lead = () if batch is None else (batch,)
        phi = np.zeros(lead + (self.q,))
        phi[..., : self.n_out * self.k] = rng.standard_normal(lead + (self.n_out * self.k,)) / np.sqrt(self.k)
        return phi

    def unpack(self, phi):
        phi = np.asarray(phi, dtype=float)
        V = phi[..., : self.n_out * self.k].reshape(phi.shape[:-1] + (self.k, self.n_out))
        return np.swapaxes(V, -1, -2), phi[..., self.n_out * self.k:]

    def predict(self, phi, s):
        V, c = self.unpack(phi)
        return np.matmul(V, s[..., None])[..., 0] + c

    def evaluate(self, phi, s, y):
        """Return ``(ℓ (B,), credit c = ∂ℓ/∂s (B × k), ∂ℓ/∂φ (B × q))``."""
        V, c = self.unpack(phi)
        yhat = np.matmul(V, s[..., None])[..., 0] + c
        if self.loss == "mse":
            delta = yhat - y
            loss = 0.5 * np.sum(delta * delta, axis=-1)
        else:
            y = np.asarray(y, dtype=np.intp)
            mx = yhat.max(axis=-1, keepdims=True)
            e = np.exp(yhat - mx)
            z = e.sum(axis=-1, keepdims=True)
            rows = np.arange(yhat.shape[0])
            loss = (np.log(z[:, 0]) + mx[:, 0]) - yhat[rows, y]
            delta = e / z
            delta[rows, y] -= 1.0
        credit = np.matmul(delta[:, None, :], V)[:, 0, :]
        B, nk = s.shape[0], self.n_out * self.k
        dphi = np.empty((B, self.q))
        np.multiply(s[:, :, None], delta[:, None, :], out=dphi[:, :nk].reshape(B, self.k, self.n_out))
        dphi[:, nk:] = delta
        return loss, credit, dphi
