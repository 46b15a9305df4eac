"""The driver: run an experiment's tasks and write one record per task (DESIGN.md "Result record").

Seeds: the run seed ``seed`` (a non-negative int) gives task ``i`` of ``experiment.tasks(config)``
the seed ``SeedSequence(seed).spawn(len(tasks))[i]``, which equals
``SeedSequence(seed, spawn_key=(i,))``: it depends on the run seed and the task's *position*,
never on which worker runs it or in which order.

A task whose ``run_task`` raises becomes a record with status ``"failed"`` and the exception
type and message as its one-line ``reason`` (the traceback is kept in ``data["traceback"]``);
``KeyboardInterrupt`` is not caught, so an interrupted run keeps every record finished so far.

The loop is sequential; :func:`execute_task` is a pure function of ``(experiment, task, seed)``
so a process pool or Dask can map it over the tasks later without changing any result.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .experiments.base import Experiment, Task, TaskResult, Verdict
from .records import (STATUSES, RecordError, jsonable, provenance, read_record, record_path, utc_now,
                      write_record)


def task_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of task number ``index`` in a run with seed ``seed``: ``SeedSequence(seed).spawn(n)[index]``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def execute_task(exp: Experiment, task: Task, seed: np.random.SeedSequence,
                 progress: Callable[[float], None] | None = None) -> tuple[dict, dict]:
    """Run one task and return ``(record, arrays)`` ready for :func:`~simulations.records.write_record`
    (without ``experiment_config``, which the caller adds).  Exceptions become a ``"failed"`` record."""
    started, t0 = utc_now(), time.perf_counter()
    try:
        result = exp.run_task(task, seed, progress)
        if not isinstance(result, TaskResult):
            raise TypeError(f"run_task returned {type(result).__name__}, not TaskResult")
        if result.status not in STATUSES:
            raise ValueError(f"run_task returned unknown status {result.status!r}")
        data = jsonable(result.data)
        verdicts = [jsonable(v.to_dict() if isinstance(v, Verdict) else Verdict(**v).to_dict())
                    for v in result.verdicts]
        arrays = {str(name): np.asarray(value) for name, value in result.arrays.items()}
        for name, value in arrays.items():
            if value.dtype.kind == "O":
                raise TypeError(f"array {name!r} has dtype object; records hold numeric arrays only")
        status, reason = result.status, one_line(result.reason)
        if status != "ok" and not reason:
            reason = f"{status} (no reason given)"
    except Exception as e:  # noqa: BLE001 - any failure of a task is recorded, never raised
        status, reason = "failed", one_line(f"{type(e).__name__}: {e}")
        data, verdicts, arrays = {"traceback": traceback.format_exc()}, [], {}
    wall = time.perf_counter() - t0
    record = {"experiment": exp.name, "task": task.key, "task_index": int(seed.spawn_key[-1]),
              "seed": int(seed.entropy), "config": jsonable(task.config), "status": status,
              "reason": reason, "data": data, "verdicts": verdicts,
              "provenance": provenance(started, utc_now(), wall)}
    return record, arrays


def up_to_date_record(out_dir: str | os.PathLike, exp: Experiment, task: Task, index: int, seed: int,
                      config: dict) -> dict | None:
    """The existing record of ``task`` if it was made from the same task config, experiment config,
    seed and position under the current schema version, and did not fail; else ``None``."""
    try:
        record = read_record(record_path(out_dir, exp.name, task.key))
    except RecordError:
        return None
    same = (record["config"] == jsonable(task.config) and record["experiment_config"] == jsonable(config)
            and record["seed"] == seed and record["task_index"] == index)
    return record if same and record["status"] != "failed" else None


def run_experiment(exp: Experiment, config: dict, seed: int, out_dir: str | os.PathLike,
                   progress: bool = True, skip_up_to_date: bool = True) -> list[dict]:
    """Run every task of ``exp.tasks(config)`` and write its record under ``out_dir``; return the
    records as loaded back from disk (with lazy ``arrays``), in task order.

    With ``skip_up_to_date`` a task whose record is up to date (see :func:`up_to_date_record`) is
    not run again; failed records are always re-run.  ``progress`` shows a tqdm bar on stderr when
    it is a terminal (after two seconds), advanced within tasks by their ``progress(fraction)`` calls.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    tasks = exp.tasks(config)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"experiment {exp.name!r} produced duplicate task keys")
    experiment_config = jsonable(config)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm
    bar = tqdm(total=len(tasks), desc=exp.name, unit="task", delay=2.0,
               disable=not progress or not sys.stderr.isatty(),
               bar_format="{l_bar}{bar}| {n:.1f}/{total} tasks [{elapsed}<{remaining}{postfix}]")
    records = []
    try:
        for index, task in enumerate(tasks):
            record = up_to_date_record(out_dir, exp, task, index, seed, config) if skip_up_to_date else None
            if record is None:
                bar.set_postfix_str(task.key, refresh=False)

                def advance(fraction: float, _done=index) -> None:
                    target = _done + min(max(float(fraction), 0.0), 1.0)
                    if target > bar.n:
                        bar.update(target - bar.n)

                fresh, arrays = execute_task(exp, task, task_seed(seed, index), advance if progress else None)
                fresh["experiment_config"] = experiment_config
                record = read_record(write_record(out_dir, fresh, arrays))
            records.append(record)
            bar.update(index + 1 - bar.n)
    finally:
        bar.close()
    return records
