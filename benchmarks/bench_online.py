"""Wall time of online training (simulations/training.py) per step and for a whole run.

    python benchmarks/bench_online.py                       # 10⁵ steps, k = 8, B = 4, RTRL
    python benchmarks/bench_online.py --steps 20000 --hidden 4 --batch 1 --estimator tbptt-4

The run is the convergence experiment's training: a contractive Elman student (tanh, ρ = 0.9,
projection after every step) on VAR(1) data from a teacher, α_t = α₀/(1+t/t₀)^γ, log-spaced
checkpoints.  Single-threaded BLAS (threadpoolctl): at these sizes threads only add overhead.
Prints the time of the whole run and of its parts measured on a shorter run: data sampling,
and the loop without projection (``--parts``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data import VAR1Teacher
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.experiments.convergence import lazy_projection
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import OnlineTrainer, Schedule, log_checkpoints


def run(hidden, batch, steps, estimator, project=True, seed=0):
    cell = make_cell("contractive-elman", hidden, 2, rho=0.9)
    proc = VAR1Teacher(hidden=hidden, inputs=2, teacher_rho=0.8, seed=1)
    ro = LinearReadout(cell.k, 1)
    rng = np.random.default_rng(seed)
    tr = OnlineTrainer(cell, ro, parse_estimator(estimator), proc, Schedule(0.05, 1000.0, 0.75),
                       project=lazy_projection(cell) if project else None,
                       checkpoints=log_checkpoints(steps, 60), require_theorem=True)
    state = tr.init(cell.init(rng, batch=batch), ro.init(rng, batch), rng)
    t0 = time.perf_counter()
    state, traj = tr.run(state, steps, rng)
    return time.perf_counter() - t0, traj


def sampling_time(hidden, batch, steps, seed=0):
    proc = VAR1Teacher(hidden=hidden, inputs=2, teacher_rho=0.8, seed=1)
    rng = np.random.default_rng(seed)
    state = proc.init(rng, batch)
    t0 = time.perf_counter()
    for _ in range(0, steps, 256):
        state, _, _ = proc.sample(state, 256, rng)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--estimator", default="rtrl")
    ap.add_argument("--parts", action="store_true", help="also time data sampling and the loop without projection")
    args = ap.parse_args()
    with threadpool_limits(1):
        wall, traj = run(args.hidden, args.batch, args.steps, args.estimator)
        k = args.hidden
        print(f"{args.estimator}, k={k}, B={args.batch}: {args.steps} steps in {wall:.1f} s "
              f"({1e6 * wall / args.steps:.0f} µs/step, {args.steps / wall:.0f} steps/s); "
              f"diverged: {traj.diverged_at}; final contraction ≤ {np.max(traj.contraction[-1]):.3f}")
        if args.parts:
            n = min(args.steps, 20_000)
            full, _ = run(args.hidden, args.batch, n, args.estimator)
            noproj, _ = run(args.hidden, args.batch, n, args.estimator, project=False)
            data = sampling_time(args.hidden, args.batch, n)
            print(f"per step over {n} steps: total {1e6 * full / n:.0f} µs, of which data sampling "
                  f"{1e6 * data / n:.0f} µs and projection {1e6 * (full - noproj) / n:.0f} µs")


if __name__ == "__main__":
    main()
