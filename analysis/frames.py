"""Result records as pandas data frames (needs the optional ``frames`` extra: ``pandas``).

One frame per experiment, one row per task record.  Columns:

* ``task``, ``task_index``, ``seed``, ``status``, ``reason``, ``wall_time`` (seconds), ``path``;
* ``verdicts``, ``verdicts_passed``, ``verdicts_failed``, ``verdicts_inconclusive`` (counts);
* ``config.<key>`` for every scalar of the task's config and ``data.<key>`` for every scalar of its
  ``data`` (numbers, strings, booleans, ``None``; nested dicts flattened with dots, lists left out:
  ask for them with ``lists=True``);
* on request (``arrays=True`` or a list of names), ``array.<name>``: the task's numpy arrays, one
  object per cell (read from the ``.npz`` with ``allow_pickle=False``).

:func:`verdict_frame` gives one row per verdict with its evidence fields.  The record schema
itself is described in :mod:`rtrl_validation.simulations.records`.
"""
from __future__ import annotations

import os

from rtrl_validation.simulations.records import load_records

SCALARS = (int, float, str, bool, type(None))


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("record frames need pandas: pip install 'rtrl-validation[frames]'") from None
    return pandas


def _flatten(prefix: str, obj: dict, out: dict, lists: bool) -> None:
    for key, value in obj.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            _flatten(name, value, out, lists)
        elif isinstance(value, SCALARS) or (lists and isinstance(value, list)):
            out[name] = value


def _row(record: dict, arrays, lists: bool) -> dict:
    verdicts = record.get("verdicts") or []
    statuses = [v.get("status", "PASS" if v.get("passed") else "FAIL") for v in verdicts]
    row = {"task": record["task"], "task_index": record["task_index"], "seed": record["seed"],
           "status": record["status"], "reason": record.get("reason", ""),
           "wall_time": (record.get("provenance") or {}).get("wall_time"), "path": str(record.get("path", "")),
           "verdicts": len(verdicts), "verdicts_passed": statuses.count("PASS"),
           "verdicts_failed": statuses.count("FAIL"), "verdicts_inconclusive": statuses.count("INCONCLUSIVE")}
    _flatten("config", record.get("config") or {}, row, lists)
    _flatten("data", record.get("data") or {}, row, lists)
    if arrays:
        names = record.get("array_names") or []
        wanted = names if arrays is True else [n for n in arrays if n in names]
        for name in wanted:
            row[f"array.{name}"] = record["arrays"][name]
    return row


def record_frame(out_dir: str | os.PathLike, experiment: str, arrays=False, lists: bool = False):
    """The records of one experiment in ``out_dir`` as a ``pandas.DataFrame`` (one row per task,
    in task order).

    Parameters
    ----------
    out_dir : path
        A results folder (``rtrl-validate run/report --out``).
    experiment : str
        The experiment's name (``gradients``, ``bias-variance``, ``cost``, ``convergence``, ``learning``).
    arrays : bool or list of str
        Add ``array.<name>`` columns: all arrays (``True``) or the named ones.
    lists : bool
        Also keep list-valued config and data fields (as Python lists).

    Returns
    -------
    pandas.DataFrame
        Empty (no rows, no columns) when the folder has no records of ``experiment``.
    """
    pd = _pandas()
    records = sorted(load_records(out_dir, experiment), key=lambda r: r["task_index"])
    return pd.DataFrame([_row(r, arrays, lists) for r in records])


def record_frames(out_dir: str | os.PathLike, arrays=False, lists: bool = False) -> dict:
    """``{experiment: record_frame(...)}`` for every experiment with records in ``out_dir``."""
    names = sorted({r["experiment"] for r in load_records(out_dir)})
    return {name: record_frame(out_dir, name, arrays, lists) for name in names}


def verdict_frame(out_dir: str | os.PathLike, experiment: str | None = None):
    """One row per verdict: ``experiment``, ``task``, ``check``, ``status``, ``passed``, ``value``,
    ``bound`` and the evidence fields (``rule``, ``claim``, ``source``, ``statistic``, ``effect``,
    ``interval``, ``resolution``, ``control``, ``family``, ``evidence``)."""
    pd = _pandas()
    rows = []
    for r in sorted(load_records(out_dir, experiment), key=lambda r: (r["experiment"], r["task_index"])):
        for v in r.get("verdicts") or []:
            rows.append({"experiment": r["experiment"], "task": r["task"], **v})
    return pd.DataFrame(rows)
