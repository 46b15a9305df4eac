"""Benchmark of the approximate estimators (run: ``python benchmarks/bench_approx.py``).

1. SnAp-1 and UORO per-step time at k = 256 against one forward step ``cell.step`` of the same
   Elman cell (target: within 3×), both the estimator's own work (update + gradient) and the
   full online step (linearize + update + gradient); timings interleaved, single-threaded BLAS.
2. 64 replicates of SnAp-1 at k = 16 run batched (one run, leading axis B = 64) against 64
   sequential runs (target: ≥ 20× faster), full steps over the same data.

Prints medians and minima over the repeats (the minimum is the least disturbed by other load).
"""
from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from simulations.cells import make_cell
from simulations.experiments.cost import batching_gain, measure_estimator, time_per_call


def per_step(hidden, specs, repeats, min_time, rng):
    cell = make_cell("elman", hidden, 4)
    print(f"elman k={cell.k} m={cell.m} p={cell.p}")
    for spec in specs:
        times, size, _ = measure_estimator(cell, spec, rng, min_time, repeats)
        est, fwd, lin = times
        for label, agg in (("median", np.median), ("min", np.min)):
            print(f"  {spec:7s} {label:6s}: estimator {agg(est) * 1e6:8.0f} µs, forward {agg(fwd) * 1e6:7.0f} µs, "
                  f"linearize {agg(lin) * 1e6:7.0f} µs | estimator/forward {agg(est / fwd):.2f}, "
                  f"(linearize+estimator)/forward {agg((est + lin) / fwd):.2f}")
        print(f"  {spec:7s} state: {size / 1e6:.3f} MB per replicate")


def batching(hidden, replicates, steps, repeats, rng):
    batched, sequential = batching_gain("elman", hidden, 4, "snap-1", replicates, steps, rng, repeats)
    print(f"snap-1 k={hidden}, {replicates} replicates × {steps} steps: batched {batched * 1e3:.1f} ms, "
          f"sequential {sequential * 1e3:.1f} ms, speed-up {sequential / batched:.1f}×")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=args.threads):
        print("BLAS:", [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()])
        per_step(256, ["snap-1", "uoro"], args.repeats, args.min_time, rng)
        batching(16, 64, 20, args.repeats, rng)


if __name__ == "__main__":
    main()
