"""The driver: run an experiment's tasks and write one record per task (docs/records.md; docs/architecture.md "Data flow").

Seeds: the run seed ``seed`` (a non-negative int) gives task ``i`` of ``experiment.tasks(config)``
the seed ``SeedSequence(seed).spawn(len(tasks))[i]``, which equals
``SeedSequence(seed, spawn_key=(i,))``: it depends on the run seed and the task's *position*,
never on which worker runs it or in which order.

A task whose ``run_task`` raises becomes a record with status ``"failed"`` and the exception
type and message as its one-line ``reason`` (the traceback is kept in ``data["traceback"]``); so
does a task whose worker process died.  ``KeyboardInterrupt`` is not caught: the run stops with
:class:`~simulations.parallel.Interrupted` (naming the unfinished tasks) and keeps every record
finished so far.

Where tasks run is the ``executor``'s business (:mod:`simulations.parallel`: in this process, a
process pool, a Dask cluster): each runs :func:`run_job`, a pure function of one :class:`Job`,
and the driver writes the records as results arrive, so the numbers do not depend on the
backend.  With a :class:`~simulations.checkpoint.CheckpointStore` long loops inside a task
checkpoint, and a re-run task continues from its newest snapshot.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointStore
from .experiments.base import Experiment, Task, TaskResult, Verdict
from .parallel import InProcess, Interrupted
from .progress import progress_bar
from .records import (STATUSES, RecordError, jsonable, provenance, read_record, record_path, utc_now,
                      write_record)


def task_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of task number ``index`` in a run with seed ``seed``: ``SeedSequence(seed).spawn(n)[index]``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def execute_task(exp: Experiment, task: Task, seed: np.random.SeedSequence,
                 progress: Callable[[float], None] | None = None,
                 checkpoints: CheckpointStore | None = None) -> tuple[dict, dict]:
    """Run one task and return ``(record, arrays)`` ready for :func:`~simulations.records.write_record`
    (without ``experiment_config``, which the caller adds).  Exceptions become a ``"failed"`` record.

    With ``checkpoints`` the task's checkpoints are active while it runs (see
    :mod:`simulations.checkpoint`); what was saved and restored goes to ``provenance["checkpoints"]``.
    """
    started, t0 = utc_now(), time.perf_counter()
    fingerprint = {"experiment": exp.name, "task": task.key, "config": jsonable(task.config),
                   "seed": int(seed.entropy), "spawn_key": [int(k) for k in seed.spawn_key]}
    ck = checkpoints.task(exp.name, task.key, fingerprint) if checkpoints is not None else None
    try:
        with ck if ck is not None else contextlib.nullcontext():
            result = exp.run_task(task, seed, progress)
        if not isinstance(result, TaskResult):
            raise TypeError(f"run_task returned {type(result).__name__}, not TaskResult")
        if result.status not in STATUSES:
            raise ValueError(f"run_task returned unknown status {result.status!r}")
        mismatch = exp.check_result(task, result)
        if mismatch:
            raise ValueError(f"result does not match the schema of {exp.name!r}: {'; '.join(mismatch)}")
        data = jsonable(result.data)
        verdicts = [jsonable(v.to_dict() if isinstance(v, Verdict) else Verdict.from_dict(v).to_dict())
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
    record = task_record(exp, task, seed, status, reason, data, verdicts, started, time.perf_counter() - t0)
    if ck is not None and (ck.saved or ck.restored or ck.notes):
        record["provenance"]["checkpoints"] = ck.summary()
    return record, arrays


def task_record(exp: Experiment, task: Task, seed: np.random.SeedSequence, status: str, reason: str,
                data: dict, verdicts: list, started: str, wall: float) -> dict:
    """The record of one task (schema of :mod:`simulations.records`, without ``experiment_config``)."""
    return {"experiment": exp.name, "task": task.key, "task_index": int(seed.spawn_key[-1]),
            "seed": int(seed.entropy), "config": jsonable(task.config), "status": status,
            "reason": reason, "data": data, "verdicts": verdicts,
            "provenance": provenance(started, utc_now(), wall)}


@dataclass(frozen=True)
class Job:
    """One task to run, picklable for process-pool and Dask workers: the experiment instance,
    the task, its position ``index`` and the run ``seed`` (the task's seed is
    :func:`task_seed` ``(seed, index)``), and where it checkpoints."""

    exp: Experiment
    task: Task
    index: int
    seed: int
    checkpoints: CheckpointStore | None = None

    @property
    def name(self) -> str:
        return f"{self.exp.name}/{self.task.key}"


def run_job(job: Job, progress: Callable[[float], None] | None = None) -> tuple[dict, dict]:
    """The unit every backend runs: :func:`execute_task` of the job's task with its derived seed."""
    return execute_task(job.exp, job.task, task_seed(job.seed, job.index), progress, job.checkpoints)


def lost_task_record(job: Job, reason: str) -> dict:
    """A ``"failed"`` record for a task that returned nothing (its worker process died)."""
    now = utc_now()
    return task_record(job.exp, job.task, task_seed(job.seed, job.index), "failed", one_line(reason),
                       {}, [], now, 0.0)


