"""The benchmark page's goal table from a stored pytest-benchmark run (``benchmarks/test_goals.py``).

    python benchmarks/figures.py [RUN.json]       # default: the newest run under benchmarks/results

Rewrites the part of docs/guide/benchmarks.md between ``<!-- goals:begin -->`` and ``<!-- goals:end -->``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BEGIN, END = "<!-- goals:begin -->", "<!-- goals:end -->"


def newest(storage: Path = ROOT / "results") -> Path:
    runs = sorted(storage.glob("*/*.json"), key=lambda p: p.name)
    if not runs:
        raise SystemExit(f"no stored run under {storage}")
    return runs[-1]


def table(run: dict) -> str:
    mi, rows = run["machine_info"], []
    extra = [b["extra_info"] for b in run["benchmarks"] if "goal" in b["extra_info"]]
    agree = [(b["name"], b["extra_info"]) for b in run["benchmarks"] if "cost" in b["extra_info"]]
    blas = {f"{b['internal_api']} {b['version']} ({b.get('architecture')})" for e in extra for b in e["blas"]}
    loads = [x for e in extra for x in (e["load_before"][0], e["load_after"][0])]
    head = (f"Run {run['datetime'][:16]} UTC, commit {run.get('commit_info', {}).get('id', '?')[:8]}; "
            f"CPU: {mi.get('cpu', {}).get('brand_raw', mi.get('processor'))}, {extra[0]['cpus']} cores; "
            f"BLAS: {', '.join(sorted(blas))}, one thread; load average {min(loads):.1f}–{max(loads):.1f}. "
            f"Ratio: median of {extra[0]['repeats']} interleaved pairs (thread CPU time), "
            f"[10th, 90th percentile].\n\n")
    rows.append("| goal | measured | against | target | ratio | spread | times (µs) | met |")
    rows.append("|---|---|---|---|---|---|---|---|")
    for e in extra:
        op = "≥" if e["at_least"] else "≤"
        rows.append(f"| {e['goal']} | {e['numerator']} | {e['denominator']} | {op} {e['target']:g} | "
                    f"**{e['ratio']:.2f}** | {e['low']:.2f}–{e['high']:.2f} | "
                    f"{e['numerator_us']:.1f} / {e['denominator_us']:.1f} | {'yes' if e['met'] else 'no'} |")
    if agree:
        rows += ["", "The `cost` experiment's online step (`measure_estimator`: `linearize` then the estimator's step, timed as one) beside goal 5's:", "",
                 "| ratio | harness | cost experiment |", "|---|---|---|"]
        for name, e in agree:
            h, c = e["harness"], e["cost"]
            rows.append(f"| {h['numerator']} / {h['denominator']} | {h['ratio']:.2f} "
                        f"({h['low']:.2f}–{h['high']:.2f}) | {c['ratio']:.2f} ({c['low']:.2f}–{c['high']:.2f}) |")
    return head + "\n".join(rows) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else newest()
    text = table(json.loads(path.read_text()))
    readme = ROOT.parent / "docs" / "guide" / "benchmarks.md"
    doc = readme.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{readme} has no {BEGIN} … {END} section")
    a, rest = doc.split(BEGIN, 1)
    readme.write_text(a + BEGIN + "\n" + text + END + rest.split(END, 1)[1])
    print(f"{readme}: goal table from {path}")


if __name__ == "__main__":
    main()
