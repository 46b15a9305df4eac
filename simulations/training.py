"""Online training (THEORY.md §2 "Online RTRL", §5): ``θ_{t+1} = θ_t − α_t g_t`` at every step
(or every ``update_every`` steps), with the influence propagated through Jacobians taken at the
changing ``θ_s``.

Replicates (independent seeds) run on the leading axis: ``θ`` is ``B × p``, ``φ`` is ``B × q``.
The run is driven by a data process (:mod:`simulations.data.base`) drawn in chunks.  With
``schedule=None`` the parameters stay frozen and the same loop estimates long-run means at a
fixed ``θ`` (the stationary mean ``E_{π_θ}[c J]`` of THEORY §5).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as checkpoints


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


def log_checkpoints(steps: int, n: int, first: int = 1) -> np.ndarray:
    """About ``n`` distinct integer steps in ``[first, steps]``, evenly spaced in ``log t``, ending at ``steps``."""
    if steps < 1 or n < 1:
        raise ValueError("checkpoints need steps >= 1 and n >= 1")
    pts = np.unique(np.round(np.geomspace(max(1, first), steps, n)).astype(np.int64))
    return pts[(pts >= 1) & (pts <= steps)]


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
    """Thinned record of a run: one row per checkpoint.  Window quantities are means over the
    steps since the previous checkpoint."""

    t: list = field(default_factory=list)              # step at the checkpoint
    theta: list = field(default_factory=list)          # B × p
    phi: list = field(default_factory=list)            # B × q
    loss: list = field(default_factory=list)           # B: mean loss over the window
    grad_norm: list = field(default_factory=list)      # B: mean ‖g_t‖ over the window
    contraction: list = field(default_factory=list)    # B: sup|σ'|·‖W‖₂ when the cell reports it
    grad: list = field(default_factory=list)           # B × p: mean g_t over the window (record_grad)
    grad_phi: list = field(default_factory=list)       # B × q: mean ∂ℓ_t/∂φ over the window (record_grad)
    diverged_at: int | None = None
    diverged_reason: str | None = None                 # what left the bound at ``diverged_at``

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"t": np.asarray(self.t)}
        for name in ("theta", "phi", "loss", "grad_norm", "contraction", "grad", "grad_phi"):
            vals = getattr(self, name)
            if vals:
                out[name] = np.stack(vals)
        return out


class OnlineTrainer:
    """Online training of ``cell`` + linear ``readout`` with ``estimator`` on ``process``.

    ``schedule``: a :class:`Schedule`, or ``None`` to keep ``θ`` and ``φ`` frozen (estimation at a
    fixed ``θ``).  ``project``: optional map ``θ -> θ`` applied after each update (e.g. the
    contraction projection of :class:`~simulations.cells.ContractiveElman`).  ``record_every``:
    steps between checkpoints, or ``checkpoints``: the absolute steps to record at (e.g.
    :func:`log_checkpoints`, so that long runs stay small).  ``record_grad``: also record the window
    mean of the gradient estimate (``B × p``, ``B × q``).  ``train_readout``: also learn ``φ`` (its
    gradient is exact and local).  ``require_theorem``: refuse a schedule outside the theorem's
    step-size conditions (THEORY §5) with ``ValueError``.
    """

    def __init__(self, cell, readout, estimator, process, schedule: Schedule | None, update_every: int = 1,
                 project=None, record_every: int = 100, train_readout: bool = True, chunk: int = 256,
                 blowup: float = 1e8, checkpoints=None, record_grad: bool = False,
                 require_theorem: bool = False):
        if update_every < 1 or record_every < 1:
            raise ValueError("update_every and record_every must be positive integers")
        if require_theorem:
            if schedule is None:
                raise ValueError("a run claiming the theorem's conditions needs a learning-rate schedule")
            schedule.require_robbins_monro()
        self.cell, self.readout, self.estimator, self.process = cell, readout, estimator, process
        self.schedule, self.update_every, self.project = schedule, int(update_every), project
        self.record_every, self.train_readout, self.chunk, self.blowup = int(record_every), train_readout, chunk, blowup
        self.record_grad = bool(record_grad)
        if checkpoints is not None:
            checkpoints = np.unique(np.asarray(checkpoints, dtype=np.int64))
            if checkpoints.size == 0 or checkpoints[0] < 1:
                raise ValueError("checkpoints must be positive step numbers")
        self.checkpoints = checkpoints

    def init(self, theta0, phi0, rng: np.random.Generator) -> TrainState:
        theta, phi = np.array(theta0, dtype=float), np.array(phi0, dtype=float)
        B = theta.shape[0]
        return TrainState(0, np.zeros((B, self.cell.k)), theta, phi,
                          self.estimator.init(self.cell, theta, B, rng), self.process.init(rng, B),
                          np.zeros_like(theta), np.zeros_like(phi))

    def _is_checkpoint(self, t: int) -> bool:
        if self.checkpoints is None:
            return t % self.record_every == 0
        i = np.searchsorted(self.checkpoints, t)
        return i < self.checkpoints.size and self.checkpoints[i] == t

    def run(self, state: TrainState, steps: int, rng: np.random.Generator,
            traj: Trajectory | None = None, progress=None, checkpoint=None) -> tuple[TrainState, Trajectory]:
        """Advance ``steps`` steps; returns the new state and the (extended) trajectory.

        Divergence stops the run without an exception and sets ``traj.diverged_at`` to the step
        and ``traj.diverged_reason``: checked every step, a non-finite loss or a state, parameter or
        gradient estimate beyond ``blowup``; at the end of every data chunk, the estimator's
        influence (``B × k × p``, where it holds one) beyond ``blowup`` in Frobenius norm.

        ``checkpoint``: a :class:`simulations.checkpoint.Slot`; by default the next slot of the
        running task's checkpoints (:func:`simulations.checkpoint.slot`, set by the driver), ``False``
        for none.  Every ``slot.every`` steps (at the end of a data chunk) and at the end, the state,
        trajectory, window sums and ``rng.bit_generator.state`` are saved; a run with the same
        arguments whose snapshot exists continues from it (``state``, ``traj`` updated in place,
        ``rng`` reset) and ends with the same numbers as an uninterrupted run.
        """
        traj = traj or Trajectory()
        cell, ro, est = self.cell, self.readout, self.estimator
        learn, blowup = self.schedule is not None, self.blowup
        sparse_updates = not getattr(est, "online", True)   # e.g. TBPTT: g is zero between blocks
        B = state.theta.shape[0]
        win = _Window(B, state.theta.shape[1], state.phi.shape[1], self.record_grad)
        start = state.t
        end = start + steps
        slot = checkpoints.slot() if checkpoint is None else (checkpoint or None)
        if slot is not None:
            call = self._call_fingerprint(state, steps, rng)
            snap = slot.load(call, like=(state, traj, win, rng.bit_generator.state))
            if snap is not None:
                saved_state, saved_traj, win, rng_state = snap[1]
                vars(state).update(vars(saved_state))
                vars(traj).update(vars(saved_traj))
                rng.bit_generator.state = rng_state
                if progress is not None and state.t > start:
                    progress(state.t - start)
            last_save = state.t
        while state.t < end:
            n = min(self.chunk, end - state.t)
            state.data, xs, ys = self.process.sample(state.data, n, rng)
            steps_here = np.arange(state.t + 1, state.t + n + 1)
            alphas = self.schedule(steps_here) if learn else None
            update_now = steps_here % self.update_every == 0
            record_now = (steps_here % self.record_every == 0) if self.checkpoints is None else \
                np.isin(steps_here, self.checkpoints)
            for i in range(n):
                lin = cell.linearize(state.theta, state.s, xs[i])
                state.s = lin.state
                loss, credit, dphi = ro.evaluate(state.phi, state.s, ys[i])
                state.est, g = est.step(state.est, lin, credit, rng)
                state.t += 1
                g_norm = win.add(loss, g, dphi)
                if learn:
                    state.g_acc += g
                    state.gphi_acc += dphi
                    if update_now[i]:
                        self._update(state, alphas[i], sparse_updates)
                ok = state.s.max() < blowup and state.s.min() > -blowup
                if learn and ok:
                    ok = state.theta.max() < blowup and state.theta.min() > -blowup
                if not (ok and np.isfinite(win.loss_sum) and g_norm.max() < blowup):
                    traj.diverged_at, traj.diverged_reason = state.t, self._divergence(state, win, g_norm)
                    return state, traj
                if record_now[i]:
                    self._record(traj, state, win)
                    win = _Window(B, state.theta.shape[1], state.phi.shape[1], self.record_grad)
            influence = self._influence_norm(state)
            if not influence < blowup:
                traj.diverged_at = state.t
                traj.diverged_reason = f"influence norm {influence:.3g} beyond the bound {blowup:g}"
                return state, traj
            if progress is not None:
                progress(n)
            if slot is not None and state.t < end and state.t - last_save >= slot.every:
                slot.save(call, state.t, (state, traj, win, rng.bit_generator.state))
                last_save = state.t
        if slot is not None and (last_save > start or steps >= slot.every):
            slot.save(call, state.t, (state, traj, win, rng.bit_generator.state))
        return state, traj

    def _call_fingerprint(self, state, steps, rng) -> dict:
        """What identifies a call of :meth:`run` for its checkpoints: trainer settings, start,
        length, and a digest of the initial arrays and of the generator state."""
        return {"trainer": repr((self.cell.name, self.cell.k, self.cell.p, self.estimator, self.schedule,
                                 self.update_every, self.record_every, self.chunk, self.blowup,
                                 None if self.checkpoints is None else self.checkpoints.tolist(),
                                 self.record_grad, self.train_readout, self.project is None)),
                "start": int(state.t), "steps": int(steps),
                "digest": checkpoints.digest(state.s, state.theta, state.phi, state.g_acc, state.gphi_acc, rng=rng)}

    def _influence_norm(self, state) -> float:
        """Largest Frobenius norm of the estimator's influence over replicates (0 without one)."""
        try:
            J = self.estimator.influence(state.est)
        except (NotImplementedError, AttributeError):
            return 0.0
        J = J.reshape(J.shape[0], -1)
        return float(np.sqrt(np.einsum("bi,bi->b", J, J)).max())

    def _divergence(self, state, win, g_norm) -> str:
        """Which quantity left the bound: the first of state, θ, gradient estimate, else the loss."""
        for what, x in (("state", state.s), ("parameters", state.theta), ("gradient estimate norm", g_norm)):
            worst = float(np.max(np.abs(x)))
            if not np.isfinite(worst):
                return f"{what} non-finite"
            if not worst < self.blowup:
                return f"{what} {worst:.3g} beyond the bound {self.blowup:g}"
        return "loss non-finite"

    def _update(self, state, alpha, sparse_updates):
        if not sparse_updates or state.g_acc.any():
            state.theta -= alpha * state.g_acc
            if self.project is not None:
                state.theta = self.project(state.theta)
            state.g_acc[...] = 0.0
        if self.train_readout:
            state.phi -= alpha * state.gphi_acc
        state.gphi_acc[...] = 0.0

    def _record(self, traj, state, win):
        traj.t.append(state.t)
        traj.theta.append(state.theta.copy())
        traj.phi.append(state.phi.copy())
        traj.loss.append(win.loss / win.n)
        traj.grad_norm.append(win.gnorm / win.n)
        if self.record_grad:
            traj.grad.append(win.g / win.n)
            traj.grad_phi.append(win.gphi / win.n)
        if hasattr(self.cell, "contraction"):
            traj.contraction.append(self.cell.contraction(state.theta))


