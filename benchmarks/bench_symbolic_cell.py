"""A GRU written as sympy equations against the hand-written GRU (run:
``OMP_NUM_THREADS=1 python benchmarks/bench_symbolic_cell.py``).

One online step, ``linearize`` followed by one RTRL step (update and gradient), at k = 16 and 64,
one replicate, single-threaded BLAS.  The two cells are timed interleaved (A, B, A, B, …) so that
load from other processes falls on both; the medians and their ratio are printed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.cells.examples import gru as gru_equations
from rtrl_validation.simulations.estimators import make_estimator


def online_step_timer(cell, rng):
    theta = cell.init(rng)
    est = make_estimator("rtrl")
    state = est.init(cell, theta, 1)
    s = rng.uniform(-0.5, 0.5, (1, cell.k))
    x = rng.standard_normal((1, cell.m))
    credit = rng.standard_normal((1, cell.k))

    def once():
        nonlocal state
        t0 = time.perf_counter()
        lin = cell.linearize(theta, s, x)
        state, _ = est.step(state, lin, credit)
        return time.perf_counter() - t0
    return once


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--repeats", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    symbolic = gru_equations()
    with threadpool_limits(1):
        for k in args.sizes:
            timers = {"hand-written": online_step_timer(make_cell("gru", k, 4), rng),
                      "symbolic": online_step_timer(symbolic(k, 4), rng)}
            for t in timers.values():          # warm-up
                for _ in range(50):
                    t()
            times = {name: [] for name in timers}
            for _ in range(args.repeats):
                for name, t in timers.items():
                    times[name].append(t())
            med = {name: float(np.median(v)) for name, v in times.items()}
            print(f"k={k}: linearize + RTRL step, median of {args.repeats}: hand-written "
                  f"{med['hand-written'] * 1e6:.1f} µs, symbolic {med['symbolic'] * 1e6:.1f} µs, "
                  f"ratio {med['symbolic'] / med['hand-written']:.2f}")


if __name__ == "__main__":
    main()
