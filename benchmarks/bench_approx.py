"""Benchmark of the approximate estimators (run: ``python benchmarks/bench_approx.py``).

1. SnAp-1 and UORO per-step time at k = 256 against one forward step ``cell.step`` of the same
   Elman cell (target: within 3×), both the estimator's own work (`step`: update and gradient) and the
   full online step (linearize + step); timings interleaved, single-threaded BLAS.
2. 64 replicates of SnAp-1 at k = 16 run batched (one run, leading axis B = 64) against 64
   sequential runs (target: ≥ 20× faster), full steps over the same data.

Prints wall-time medians and the thread's CPU time (fastest repeat; on a shared machine the
measure that other processes do not inflate), and the load average at the start and the end.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.experiments.cost import batching_gain, measure_estimator


def per_step(hidden, specs, repeats, min_time, rng):
    cell = make_cell("elman", hidden, 4)
    print(f"elman k={cell.k} m={cell.m} p={cell.p}")
    for spec in specs:
        wall, cpu, size, _, _ = measure_estimator(cell, spec, rng, min_time, repeats)
        for label, (est, fwd, lin) in (("wall median", np.median(wall, axis=1)), ("CPU min", cpu.min(axis=1))):
            print(f"  {spec:7s} {label:11s}: estimator {est * 1e6:7.0f} µs, forward {fwd * 1e6:7.0f} µs, "
                  f"linearize {lin * 1e6:7.0f} µs | estimator/forward {est / fwd:.2f}, "
                  f"(linearize+estimator)/forward {(est + lin) / fwd:.2f}")
        print(f"  {spec:7s} state: {size / 1e6:.3f} MB per replicate")


def batching(hidden, replicates, steps, repeats, rng):
    g = batching_gain("elman", hidden, 4, "snap-1", replicates, steps, rng, repeats)
    for label, b, s in (("wall median", g["batched_seconds"], g["sequential_seconds"]),
                        ("CPU min", g["batched_cpu"], g["sequential_cpu"])):
        print(f"snap-1 k={hidden}, {replicates} replicates × {steps} steps, {label}: batched {b * 1e3:.1f} ms, "
              f"sequential {s * 1e3:.1f} ms, speed-up {s / b:.1f}×")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    load = os.getloadavg()
    with threadpool_limits(limits=args.threads):
        print("BLAS:", [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()])
        per_step(256, ["snap-1", "uoro"], args.repeats, args.min_time, rng)
        batching(16, 64, 20, args.repeats, rng)
    print(f"load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load)}, at end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
