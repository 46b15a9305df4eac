"""The application of THEORY.md §5 that LSS25 motivates: online RTRL against TBPTT(τ) on a
financial-type series, judged by held-out one-step prediction loss.

The series is the synthetic order book (:mod:`simulations.data.orderbook`) with the volatility
target ``|r_{t+1}|/√v̄``: its best predictor needs an exponentially weighted memory of past squared
shocks (e-folding ``−1/ln(a + b)`` = :data:`BOOK` ``≈ 19.5`` steps), which a truncated gradient
sees only partly.  One task per method trains the student online on ``B`` replicate series; every
method of a run starts from the same ``θ₀, φ₀`` and reads the same series per replicate
(:func:`paired_streams`), then, with ``θ`` frozen at its final iterate, predicts a validation
stretch and then a test stretch that continue each series (the same stretches for every method).
The analysis (:mod:`analysis.application`) picks the best ``τ`` on the validation stretch and
compares it with RTRL on the test stretch, paired by replicate.

Recorded per replicate (``B``): the validation and test losses (mean over the stretch of
``½(ŷ − y)²``), the test excess loss over the conditional mean ``½(ŷ − m)²`` (known for the
synthetic series), the conditional mean's own test loss, and the mean test residual ``ŷ − y``
(the control of the analysis shifts predictions by a constant: its loss follows from this mean).
"""
from __future__ import annotations

import copy

import numpy as np

from ..data import SyntheticOrderBook
from ..training import OnlineTrainer, log_checkpoints
from .base import TaskResult

#: the series: GARCH persistence a + b = 0.95 (volatility memory ≈ 19.5 steps), finite fourth
#: moment (3a² + 2ab + b² = 0.9125 < 1, so the squared-error loss has a finite variance)
BOOK = {"target": "volatility", "phi": 0.7, "a": 0.1, "b": 0.85, "kappa": 0.3}

#: config keys of an application task (beyond the problem's): the schedule and the run's sizes
KEYS = ("app_replicates", "app_steps", "app_val_steps", "app_test_steps", "alpha0", "t0", "gamma", "update_every")

#: spawn-key tag of the streams shared by the application's tasks (never a task index)
APP_TAG = 0x415050


def orderbook() -> SyntheticOrderBook:
    """The application's series (:data:`BOOK`)."""
    return SyntheticOrderBook(**BOOK)


def paired_streams(seed) -> tuple[np.random.Generator, np.random.Generator]:
    """``(init_rng, data_rng)`` shared by every method of a run: they depend on the run seed only
    (the entropy of the task's ``SeedSequence``), so each method starts from the same ``θ₀, φ₀``
    and reads the same series per replicate."""
    entropy = seed.entropy if isinstance(seed, np.random.SeedSequence) else int(seed)
    init, data = np.random.SeedSequence(entropy, spawn_key=(APP_TAG,)).spawn(2)
    return np.random.default_rng(init), np.random.default_rng(data)


def held_out(cell, readout, process, theta, phi, s, data, data_rng, steps: int):
    """Predict ``steps`` further steps of each series with ``θ`` frozen, from the hidden state ``s``
    (``B × k``) and the process state ``data`` the training ended with.

    Returns ``(s, data, stats)``: the states after the stretch and per replicate (``B``) ``loss``
    (mean ``½(ŷ − y)²``), ``excess`` (mean ``½(ŷ − m)²``, ``m`` the conditional mean), ``oracle``
    (mean ``½(m − y)²``) and ``residual`` (mean ``ŷ − y``).  The conditional mean comes from the
    noise-free twin of the process on a copy of the same generator (the same inputs)."""
    twin_rng, twin_data = copy.deepcopy(data_rng), copy.deepcopy(data)
    data, xs, ys = process.sample(data, steps, data_rng)
    _, xs_m, ms = process.with_noise(0.0).sample(twin_data, steps, twin_rng)
    if not np.array_equal(xs, xs_m):
        raise RuntimeError("the noise-free twin of the series read other inputs")
    yhat = np.empty(ys.shape)
    for t in range(steps):
        s = cell.step(theta, s, xs[t])
        yhat[t] = readout.predict(phi, s)
    err, dev = (yhat - ys)[..., 0], (yhat - ms)[..., 0]
    stats = {"loss": 0.5 * np.mean(err ** 2, axis=0), "excess": 0.5 * np.mean(dev ** 2, axis=0),
             "oracle": 0.5 * np.mean((ms - ys)[..., 0] ** 2, axis=0), "residual": err.mean(axis=0)}
    return s, data, stats


def run(cfg: dict, cell, readout, process, estimator, schedule, project, streams, rng, progress) -> TaskResult:
    """Train ``estimator`` online for ``app_steps`` steps on ``app_replicates`` series, then the
    held-out validation and test stretches (:func:`held_out`).  ``streams``: :func:`paired_streams`;
    ``rng`` drives only the estimator's own random numbers."""
    init_rng, data_rng = streams
    B, T = cfg["app_replicates"], cfg["app_steps"]
    trainer = OnlineTrainer(cell, readout, estimator, process, schedule, cfg["update_every"], project=project,
                            require_theorem=True, checkpoints=log_checkpoints(T, 40))
    state = trainer.init(cell.init(init_rng, batch=B), readout.init(init_rng, B), rng, data_rng=data_rng)
    state, traj = trainer.run(state, T, rng, progress=lambda n: progress(0.9 * state.t / T), data_rng=data_rng)
    a = traj.arrays()
    tau = getattr(estimator, "tau", None)
    data = {"estimator": estimator.label, "tau": tau, "k": cell.k, "p": cell.p, "steps": T, "replicates": B,
            "val_steps": cfg["app_val_steps"], "test_steps": cfg["app_test_steps"], "memory": process.memory,
            "book": dict(BOOK)}
    arrays = {"t": a["t"], **({"train_loss": a["loss"]} if "loss" in a else {})}
    if traj.diverged_at is not None:
        return TaskResult(data=data, arrays=arrays, status="diverged",
                          reason=f"{estimator.label} training diverged at step {traj.diverged_at}")
    s, book = state.s, state.data
    s, book, val = held_out(cell, readout, process, state.theta, state.phi, s, book, data_rng, cfg["app_val_steps"])
    s, book, test = held_out(cell, readout, process, state.theta, state.phi, s, book, data_rng, cfg["app_test_steps"])
    arrays.update(val_loss=val["loss"], test_loss=test["loss"], test_excess=test["excess"],
                  test_oracle=test["oracle"], test_residual=test["residual"])
    progress(1.0)
    return TaskResult(data=data, arrays=arrays)
