"""Online training (THEORY.md §2 "Online RTRL", §5): ``θ_{t+1} = θ_t − α_t g_t`` at every step
(or every ``update_every`` steps), with the influence propagated through Jacobians taken at the
changing ``θ_s``.

Replicates (independent seeds) run on the leading axis: ``θ`` is ``B × p``, ``φ`` is ``B × q``.
The run is driven by a data process (:mod:`simulations.data.base`) drawn in chunks.  With
``schedule=None`` the parameters stay frozen and the same loop estimates long-run means at a
fixed ``θ`` (the stationary mean ``E_{π_θ}[c J]`` of THEORY §5).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from . import aligned
from . import checkpoint as checkpoints
from .estimators.base import linearize_for
from .online_kernel import ElmanKernel
from .optimizers import SGD, Optimizer, Schedule
from .plain import restore, to_plain

__all__ = ["Hook", "OnlineTrainer", "Schedule", "TrainState", "Trajectory", "frozen_windows", "log_checkpoints"]


def log_checkpoints(steps: int, n: int, first: int = 1) -> np.ndarray:
    """About ``n`` distinct integer steps in ``[first, steps]``, evenly spaced in ``log t``, ending at ``steps``."""
    if steps < 1 or n < 1:
        raise ValueError("checkpoints need steps >= 1 and n >= 1")
    pts = np.unique(np.round(np.geomspace(max(1, first), steps, n)).astype(np.int64))
    return pts[(pts >= 1) & (pts <= steps)]


@dataclass
class TrainState:
    """Everything a run needs to continue: position ``t``, core state, parameters, estimator and
    data-process states, the pending gradient accumulators and the optimiser states."""

    t: int
    s: np.ndarray            # B × k
    theta: np.ndarray        # B × p
    phi: np.ndarray          # B × q
    est: object
    data: object
    g_acc: np.ndarray        # B × p
    gphi_acc: np.ndarray     # B × q
    opt_theta: object = None
    opt_phi: object = None
    diverged: np.ndarray | None = None   # B: step at which each replicate left the bound, −1 while finite


@dataclass
class Trajectory:
    """Thinned record of a run: one row per checkpoint.  Window quantities are means over the
    steps since the previous checkpoint."""

    t: list = field(default_factory=list)              # step at the checkpoint
    theta: list = field(default_factory=list)          # B × p
    phi: list = field(default_factory=list)            # B × q
    loss: list = field(default_factory=list)           # B: mean loss over the window's counted steps
    grad_norm: list = field(default_factory=list)      # B: mean ‖g_t‖ over the window
    contraction: list = field(default_factory=list)    # B: sup|σ'|·‖W‖₂ when the cell reports it
    grad: list = field(default_factory=list)           # B × p: mean g_t over the window (record_grad)
    grad_phi: list = field(default_factory=list)       # B × q: mean ∂ℓ_t/∂φ over the window (record_grad)
    diverged_at: int | None = None                     # first step at which a replicate left the bound
    diverged_reason: str | None = None                 # what left the bound at ``diverged_at``

    SERIES = ("t", "theta", "phi", "loss", "grad_norm", "contraction", "grad", "grad_phi")

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"t": np.asarray(self.t)}
        for name in self.SERIES[1:]:
            vals = getattr(self, name)
            if vals:
                out[name] = np.stack(vals)
        return out


class Hook:
    """What an experiment adds to the online loop; the default methods do nothing.

    ``before_step(state, x, y)``: before step ``state.t + 1`` (``θ``, ``φ``, ``s`` of time ``t``;
    ``x``: ``B × m``, ``y``: the step's targets).  ``after_step(state, loss, y, recorded)``: at the
    end of the step (after the update, the divergence check and the checkpoint record;
    ``recorded`` says whether this step was a checkpoint); it may replace ``state.data`` (a data
    process that adapts to the loss, e.g. a curriculum).  Hooks only read ``θ``, ``φ`` and ``s``.
    A hook that records keeps its records in :meth:`export_state` / :meth:`restore_state`, so that
    a run resumed from a checkpoint ends with the records of an uninterrupted one.
    """

    def before_step(self, state: TrainState, x: np.ndarray, y: np.ndarray) -> None:
        pass

    def after_step(self, state: TrainState, loss: np.ndarray, y: np.ndarray, recorded: bool) -> None:
        pass

    def export_state(self) -> dict:
        """What the hook has recorded so far, as plain data (saved with the trainer's checkpoints)."""
        return {}

    def restore_state(self, plain: dict) -> None:
        """Continue from :meth:`export_state`'s data."""


class OnlineTrainer:
    """Online training of ``cell`` + linear ``readout`` with ``estimator`` on ``process``: the one
    time loop of every experiment that trains online (THEORY.md §2 "Online RTRL", §5).

    ``schedule``: a :class:`Schedule`, or ``None`` to keep ``θ`` and ``φ`` frozen (estimation at a
    fixed ``θ``).  ``optimizer``: an :class:`~simulations.optimizers.Optimizer` (default
    :class:`~simulations.optimizers.SGD`).  ``project``: optional map ``θ -> θ`` applied after each
    ``θ`` update (e.g. the contraction projection of :class:`~simulations.cells.ContractiveElman`).
    ``record_every``: steps between checkpoints, or ``checkpoints``: the absolute steps to record at
    (e.g. :func:`log_checkpoints`, so that long runs stay small).  ``record_grad``: also record the
    window mean of the gradient estimate (``B × p``, ``B × q``).  ``train_readout``: also learn
    ``φ`` (its gradient is exact and local).  ``require_theorem``: refuse a schedule outside the
    theorem's step-size conditions (THEORY §5) with ``ValueError``.  ``counted``: map from a step's
    targets to the ``B`` replicates whose loss counts in the window mean (e.g. steps without a
    target); default every step counts.  ``stop``: ``"any"`` ends the run when a replicate
    diverges, ``"all"`` continues with the others until every replicate has diverged (a diverged
    replicate keeps running on non-finite numbers, its results are void).  ``hooks``: :class:`Hook`
    instances, called in order.  ``kernel``: run the steps between checkpoints compiled where
    :class:`~simulations.online_kernel.ElmanKernel` covers the cell, estimator, readout, optimiser
    and projection (the same numbers to rounding); ``False`` keeps the general loop everywhere.

    A replicate's ``θ`` moves only when the update brings a gradient (an estimator that is not
    online, e.g. TBPTT, delivers one per block; a copy task has credit only on its recall steps);
    for online estimators the update and projection run at every ``update_every``-th step.
    """

    #: with an update at every step (and empty accumulators), θ and φ move by ``g_t``, ``∂ℓ_t/∂φ``
    #: directly in the optimiser's one pass (:meth:`~simulations.optimizers.Optimizer.apply`), which
    #: also gives ``‖g_t‖`` and θ's bound test; ``False``: through the accumulators (the reference
    #: order, the same numbers)
    direct_updates = True
    #: ``θ`` held during :meth:`run` on the general loop (:meth:`Cell.hold <simulations.cells.base.Cell.hold>`)
    _held = None

    def __init__(self, cell, readout, estimator, process, schedule: Schedule | None, update_every: int = 1,
                 project=None, record_every: int = 100, train_readout: bool = True, chunk: int = 256,
                 blowup: float = 1e8, checkpoints=None, record_grad: bool = False,
                 require_theorem: bool = False, optimizer: Optimizer | None = None, counted=None,
                 stop: str = "any", hooks=(), kernel: bool = True):
        if update_every < 1 or record_every < 1:
            raise ValueError("update_every and record_every must be positive integers")
        if stop not in ("any", "all"):
            raise ValueError(f"stop must be 'any' or 'all', got {stop!r}")
        if require_theorem:
            if schedule is None:
                raise ValueError("a run claiming the theorem's conditions needs a learning-rate schedule")
            schedule.require_robbins_monro()
        self.cell, self.readout, self.estimator, self.process = cell, readout, estimator, process
        self.schedule, self.update_every, self.project = schedule, int(update_every), project
        self.record_every, self.train_readout, self.chunk, self.blowup = int(record_every), train_readout, chunk, blowup
        self.record_grad = bool(record_grad)
        self.optimizer = SGD() if optimizer is None else optimizer
        self.counted, self.stop, self.hooks = counted, stop, tuple(hooks)
        if checkpoints is not None:
            checkpoints = np.unique(np.asarray(checkpoints, dtype=np.int64))
            if checkpoints.size == 0 or checkpoints[0] < 1:
                raise ValueError("checkpoints must be positive step numbers")
        self.checkpoints = checkpoints
        self.kernel = ElmanKernel.plan(self) if kernel else None

    def init(self, theta0, phi0, rng: np.random.Generator, data_rng: np.random.Generator | None = None) -> TrainState:
        """The state at ``t = 0``: ``s = 0``, the estimator's and the data process's initial states
        (drawn from ``rng``, the data process's from ``data_rng`` when given)."""
        theta, phi = aligned.copy(theta0), np.array(phi0, dtype=float)     # θ's rows read by long passes
        B = theta.shape[0]
        est = self.estimator.init(self.cell, theta, B, rng)
        data = self.process.init(rng if data_rng is None else data_rng, B)
        return TrainState(0, np.zeros((B, self.cell.k)), theta, phi, est, data,
                          np.zeros_like(theta), np.zeros_like(phi), self.optimizer.init(theta),
                          self.optimizer.init(phi), np.full(B, -1, dtype=np.int64))

    def run(self, state: TrainState, steps: int, rng: np.random.Generator,
            traj: Trajectory | None = None, progress=None, checkpoint=None,
            data_rng: np.random.Generator | None = None) -> tuple[TrainState, Trajectory]:
        """Advance ``steps`` steps; returns the new state and the (extended) trajectory.

        ``rng`` drives the estimator; the data process draws from ``data_rng`` (default ``rng``).

        Divergence is recorded, not raised: a replicate diverges at the first step with a
        non-finite loss or a state, parameter or gradient estimate beyond ``blowup``, or, at the
        end of a data chunk, an influence (``k × p``, for estimators that hold one) beyond
        ``blowup`` in Frobenius norm.  ``state.diverged`` holds each replicate's step (−1 while
        finite); ``traj.diverged_at`` the first such step and ``traj.diverged_reason`` what left
        the bound.  With ``stop="any"`` the run ends there.

        ``checkpoint``: a :class:`simulations.checkpoint.Slot`; by default the next slot of the
        running task's checkpoints (:func:`simulations.checkpoint.slot`, set by the driver), ``False``
        for none.  Every ``slot.every`` steps (at the end of a data chunk) and at the end, the
        state, trajectory, window sums and the generators' ``bit_generator.state`` are saved; a
        run with the same arguments whose snapshot exists continues from it (``state``, ``traj``
        updated in place, generators reset) and ends with the same numbers as an uninterrupted run;
        a snapshot that does not fit this call's state (structure, array shapes and dtypes) is
        ignored with a one-line note and the run starts from ``state``.
        """
        traj = traj or Trajectory()
        data_rng = rng if data_rng is None else data_rng
        rngs = (rng,) if data_rng is rng else (rng, data_rng)
        cell, ro, est = self.cell, self.readout, self.estimator
        learn, blowup = self.schedule is not None, self.blowup
        if state.diverged is None:
            state.diverged = np.full(state.theta.shape[0], -1, dtype=np.int64)
        win = self._window(state)
        start = state.t
        end = start + steps
        slot = checkpoints.slot() if checkpoint is None else (checkpoint or None)
        if slot is not None:
            call = self._call_fingerprint(state, steps, rngs)
            initial = self._payload(state, traj, win, rngs)
            snap = slot.load(call, like=initial)
            if snap is not None:
                self._resume(slot, snap[1], initial, state, traj, win, rngs)
                if progress is not None and state.t > start:
                    progress(state.t - start)
            last_save = state.t
        fast = self.kernel.begin(state, end - state.t, rng) if self.kernel is not None else None
        direct = self.direct_updates and self.update_every == 1 and not state.g_acc.any() and not state.gphi_acc.any()
        self._held = cell.hold(state.theta) if fast is None else None        # its optimiser is θ's one writer
        try:
            with np.errstate(all="ignore"):
                while state.t < end:
                    n = min(self.chunk, end - state.t)
                    state.data, xs, ys = self.process.sample(state.data, n, data_rng)
                    steps_here = np.arange(state.t + 1, state.t + n + 1)
                    alphas = self.schedule(steps_here) if learn else None
                    update_now = steps_here % self.update_every == 0
                    record_now = (steps_here % self.record_every == 0) if self.checkpoints is None else \
                        np.isin(steps_here, self.checkpoints)
                    if fast is not None:
                        win = self._kernel_steps(fast, state, traj, win, xs, ys, alphas, update_now, record_now, rng)
                        if win is None:
                            return state, traj
                    for i in range(n if fast is None else 0):
                        for hook in self.hooks:
                            hook.before_step(state, xs[i], ys[i])
                        lin = linearize_for(est, state.est, cell, state.theta, state.s, xs[i])
                        state.s = lin.state
                        loss, credit, dphi = ro.evaluate(state.phi, state.s, ys[i])
                        state.est, g = est.step(state.est, lin, credit, rng)
                        state.t += 1
                        counted = None if self.counted is None else self.counted(ys[i])
                        outside = None
                        if learn and direct:                  # θ and φ updated from g_t: the norm from the same pass
                            g_norm, outside = self._apply(state, g, dphi, alphas[i])
                            win.add(loss, g, dphi, counted, g_norm)
                        else:
                            g_norm = win.add(loss, g, dphi, counted)
                            if learn:                         # through the accumulators
                                state.g_acc += g
                                state.gphi_acc += dphi
                                if update_now[i]:
                                    self._update(state, alphas[i])
                        if not self._within_bounds(state, loss, g_norm, learn, outside) and \
                                self._check_divergence(state, traj, loss, g_norm, learn):
                            return state, traj
                        if record_now[i]:
                            self._record(traj, state, win)
                            win = self._window(state)
                        for hook in self.hooks:
                            hook.after_step(state, loss, ys[i], bool(record_now[i]))
                    if est.capabilities.holds_influence:
                        influence = self.estimator.influence_norms(state.est)
                        if self._diverge(state, traj, ~(influence < blowup), lambda: (
                                f"influence norm {np.max(influence):.3g} beyond the bound {blowup:g}")):
                            return state, traj
                    if progress is not None:
                        progress(n)
                    if slot is not None and state.t < end and state.t - last_save >= slot.every:
                        slot.save(call, state.t, self._payload(state, traj, win, rngs))
                        last_save = state.t
            if slot is not None and (last_save > start or steps >= slot.every):
                slot.save(call, state.t, self._payload(state, traj, win, rngs))
            return state, traj
        finally:                                  # θ writable again, whatever ended the run
            if self._held is not None:
                self._held.release()
                self._held = None

    def _kernel_steps(self, fast, state, traj, win, xs, ys, alphas, update_now, record_now, rng) -> _Window | None:
        """One data chunk on the compiled path, cut at the checkpoints: the current window after it,
        or ``None`` when the run must stop (divergence, handled as in the general loop)."""
        n, i = len(record_now), 0
        marks = np.flatnonzero(record_now)
        while i < n:
            nxt = marks[marks >= i]
            hi = int(nxt[0]) + 1 if nxt.size else n
            i += self.kernel.steps(fast, state, win, xs, ys, alphas, update_now, i, hi, rng)
            learn = self.schedule is not None
            if (i < hi or not self._within_bounds(state, fast.loss, fast.gnorm, learn)) and \
                    self._check_divergence(state, traj, fast.loss, fast.gnorm, learn):
                return None
            if record_now[i - 1]:
                self._record(traj, state, win)
                win = self._window(state)
        return win

    def _window(self, state) -> _Window:
        B, p = state.theta.shape
        return _Window.empty(B, p, state.phi.shape[1], self.record_grad)

    def _check_divergence(self, state, traj, loss, g_norm, learn) -> bool:
        """Examine the replicates one by one after the whole-batch test failed: record the ones
        that left the bound (:meth:`_diverge`); ``True`` when the run must stop."""
        blowup = self.blowup
        bad = ~(np.isfinite(loss) & (g_norm < blowup) & _within(state.s, blowup)
                & (_within(state.theta, blowup) if learn else True))
        return self._diverge(state, traj, bad, lambda: self._divergence(state, loss, g_norm, bad))

    def _within_bounds(self, state, loss, g_norm, learn, outside=None) -> bool:
        """Whole-batch test, cheap: every replicate finite and within the bound (when false,
        the replicates are examined one by one).  ``outside``: per replicate, how many entries of
        ``θ`` are not within the bound, when the update's pass counted them (:meth:`_apply`)."""
        b, s, theta = self.blowup, state.s, state.theta
        if not (s.max() < b and s.min() > -b and g_norm.max() < b and np.isfinite(loss.sum())):
            return False
        if not learn:
            return True
        return not outside.any() if outside is not None else bool(theta.max() < b and theta.min() > -b)

    def _diverge(self, state, traj, bad: np.ndarray, reason) -> bool:
        """Mark newly diverged replicates at ``state.t``; True when the run must stop."""
        new = bad & (state.diverged < 0)
        if not new.any():
            return False
        state.diverged[new] = state.t
        if traj.diverged_at is None:
            traj.diverged_at, traj.diverged_reason = state.t, reason()
        return self.stop == "any" or bool(np.all(state.diverged >= 0))

    def _payload(self, state, traj, win, rngs) -> dict:
        """A snapshot as plain data: numbers, strings, arrays, lists, dicts and the generators'
        ``bit_generator.state`` (:mod:`simulations.plain`; the estimator's state by its
        :meth:`~simulations.estimators.base.Estimator.export_state`)."""
        plain = {"t": int(state.t), "s": state.s, "theta": state.theta, "phi": state.phi,
                 "est": self.estimator.export_state(state.est), "data": to_plain(state.data),
                 "g_acc": state.g_acc, "gphi_acc": state.gphi_acc, "opt_theta": to_plain(state.opt_theta),
                 "opt_phi": to_plain(state.opt_phi), "diverged": state.diverged}
        return {"state": plain, "traj": to_plain(traj), "window": to_plain(win),
                "rng": [r.bit_generator.state for r in rngs], "hooks": [h.export_state() for h in self.hooks]}

    def _resume(self, slot, payload, initial, state, traj, win, rngs) -> None:
        """Continue from a snapshot's ``payload``; one that cannot be written into this loop's
        objects (its hash matched, so it was made or rewritten on purpose) is ignored with a
        one-line note and the loop starts from ``initial``, its own state when called.  The
        trainer's and the estimator's arrays keep their shapes during a run (a data process's
        buffers may grow), so a snapshot must match them exactly."""
        backup = copy.deepcopy(initial)
        fixed = [{k: v for k, v in p["state"].items() if k != "data"} for p in (payload, initial)]
        try:
            if not checkpoints.fits(*fixed, shapes=True):
                raise ValueError("array shapes differ")
            self._restore(payload, state, traj, win, rngs)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            self._restore(backup, state, traj, win, rngs)
            slot.reject("its payload does not fit this loop")

    def _restore(self, payload, state, traj, win, rngs) -> None:
        """Write a snapshot into ``state`` (made by :meth:`init` with the same arguments), ``traj``,
        ``win`` and the generators; every type comes from them, only values from the snapshot."""
        p = payload["state"]
        state.t = int(p["t"])
        for name in ("s", "theta", "phi", "g_acc", "gphi_acc"):
            setattr(state, name, np.array(p[name], dtype=float))
        state.diverged = np.array(p["diverged"], dtype=np.int64)
        state.est = self.estimator.restore_state(state.est, p["est"], self.cell)
        state.data = restore(state.data, p["data"])
        state.opt_theta, state.opt_phi = restore(state.opt_theta, p["opt_theta"]), restore(state.opt_phi, p["opt_phi"])
        restore(traj, payload["traj"])
        restore(win, payload["window"])
        for r, s in zip(rngs, payload["rng"]):
            r.bit_generator.state = s
        for hook, plain in zip(self.hooks, payload["hooks"]):
            hook.restore_state(plain)

    def _call_fingerprint(self, state, steps, rngs) -> dict:
        """What identifies a call of :meth:`run` for its checkpoints: trainer settings, start,
        length, and a digest of the initial arrays and of the generator states."""
        return {"trainer": repr((self.cell.name, self.cell.k, self.cell.p, self.estimator, self.schedule,
                                 self.optimizer.name, self.update_every, self.record_every, self.chunk,
                                 self.blowup, None if self.checkpoints is None else self.checkpoints.tolist(),
                                 self.record_grad, self.train_readout, self.project is None, self.stop,
                                 self.counted is None, len(self.hooks))),
                "start": int(state.t), "steps": int(steps),
                "digest": "".join(checkpoints.digest(state.s, state.theta, state.phi, state.g_acc, state.gphi_acc,
                                                     rng=r) for r in rngs)}

    def _divergence(self, state, loss, g_norm, bad) -> str:
        """Which quantity left the bound: the first of state, θ, gradient estimate, else the loss
        (over the replicates that diverged at this step)."""
        for what, x in (("state", state.s[bad]), ("parameters", state.theta[bad]),
                        ("gradient estimate norm", g_norm[bad])):
            worst = float(np.max(np.abs(x)))
            if not np.isfinite(worst):
                return f"{what} non-finite"
            if not worst < self.blowup:
                return f"{what} {worst:.3g} beyond the bound {self.blowup:g}"
        return "loss non-finite"

    def _apply(self, state, g, dphi, alpha) -> tuple[np.ndarray, np.ndarray | None]:
        """An update at every step, from ``g_t`` and ``∂ℓ_t/∂φ`` directly: what :meth:`_update`
        does after adding them to the (zero) accumulators, with ``θ``'s update in one pass
        (:meth:`~simulations.optimizers.Optimizer.apply`) that also gives ``‖g_t‖`` (``B``) and,
        unless a projection follows, the count per replicate of ``θ``'s entries beyond the bound."""
        if self.estimator.capabilities.online or g.any():
            state.opt_theta, sq, outside = self.optimizer.apply(self._writable(state), g, state.opt_theta, alpha,
                                                                self.blowup)
            self._written(state)
            if self.project is not None:
                outside = None
                self._projected(state)
        else:
            sq, outside = np.zeros(g.shape[0]), None
        if self.train_readout:
            state.opt_phi = self.optimizer.apply(state.phi, dphi, state.opt_phi, alpha, np.inf)[0]
        return np.sqrt(sq), outside

    def _writable(self, state) -> np.ndarray:
        """``θ`` as the optimiser writes it: the held ``θ``'s writable alias (:meth:`Cell.hold
        <simulations.cells.base.Cell.hold>`), else ``state.theta``."""
        held = self._held
        return held.writable if held is not None and held.theta is state.theta else state.theta

    def _written(self, state) -> None:
        """After the optimiser wrote ``θ``: the held ``θ``'s masked matrices follow it."""
        if self._held is not None and self._held.theta is state.theta:
            self._held.written()

    def _projected(self, state) -> None:
        """``θ`` replaced by its projection (a new array), held in its place."""
        theta = self.project(state.theta)
        if self._held is not None and theta is not state.theta:
            self._held.release()
            state.theta = theta
            self._held = self.cell.hold(state.theta)
        else:
            state.theta = theta

    def _update(self, state, alpha):
        """Apply the optimiser to the accumulated gradients, then project (an estimator that is
        not online moves ``θ`` only when a gradient has arrived)."""
        if self.estimator.capabilities.online or state.g_acc.any():
            updates, state.opt_theta = self.optimizer.update(state.g_acc, state.opt_theta, alpha)
            theta = self._writable(state)
            theta += updates
            self._written(state)
            if self.project is not None:
                self._projected(state)
            state.g_acc[...] = 0.0
        if self.train_readout:
            updates, state.opt_phi = self.optimizer.update(state.gphi_acc, state.opt_phi, alpha)
            state.phi += updates
        state.gphi_acc[...] = 0.0

    def _record(self, traj, state, win):
        traj.t.append(state.t)
        traj.theta.append(state.theta.copy())
        traj.phi.append(state.phi.copy())
        traj.loss.append(win.mean_loss())
        traj.grad_norm.append(win.gnorm / win.n)
        if self.record_grad:
            traj.grad.append(win.g / win.n)
            traj.grad_phi.append(win.gphi / win.n)
        if hasattr(self.cell, "contraction"):
            traj.contraction.append(self.cell.contraction(state.theta))


def _within(x: np.ndarray, bound: float) -> np.ndarray:
    """``B`` bool: every entry of the row in ``(−bound, bound)`` (false for non-finite rows)."""
    return (x.max(axis=1) < bound) & (x.min(axis=1) > -bound)


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


@dataclass(slots=True)
class _Window:
    """Running sums over the steps since the last checkpoint: ``n`` steps, per replicate the loss,
    the counted steps ``cnt`` (``None`` when every step counts), ``‖g_t‖`` and optionally ``g_t``, ``∂ℓ_t/∂φ``."""

    n: int
    loss: np.ndarray                 # B
    cnt: np.ndarray | None           # B
    gnorm: np.ndarray                # B
    g: np.ndarray | None             # B × p
    gphi: np.ndarray | None          # B × q

    @classmethod
    def empty(cls, B, p, q, with_grad) -> _Window:
        grads = (np.zeros((B, p)), np.zeros((B, q))) if with_grad else (None, None)
        return cls(0, np.zeros(B), None, np.zeros(B), *grads)

    def add(self, loss, g, dphi, counted=None, g_norm=None) -> np.ndarray:
        """Add one step; returns ``‖g_t‖`` (``B``; formed here unless given)."""
        self.n += 1
        self.loss += loss
        if counted is not None:
            self.cnt = (np.zeros(self.loss.shape) if self.cnt is None else self.cnt) + counted
        if g_norm is None:
            g_norm = np.sqrt(np.einsum("bp,bp->b", g, g))
        self.gnorm += g_norm
        if self.g is not None:
            self.g += g
            self.gphi += dphi
        return g_norm

    def mean_loss(self) -> np.ndarray:
        """Mean loss per counted step (``B``; NaN for a replicate without counted steps)."""
        if self.cnt is None:
            return self.loss / self.n
        return np.where(self.cnt > 0, self.loss / np.maximum(self.cnt, 1), np.nan)