def up_to_date_record(out_dir: str | os.PathLike, exp: Experiment, task: Task, index: int, seed: int,
                      config: dict, on_bad: Callable[[RecordError], None] | None = None) -> dict | None:
    """The existing record of ``task`` if it was made from the same task config, experiment config,
    seed and position under the current schema version, and did not fail; else ``None``.  A record
    that exists but cannot be read, or whose data breaks the experiment's declared schema, raises
    :class:`~simulations.records.RecordError`, or with ``on_bad`` is handed to it and counts as
    absent (the task runs again and replaces it)."""
    path = record_path(out_dir, exp.name, task.key)
    if not path.exists():
        return None
    try:
        record = read_record(path, exp.check_record_data)
    except RecordError as e:
        if on_bad is None:
            raise
        on_bad(e)
        return None
    same = (record["config"] == jsonable(task.config) and record["experiment_config"] == jsonable(config)
            and record["seed"] == seed and record["task_index"] == index)
    return record if same and record["status"] != "failed" else None


def run_experiment(exp: Experiment, config: dict, seed: int, out_dir: str | os.PathLike,
                   progress: bool = True, skip_up_to_date: bool = True, executor=None,
                   checkpoints: CheckpointStore | None = None,
                   on_bad_record: Callable[[RecordError], None] | None = None) -> list[dict]:
    """Run every task of ``exp.tasks(config)`` and write its record under ``out_dir``; return the
    records as loaded back from disk (with lazy ``arrays``), in task order.

    With ``skip_up_to_date`` a task whose record is up to date (see :func:`up_to_date_record`) is
    not run again; failed records are always re-run.  ``progress`` shows a tqdm bar on stderr when
    it is a terminal (after two seconds), advanced within tasks by their ``progress(fraction)`` calls
    when they run in this process, and otherwise plain lines with a heartbeat
    (:mod:`simulations.progress`).  ``executor``: where the tasks run (:mod:`simulations.parallel`;
    default in this process, one after another).  ``checkpoints``: where long loops checkpoint.
    ``on_bad_record``: see :func:`up_to_date_record` (default: a bad record raises before any task runs).
    """
    return run_experiments([(exp, config)], seed, out_dir, progress, skip_up_to_date, executor,
                           checkpoints, on_bad_record)[exp.name]


def run_experiments(plan: Iterable[tuple[Experiment, dict]], seed: int, out_dir: str | os.PathLike,
                    progress: bool = True, skip_up_to_date: bool = True, executor=None,
                    checkpoints: CheckpointStore | None = None,
                    on_bad_record: Callable[[RecordError], None] | None = None) -> dict[str, list[dict]]:
    """:func:`run_experiment` for several ``(experiment, config)`` pairs at once: every task of every
    experiment goes to the same ``executor``, so a pool never waits for one experiment to finish
    before starting the next; the tasks of ``exclusive`` experiments (timings) run afterwards, one
    at a time in this process.  Returns experiment name -> records in task order.

    Ctrl-C raises :class:`~simulations.parallel.Interrupted` (a ``KeyboardInterrupt``) whose
    ``running`` lists the unfinished tasks as ``"experiment/task"``; the records written so far stay.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    plan = list(plan)
    records: dict[str, list] = {}
    configs, jobs = {}, []
    for exp, config in plan:
        if exp.name in records:
            raise ValueError(f"experiment {exp.name!r} appears twice in the plan")
        tasks = exp.tasks(config)
        keys = [t.key for t in tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"experiment {exp.name!r} produced duplicate task keys")
        configs[exp.name] = jsonable(config)
        records[exp.name] = [None] * len(tasks)
        for index, task in enumerate(tasks):
            done = (up_to_date_record(out_dir, exp, task, index, seed, config, on_bad_record)
                    if skip_up_to_date else None)
            if done is None:
                jobs.append(Job(exp, task, index, seed, checkpoints))
            elif checkpoints is not None:
                # a record written just before an interruption leaves its snapshots behind
                checkpoints.clear(exp.name, task.key)
            records[exp.name][index] = done
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    executor = InProcess() if executor is None else executor

    total = sum(map(len, records.values()))
    bar = progress_bar(total, total - len(jobs), plan[0][0].name if len(plan) == 1 else "tasks", progress)
    finished = [total - len(jobs)]

    def start(job: Job):
        bar.set_postfix_str(job.task.key, refresh=False)
        if not progress:
            return None

        def advance(fraction: float, _done=finished[0]) -> None:
            target = _done + min(max(float(fraction), 0.0), 1.0)
            if target > bar.n:
                bar.update(target - bar.n)
        return advance

    def write(job: Job, result: tuple[dict, dict]) -> None:
        record, arrays = result
        record["experiment_config"] = configs[job.exp.name]
        try:
            path = write_record(out_dir, record, arrays)
        except RecordError as e:             # the task's output breaks the record schema: a failure
            record = {**lost_task_record(job, str(e)), "experiment_config": configs[job.exp.name]}
            path = write_record(out_dir, record, {})
        records[job.exp.name][job.index] = read_record(path)
        if checkpoints is not None:
            checkpoints.clear(job.exp.name, job.task.key)
        finished[0] += 1
        bar.update(finished[0] - bar.n)

    def lost(job: Job, reason: str) -> None:
        write(job, (lost_task_record(job, reason), {}))

    try:
        shared = [j for j in jobs if not j.exp.exclusive]
        timed = [j for j in jobs if j.exp.exclusive]           # alone on the machine, after the rest
        if shared:
            executor.map(run_job, shared, write, lost, start)
        if timed:
            InProcess().map(run_job, timed, write, lost, start)
    except KeyboardInterrupt as e:
        running = getattr(e, "running", [])
        raise Interrupted([j.name if isinstance(j, Job) else str(j) for j in running]) from None
    finally:
        bar.close()
    return records
