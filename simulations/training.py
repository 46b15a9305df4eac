"""Online training (THEORY.md §2 "Online RTRL", §5): ``θ_{t+1} = θ_t − α_t g_t`` at every step
(or every ``update_every`` steps), with the influence propagated through Jacobians taken at the
changing ``θ_s``.

Replicates (independent seeds) run on the leading axis: ``θ`` is ``B × p``, ``φ`` is ``B × q``.
The run is driven by a data process (:mod:`simulations.data.base`) drawn in chunks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """``α_t = α₀ / (1 + t/t₀)^γ``; ``γ = 0`` is a constant rate.

    The Robbins–Monro conditions ``Σ α_t = ∞``, ``Σ α_t² < ∞`` hold exactly when ``1/2 < γ ≤ 1``.
    """

    alpha0: float
    t0: float = 1000.0
    gamma: float = 0.0

    def __post_init__(self):
        if not (self.alpha0 > 0 and np.isfinite(self.alpha0)):
            raise ValueError(f"learning rate alpha0 must be positive, got {self.alpha0!r}")
        if not self.t0 > 0:
            raise ValueError(f"schedule t0 must be positive, got {self.t0!r}")
        if not (0.0 <= self.gamma <= 1.0):
            raise ValueError(f"schedule exponent gamma must be in [0, 1], got {self.gamma!r}")

    def __call__(self, t) -> float:
        return self.alpha0 / (1.0 + np.asarray(t, dtype=float) / self.t0) ** self.gamma

    @property
    def robbins_monro(self) -> bool:
        return 0.5 < self.gamma <= 1.0

    def require_robbins_monro(self) -> None:
        """Raise ``ValueError`` unless ``Σ α = ∞`` and ``Σ α² < ∞`` (for runs claiming the theorem)."""
        if not self.robbins_monro:
            raise ValueError(f"schedule gamma={self.gamma} violates the theorem's step-size conditions "
                             "(need 1/2 < gamma <= 1 for sum(alpha)=inf and sum(alpha^2)<inf)")


@dataclass
class TrainState:
    """Everything a run needs to continue: position ``t``, core state, parameters, estimator and
    data-process states, and the pending gradient accumulator."""

    t: int
    s: np.ndarray            # B × k
    theta: np.ndarray        # B × p
    phi: np.ndarray          # B × q
    est: object
    data: object
    g_acc: np.ndarray        # B × p
    gphi_acc: np.ndarray     # B × q


@dataclass
class Trajectory:
    """Thinned record of a run: one row per checkpoint."""

    t: list = field(default_factory=list)              # step at the checkpoint
    theta: list = field(default_factory=list)          # B × p
    phi: list = field(default_factory=list)            # B × q
    loss: list = field(default_factory=list)           # B: mean loss over the window
    grad_norm: list = field(default_factory=list)      # B: mean ‖g_t‖ over the window
    contraction: list = field(default_factory=list)    # B: sup|σ'|·‖W‖₂ when the cell reports it
    diverged_at: int | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"t": np.asarray(self.t)}
        for name in ("theta", "phi", "loss", "grad_norm", "contraction"):
            vals = getattr(self, name)
            if vals:
                out[name] = np.stack(vals)
        return out


class OnlineTrainer:
    """Online training of ``cell`` + linear ``readout`` with ``estimator`` on ``process``.

    ``project``: optional map ``θ -> θ`` applied after each update (e.g. the contraction
    projection of :class:`~simulations.cells.ContractiveElman`).  ``record_every``: steps between
    checkpoints.  ``train_readout``: also learn ``φ`` (its gradient is exact and local).
    """

    def __init__(self, cell, readout, estimator, process, schedule: Schedule, update_every: int = 1,
                 project=None, record_every: int = 100, train_readout: bool = True, chunk: int = 256,
                 blowup: float = 1e8):
        if update_every < 1 or record_every < 1:
            raise ValueError("update_every and record_every must be positive integers")
        self.cell, self.readout, self.estimator, self.process = cell, readout, estimator, process
        self.schedule, self.update_every, self.project = schedule, int(update_every), project
        self.record_every, self.train_readout, self.chunk, self.blowup = int(record_every), train_readout, chunk, blowup

    def init(self, theta0, phi0, rng: np.random.Generator) -> TrainState:
        theta, phi = np.array(theta0, dtype=float), np.array(phi0, dtype=float)
        B = theta.shape[0]
        return TrainState(0, np.zeros((B, self.cell.k)), theta, phi,
                          self.estimator.init(self.cell, theta, B, rng), self.process.init(rng, B),
                          np.zeros_like(theta), np.zeros_like(phi))

    def run(self, state: TrainState, steps: int, rng: np.random.Generator,
            traj: Trajectory | None = None, progress=None) -> tuple[TrainState, Trajectory]:
        """Advance ``steps`` steps; returns the new state and the (extended) trajectory.

        A non-finite or blown-up state, influence or parameter stops the run and sets
        ``traj.diverged_at`` to the step; no exception is raised.
        """
        traj = traj or Trajectory()
        cell, ro, est = self.cell, self.readout, self.estimator
        B = state.theta.shape[0]
        win_loss, win_g, win_n = np.zeros(B), np.zeros(B), 0
        end = state.t + steps
        while state.t < end:
            n = min(self.chunk, end - state.t)
            state.data, xs, ys = self.process.sample(state.data, n, rng)
            for i in range(n):
                lin = cell.linearize(state.theta, state.s, xs[i])
                state.s = lin.state
                state.est = est.update(state.est, lin, rng)
                loss, credit, dphi = ro.evaluate(state.phi, state.s, ys[i])
                state.est, g = est.gradient(state.est, credit)
                state.g_acc += g
                state.gphi_acc += dphi
                state.t += 1
                win_loss += loss
                win_g += np.linalg.norm(g, axis=1)
                win_n += 1
                if state.t % self.update_every == 0:
                    alpha = float(self.schedule(state.t))
                    state.theta -= alpha * state.g_acc
                    if self.train_readout:
                        state.phi -= alpha * state.gphi_acc
                    if self.project is not None:
                        state.theta = self.project(state.theta)
                    state.g_acc[...] = 0.0
                    state.gphi_acc[...] = 0.0
                if not (np.all(np.isfinite(loss)) and np.all(np.abs(state.s) < self.blowup)
                        and np.all(np.isfinite(state.theta)) and np.all(np.abs(state.theta) < self.blowup)):
                    traj.diverged_at = state.t
                    return state, traj
                if state.t % self.record_every == 0:
                    self._record(traj, state, win_loss / win_n, win_g / win_n)
                    win_loss, win_g, win_n = np.zeros(B), np.zeros(B), 0
            if progress is not None:
                progress(n)
        return state, traj

    def _record(self, traj, state, loss, gnorm):
        traj.t.append(state.t)
        traj.theta.append(state.theta.copy())
        traj.phi.append(state.phi.copy())
        traj.loss.append(loss)
        traj.grad_norm.append(gnorm)
        if hasattr(self.cell, "contraction"):
            traj.contraction.append(self.cell.contraction(state.theta))
