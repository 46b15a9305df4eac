"""Elman (vanilla) cell and its contractive variant (THEORY.md §3).

``s_t = σ(W s_{t-1} + U x_t + b)`` with ``σ = tanh`` (or the identity, for the linear RNN whose
ergodic loss has a closed form).  ``D_t = diag(σ'(z_t)) W`` and
``I_t = diag(σ'(z_t)) (â_tᵀ ⊗ I_k)`` with ``â_t = [s_{t-1}; x_t; 1]``: one nonzero per column.
"""
from __future__ import annotations

import numpy as np

from ..jacobians import ImmediateJacobian, KroneckerFactors, Linearization
from ..kernels import one_minus_square
from ..kernels_cells import STATE_INPUT_ONE
from ..kernels_fused import two_matvecs_batched
from .base import Cell, matvec


def _tanh_prime(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``tanh'(z) = 1 − s²`` with ``s = tanh(z)`` (one new array, one compiled call:
    :func:`~simulations.kernels.one_minus_square`)."""
    return one_minus_square(s)


ACTIVATIONS = {
    # name: (σ, σ', sup|σ'|)
    "tanh": (np.tanh, _tanh_prime, 1.0),
    "identity": (lambda z: z, lambda z, s: np.ones_like(z), 1.0),
}
#: the blocks' sources as the pre-activation pass reads them (:meth:`Cell._plan`)
SOURCES = STATE_INPUT_ONE


def _two_products(A: np.ndarray, a: np.ndarray, tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A a, A[:, :k] tangent)`` (each ``B × n``) with one read of ``A`` (``n × q``, shared, or
    ``B × n × q``): one compiled pass per replicate's ``A`` held column-major (as ``θ`` holds it,
    :func:`~simulations.kernels_fused.two_matvecs`); a shared ``A`` with several replicates, one
    matrix product with ``[a, (tangent; 0)]``."""
    B, q = a.shape
    k = tangent.shape[1]
    if A.ndim == 3 and A.shape[0] == 1:
        A = A[0]
    At = np.swapaxes(A, -1, -2)
    if At.flags.c_contiguous and (A.ndim == 3 or B == 1):
        z, w = np.empty((B, A.shape[-2])), np.empty((B, A.shape[-2]))
        two_matvecs_batched(At if A.ndim == 3 else At[None], np.ascontiguousarray(a),
                            np.ascontiguousarray(tangent), z, w)
        return z, w
    if A.ndim == 2:
        V = np.zeros((2 * B, q))
        V[:B] = a
        V[B:, :k] = tangent
        Z = V @ A.T
        return Z[:B], Z[B:]
    V = np.zeros((B, q, 2))
    V[:, :, 0] = a
    V[:, :k, 1] = tangent
    Z = np.matmul(A, V)
    return Z[..., 0], Z[..., 1]


