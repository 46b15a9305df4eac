"""Closed-form ergodic loss and gradient of a linear RNN on VAR(1) inputs with a linear teacher
(the exactly solvable case of THEORY.md §5).

Student ``s_t = W s_{t−1} + U x_t + b``, ``ŷ_t = V s_t + c`` (an Elman cell with the identity
activation and a linear readout); data from :class:`~simulations.data.var1.VAR1Teacher` with
``activation="identity"``: ``x_t = A x_{t−1} + ε_t`` (``ε ~ N(0, Q)``), ``s*_t = W* s*_{t−1} + U* x_t + b*``,
``y_t = V* s*_t + c* + σ_y η_t``.  The joint state ``z = (x, s, s*)`` (``n = m + k + k*``) is the
stable linear Gaussian system

    z_t − μ = F (z_{t−1} − μ) + G ε_t,   F = [[A, 0, 0], [UA, W, 0], [U*A, 0, W*]],   G = [I; U; U*],

with stationary covariance ``Σ = F Σ Fᵀ + G Q Gᵀ`` (discrete Lyapunov equation) and mean
``μ = (0, (I − W)⁻¹ b, (I − W*)⁻¹ b*)``.  With ``H = [0, V, −V*]`` and ``e = H μ + c − c*``:

    L(θ, φ) = ½ tr(H Σ Hᵀ) + ½ ‖e‖² + ½ σ_y² n_out.

The gradient is exact and analytic (adjoint Lyapunov equation): with ``P = Fᵀ P F + ½ HᵀH``,
``∂L/∂F = 2 P F Σ``, ``∂L/∂G = 2 P G Q``, ``∂L/∂H = H Σ``; the mean part goes through
``λ = (I − W)⁻ᵀ Vᵀ e``.  ``θ`` uses the cell's layout (:meth:`Cell.pack`), ``φ`` the readout's
``[vec(V), c]``.  Requires ``ρ(W) < 1`` (else ``ValueError``).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_discrete_lyapunov


class LinearTheory:
    """Closed forms for a linear student ``cell`` (Elman, identity activation) with a
    :class:`~simulations.linear_theory` -compatible teacher ``process`` (VAR1Teacher, identity)."""

    def __init__(self, cell, process):
        if getattr(cell, "activation", None) != "identity" or getattr(process, "activation", None) != "identity":
            raise ValueError("the closed form needs a linear student and teacher (activation='identity')")
        if cell.m != process.m:
            raise ValueError(f"student has {cell.m} inputs, the process has {process.m}")
        self.cell, self.process = cell, process
        T = process.teacher.unpack(process.teacher_theta)
        self.Wt, self.Ut, self.bt = T["W"], T["U"], T["b"][:, 0]
        self.Vt, self.ct = process.teacher_readout.unpack(process.teacher_phi)
        self.A, self.Q, self.noise = process.A, process.input_cov, process.noise
        self.mu_t = np.linalg.solve(np.eye(self.Wt.shape[0]) - self.Wt, self.bt)
        self.n_out = process.n_out

    # ------------------------------------------------------------------ pieces
    def _parts(self, theta, phi):
        P = self.cell.unpack(theta)
        W, U, b = P["W"], P["U"], P["b"][:, 0]
        if np.max(np.abs(np.linalg.eigvals(W))) >= 1.0:
            raise ValueError("the closed form needs a stable student (spectral radius of W < 1)")
        V, c = self._readout(phi)
        m, k, kt = self.A.shape[0], W.shape[0], self.Wt.shape[0]
        F = np.zeros((m + k + kt, m + k + kt))
        F[:m, :m] = self.A
        F[m:m + k, :m], F[m:m + k, m:m + k] = U @ self.A, W
        F[m + k:, :m], F[m + k:, m + k:] = self.Ut @ self.A, self.Wt
        G = np.vstack([np.eye(m), U, self.Ut])
        Sigma = solve_discrete_lyapunov(F, G @ self.Q @ G.T)
        H = np.hstack([np.zeros((self.n_out, m)), V, -self.Vt])
        mu_s = np.linalg.solve(np.eye(k) - W, b)
        e = V @ mu_s + c - self.Vt @ self.mu_t - self.ct
        return dict(W=W, U=U, V=V, F=F, G=G, Sigma=Sigma, H=H, mu_s=mu_s, e=e, m=m, k=k)

    def _readout(self, phi):
        q = np.asarray(phi, dtype=float)
        nk = self.n_out * self.cell.k
        return q[:nk].reshape(self.cell.k, self.n_out).T, q[nk:]

    # ------------------------------------------------------------------ public
    def loss(self, theta, phi) -> float:
        """Ergodic loss ``L(θ, φ) = lim_T L_T/T`` (THEORY §5) for ``θ`` (``p``), ``φ`` (``q``)."""
        d = self._parts(theta, phi)
        H = d["H"]
        return float(0.5 * np.trace(H @ d["Sigma"] @ H.T) + 0.5 * d["e"] @ d["e"]
                     + 0.5 * self.noise ** 2 * self.n_out)

    @property
    def minimum(self) -> float:
        """``L`` at the teacher: the noise floor ``½ σ_y² n_out``."""
        return 0.5 * self.noise ** 2 * self.n_out

    def gradient(self, theta, phi) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(∇_θ L (p,), ∇_φ L (q,))`` by the adjoint Lyapunov equation (see module docstring)."""
        d = self._parts(theta, phi)
        F, G, Sigma, H, m, k = d["F"], d["G"], d["Sigma"], d["H"], d["m"], d["k"]
        P = solve_discrete_lyapunov(F.T, 0.5 * H.T @ H)
        dF = 2.0 * P @ F @ Sigma
        dG = 2.0 * P @ G @ self.Q
        dH = H @ Sigma
        s_rows = slice(m, m + k)
        lam = np.linalg.solve((np.eye(k) - d["W"]).T, d["V"].T @ d["e"])
        gW = dF[s_rows, s_rows] + np.outer(lam, d["mu_s"])
        gU = dF[s_rows, :m] @ self.A.T + dG[s_rows]
        gb = lam
        gV = dH[:, s_rows] + np.outer(d["e"], d["mu_s"])
        gc = d["e"]
        g_theta = self.cell.pack({"W": gW, "U": gU, "b": gb[:, None]})
        g_phi = np.concatenate([gV.T.ravel(), gc])
        return g_theta, g_phi

    def gradient_norm(self, theta, phi) -> float:
        """``‖∇L(θ, φ)‖`` over core and readout parameters jointly."""
        gt, gp = self.gradient(theta, phi)
        return float(np.sqrt(gt @ gt + gp @ gp))

    def excess_loss(self, theta, phi) -> float:
        """``L − L(θ*, φ*) = ½ E‖ŷ − ŷ*‖²``: the squared function-space distance to the teacher / 2."""
        return self.loss(theta, phi) - self.minimum

    def batch(self, fn, theta, phi) -> np.ndarray:
        """Apply ``fn`` (``self.loss``, ``self.gradient_norm``, …) row by row to ``θ`` (``… × p``) and
        ``φ`` (``… × q``)."""
        theta, phi = np.asarray(theta, dtype=float), np.asarray(phi, dtype=float)
        lead = theta.shape[:-1]
        th, ph = theta.reshape(-1, theta.shape[-1]), phi.reshape(-1, phi.shape[-1])
        return np.array([fn(a, b) for a, b in zip(th, ph)]).reshape(lead)
