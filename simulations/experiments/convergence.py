"""Convergence of online RTRL (THEORY.md §5): the simulations behind its numbered consequences.

Tasks (independent; each returns raw curves and per-path estimates, and the analysis
``analysis.convergence`` turns them into verdicts):

* ``forgetting-<i>`` (consequence 1): two copies of ``(s_t, J_t)`` driven by the same inputs from
  different starts at a fixed contractive ``θ`` on the boundary ``sup|σ'|·‖W‖₂ = ρ``;
  ``‖Δs_t‖``, ``‖ΔJ_t‖_F`` per step.
* ``stationary`` (2): ``2·chains`` independent chains from two start laws; samples of ``s`` and of
  a fixed set of entries of ``J`` at the times ``chain_times``.
* ``gradient-<case>`` (3): ``∇L(θ)`` at a fixed ``θ`` three ways on independent paths: the long-run
  mean RTRL direction (window means, for Monte Carlo errors from the effective sample size), central
  finite differences of the long-run mean loss along random unit directions (common data path for
  the ``±h`` and ``±2h`` probes), and long-window BPTT; plus TBPTT(1) as a control that a biased
  direction is detected, and for the linear case the closed form (:mod:`simulations.linear_theory`).
  Each long-run mean is over steps ``(burn, burn + steps]`` with the dependence on every earlier
  step kept (prefix differences of whole-path quantities), so all estimate ``∇L`` up to
  ``O(ρ^burn)``.
* ``trajectory-<case>`` (4, 5, 6, 7): online RTRL from random ``θ_0`` with ``α_t = α₀/(1+t/t₀)^γ`` and
  the contraction projection; ``θ_t`` at log-spaced and late linearly spaced checkpoints;
  ``‖∇L(θ_t)‖`` and the excess loss exactly (linear case) or estimated at frozen ``θ_t`` on the
  noise-free target (same ``∇L``; for a teacher, mean loss = excess loss).
* ``limit-<case>-<estimator>`` (5, 7): the same training with RTRL and with TBPTT(τ), SnAp-1, UORO on
  data whose best fit leaves a history-dependent residual (``linear-wide``: a linear teacher with
  twice the student's units; ``markov``: the lagged target), so that a truncated gradient's zeros
  are not stationary points of ``L`` (at an exact fit every truncation has zero mean too);
  ``∇L`` at the final iterate and at the average of the last iterates.
* ``stationary-trained``, ``gradient-<case>-trained`` (2, 3 at a second θ): the same checks at the
  ``θ`` reached by ``trained_steps`` steps of online RTRL (:func:`trained_point`).
* ``application-<estimator>``: RTRL and TBPTT(τ) on the synthetic order book's volatility target,
  paired, held-out loss (:mod:`.application`).

Cases: ``tanh`` / ``linear`` — VAR(1) inputs and a teacher of the student's class and size
(contractive Elman, ``tanh`` or identity activation); ``linear-wide`` / ``tanh-wide`` — a teacher
of the student's activation with twice the hidden units (not realisable by the student; ``∇L`` in
closed form for the linear one, by Monte Carlo at frozen ``θ`` for the tanh one); ``markov`` — Markov-regime inputs, target
``w·x_{t−lag}``; ``orderbook`` — the synthetic order-book series.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass
from typing import Annotated

from . import application
from .base import ConfigError, Experiment, Task, TaskResult
from .schema import Names, TaskSchema
from ..config import (NON_EMPTY, EstimatorSpec, Fraction, NonNegativeInt, Positive, PositiveInt, config_error,
                      interval, one_of)
from ..memory import TASK_OVERHEAD, cell_size, estimator_floats, floats_bytes, require
from ..cells import make_cell
from ..data import MarkovRegime, SyntheticOrderBook, VAR1Teacher
from ..estimators import parse_estimator
from ..estimators.bptt import BPTT, TBPTT
from ..estimators.rtrl import RTRL
from ..linear_theory import LinearTheory
from ..online_kernel import SpectralClip
from ..noise_floor import floor, hessian, long_run_covariance
from ..readouts import LinearReadout
from ..sequence import run_sequence, sequence_loss
from ..training import OnlineTrainer, Schedule, frozen_windows, log_checkpoints

CASES = ("tanh", "linear", "linear-wide", "markov", "orderbook", "tanh-wide")

QUICK = {
    # problem instance (THEORY §5 setting): student contractive Elman with projection radius ρ;
    # teacher of the same class with ‖W*‖₂ = teacher_rho < ρ (an interior global minimiser)
    "hidden": 4, "inputs": 2, "rho": 0.9, "instance_seed": 1,
    "teacher_rho": 0.7, "input_ar": 0.5, "noise": 0.1,
    "lag": 4, "regimes": 3, "stay": 0.9,
    # 1 forgetting
    "forget_blocks": 2, "forget_pairs": 8, "forget_steps": 150,
    # 2 stationary law
    "chains": 500, "chain_times": [1, 2, 4, 8, 16, 32, 64, 128], "j_coords": 12,
    # 3 gradient three ways
    "grad_cases": ["tanh", "linear"], "grad_paths": 32, "grad_burn": 300, "grad_steps": 3000,
    "fd_dirs": 6, "fd_step": 1e-4, "ess_window": 10,
    # 4, 5, 6, 7 online training: RTRL trajectories and other estimators' limit points
    "traj_cases": ["linear", "tanh"], "train_replicates": 4, "train_steps": 12000,
    "alpha0": 0.05, "t0": 1000.0, "gamma": 0.75, "update_every": 1,
    "log_checkpoints": 80, "late_points": 100, "late_fraction": 0.5, "limit_average": 0.1,
    "eval_points": 12, "eval_paths": 32, "eval_burn": 200, "eval_steps": 2000,
    # non-realisable students: linear (∇L in closed form) and tanh (∇L by Monte Carlo, with its error bar)
    "limit_cases": ["linear-wide", "tanh-wide"],
    "limit_estimators": ["rtrl", "tbptt-1", "tbptt-2", "tbptt-4", "snap-1", "uoro", "kf-rtrl"],
    # the step size of the stochastic estimators (UORO, KF-RTRL): stable where alpha0 diverges
    "stochastic_alpha0": 0.005,
    # predicted noise floor at RTRL's limit (linear limit cases): long-run covariance of the RTRL
    # gradient at the stationary point from batch means of floor_window steps on floor_paths paths
    "floor_paths": 8, "floor_steps": 10000, "floor_window": 100,
    # RTRL without the contraction projection (does the contraction hold on its own along the run?)
    "unprojected_cases": ["linear-wide"],
    # the application (simulations/experiments/application.py): RTRL against TBPTT(τ) on the synthetic
    # order book's volatility target, held-out loss; best τ chosen on a validation stretch
    "app_taus": [1, 2, 4, 8], "app_replicates": 8, "app_steps": 3000, "app_val_steps": 1000,
    "app_test_steps": 2000,
    # the trained θ at which the stationary law and ∇L three ways (for trained_cases) are checked
    # again: a short RTRL run (0: not checked)
    "trained_steps": 3000, "trained_cases": ["linear"],
}

FULL = dict(QUICK, **{
    "hidden": 8, "forget_blocks": 4, "forget_pairs": 16, "forget_steps": 200,
    "chains": 2000, "chain_times": [1, 2, 4, 8, 16, 32, 64, 128, 256], "j_coords": 24,
    "grad_cases": ["tanh", "linear", "markov", "orderbook"], "grad_paths": 64, "grad_steps": 6000,
    "fd_dirs": 10,
    # k = 8: the linear RNN's curvature is larger; α₀ = 0.05 diverges within 30 steps, 0.03 does not
    # ≥ 10⁶ online steps per replicate: the asymptotic regime of α_t (LSS25's claim is a limit)
    "alpha0": 0.02, "traj_cases": ["linear", "tanh", "markov"], "train_replicates": 8, "train_steps": 1000000,
    "log_checkpoints": 120, "late_points": 200, "eval_points": 16, "eval_paths": 16, "eval_steps": 2000,
    "limit_cases": ["linear-wide", "markov"],
    "limit_estimators": ["rtrl", "tbptt-1", "tbptt-2", "tbptt-4", "tbptt-8", "tbptt-16", "snap-1", "uoro", "kf-rtrl"],
    "floor_paths": 16, "floor_steps": 40000, "floor_window": 200,
    "app_taus": [1, 2, 4, 8, 16, 32], "app_replicates": 16, "app_steps": 1000000, "app_val_steps": 20000,
    "app_test_steps": 50000, "trained_steps": 20000, "trained_cases": ["tanh", "linear"],
})

#: the config keys each kind of task depends on (a task's config holds only these, so changing,
#: say, the training schedule does not invalidate the records of the frozen-θ checks)
PROBLEM_KEYS = ("hidden", "inputs", "rho", "instance_seed", "teacher_rho", "input_ar", "noise", "lag", "regimes",
                "stay")
TASK_KEYS = {
    "forgetting": ("forget_pairs", "forget_steps"),
    "stationary": ("chains", "chain_times", "j_coords"),
    "gradient": ("grad_paths", "grad_burn", "grad_steps", "fd_dirs", "fd_step", "ess_window"),
    "training": ("train_replicates", "train_steps", "alpha0", "t0", "gamma", "update_every",
                 "log_checkpoints", "late_points", "late_fraction", "limit_average", "eval_points",
                 "eval_paths", "eval_burn", "eval_steps", "floor_paths", "floor_steps", "floor_window"),
    "application": application.KEYS,
}


def task_config(cfg: dict, check: str, **extra) -> dict:
    return {"check": check, **{k: cfg[k] for k in PROBLEM_KEYS + TASK_KEYS[check]}, **extra}


Case = Annotated[str, one_of(CASES, "case")]
NonNegative = Annotated[float, interval(0.0, float("inf"), "[)")]


@dataclass(frozen=True)
class ConvergenceConfig:
    """The ``convergence`` experiment's config (keys grouped as in :data:`QUICK`)."""

    hidden: PositiveInt
    inputs: PositiveInt
    rho: Fraction
    instance_seed: NonNegativeInt
    teacher_rho: Fraction
    input_ar: Annotated[float, interval(-1.0, 1.0, "()")]
    noise: NonNegative
    lag: NonNegativeInt
    regimes: PositiveInt
    stay: Annotated[float, interval(0.0, 1.0, "[]")]
    forget_blocks: PositiveInt
    forget_pairs: PositiveInt
    forget_steps: PositiveInt
    chains: PositiveInt
    chain_times: Annotated[list[PositiveInt], NON_EMPTY]
    j_coords: PositiveInt
    grad_cases: list[Case]
    grad_paths: PositiveInt
    grad_burn: NonNegativeInt
    grad_steps: PositiveInt
    fd_dirs: PositiveInt
    fd_step: Positive
    ess_window: PositiveInt
    traj_cases: list[Case]
    train_replicates: PositiveInt
    train_steps: PositiveInt
    alpha0: Positive
    t0: Positive
    gamma: Annotated[float, interval(0.0, 1.0, "[]")]
    update_every: PositiveInt
    log_checkpoints: PositiveInt
    late_points: PositiveInt
    late_fraction: Fraction
    limit_average: Fraction
    eval_points: PositiveInt
    eval_paths: PositiveInt
    eval_burn: NonNegativeInt
    eval_steps: PositiveInt
    limit_cases: list[Case]
    limit_estimators: Annotated[list[EstimatorSpec], NON_EMPTY]
    floor_paths: PositiveInt
    floor_steps: PositiveInt
    floor_window: PositiveInt
    unprojected_cases: list[Case]
    stochastic_alpha0: Positive
    app_taus: Annotated[list[PositiveInt], NON_EMPTY]
    app_replicates: PositiveInt
    app_steps: PositiveInt
    app_val_steps: PositiveInt
    app_test_steps: PositiveInt
    trained_steps: NonNegativeInt
    trained_cases: list[Case]


