"""The performance goals under pytest-benchmark: stored runs with the machine's description.

    python -m pytest benchmarks/test_goals.py --benchmark-autosave --benchmark-storage=benchmarks/results
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
    """Goal 5's ratio beside the ``cost`` experiment's own measurement of the same thing
    (:func:`~rtrl_validation.simulations.experiments.cost.measure_estimator`: estimator step plus
    ``linearize`` over a forward step, Elman k = 256, m = 4, thread CPU time): both are stored, and
    their 10th–90th percentile intervals must overlap.  The cost experiment's steps run on
    linearizations formed in advance without the tangent (each taken anew with nothing formed:
    ``Linearization.fresh``), so UORO's ``D_t s̃`` is formed by its step, not with the
    forward product as in the online loop: the harness measures it the same way here."""
    import numpy as np
    from goals import Ratio, _g5
    from rtrl_validation.simulations.cells import make_cell
    from rtrl_validation.simulations.experiments.cost import measure_estimator
    goal = next(g for g in GOALS if g.name == f"{spec}-elman-k256")
    goal = Ratio(goal.goal, goal.name, goal.numerator + " (D_t s̃ in the step)" * (spec == "uoro"), goal.denominator,
                 goal.target, _g5(spec, shared_product=False))
    with threadpool_limits(1):
        ours = benchmark.pedantic(evaluate, args=(goal, REPEATS), rounds=1, iterations=1)
        _, cpu, _, _, _ = measure_estimator(make_cell("elman", 256, 4), spec, np.random.default_rng(0), 0.02,
                                            REPEATS)
    theirs = (cpu[0] + cpu[2]) / cpu[1]
    cost = {"ratio": float(np.median(theirs)), "low": float(np.percentile(theirs, 10)),
            "high": float(np.percentile(theirs, 90))}
    benchmark.extra_info.update({"harness": ours, "cost": cost})
    assert ours["low"] <= cost["high"] and cost["low"] <= ours["high"], (ours, cost)
