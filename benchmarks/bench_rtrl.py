"""Per-step cost of exact RTRL against its dominant product (THEORY.md §2.1; DESIGN.md "Performance").

For an Elman cell with ``k`` units and ``m = 8`` inputs (``p = k² + km + k``) this prints the
time of one full RTRL step (``linearize``, ``J ← D J + I``, ``g = c J``, readout) next to the
bare ``k × k · k × p`` product of the same shapes, single-threaded BLAS (threadpoolctl), median
over repeats of the thread's CPU time (equal to wall time on an idle machine, and not inflated
by other processes on a busy one).  Usage: ``python benchmarks/bench_rtrl.py [--threads N] [--batch B]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from simulations import LinearReadout, make_cell, make_estimator


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return float(np.median(times))


def bench(k: int, batch: int, m: int = 8, repeats: int = 30) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    cell = make_cell("elman", k, m)
    readout = LinearReadout(cell.k, 1)
    theta, phi = cell.init(rng), readout.init(rng)
    est = make_estimator("rtrl")
    state = est.init(cell, theta, batch, rng)
    state.J[...] = rng.standard_normal(state.J.shape)
    s = np.tanh(rng.standard_normal((batch, k)))
    x, y = rng.standard_normal((batch, m)), rng.standard_normal((batch, 1))

    def step():
        nonlocal state
        lin = cell.linearize(theta, s, x)
        state = est.update(state, lin, rng)
        _, credit, _ = readout.evaluate(phi, lin.state, y)
        est.gradient(state, credit)

    D = rng.standard_normal((batch, k, k))
    J = rng.standard_normal((batch, k, cell.p))
    out = np.empty_like(J)
    return median_time(step, repeats), median_time(lambda: np.matmul(D, J, out=out), repeats), cell.p


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()]
    print(f"BLAS {blas}, threads={args.threads}, batch={args.batch}")
    print(f"{'k':>5} {'p':>7} {'RTRL step [ms]':>15} {'D·J product [ms]':>17} {'ratio':>6}")
    with threadpool_limits(args.threads):
        for k in (16, 32, 64, 128):
            t_step, t_prod, p = bench(k, args.batch)
            print(f"{k:>5} {p:>7} {1e3 * t_step:>15.3f} {1e3 * t_prod:>17.3f} {t_step / t_prod:>6.2f}")


if __name__ == "__main__":
    main()
