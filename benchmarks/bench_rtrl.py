"""Per-step cost of exact RTRL against its dominant product (THEORY.md §2.1; DESIGN.md "Performance").

For an Elman cell with ``k`` units and ``m = 8`` inputs (``p = k² + km + k``) this prints the
time of one full RTRL step (``linearize``, readout, ``J ← D J + I`` and ``g = c J``) next to the
bare ``k × k · k × p`` product of the same shapes, single-threaded BLAS (threadpoolctl), median
over repeats of the thread's CPU time (equal to wall time on an idle machine, and not inflated
by other processes on a busy one; the load average is printed).  The step is timed two ways:
``update`` then ``gradient`` (a second pass over ``J_t`` for ``c_t J_t``), and the fused
``step`` that ``run_sequence`` uses (the credit row ``c_t D_t`` joins the product).  The
timings of the three are interleaved, and each ratio is the median of per-round ratios.
Usage: ``python benchmarks/bench_rtrl.py [--threads N] [--batch B] [--rounds R]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from simulations import LinearReadout, make_cell, make_estimator


def cpu_per_call(fn, calls: int) -> float:
    t0 = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - t0) / calls


def bench(k: int, batch: int, rounds: int, m: int = 8, min_time: float = 0.05) -> dict:
    rng = np.random.default_rng(0)
    cell = make_cell("elman", k, m)
    readout = LinearReadout(cell.k, 1)
    theta, phi = cell.init(rng), readout.init(rng)
    est = make_estimator("rtrl")
    state = est.init(cell, theta, batch, rng)
    state.J[...] = 0.01 * rng.standard_normal(state.J.shape)
    s = np.tanh(rng.standard_normal((batch, k)))
    x, y = rng.standard_normal((batch, m)), rng.standard_normal((batch, 1))

    def separate():
        nonlocal state
        lin = cell.linearize(theta, s, x)
        state = est.update(state, lin, rng)
        _, credit, _ = readout.evaluate(phi, lin.state, y)
        est.gradient(state, credit)

    def fused():
        nonlocal state
        lin = cell.linearize(theta, s, x)
        _, credit, _ = readout.evaluate(phi, lin.state, y)
        state, _ = est.step(state, lin, credit, rng)

    D = rng.standard_normal((batch, k, k))
    J = rng.standard_normal((batch, k, cell.p))
    out = np.empty_like(J)

    def product():
        np.matmul(D, J, out=out)

    fns = (product, separate, fused)
    calls = []
    for fn in fns:                                    # calibrate: each timing ≥ min_time
        fn()
        t0 = time.perf_counter()
        fn()
        calls.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-7))))
    times = np.array([[cpu_per_call(fn, n) for fn, n in zip(fns, calls)] for _ in range(rounds)])
    return {"p": cell.p, "product": np.median(times[:, 0]), "separate": np.median(times[:, 1]),
            "fused": np.median(times[:, 2]), "ratio_separate": np.median(times[:, 1] / times[:, 0]),
            "ratio_fused": np.median(times[:, 2] / times[:, 0])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()]
    print(f"BLAS {blas}, threads={args.threads}, batch={args.batch}, "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPU(s)")
    print(f"{'k':>5} {'p':>7} {'D·J product':>12} {'update+gradient':>16} {'step (fused)':>13} "
          f"{'ratio':>6} {'ratio fused':>12}   [ms, thread CPU time]")
    with threadpool_limits(args.threads):
        for k in (16, 32, 64, 128):
            r = bench(k, args.batch, args.rounds)
            print(f"{k:>5} {r['p']:>7} {1e3 * r['product']:>12.3f} {1e3 * r['separate']:>16.3f} "
                  f"{1e3 * r['fused']:>13.3f} {r['ratio_separate']:>6.2f} {r['ratio_fused']:>12.2f}")


if __name__ == "__main__":
    main()