class Elman(Cell):
    """Vanilla RNN.  Blocks ``W`` (``k × k``, recurrent, maskable), ``U`` (``k × m``), ``b`` (``k × 1``)."""

    name = "elman"
    kronecker_form = True
    shares_tangent_product = True

    def __init__(self, hidden, inputs, density=1.0, mask_seed=0, masks=None, activation="tanh"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.sigma, self.dsigma, self.sup_dsigma = ACTIVATIONS[activation]
        super().__init__(hidden, inputs, density, mask_seed, masks)

    def _specs(self):
        k, m = self.hidden, self.m
        return [("W", "a", "s", k, k, True), ("U", "a", "x", k, m, False), ("b", "a", "one", k, 1, False)]

    def _preactivation(self, P, s, x, tangent):
        """``(z, W·tangent, â)``: ``z = W s + U x + b`` (``B × k``); with ``W`` unmasked one product
        ``[W U b] â`` and ``â = [s; x; 1]`` (``B × q``), else ``â`` is ``None``; ``W · tangent`` is
        formed in the same pass over the weights when ``tangent`` is given, else ``None``."""
        merged = P.get("W+U+b")
        Wt = ahat = None
        if merged is not None:                     # unmasked: z = [W U b] â in one product
            ahat = np.concatenate((s, x, self._ones(s.shape[0])), axis=1)
            if tangent is None:
                z = matvec(merged, ahat)
            else:                                  # [W U b] [â, (tangent; 0; 0)]: one read of the weights
                z, Wt = _two_products(merged, ahat, tangent)
        else:                                      # masked W: z from θ's free entries in one pass
            z = P.affine(self._plan(("a",), SOURCES), s, x)
            if tangent is not None:
                Wt = matvec(P["W"], tangent)
        return z, Wt, ahat

    def _parts(self, P, s, x, tangent):
        """``(s_t, σ', â, D_t · tangent)`` of one step (``â``, ``D_t · tangent``: see
        :meth:`_preactivation`)."""
        z, Wt, ahat = self._preactivation(P, s, x, tangent)
        s_new = self.sigma(z)
        ds = self.dsigma(z, s_new)                                    # B × k
        return s_new, ds, ahat, None if Wt is None else ds * Wt

    def _forward(self, P, s, x, jac, tangent=None):
        if not jac:
            return (self.sigma(self._preactivation(P, s, x, tangent)[0]),)
        s_new, ds, ahat, Dv = self._parts(P, s, x, tangent)
        D, I = self._factored(P["W"], s, x, ahat, ds, tangent, Dv, self._free(P, "W"))
        return s_new, D, I.gates, I.sources

    def _factored(self, W, s, x, ahat, ds, tangent, Dv, free=None):
        """``D_t = diag(σ') W`` and ``I_t`` as factored objects (:class:`~simulations.jacobians.DynamicsJacobian`,
        :class:`~simulations.jacobians.ImmediateJacobian`), with ``D_t · tangent = Dv`` kept when given
        and the merged block's input ``â`` when formed (``free``: a masked ``W``'s free entries,
        :meth:`_free`)."""
        gates = {"a": self._stacked(ds)}
        D = self._dynamics((gates["a"], W, None, None, free))        # diag(σ') W
        if Dv is not None:
            D.remember(tangent, Dv)
        I = ImmediateJacobian(self.k, self.p, self.blocks, gates, {"s": s, "x": x, "one": self._ones(s.shape[0])},
                              self._layout_cache)
        if ahat is not None:
            I.know_input(("s", "x", "one"), ahat)
        return D, I

    def linearize(self, theta, s, x, tangent: np.ndarray | None = None) -> Linearization:
        """:meth:`Cell.linearize`.  With ``W`` unmasked the linearization also carries the step's
        :class:`~simulations.jacobians.KroneckerFactors` (``â``, ``σ'``, ``W``, ``D_t · tangent``),
        and forms ``D_t`` and ``I_t`` from them only when an estimator reads them."""
        P = self._weights(theta)
        s_new, ds, ahat, Dv = self._parts(P, s, x, tangent)
        W = P["W"]
        if ahat is None:                                              # masked W: the factored objects now
            return Linearization(s_new, *self._factored(W, s, x, None, ds, tangent, Dv, self._free(P, "W")))
        f = KroneckerFactors(ahat, ds, W, tangent, Dv)
        return Linearization(s_new, factors=f, build=lambda: self._factored(W, s, x, ahat, ds, tangent, Dv))

    def _structure(self):
        return self.mask("W"), {"a": np.eye(self.k, dtype=bool)}

    def contraction(self, theta) -> np.ndarray:
        """``sup|σ'| · ‖W‖₂`` (THEORY §3): scalar for ``θ`` of shape ``p``, ``B`` values for ``B × p``."""
        W = self.unpack(theta)["W"]
        return self.sup_dsigma * np.linalg.norm(W, ord=2, axis=(-2, -1))


class ContractiveElman(Elman):
    """The LSS25 setting: an Elman cell kept in ``{sup|σ'|·‖W‖₂ ≤ ρ}`` by :meth:`project`."""

    name = "contractive-elman"

    def __init__(self, hidden, inputs, density=1.0, mask_seed=0, masks=None, activation="tanh",
                 rho: float = 0.8):
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (0.0 < rho < 1.0):
            raise ValueError(f"contraction constant rho must be in (0, 1), got {rho!r}")
        self.rho = float(rho)
        super().__init__(hidden, inputs, density, mask_seed, masks, activation)

    def project(self, theta: np.ndarray) -> np.ndarray:
        """Map ``θ`` into the contraction set, ``‖W‖₂ ≤ ρ / sup|σ'|``.

        Dense ``W``: the Frobenius-nearest point (singular values clipped).  Masked ``W``: ``W`` is
        rescaled, which keeps the mask (clipping singular values would fill it in).
        Returns a new array of the shape of ``θ``.
        """
        theta = np.array(theta, dtype=float)
        P = self.unpack(theta)
        W, radius = P["W"], self.rho / self.sup_dsigma
        if self.masks.get("W") is None:
            u, sv, vt = np.linalg.svd(W)
            W = np.matmul(u * np.minimum(sv, radius)[..., None, :], vt)
        else:
            norm = np.linalg.norm(W, ord=2, axis=(-2, -1))
            W = W * np.minimum(1.0, radius / np.maximum(norm, 1e-300))[..., None, None]
        b = self.block["W"]
        theta[..., b.cols] = W[..., b.idx_i, b.idx_j]
        return theta

    def init(self, rng, scale=1.0, batch=None):
        return self.project(super().init(rng, scale, batch))