# ---------------------------------------------------------------------------- the problem
def problem(cfg: dict, case: str):
    """``(cell, readout, process)`` for a case; the instance (teacher, regimes) comes from ``instance_seed``."""
    act = "identity" if case.startswith("linear") else "tanh"
    h, m, seed = cfg["hidden"], cfg["inputs"], cfg["instance_seed"]
    if case in ("tanh", "linear", "linear-wide", "tanh-wide"):
        proc = VAR1Teacher(hidden=2 * h if case.endswith("-wide") else h, inputs=m, activation=act,
                           teacher_rho=cfg["teacher_rho"], ar=cfg["input_ar"], noise=cfg["noise"], seed=seed)
    elif case == "markov":
        proc = MarkovRegime(inputs=m, states=cfg["regimes"], stay=cfg["stay"], lag=cfg["lag"],
                            noise=cfg["noise"], seed=seed)
    elif case == "orderbook":
        proc = SyntheticOrderBook(target="value")
    else:
        raise ConfigError(f"unknown case {case!r}; cases: {', '.join(CASES)}")
    cell = make_cell("contractive-elman", h, proc.m, rho=cfg["rho"], activation=act)
    return cell, LinearReadout(cell.k, proc.n_out, proc.loss), proc


def boundary_point(cell, readout, cfg: dict, salt: int):
    """A fixed ``(θ, φ)`` with ``sup|σ'|·‖W‖₂ = ρ`` exactly: a wide random ``W`` projected onto the
    contraction set (its top singular values clipped to ``ρ``)."""
    rng = np.random.default_rng([cfg["instance_seed"], salt])
    theta = cell.project(cell.init(rng, scale=3.0))
    return theta, readout.init(rng)


