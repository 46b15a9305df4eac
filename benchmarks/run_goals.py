"""Print every goal's ratio (``python benchmarks/run_goals.py [--repeats N] [--only SUBSTRING]``);
single-threaded BLAS.  The stored, compared runs go through pytest-benchmark
(``benchmarks/test_goals.py``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import GOALS, evaluate  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--min-time", type=float, default=0.02)
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    with threadpool_limits(1):
        for r in GOALS:
            if args.only in r.name:
                e = evaluate(r, args.repeats, args.min_time)
                op = "≥" if r.at_least else "≤"
                print(f"goal {e['goal']} {e['name']:38s} {e['ratio']:6.2f} [{e['low']:.2f}, {e['high']:.2f}] "
                      f"(target {op} {r.target}) {'met' if e['met'] else 'NOT met'}; "
                      f"{e['numerator_us']:.1f} / {e['denominator_us']:.1f} µs", flush=True)


if __name__ == "__main__":
    main()
