"""The performance goals under pytest-benchmark: stored runs with the machine's description.

    python -m pytest benchmarks/test_goals.py --benchmark-autosave --benchmark-storage=benchmarks/results
    python benchmarks/figures.py                  # the README's goal table from the latest stored run

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


@pytest.mark.parametrize("goal", GOALS, ids=[g.name for g in GOALS])
def test_goal(benchmark, goal):
    with threadpool_limits(1):
        load = os.getloadavg()
        result = benchmark.pedantic(evaluate, args=(goal, REPEATS), rounds=1, iterations=1)
        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for i in threadpool_info()]
    benchmark.extra_info.update(result)
    benchmark.extra_info.update({"blas": blas, "load_before": list(load), "load_after": list(os.getloadavg()),
                                 "cpus": os.cpu_count()})