def trained_point(cfg: dict, cell, readout, process, rng):
    """``(θ, φ)`` after ``trained_steps`` steps of online RTRL from a random ``θ₀`` (one replicate,
    the run's schedule, the contraction projection): a θ along an RTRL run, where the frozen-θ
    checks are repeated; ``(None, None)`` if the run diverges."""
    trainer = OnlineTrainer(cell, readout, RTRL(), process, schedule(cfg), project=lazy_projection(cell),
                            require_theorem=True, checkpoints=[cfg["trained_steps"]])
    state = trainer.init(cell.init(rng, batch=1), readout.init(rng, 1), rng)
    state, traj = trainer.run(state, cfg["trained_steps"], rng)
    return (None, None) if traj.diverged_at is not None else (state.theta[0], state.phi[0])


def lazy_projection(cell):
    """``cell.project`` (the contraction projection, THEORY §3), skipped when every replicate's
    ``W`` already has ``sup|σ'|·‖W‖₂ ≤ ρ`` (:class:`~simulations.online_kernel.SpectralClip`, which
    the compiled training path recognises).  Masked ``W``: ``cell.project`` every time."""
    return cell.project if cell.masks.get("W") is not None else SpectralClip(cell)


def schedule(cfg: dict) -> Schedule:
    """``α_t = α₀/(1 + t/t₀)^γ`` with the task's ``α₀`` (``alpha0``, or ``stochastic_alpha0`` for an
    estimator that draws random numbers: UORO and KF-RTRL need a smaller step to stay stable)."""
    return Schedule(cfg.get("run_alpha0", cfg["alpha0"]), cfg["t0"], cfg["gamma"])


# ---------------------------------------------------------------------------- helpers
def influence_chain(cell, theta, xs, s0, J0):
    """Yield ``(t, s_t, J_t)`` for ``t = 1 … T`` of the joint chain (THEORY §5) on inputs ``xs``
    (``T × B × m``) from ``(s_0, J_0)`` (``B × k``, ``B × k × p``), ``θ`` fixed."""
    est = RTRL()
    state = est.init(cell, theta, xs.shape[1], J0=J0)
    s = np.array(s0, dtype=float)
    for t in range(xs.shape[0]):
        lin = cell.linearize(theta, s, xs[t])
        s = lin.state
        state = est.update(state, lin)
        yield t + 1, s, est.influence(state)


def draw(process, paths: int, steps: int, rng):
    """``(xs, ys)`` of ``paths`` independent stationary paths of length ``steps``."""
    _, xs, ys = process.sample(process.init(rng, paths), steps, rng)
    return xs, ys


def window_gradient(cell, readout, estimator, theta, phi, xs, ys, burn: int) -> np.ndarray:
    """``(1/T) Σ_{burn < t ≤ burn+T} ∇ℓ_t`` per path (``B × (p+q)``) with every dependence kept:
    the whole-path gradient minus the gradient of the first ``burn`` steps (losses before ``burn``
    do not depend on later steps)."""
    def total(T):
        r = run_sequence(cell, theta, readout, phi, xs[:T], ys[:T], estimator)
        return np.concatenate([r.grad_theta, r.grad_phi], axis=1)
    return (total(xs.shape[0]) - total(burn)) / (xs.shape[0] - burn)