def frozen_windows(cell, readout, estimator, process, theta, phi, burn: int, steps: int, windows: int,
                   rng: np.random.Generator) -> dict:
    """Window means of the loss and of the gradient estimate at a fixed ``θ`` (THEORY §5: the
    stationary mean ``E_{π_θ}[c J]`` is ``∇L(θ)``).

    ``θ`` (``B × p``) and ``φ`` (``B × q``): one row per independent path.  The first ``burn``
    steps are discarded; the next ``steps`` are cut into ``windows`` equal windows
    (``steps % windows == 0``).  Returns ``loss`` (``windows × B``), ``grad`` (``windows × B × p``),
    ``grad_phi`` (``windows × B × q``) and ``diverged_at`` (``None`` or the step).
    """
    if windows < 1 or steps % windows:
        raise ValueError(f"steps={steps} must split into windows={windows} equal windows")
    every = steps // windows
    ckpts = burn + every * np.arange(0 if burn else 1, windows + 1)
    trainer = OnlineTrainer(cell, readout, estimator, process, None, checkpoints=ckpts, record_grad=True)
    state, traj = trainer.run(trainer.init(theta, phi, rng), burn + steps, rng)
    out = {"diverged_at": traj.diverged_at}
    if traj.diverged_at is None:
        a = traj.arrays()
        skip = 1 if burn else 0
        out.update(loss=a["loss"][skip:], grad=a["grad"][skip:], grad_phi=a["grad_phi"][skip:])
    return out


class _Window:
    """Running sums over the steps since the last checkpoint."""

    __slots__ = ("n", "loss", "gnorm", "g", "gphi", "loss_sum")

    def __init__(self, B, p, q, with_grad):
        self.n, self.loss, self.gnorm, self.loss_sum = 0, np.zeros(B), np.zeros(B), 0.0
        self.g, self.gphi = (np.zeros((B, p)), np.zeros((B, q))) if with_grad else (None, None)

    def add(self, loss, g, dphi):
        self.n += 1
        self.loss += loss
        self.loss_sum = self.loss[0] if self.loss.size == 1 else float(self.loss.sum())
        g_norm = np.sqrt(np.einsum("bp,bp->b", g, g))
        self.gnorm += g_norm
        if self.g is not None:
            self.g += g
            self.gphi += dphi
        return g_norm
