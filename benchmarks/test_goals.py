"""The performance goals under pytest-benchmark: stored runs with the machine's description.

    python -m pytest benchmarks/test_goals.py -n 0 --benchmark-autosave --benchmark-storage=benchmarks/results
    python benchmarks/figures.py                  # the benchmark page's goal table from the latest stored run

Not part of the test suite (``testpaths = ["tests"]``): timings are measurements, not tests.
Each test times one goal's ratio (:func:`goals.evaluate`: interleaved pairs, thread CPU time,
single-threaded BLAS) once; pytest-benchmark records that call's wall time, the machine (CPU,
Python, commit) and, in ``extra_info``, the ratio's median and 10th–90th percentile spread, the
two operations' times, the target, the BLAS libraries (threadpoolctl) and the load average.
``pytest-benchmark compare`` lists stored runs side by side.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import GOALS, evaluate  # noqa: E402

REPEATS = int(os.environ.get("GOAL_REPEATS", "41"))


@pytest.mark.parametrize("name", [g.name for g in GOALS])
def test_goal(benchmark, name):
    goal = next(g for g in GOALS if g.name == name)
    with threadpool_limits(1):
        load = os.getloadavg()
        result = benchmark.pedantic(evaluate, args=(goal, REPEATS), rounds=1, iterations=1)
        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for i in threadpool_info()]
    benchmark.extra_info.update(result)
    benchmark.extra_info.update({"blas": blas, "load_before": list(load), "load_after": list(os.getloadavg()),
                                 "cpus": os.cpu_count()})


@pytest.mark.parametrize("spec", ["snap-1", "uoro"])
def test_cost_experiment_agrees(benchmark, spec):
    """Goal 5's ratio beside the ``cost`` experiment's own measurement of the same thing (its
    online step, ``linearize`` as the training loop calls it then the estimator's step, over a
    forward step: the functions :func:`~rtrl_validation.simulations.experiments.cost.measure_estimator`
    times, from :func:`~rtrl_validation.simulations.experiments.cost.prepare`), Elman k = 256, m = 4,
    thread CPU time.  Both are timed in one interleaved sequence (the cost experiment's four
    functions, then the goal's two, ``REPEATS`` times), so that a change of the machine's speed
    between two measurements cannot separate them; both are stored, and their 10th–90th
    percentile intervals must overlap."""
    import numpy as np
    from rtrl_validation.simulations.cells import make_cell
    from rtrl_validation.simulations.experiments.cost import prepare, time_per_call
    goal = next(g for g in GOALS if g.name == f"{spec}-elman-k256")
    block = 2

    def both():
        run, forward = goal.build()
        fns = prepare(make_cell("elman", 256, 4), spec, np.random.default_rng(0), block)[0]
        cpu = np.empty((6, REPEATS))
        time_per_call(fns + [run, forward], 0.02, REPEATS, cpu)
        return cpu

    with threadpool_limits(1):
        cpu = benchmark.pedantic(both, rounds=1, iterations=1)

    def summary(r, num, den):
        return {"ratio": float(np.median(r)), "low": float(np.percentile(r, 10)),
                "high": float(np.percentile(r, 90)), "numerator_us": 1e6 * float(np.median(num)),
                "denominator_us": 1e6 * float(np.median(den))}
    ours = {"goal": goal.goal, "name": goal.name, "numerator": goal.numerator, "denominator": goal.denominator,
            **summary(cpu[4] / cpu[5], cpu[4], cpu[5])}
    cost = summary(cpu[3] / block / cpu[1], cpu[3] / block, cpu[1])
    benchmark.extra_info.update({"harness": ours, "cost": cost})
    assert ours["low"] <= cost["high"] and cost["low"] <= ours["high"], (ours, cost)