def directional_fd(cell, readout, theta, phi, dirs, h, xs, ys, burn: int, max_rows: int = 1024):
    """Central differences of the long-run mean loss along unit directions ``dirs`` (``n × (p+q)``)
    with steps ``h`` and ``2h``, every probe on the same data path: two ``paths × n`` arrays."""
    paths, p = xs.shape[1], cell.p
    T = xs.shape[0] - burn
    base = np.concatenate([theta, phi])
    out = np.empty((2, 2, dirs.shape[0], paths))          # (h | 2h) × (+ | −) × dir × path
    per = max(1, max_rows // (4 * paths))
    for lo in range(0, dirs.shape[0], per):
        D = dirs[lo:lo + per]
        probes = base + np.concatenate([s * D for s in (h, -h, 2 * h, -2 * h)])   # 4n × (p+q)
        rows = probes.shape[0]
        th, ph = np.repeat(probes[:, :p], paths, axis=0), np.repeat(probes[:, p:], paths, axis=0)
        X, Y = np.tile(xs, (1, rows, 1)), np.tile(ys, (1, rows) + (1,) * (ys.ndim - 2))
        L = (sequence_loss(cell, th, readout, ph, X, Y) - sequence_loss(cell, th, readout, ph, X[:burn], Y[:burn])) / T
        out[:, :, lo:lo + per] = L.reshape(2, 2, len(D), paths)
    fd_h = (out[0, 0] - out[0, 1]) / (2 * h)
    fd_2h = (out[1, 0] - out[1, 1]) / (4 * h)
    return fd_h.T, fd_2h.T


def unit_directions(d: int, n: int, rng) -> np.ndarray:
    """``n`` orthonormal random directions in ``R^d`` (``n × d``)."""
    q, _ = np.linalg.qr(rng.standard_normal((d, min(n, d))))
    return q.T


def gradient_paths(cell, readout, process, thetas, phis, paths, burn, steps, rng) -> dict:
    """Per-path long-run mean RTRL direction at each fixed ``(θ, φ)`` row: ``grad`` (``n × paths × (p+q)``)
    and ``loss`` (``n × paths``)."""
    n = thetas.shape[0]
    res = frozen_windows(cell, readout, RTRL(), process, np.repeat(thetas, paths, axis=0),
                         np.repeat(phis, paths, axis=0), burn, steps, 1, rng)
    if res["diverged_at"] is not None:
        return res
    g = np.concatenate([res["grad"][0], res["grad_phi"][0]], axis=1)
    return {"diverged_at": None, "grad": g.reshape(n, paths, -1), "loss": res["loss"][0].reshape(n, paths)}


# ---------------------------------------------------------------------------- the experiment
class ConvergenceExperiment(Experiment):
    name = "convergence"
    description = ("Online RTRL convergence (THEORY §5): forgetting, stationary law, ∇L three ways, "
                   "trajectories to stationary points, RTRL vs TBPTT(τ) limit points, rates, assumption audit")
    profiles = {"quick": QUICK, "full": FULL}

    Config = ConvergenceConfig
    schemas = {
        "forgetting": TaskSchema(Names(("rho", "contraction", "k", "p", "pairs", "steps")), Names(("ds", "dJ"))),
        "stationary": TaskSchema(Names(("chains", "times", "k", "j_coords", "contraction"), ("trained_steps",)),
                                 Names(("start_a", "start_b"))),
        "gradient": TaskSchema(Names(("case", "d", "p", "q", "paths", "burn", "steps", "fd_step", "windows",
                                      "contraction"), ("trained_steps",)),
                               Names(("rtrl", "fd_h", "fd_2h", "bptt", "tbptt1", "dirs", "ess_loss", "ess_proj"),
                                     ("closed_form",))),
        "training": TaskSchema(Names(("case", "estimator", "projected", "p", "q", "steps", "replicates", "audit",
                                      "memory"),
                                     ("loss_minimum", "floor")),
                               Names(("t", "theta", "phi", "late"),
                                     ("loss", "grad_norm", "contraction", "grad_norm_exact", "avg_grad_norm_exact",
                                      "excess_exact", "avg_excess_exact", "avg_kkt_norm_exact", "eval_t", "eval_grad", "eval_loss", "floor_iterate",
                                      "floor_polyak", "transient_iterate", "transient_polyak", "relaxation",
                                      "floor_eigenvalues"))),
        "application": TaskSchema(Names(("estimator", "tau", "k", "p", "steps", "replicates", "val_steps", "test_steps",
                                         "memory", "book")),
                                  Names(("t", "train_loss", "val_loss", "test_loss", "test_excess", "test_oracle",
                                         "test_residual"))),
    }

    def task_kind(self, task_config: dict) -> str:
        return task_config["check"]

    def validate(self, cfg: dict) -> None:
        require(cfg["forget_blocks"] * TASK_OVERHEAD, "the task list")
        if cfg["floor_steps"] % cfg["floor_window"] or cfg["floor_steps"] // cfg["floor_window"] < 2:
            raise config_error("floor_steps", f"must be a multiple (>= 2) of floor_window = {cfg['floor_window']}")
        if cfg["grad_steps"] % cfg["ess_window"]:
            raise config_error("grad_steps", f"must be a multiple of ess_window = {cfg['ess_window']}")
        if cfg["eval_points"] < 2:
            raise config_error("eval_points", "must be >= 2")
        if cfg["grad_paths"] < 4:
            raise config_error("grad_paths", "must be >= 4 for standard errors")
        if cfg["eval_paths"] < 2:
            raise config_error("eval_paths", "must be >= 2 for standard errors")
        if not cfg["teacher_rho"] < cfg["rho"]:
            raise config_error("teacher_rho", f"need 0 < teacher_rho < rho < 1, got teacher_rho={cfg['teacher_rho']!r}, "
                               f"rho={cfg['rho']!r}")
        if "rtrl" not in cfg["limit_estimators"]:
            raise config_error("limit_estimators", "must include 'rtrl' (the reference limit point)")
        if not cfg["limit_average"] <= cfg["late_fraction"]:
            raise config_error("limit_average", "need 0 < limit_average <= late_fraction < 1")
        if list(cfg["chain_times"]) != sorted(set(cfg["chain_times"])):
            raise config_error("chain_times", "must be increasing positive steps")
        if list(cfg["app_taus"]) != sorted(set(cfg["app_taus"])):
            raise config_error("app_taus", "must be increasing truncation lengths")
        try:
            schedule(cfg).require_robbins_monro()   # the training runs claim the theorem's step sizes
        except ValueError as e:
            raise config_error("gamma", str(e)) from None

    def task_memory(self, cfg: dict) -> float:
        """By kind: the forgetting pairs' two ``(s, J)`` chains over their steps; the stationary
        chains' samples; the gradient task's paths (inputs, BPTT tapes, finite-difference probes);
        training's RTRL influence per replicate and its checkpoints of ``θ``."""
        h, m = cfg["hidden"], cfg["inputs"] + 1
        k, p = cell_size("contractive-elman", 2 * h, m)     # the wide teacher bounds every case
        check = cfg["check"]
        if check == "forgetting":
            n = 2 * cfg["forget_pairs"] * (k * p + k) + 2 * cfg["forget_steps"] * cfg["forget_pairs"] * (m + 2)
        elif check == "stationary":
            N, T = cfg["chains"], cfg["chain_times"][-1]
            # the data process keeps several T × 2N arrays while it draws the paths (measured:
            # 494 MiB at 20 000 chains of the quick profile; this gives 940 MiB)
            n = 2 * N * (k * p + 6 * T * m) + len(cfg["chain_times"]) * 2 * N * (k + cfg["j_coords"])
        elif check == "application":
            B, T = cfg["app_replicates"], cfg["app_val_steps"] + cfg["app_test_steps"]
            n = B * (k * p + 2 * p) + 12 * T * B * m
        elif check == "gradient":
            P, T = cfg["grad_paths"], cfg["grad_burn"] + cfg["grad_steps"]
            n = P * (k * p + 4 * T * (3 * k + m)) + 4 * cfg["fd_dirs"] * P * (p + T * (m + 1))
        else:
            B, T = cfg["train_replicates"], cfg["train_steps"]
            rows = cfg["log_checkpoints"] + cfg["late_points"] + 2
            evals = (cfg["eval_points"] + 2) * B * cfg["eval_paths"]
            n = (B * estimator_floats(cfg["estimator"], k, p, m, 1, T) + rows * B * (2 * p + 4)
                 + evals * (k * p + p + cfg["eval_steps"] * m)
                 + B * cfg["floor_paths"] * (k * p + 256 * m) + cfg["floor_steps"] // cfg["floor_window"]
                 * B * cfg["floor_paths"] * 2 * p + 8 * p * p + 4 * T)
        return floats_bytes(n)

    def tasks(self, cfg: dict) -> list[Task]:
        out = [Task(f"forgetting-{i}", task_config(cfg, "forgetting", block=i)) for i in range(cfg["forget_blocks"])]
        out.append(Task("stationary", task_config(cfg, "stationary")))
        out += [Task(f"gradient-{c}", task_config(cfg, "gradient", case=c)) for c in cfg["grad_cases"]]
        out += [Task(f"trajectory-{c}", task_config(cfg, "training", case=c, estimator="rtrl"))
                for c in cfg["traj_cases"]]
        out += [Task(f"limit-{c}-{e}", task_config(cfg, "training", case=c, estimator=e, run_alpha0=(
                    cfg["stochastic_alpha0"] if parse_estimator(e).capabilities.stochastic else cfg["alpha0"])))
                for c in cfg["limit_cases"] for e in cfg["limit_estimators"]]
        out += [Task(f"unprojected-{c}", task_config(cfg, "training", case=c, estimator="rtrl", projected=False))
                for c in cfg["unprojected_cases"]]
        out += [Task(f"application-{e}", task_config(cfg, "application", estimator=e))
                for e in ["rtrl"] + [f"tbptt-{tau}" for tau in cfg["app_taus"]]]
        if cfg["trained_steps"]:           # the frozen-θ checks again at a θ reached by online RTRL
            trained = {k: cfg[k] for k in ("trained_steps", "alpha0", "t0", "gamma")}
            out.append(Task("stationary-trained", task_config(cfg, "stationary", **trained)))
            out += [Task(f"gradient-{c}-trained", task_config(cfg, "gradient", case=c, **trained))
                    for c in cfg["trained_cases"]]

        return out

    def run_task(self, task, seed, progress=None) -> TaskResult:
        cfg = task.config
        rng = np.random.default_rng(seed)
        report = progress or (lambda f: None)
        if cfg["check"] == "training":
            return self._training(cfg, rng, report, paired_streams(seed, cfg["case"]))
        if cfg["check"] == "application":
            proc = application.orderbook()
            cell = make_cell("contractive-elman", cfg["hidden"], proc.m, rho=cfg["rho"])
            return application.run(cfg, cell, LinearReadout(cell.k, proc.n_out, proc.loss), proc,
                                   parse_estimator(cfg["estimator"]), schedule(cfg), lazy_projection(cell),
                                   application.paired_streams(seed), rng, report)
        return getattr(self, "_" + cfg["check"])(cfg, rng, report)

    # ------------------------------------------------------------------ 1 forgetting
    def _forgetting(self, cfg, rng, progress):
        cell, readout, proc = problem(cfg, "tanh")
        theta, _ = boundary_point(cell, readout, cfg, salt=100 + cfg["block"])
        R, T = cfg["forget_pairs"], cfg["forget_steps"]
        xs, _ = draw(proc, R, T, rng)
        xs = np.concatenate([xs, xs], axis=1)                      # the same inputs for both copies
        s0 = np.concatenate([np.zeros((R, cell.k)), rng.uniform(-1.0, 1.0, (R, cell.k))])
        J0 = np.concatenate([np.zeros((R, cell.k, cell.p)), rng.standard_normal((R, cell.k, cell.p))])
        ds, dJ = np.empty((T + 1, R)), np.empty((T + 1, R))
        ds[0] = np.linalg.norm(s0[:R] - s0[R:], axis=1)
        dJ[0] = np.linalg.norm((J0[:R] - J0[R:]).reshape(R, -1), axis=1)
        for t, s, J in influence_chain(cell, theta, xs, s0, J0):
            ds[t] = np.linalg.norm(s[:R] - s[R:], axis=1)
            dJ[t] = np.linalg.norm((J[:R] - J[R:]).reshape(R, -1), axis=1)
        progress(1.0)
        return TaskResult(data={"rho": cfg["rho"], "contraction": float(cell.contraction(theta)), "k": cell.k,
                                "p": cell.p, "pairs": R, "steps": T},
                          arrays={"ds": ds, "dJ": dJ})

    # ------------------------------------------------------------------ 2 stationary law
    def _stationary(self, cfg, rng, progress):
        cell, readout, proc = problem(cfg, "tanh")
        theta, _ = boundary_point(cell, readout, cfg, salt=200)
        if "trained_steps" in cfg:
            theta, _ = trained_point(cfg, cell, readout, proc, rng)
            if theta is None:
                return TaskResult(status="diverged", reason="the RTRL run to the trained θ diverged")
        N, times = cfg["chains"], list(cfg["chain_times"])
        xs, _ = draw(proc, 2 * N, times[-1], rng)                   # independent paths for every chain
        s0 = np.concatenate([np.zeros((N, cell.k)), rng.uniform(-1.0, 1.0, (N, cell.k))])
        J0 = np.concatenate([np.zeros((N, cell.k, cell.p)), 3.0 * rng.standard_normal((N, cell.k, cell.p))])
        n_J = cell.k * cell.p
        pick = np.random.default_rng([cfg["instance_seed"], 201]).choice(n_J, min(cfg["j_coords"], n_J), replace=False)
        samples = np.empty((len(times), 2 * N, cell.k + pick.size), dtype=np.float32)
        i = 0
        for t, s, J in influence_chain(cell, theta, xs, s0, J0):
            if t == times[i]:
                samples[i] = np.concatenate([s, J.reshape(2 * N, -1)[:, pick]], axis=1)
                i += 1
                progress(t / times[-1])
        return TaskResult(data={"chains": N, "times": times, "k": cell.k, "j_coords": pick.tolist(),
                                "contraction": float(cell.contraction(theta)),
                                **({"trained_steps": cfg["trained_steps"]} if "trained_steps" in cfg else {})},
                          arrays={"start_a": samples[:, :N], "start_b": samples[:, N:]})

    # ------------------------------------------------------------------ 3 ∇L three ways
    def _gradient(self, cfg, rng, progress):
        case = cfg["case"]
        cell, readout, proc = problem(cfg, case)
        theta, phi = boundary_point(cell, readout, cfg, salt=300 + CASES.index(case))
        if "trained_steps" in cfg:
            theta, phi = trained_point(cfg, cell, readout, proc, rng)
            if theta is None:
                return TaskResult(status="diverged", reason="the RTRL run to the trained θ diverged")
        P, burn, T = cfg["grad_paths"], cfg["grad_burn"], cfg["grad_steps"]
        d = cell.p + readout.q
        dirs = unit_directions(d, cfg["fd_dirs"], np.random.default_rng([cfg["instance_seed"], 301]))
        # (a) long-run mean RTRL direction, in windows (for effective-sample-size errors)
        W = T // cfg["ess_window"]
        res = frozen_windows(cell, readout, RTRL(), proc, np.tile(theta, (P, 1)), np.tile(phi, (P, 1)),
                             burn, T, W, rng)
        if res["diverged_at"] is not None:
            return TaskResult(status="diverged", reason=f"frozen RTRL run diverged at step {res['diverged_at']}")
        gw = np.concatenate([res["grad"], res["grad_phi"]], axis=2)            # W × P × d
        progress(0.3)
        # (b) finite differences on common data paths, (c) long-window BPTT and the TBPTT(1) control
        xs, ys = draw(proc, P, burn + T, rng)
        fd_h, fd_2h = directional_fd(cell, readout, theta, phi, dirs, cfg["fd_step"], xs, ys, burn)
        progress(0.6)
        xs, ys = draw(proc, P, burn + T, rng)
        thP, phP = np.tile(theta, (P, 1)), np.tile(phi, (P, 1))
        g_bptt = window_gradient(cell, readout, BPTT(), thP, phP, xs, ys, burn)
        g_tb1 = window_gradient(cell, readout, TBPTT(1), thP, phP, xs, ys, burn)
        progress(0.9)
        data = {"case": case, "d": d, "p": cell.p, "q": readout.q, "paths": P, "burn": burn, "steps": T,
                "fd_step": cfg["fd_step"], "windows": W, "contraction": float(cell.contraction(theta)),
                **({"trained_steps": cfg["trained_steps"]} if "trained_steps" in cfg else {})}
        arrays = {"rtrl": gw.mean(axis=0), "fd_h": fd_h, "fd_2h": fd_2h, "bptt": g_bptt, "tbptt1": g_tb1,
                  "dirs": dirs, "ess_loss": res["loss"], "ess_proj": gw @ dirs[0]}
        if case.startswith("linear"):
            gt, gp = LinearTheory(cell, proc).gradient(theta, phi)
            arrays["closed_form"] = np.concatenate([gt, gp])
        progress(1.0)
        return TaskResult(data=data, arrays=arrays)

    # ------------------------------------------------------------------ 4, 5, 6, 7 online training
    def _training(self, cfg, rng, progress, streams):
        """Online training with ``estimator`` from random ``θ_0`` (RTRL: a trajectory task; others:
        a limit-point task), then ``∇L`` at checkpoints, at the final iterate and at the average of
        the iterates over the last ``limit_average`` of the run.

        ``streams``: ``(init_rng, data_rng)`` shared by every estimator of the case
        (:func:`paired_streams`): the same ``θ_0``, ``φ_0`` and data stream per replicate, so the
        estimators' limit points are compared in pairs; ``rng`` (the task's own) drives only the
        estimator's random numbers and the evaluation of ``∇L``."""
        init_rng, data_rng = streams
        case, spec = cfg["case"], cfg["estimator"]
        cell, readout, proc = problem(cfg, case)
        T, B = cfg["train_steps"], cfg["train_replicates"]
        ckpts, late = training_checkpoints(cfg)
        projected = cfg.get("projected", True)
        trainer = OnlineTrainer(cell, readout, parse_estimator(spec), proc, schedule(cfg), cfg["update_every"],
                                project=lazy_projection(cell) if projected else None, require_theorem=True,
                                checkpoints=ckpts)
        state = trainer.init(cell.init(init_rng, batch=B), readout.init(init_rng, B), rng, data_rng=data_rng)
        state, traj = trainer.run(state, T, rng, progress=lambda n: progress(0.8 * state.t / T), data_rng=data_rng)
        a = traj.arrays()
        arrays = {name: a[name] for name in ("t", "theta", "phi", "loss", "grad_norm", "contraction") if name in a}
        arrays["late"] = np.isin(a["t"], late)
        data = {"case": case, "estimator": spec, "projected": projected, "p": cell.p, "q": readout.q, "steps": T,
                "replicates": B,
                "audit": audit(cfg, cell, a, traj.diverged_at),
                "memory": memory(cfg, proc, case)}
        if traj.diverged_at is not None:
            return TaskResult(data=data, arrays=arrays, status="diverged",
                              reason=f"{spec} training diverged at step {traj.diverged_at}")
        tail = a["t"] > (1 - cfg["limit_average"]) * T
        avg_theta, avg_phi = a["theta"][tail].mean(axis=0), a["phi"][tail].mean(axis=0)   # B × p, B × q
        if case.startswith("linear"):
            lt = LinearTheory(cell, proc)
            arrays["grad_norm_exact"] = lt.batch(lt.gradient_norm, a["theta"], a["phi"])
            arrays["avg_grad_norm_exact"] = lt.batch(lt.gradient_norm, avg_theta, avg_phi)
            arrays["avg_kkt_norm_exact"] = kkt_norm(cell, lt, avg_theta, avg_phi)
            if spec == "rtrl" and projected:
                fl = noise_floor_at(cfg, cell, readout, proc, lt, avg_theta, avg_phi, a["theta"][0], a["phi"][0], rng)
                if fl is None:
                    return TaskResult(data=data, arrays=arrays, status="diverged",
                                      reason="frozen RTRL at the stationary point diverged")
                data["floor"], floor_arrays = fl
                arrays.update(floor_arrays)
            if case == "linear":              # a teacher the student can realise: L − ½σ² is a distance
                arrays["excess_exact"] = lt.batch(lt.excess_loss, a["theta"], a["phi"])
                arrays["avg_excess_exact"] = lt.batch(lt.excess_loss, avg_theta, avg_phi)
                data["loss_minimum"] = lt.minimum
        else:
            pick = eval_rows(cfg, a["t"])[:-1] if spec == "rtrl" else np.zeros(0, dtype=int)
            thetas = np.concatenate([a["theta"][pick], a["theta"][-1:], avg_theta[None]])      # n × B × p
            phis = np.concatenate([a["phi"][pick], a["phi"][-1:], avg_phi[None]])
            n, P = thetas.shape[0], cfg["eval_paths"]
            est = gradient_paths(cell, readout, proc.with_noise(0.0), thetas.reshape(-1, cell.p),
                                 phis.reshape(-1, readout.q), P, cfg["eval_burn"], cfg["eval_steps"], rng)
            if est["diverged_at"] is not None:
                return TaskResult(data=data, arrays=arrays, status="diverged",
                                  reason=f"gradient evaluation diverged at step {est['diverged_at']}")
            arrays["eval_t"] = np.concatenate([a["t"][pick], [T, -1]])     # −1: the late average
            arrays["eval_grad"] = est["grad"].reshape(n, B, P, -1)
            arrays["eval_loss"] = est["loss"].reshape(n, B, P)
        progress(1.0)
        return TaskResult(data=data, arrays=arrays)


#: spawn-key tag of the streams shared by the training tasks of one case (never a task index)
PAIR_TAG = 0x5041495


def paired_streams(seed, case: str) -> tuple[np.random.Generator, np.random.Generator]:
    """``(init_rng, data_rng)`` for the training tasks of ``case`` in a run: they depend on the run
    seed (the entropy of the task's ``SeedSequence``) and the case only, not on the estimator or
    the task's position, so every estimator starts from the same ``θ_0`` and reads the same data."""
    entropy = seed.entropy if isinstance(seed, np.random.SeedSequence) else int(seed)
    init, data = np.random.SeedSequence(entropy, spawn_key=(PAIR_TAG, CASES.index(case))).spawn(2)
    return np.random.default_rng(init), np.random.default_rng(data)


def training_checkpoints(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The steps at which training records ``θ_t`` (log-spaced and the late window) and the late steps."""
    T = cfg["train_steps"]
    late = np.round(np.linspace(T * (1 - cfg["late_fraction"]), T, cfg["late_points"])).astype(np.int64)
    return np.union1d(log_checkpoints(T, cfg["log_checkpoints"]), late), late


def noise_floor_at(cfg, cell, readout, proc, lt, theta_avg, phi_avg, theta_first, phi_first, rng):
    """The stochastic-approximation noise floor of ``‖∇L‖`` at RTRL's limit, per replicate
    (:mod:`simulations.noise_floor`): the stationary point ``θ*`` of the closed-form ``L`` that
    L-BFGS reaches from the Polyak average ``θ̄``; the Hessian there (differences of the exact
    gradient); the long-run covariance of RTRL's gradient estimate at ``θ*`` (batch means of
    ``floor_window`` steps on ``floor_paths`` paths); the floors of the linearised recursion under
    the run's ``α_t`` at the checkpoints and for the Polyak average.  The linearised transient
    starts from the first checkpoint's ``θ``.  ``None`` if the frozen run diverges.

    Returns ``(data, arrays)``: ``star_grad_norm``, ``star_contraction``, ``negative_eigenvalues``
    per replicate; ``floor_iterate`` (``n × B``), ``floor_polyak`` (``B``), ``transient_iterate``,
    ``transient_polyak``, ``relaxation``, ``eigenvalues`` (``B × d``)."""
    B, T = theta_avg.shape[0], cfg["train_steps"]
    stars = [stationary_point(lt, theta_avg[b], phi_avg[b]) for b in range(B)]
    th_s, ph_s = np.array([x[0] for x in stars]), np.array([x[1] for x in stars])
    P, W = cfg["floor_paths"], cfg["floor_steps"] // cfg["floor_window"]
    res = frozen_windows(cell, readout, RTRL(), proc, np.repeat(th_s, P, axis=0), np.repeat(ph_s, P, axis=0),
                         cfg["eval_burn"], cfg["floor_steps"], W, rng)
    if res["diverged_at"] is not None:
        return None
    g = np.concatenate([res["grad"], res["grad_phi"]], axis=2).reshape(W, B, P, -1)
    ckpts, _ = training_checkpoints(cfg)
    tail = ckpts[ckpts > (1 - cfg["limit_average"]) * T]
    alphas = schedule(cfg)(np.arange(1, T + 1))
    fields = ("iterate", "polyak", "transient_iterate", "transient_polyak", "relaxation", "negative")
    out = {k: [] for k in fields + ("eigenvalues",)}
    for b in range(B):
        x = np.concatenate([th_s[b], ph_s[b]])
        H = hessian(lambda z: np.concatenate(lt.gradient(z[:cell.p], z[cell.p:])), x)
        f = floor(H, long_run_covariance(g[:, b], cfg["floor_window"]), alphas, ckpts, tail,
                  e0=np.concatenate([theta_first[b], phi_first[b]]) - x)
        for k in fields:
            out[k].append(getattr(f, k))
        out["eigenvalues"].append(np.linalg.eigvalsh(H))
    data = {"star_grad_norm": [x[2] for x in stars], "star_contraction": [float(cell.contraction(t)) for t in th_s],
            "negative_eigenvalues": [int(n) for n in out["negative"]], "paths": P, "window": cfg["floor_window"]}
    arrays = {"floor_" + k if not k.startswith("trans") and k != "relaxation" else k: np.array(out[k]).T
              if k in ("iterate", "transient_iterate") else np.array(out[k])
              for k in ("iterate", "polyak", "transient_iterate", "transient_polyak", "relaxation", "eigenvalues")}
    return data, arrays


def kkt_norm(cell, lt: LinearTheory, theta, phi) -> np.ndarray:
    """Norm of the projected-gradient map ``(θ − Π(θ − ∇_θL), ∇_φL)`` per row (``B``): zero exactly at
    KKT points of ``L`` on the contraction set (equal to ``‖∇L‖`` where the constraint is inactive)."""
    out = np.empty(theta.shape[0])
    for b in range(theta.shape[0]):
        gt, gp = lt.gradient(theta[b], phi[b])
        step = theta[b] - cell.project(theta[b] - gt)
        out[b] = np.sqrt(step @ step + gp @ gp)
    return out


#: ‖∇L‖ below which a minimiser's end point counts as a stationary point
STAR_TOL = 1e-6


def stationary_point(lt: LinearTheory, theta0, phi0):
    """A stationary point of the closed-form ``L`` reached by L-BFGS from ``(θ_0, φ_0)``: ``(θ*, φ*,
    ‖∇L(θ*, φ*)‖)``.  Unstable students (spectral radius of ``W`` ≥ 1) get a huge finite loss (the
    line search then backtracks)."""
    from scipy.optimize import minimize

    p = theta0.size

    def fun(x):
        try:
            gt, gp = lt.gradient(x[:p], x[p:])
            return lt.loss(x[:p], x[p:]), np.concatenate([gt, gp])
        except ValueError:
            return 1e12, np.zeros_like(x)
    x = np.concatenate([theta0, phi0])
    for method, opts in (("L-BFGS-B", {"maxiter": 5000, "gtol": 1e-11, "ftol": 1e-15}),
                         ("BFGS", {"maxiter": 5000, "gtol": 1e-10})):
        x = minimize(fun, x, jac=True, method=method, options=opts).x
        if lt.gradient_norm(x[:p], x[p:]) < STAR_TOL:
            break
    return x[:p], x[p:], lt.gradient_norm(x[:p], x[p:])


def eval_rows(cfg, t) -> np.ndarray:
    """Checkpoint rows where ``∇L`` is estimated along a trajectory: the first and the last
    checkpoint and the nearest to ``eval_points − 1`` times log-spaced over ``[t₀/10, T]`` (the
    rate-fit range)."""
    T = cfg["train_steps"]
    targets = np.geomspace(max(1.0, min(cfg["t0"] / 10, T / 10)), T, cfg["eval_points"] - 1)
    rows = np.abs(np.log(t)[None, :] - np.log(targets)[:, None]).argmin(axis=1)
    return np.unique(np.concatenate([[0], rows, [t.size - 1]]))


def audit(cfg, cell, a, diverged_at) -> dict:
    """The run against the theorem's assumptions (THEORY §5 "Setting"; consequence 7)."""
    c = a.get("contraction")
    return {"rho": cfg["rho"], "max_contraction": None if c is None else float(c.max()),
            "final_contraction": None if c is None else c[-1].tolist(),
            "activation": cell.activation, "bounded_activation": cell.activation == "tanh",
            "robbins_monro": schedule(cfg).robbins_monro, "gamma": cfg["gamma"], "alpha0": schedule(cfg).alpha0,
            "t0": cfg["t0"], "update_every": cfg["update_every"], "diverged_at": diverged_at}


def memory(cfg, proc, case) -> dict:
    """How far back the target depends on inputs: the lag (Markov case) or the e-folding time
    ``−1/ln r`` of the teacher's linear memory, ``r = max(spectral radius of W*, ‖A‖₂)``."""
    if case == "markov":
        return {"kind": "lag", "steps": cfg["lag"], "mixing_rate": proc.mixing_rate}
    if case in ("tanh", "linear", "linear-wide", "tanh-wide"):
        W = proc.teacher.unpack(proc.teacher_theta)["W"]
        r = max(float(np.abs(np.linalg.eigvals(W)).max()), cfg["input_ar"])
        return {"kind": "e-folding", "steps": float(-1.0 / np.log(r)), "rate": r}
    return {"kind": "volatility", "steps": float(-1.0 / np.log(proc.a + proc.b))}
