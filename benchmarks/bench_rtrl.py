"""Per-step cost of exact RTRL against its dominant product (THEORY.md §2.1; docs/architecture.md "Performance").

For an Elman cell with ``k`` units and ``m = 8`` inputs (``p = k² + km + k``) this prints, next to
the bare ``k × k · k × p`` product of the same shapes:

* the **RTRL step**: the estimator's work for one step, ``J_t = D_t J_{t−1} + I_t`` and
  ``g_t = c_t J_t`` (``RTRL.step``, given the step's linearization and credit; the product is
  ``[D_t; c_t D_t] J_{t−1}``, so ``g_t`` is one more row of it);
* the **online step**: what an online learner pays per step, ``linearize`` (the forward step and
  the factored ``D_t``, ``I_t``), the readout's loss and credit, and the RTRL step;
* the online step with ``update`` then ``gradient`` (a second pass over ``J_t`` for ``c_t J_t``).

Single-threaded BLAS (threadpoolctl), median over rounds of the thread's CPU time (equal to wall
time on an idle machine, and not inflated by other processes on a busy one; the load average is
printed).  The timings are interleaved, and each ratio is the median of per-round ratios.
Usage: ``python benchmarks/bench_rtrl.py [--threads N] [--batch B] [--rounds R]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from rtrl_validation.simulations import LinearReadout, make_cell, make_estimator


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

    def online():
        nonlocal state
        lin = cell.linearize(theta, s, x)
        _, credit, _ = readout.evaluate(phi, lin.state, y)
        state, _ = est.step(state, lin, credit, rng)

    path = [cell.linearize(theta, s, x), cell.linearize(theta, np.tanh(s + 0.1), x)]
    credits = [readout.evaluate(phi, lin.state, y)[1] for lin in path]
    turn = [0]

    def rtrl_step():
        nonlocal state
        i = turn[0] = 1 - turn[0]
        state, _ = est.step(state, path[i], credits[i], rng)

    D = rng.standard_normal((batch, k, k))
    J = rng.standard_normal((batch, k, cell.p))
    out = np.empty_like(J)

    def product():
        np.matmul(D, J, out=out)

    fns = (product, rtrl_step, online, separate)
    calls = []
    for fn in fns:                                    # calibrate: each timing ≥ min_time
        fn()
        t0 = time.perf_counter()
        fn()
        calls.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-7))))
    times = np.array([[cpu_per_call(fn, n) for fn, n in zip(fns, calls)] for _ in range(rounds)])
    med = np.median(times, axis=0)
    ratio = np.median(times[:, 1:] / times[:, :1], axis=0)
    return {"p": cell.p, "product": med[0], "rtrl": med[1], "online": med[2], "separate": med[3],
            "ratio_rtrl": ratio[0], "ratio_online": ratio[1], "ratio_separate": ratio[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()]
    print(f"BLAS {blas}, threads={args.threads}, batch={args.batch}, "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPU(s)")
    print(f"{'k':>5} {'p':>7} {'D·J product':>12} {'RTRL step':>10} {'ratio':>6} {'online step':>12} {'ratio':>6} "
          f"{'unfused':>8} {'ratio':>6}   [ms, thread CPU time]")
    with threadpool_limits(args.threads):
        for k in (16, 32, 64, 128):
            r = bench(k, args.batch, args.rounds)
            print(f"{k:>5} {r['p']:>7} {1e3 * r['product']:>12.3f} {1e3 * r['rtrl']:>10.3f} {r['ratio_rtrl']:>6.2f} "
                  f"{1e3 * r['online']:>12.3f} {r['ratio_online']:>6.2f} {1e3 * r['separate']:>8.3f} "
                  f"{r['ratio_separate']:>6.2f}")
    print(f"load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
