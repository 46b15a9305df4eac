"""The compiled path of the online loop for small Elman students (THEORY.md §2 "Online RTRL", §3, §5).

At ``k = 8`` the arithmetic of one online step is a few microseconds; the general loop of
:class:`simulations.training.OnlineTrainer` spends about 0.4 ms per step in Python calls and in
the projection's batched SVD.  For the setting of the convergence experiment, an unmasked
(contractive) Elman cell with ``σ`` = tanh or the identity, a linear readout with the squared
loss, SGD and the contraction projection :class:`SpectralClip`, with exact RTRL, SnAp-1,
TBPTT(τ) or UORO, :class:`ElmanKernel` runs the steps between two checkpoints in one call of
:func:`simulations.kernels.elman_online_steps`; exact RTRL's and TBPTT's product of a step is
one register-blocked pass per replicate (:mod:`simulations.kernels_dense`), and exact RTRL's,
SnAp-1's and UORO's gradient and SGD update are one pass over ``θ`` (with SnAp-1's influence or
UORO's ``θ̃`` direction) when every step updates (``fuse``).  The trainer keeps everything
else (data chunks, step sizes, window records, divergence bookkeeping, checkpoints); the
estimator's own state arrays are updated in place (exact RTRL's ``J_t`` into its ``full`` buffer),
so checkpoints, ``influence`` and resumption are unchanged.  UORO's signs come from the run's
Generator, drawn before each call in the order the general loop draws them.  The
general loop stays the reference: ``OnlineTrainer(..., kernel=False)``; the tests compare the two
(``tests/test_online_kernel.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells.elman import Elman
from .estimators.bptt import TBPTT
from .estimators.rtrl import RTRL
from .estimators.snap import SnAp
from .estimators.signs import rademacher
from .estimators.uoro import FOLD_RANGE, UORO
from .jacobians import row_dot, unit_major
from .kernels import (MODE_RTRL, MODE_SNAP1, MODE_TBPTT, MODE_UORO, elman_online_steps,
                      top_singular_values)
from .optimizers import SGD
from .readouts import LinearReadout

__all__ = ["ElmanKernel", "SpectralClip"]


class SpectralClip:
    """The contraction projection of a dense contractive Elman cell, ``‖W‖₂ ≤ ρ / sup|σ'|`` (THEORY
    §3): ``cell.project`` (top singular values clipped) on the replicates whose ``W`` is outside the
    set (inside, the projection is the identity; only the top singular values are computed).

    Callable ``θ -> θ`` (``B × p``); ``radius`` is the bound on ``‖W‖₂``."""

    def __init__(self, cell):
        if cell.masks.get("W") is not None:
            raise ValueError("SpectralClip needs a dense W (a masked W is rescaled by cell.project)")
        self.cell, self.radius = cell, cell.rho / cell.sup_dsigma
        self._cols, self._k = cell.block["W"].cols, cell.hidden

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        # θ[W] is vec(W) in column-major order: the row-major reshape is Wᵀ, with W's singular values
        W_t = np.ascontiguousarray(theta[:, self._cols]).reshape(-1, self._k, self._k)
        if not np.isfinite(W_t).all():
            return self.cell.project(theta)
        outside = top_singular_values(W_t) > self.radius
        if not outside.any():
            return theta
        theta = theta.copy()
        theta[outside] = self.cell.project(theta[outside])
        return theta


def _layout_is_merged(cell) -> bool:
    """``θ = [vec(W); vec(U); b]`` column-major, i.e. ``θ[j·k + r] = [W U b][r, j]``."""
    k, m = cell.k, cell.m
    return (not any(v is not None for v in cell.masks.values())
            and [(b.name, b.offset) for b in cell.blocks] == [("W", 0), ("U", k * k), ("b", k * (k + m))]
            and cell.p == k * (k + m + 1))


@dataclass
class _Run:
    """Per-call buffers: the mode's influence arrays and the last step's loss and ``‖g_t‖``."""

    mode: int
    tau: int
    J3: np.ndarray            # B × (k+1) × p: J_t in the first k rows (RTRL, TBPTT)
    J2: np.ndarray            # SnAp-1: B × nnz, the estimator's nnz × B values transposed (written back after each call)
    jpos: np.ndarray
    uoro: tuple               # UORO: (θ̃'s direction, s̃, factor, ‖direction‖², last (ρ₀, ρ₁)); else empty arrays
    gblock: np.ndarray
    upper: np.ndarray
    loss: np.ndarray
    gnorm: np.ndarray
    fuse: bool = False        # RTRL, SnAp-1, UORO: the gradient and the SGD update in one pass (see elman_online_steps)


class ElmanKernel:
    """The compiled step loop for a trainer whose parts it covers (:meth:`plan`)."""

    #: exact RTRL, SnAp-1, UORO: the gradient and the SGD update in one pass over θ (with SnAp-1's
    #: influence, UORO's θ̃ direction) when every step updates and no window gradient is kept
    #: (False: the unfused order)
    fuse = True

    def __init__(self, trainer, mode: int, tau: int):
        self.trainer, self.mode, self.tau = trainer, mode, tau
        cell = trainer.cell
        self.tanh = cell.activation == "tanh"
        self.radius = trainer.project.radius if trainer.project is not None else 0.0

    @classmethod
    def plan(cls, trainer) -> ElmanKernel | None:
        """The kernel for ``trainer``, or ``None`` when some part is outside its scope (then the
        general loop runs)."""
        cell, est, ro = trainer.cell, trainer.estimator, trainer.readout
        if not (isinstance(cell, Elman) and cell.activation in ("tanh", "identity") and _layout_is_merged(cell)):
            return None
        if not (type(ro) is LinearReadout and ro.loss == "mse"):
            return None
        if not (type(trainer.optimizer) is SGD and not trainer.hooks and trainer.counted is None):
            return None
        if not (trainer.project is None or (isinstance(trainer.project, SpectralClip) and trainer.project.cell is cell)):
            return None
        if type(est) is RTRL:
            return cls(trainer, MODE_RTRL, 0)
        if type(est) is SnAp and est.order == 1:
            return cls(trainer, MODE_SNAP1, 0)
        if type(est) is TBPTT and est.tau is not None:
            return cls(trainer, MODE_TBPTT, int(est.tau))
        if type(est) is UORO:
            return cls(trainer, MODE_UORO, 0)
        return None

    def begin(self, state, steps: int, rng) -> _Run | None:
        """Buffers for a call of ``run`` that starts at ``state.t`` for ``steps`` steps, or ``None``
        when this call needs the general loop (a TBPTT block that would straddle the call's ends or a
        data chunk, a pending tape, replicates already diverged, UORO's signs from a source other
        than a numpy Generator)."""
        tr, B = self.trainer, state.theta.shape[0]
        if (state.diverged >= 0).any():
            return None
        k, p = tr.cell.k, tr.cell.p
        no3, no2 = np.zeros((1, 1, 1)), np.zeros((1, 1))
        uoro = (no2, no2, np.zeros(1), np.zeros(1), no2)
        state.theta = np.ascontiguousarray(state.theta)
        state.phi = np.ascontiguousarray(state.phi)
        if self.mode == MODE_TBPTT:
            tau = self.tau
            if state.t % tau or (state.t + steps) % tau or tr.chunk % tau or state.est.c:
                return None
            J3, J2, jpos = np.zeros((B, k + 1, p)), no2, unit_major(tr.cell.blocks, tr.cell.p).astype(np.int64)
        elif self.mode == MODE_RTRL:
            st = state.est.structure
            if state.est.full is None or state.est.full.shape != (B, k + 1, p) or not state.est.full.flags.c_contiguous:
                return None
            J3, J2 = state.est.full, no2                                         # J: the first k rows of full
            jpos = unit_major(tr.cell.blocks, tr.cell.p).astype(np.int64)
            if not np.array_equal(st.pos, jpos):
                return None
        elif self.mode == MODE_UORO:
            est = state.est
            if not isinstance(rng, np.random.Generator) or est.direction.shape != (B, p):
                return None
            J3, J2, jpos = no3, no2, np.zeros(1, dtype=np.int64)
            est.direction = np.ascontiguousarray(est.direction)
            est.s, est.factor = np.array(est.s, dtype=float), np.array(est.factor, dtype=float)   # own copies
            sq = row_dot(est.direction, est.direction) if est.sq is None else np.array(est.sq, dtype=float)
            uoro = (est.direction, est.s, est.factor, sq, np.ones((B, 2)))
        else:
            st = state.est.structure
            if state.est.J.shape != (p, B) or not state.est.J.flags.c_contiguous:
                return None
            J3, J2 = no3, np.ascontiguousarray(state.est.J.T)     # B × nnz: a replicate's entries contiguous
            jpos = np.asarray(st.entry_index(np.arange(p) % k, np.arange(p)), dtype=np.int64)
        return _Run(self.mode, max(self.tau, 1), J3, J2, jpos, uoro, np.zeros((B, p)), np.full(B, np.inf),
                    np.zeros(B), np.zeros(B),
                    self.fuse and (self.mode in (MODE_UORO, MODE_RTRL)
                                   or (self.mode == MODE_SNAP1 and bool(np.array_equal(jpos, np.arange(p))))))

    def steps(self, run: _Run, state, win, xs, ys, alphas, update_now, lo: int, hi: int, rng) -> int:
        """Steps ``lo … hi−1`` of the current data chunk (``xs``: ``n × B × m``, ``ys``: ``n × B × n_out``);
        advances ``state`` and ``win`` and returns the number of steps done (fewer when a replicate
        left the bounds at the last one; ``run.loss``, ``run.gnorm`` hold that step's values).

        UORO's signs for the steps are drawn from ``rng`` before the call, in the order the general
        loop draws them (one ``B × k`` block per step, :func:`~simulations.estimators.signs.rademacher`;
        a Generator's doubles do not depend on how the draws are split into calls); after an early
        stop the generator is set back and advanced by the steps done only."""
        tr = self.trainer
        learn = tr.schedule is not None
        no = np.zeros((1, 1))
        if run.mode == MODE_UORO:
            before = rng.bit_generator.state
            nus = rademacher(rng, (hi - lo, state.theta.shape[0], tr.cell.k))
        else:
            nus = np.zeros((1, 1, 1))
        done = elman_online_steps(
            state.theta, state.phi, state.s, run.J3, run.J2, run.jpos, *run.uoro, nus,
            np.array(FOLD_RANGE), run.mode, run.tau, self.tanh,
            np.ascontiguousarray(xs[lo:hi], dtype=float), np.ascontiguousarray(ys[lo:hi], dtype=float),
            alphas[lo:hi] if learn else np.zeros(hi - lo), update_now[lo:hi], state.t, learn, tr.train_readout,
            self.radius, run.upper, state.g_acc, state.gphi_acc, run.gblock, win.loss, win.gnorm,
            win.g if win.g is not None else no, win.gphi if win.gphi is not None else no, win.g is not None,
            float(tr.blowup), run.loss, run.gnorm,
            run.fuse and tr.update_every == 1 and win.g is None)
        if run.mode == MODE_SNAP1:
            state.est.J[...] = run.J2.T
        if run.mode == MODE_UORO:
            est = state.est
            est.sq, est.scales = run.uoro[3].copy(), run.uoro[4].copy()
            if done < hi - lo:
                rng.bit_generator.state = before
                rademacher(rng, (done, state.theta.shape[0], tr.cell.k))
        state.t += done
        win.n += done
        return done
