"""Compare two results folders record by record (``records/<experiment>/<task>.json`` + ``.npz``).

Every data field, verdict and array of every record is compared.  Excluded, because they measure
the machine rather than the mathematics: ``provenance`` (versions, host, start/finish, wall time),
``data.seconds_per_step`` and the ``seconds`` array (wall time of a training loop), and in the
``cost`` experiment every measured time or load (``time*``, ``cpu*``, ``forward``, ``linearize``,
``ratio``, ``times`` arrays and the ``load_average``, ``batching`` and ``blas`` data), and the
verdicts that are decided on those times.

The baseline may predate the verdict evidence fields (``status``, ``rule``, ``claim``, ``source``,
``statistic``, ``effect``, ``interval``, ``resolution``, ``control``, ``family``): such a field
present only in the newer record is classed ``added-empty`` when it carries no evidence (``""`` or
``None``; ``status`` equal to what ``passed`` implies), and ``DIFFERENT`` otherwise.

Each compared field is classed as ``identical`` (bit for bit, NaN equal to NaN), ``rel<=1e-12``
(equal within a relative ``1e-12``: the tolerance for a reordering of floating-point operations)
or ``DIFFERENT``.  The exit code is 0 when nothing is ``DIFFERENT`` or missing.

Usage::

    python benchmarks/compare_records.py BEFORE AFTER [--rtol 1e-12] [--verbose]
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

#: JSON paths (``/``-joined, list indices as ``*``) never compared.
EXCLUDED_JSON = ["provenance", "provenance/*", "data/seconds_per_step", "arrays_file"]
#: per-experiment exclusions: measured times (JSON paths, array-name globs).
EXCLUDED_COST_JSON = ["data/load_average", "data/load_average/*", "data/batching", "data/batching/*",
                      "data/blas", "data/blas/*", "verdicts", "verdicts/*"]
EXCLUDED_ARRAYS = ["seconds"]
EXCLUDED_COST_ARRAYS = ["time.*", "time_min.*", "times.*", "cpu.*", "cpu_forward.*", "cpu_linearize.*",
                        "forward.*", "linearize.*", "ratio.*"]


#: verdict fields added after the baseline's format (empty unless a check fills them)
VERDICT_EVIDENCE = ("status", "rule", "claim", "source", "statistic", "effect", "interval", "resolution",
                    "control", "family")


def _added_empty(path: str, value, record: dict) -> bool:
    """A verdict evidence field only the newer record has, and that carries nothing."""
    m = re.fullmatch(r"verdicts\[(\d+)\]/(\w+)", path)
    if not m or m.group(2) not in VERDICT_EVIDENCE:
        return False
    if m.group(2) == "status":
        return value == ("PASS" if record["verdicts"][int(m.group(1))].get("passed") else "FAIL")
    return value in ("", None)


def _excluded(path: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _leaves(obj, path=""):
    """``(path, value)`` for every scalar leaf of a JSON value; list indices appear as ``[i]``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}/{k}" if path else str(k))
    elif isinstance(obj, list):
        if not obj:
            yield path, "[]"
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def _pattern_path(path: str) -> str:
    """``a/b[3]/c`` -> ``a/b/*/c`` so that exclusions can be written without indices."""
    return re.sub(r"\[\d+\]", "/*", path)


def _close(a, b, rtol) -> str:
    """``identical``, ``rel<=rtol`` or ``DIFFERENT`` for two scalars or arrays."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind and not (a.dtype.kind in "iuf" and b.dtype.kind in "iuf"):
        return "DIFFERENT"
    if a.dtype.kind not in "iufcb":
        return "identical" if np.array_equal(a, b) else "DIFFERENT"
    if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
        return "identical"
    a, b = a.astype(float), b.astype(float)
    same_nan = np.array_equal(np.isnan(a), np.isnan(b))
    fin = np.isfinite(a) & np.isfinite(b)
    if not same_nan or not np.array_equal(a[~fin], b[~fin], equal_nan=True):
        return "DIFFERENT"
    scale = np.maximum(np.abs(a[fin]), np.abs(b[fin]))
    ok = np.abs(a[fin] - b[fin]) <= rtol * scale
    return f"rel<={rtol:g}" if ok.all() else "DIFFERENT"


def _max_rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    fin = np.isfinite(a) & np.isfinite(b)
    if not fin.any():
        return math.nan
    scale = np.maximum(np.maximum(np.abs(a[fin]), np.abs(b[fin])), 1e-300)
    return float(np.max(np.abs(a[fin] - b[fin]) / scale))


def compare_record(before: Path, after: Path, rtol: float) -> list[tuple[str, str, str]]:
    """``(field, class, detail)`` for every compared field of one record."""
    out = []
    ja, jb = json.loads(before.read_text()), json.loads(after.read_text())
    cost = ja.get("experiment") == "cost"
    skip_json = EXCLUDED_JSON + (EXCLUDED_COST_JSON if cost else [])
    skip_arrays = EXCLUDED_ARRAYS + (EXCLUDED_COST_ARRAYS if cost else [])
    la = {p: v for p, v in _leaves(ja) if not _excluded(_pattern_path(p), skip_json)}
    lb = {p: v for p, v in _leaves(jb) if not _excluded(_pattern_path(p), skip_json)}
    for p in sorted(set(la) | set(lb)):
        if p not in la and _added_empty(p, lb[p], jb):
            out.append((p, "added-empty", ""))
            continue
        if p not in la or p not in lb:
            out.append((p, "DIFFERENT", "only in " + ("after" if p in lb else "before")))
            continue
        va, vb = la[p], lb[p]
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            cls = _close(va, vb, rtol)
        else:
            cls = "identical" if va == vb else "DIFFERENT"
        out.append((p, cls, "" if cls == "identical" else f"{va!r} vs {vb!r}"))
    if ja.get("arrays_file") or jb.get("arrays_file"):
        za = np.load(before.parent / ja["arrays_file"], allow_pickle=False) if ja.get("arrays_file") else {}
        zb = np.load(after.parent / jb["arrays_file"], allow_pickle=False) if jb.get("arrays_file") else {}
        for name in sorted(set(za) | set(zb)):
            if _excluded(name, skip_arrays):
                continue
            if name not in za or name not in zb:
                out.append((f"array:{name}", "DIFFERENT", "only in " + ("after" if name in zb else "before")))
                continue
            cls = _close(za[name], zb[name], rtol)
            detail = "" if cls == "identical" else f"max rel {_max_rel(za[name], zb[name]):.3g}"
            out.append((f"array:{name}", cls, detail))
    return out


def compare_folders(before: Path, after: Path, rtol: float = 1e-12, verbose: bool = False, stream=sys.stdout) -> int:
    """Print a per-record summary; return the number of different or missing fields and records."""
    rb, ra = Path(before) / "records", Path(after) / "records"
    rb = rb if rb.is_dir() else Path(before)
    ra = ra if ra.is_dir() else Path(after)
    names_b = {p.relative_to(rb) for p in rb.rglob("*.json")}
    names_a = {p.relative_to(ra) for p in ra.rglob("*.json")}
    bad, totals = 0, Counter()
    for name in sorted(names_b | names_a):
        if name not in names_a or name not in names_b:
            print(f"{name}: MISSING in {'after' if name in names_b else 'before'}", file=stream)
            bad += 1
            continue
        rows = compare_record(rb / name, ra / name, rtol)
        counts = Counter(cls for _, cls, _ in rows)
        totals.update(counts)
        bad += counts["DIFFERENT"]
        summary = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        print(f"{name}: {summary}", file=stream)
        for field, cls, detail in rows:
            if cls not in ("identical", "added-empty") or verbose:
                print(f"    {field}: {cls} {detail}".rstrip(), file=stream)
    print(f"records: {len(names_b & names_a)} compared, {len(names_b ^ names_a)} missing; fields: "
          + ", ".join(f"{n} {c}" for c, n in sorted(totals.items())), file=stream)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rtol", type=float, default=1e-12)
    ap.add_argument("--verbose", action="store_true", help="list every field, identical ones too")
    args = ap.parse_args(argv)
    for d in (args.before, args.after):
        if not Path(d).is_dir():
            print(f"error: {d} is not a folder", file=sys.stderr)
            return 2
    return 1 if compare_folders(Path(args.before), Path(args.after), args.rtol, args.verbose) else 0


if __name__ == "__main__":
    sys.exit(main())
