"""Checkpoints of long runs (docs/architecture.md "Errors and data safety": long runs checkpoint and resume).

A :class:`CheckpointStore` says where (``DIR/checkpoints/``) and how often (every ``every`` steps)
the tasks of a run checkpoint.  While the driver runs a task it activates the task's
:class:`TaskCheckpoints` (a context variable, so the task's code needs no extra argument); each
checkpointed loop of the task (e.g. :meth:`simulations.training.OnlineTrainer.run`) takes the next
:class:`Slot` with :func:`slot` and saves a snapshot of everything it needs to continue (state,
``θ``, estimator state, the numpy Generator's ``bit_generator.state``) every ``every`` steps and
when it ends.  A task's code is deterministic given its seed, so the ``n``-th loop of a re-run
task is the same computation as before: it restores the newest snapshot and continues, and the
task finishes with the same numbers as an uninterrupted run.

Layout::

    DIR/checkpoints/<experiment>/<task>/loop-<n>.pkl     the newest snapshot of the task's n-th loop

Every snapshot carries the task's fingerprint (experiment, task key, task config, seed) and the
loop's call fingerprint (e.g. start and end step, a digest of the initial arrays and of the
generator state); a snapshot whose fingerprints differ from the re-run's is ignored, so a stale
checkpoint can cost time but never change a number.  Files are written atomically
(:func:`simulations.records.atomic_write`).  They are pickles: resume only results folders you made.
The driver removes a task's checkpoints once its record is written.
"""
from __future__ import annotations

import contextvars
import hashlib
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np

from .records import atomic_write, safe_name

CHECKPOINTS_DIR = "checkpoints"
FORMAT = 1
_ACTIVE: contextvars.ContextVar[TaskCheckpoints | None] = contextvars.ContextVar("rtrl_checkpoints", default=None)


class CheckpointStore:
    """The checkpoints of a run: folder ``root`` (``DIR/checkpoints``), a snapshot every ``every``
    steps.  Picklable (a path and an int), so process-pool and Dask workers get the same store;
    on a cluster ``root`` must be on a filesystem the workers share for resumes to use it."""

    def __init__(self, root: str | os.PathLike, every: int):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint interval must be a positive integer number of steps, got {every!r}")
        self.root, self.every = Path(root).absolute(), int(every)

    @classmethod
    def in_results(cls, out_dir: str | os.PathLike, every: int) -> CheckpointStore:
        return cls(Path(out_dir) / CHECKPOINTS_DIR, every)

    def folder(self, experiment: str, task: str) -> Path:
        return self.root / safe_name(experiment) / safe_name(task)

    def task(self, experiment: str, task: str, fingerprint) -> TaskCheckpoints:
        """The checkpoints of one task; ``fingerprint`` (JSON-able) identifies its computation."""
        return TaskCheckpoints(self.folder(experiment, task), self.every, fingerprint)

    def clear(self, experiment: str, task: str) -> None:
        """Remove the task's checkpoints (its record is written)."""
        folder = self.folder(experiment, task)
        shutil.rmtree(folder, ignore_errors=True)
        for parent in (folder.parent, self.root):
            try:
                parent.rmdir()
            except OSError:
                break

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r}, every={self.every})"


class TaskCheckpoints:
    """The checkpoints of one running task.  ``with`` it active, :func:`slot` hands out one
    :class:`Slot` per checkpointed loop, numbered in call order.  ``restored`` lists the loops that
    continued from a snapshot (``{"loop", "step"}``), ``saved`` counts snapshots written."""

    def __init__(self, folder: Path, every: int, fingerprint):
        self.folder, self.every, self.fingerprint = folder, every, fingerprint
        self.calls, self.saved, self.restored, self.notes = 0, 0, [], []
        self._token = None

    def slot(self) -> Slot:
        self.calls += 1
        return Slot(self, self.calls - 1)

    def summary(self) -> dict:
        return {"every": self.every, "saved": self.saved, "restored": list(self.restored),
                **({"notes": list(self.notes)} if self.notes else {})}

    def __enter__(self) -> TaskCheckpoints:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)


class Slot:
    """One checkpointed loop of a task: :meth:`load` its newest snapshot, :meth:`save` a new one."""

    def __init__(self, owner: TaskCheckpoints, index: int):
        self.owner, self.index, self.disabled = owner, index, False
        self.path = owner.folder / f"loop-{index}.pkl"

    @property
    def every(self) -> int:
        return self.owner.every

    def load(self, call):
        """``(step, payload)`` of the newest snapshot made by the same task and the same ``call``
        (fingerprint of the loop's arguments), or ``None``."""
        try:
            blob = self.path.read_bytes()
        except OSError:
            return None
        try:
            snap = pickle.loads(blob)
            same = (snap["format"] == FORMAT and snap["task"] == self.owner.fingerprint and snap["call"] == call)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint is only a lost shortcut
            self.owner.notes.append(f"loop {self.index}: unreadable checkpoint ignored ({type(e).__name__})")
            return None
        if not same:
            self.owner.notes.append(f"loop {self.index}: checkpoint of another computation ignored")
            return None
        self.owner.restored.append({"loop": self.index, "step": int(snap["step"])})
        return snap["step"], snap["payload"]

    def save(self, call, step: int, payload) -> None:
        """Write the snapshot atomically; a folder that cannot be written disables this slot's
        checkpoints with a warning (the run itself continues)."""
        if self.disabled:
            return
        blob = pickle.dumps({"format": FORMAT, "task": self.owner.fingerprint, "call": call, "step": int(step),
                             "payload": payload}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, blob)
        except OSError as e:
            warnings.warn(f"checkpoint {self.path} not written ({e.strerror or e}); continuing without it",
                          RuntimeWarning, stacklevel=2)
            self.owner.notes.append(f"loop {self.index}: checkpoint not written ({e.strerror or e})")
            self.disabled = True
            return
        self.owner.saved += 1


def active() -> TaskCheckpoints | None:
    """The checkpoints of the task running in this context, if the driver gave it any."""
    return _ACTIVE.get()


def slot() -> Slot | None:
    """The next checkpoint slot of the running task, or ``None`` when it has no checkpoints."""
    owner = _ACTIVE.get()
    return None if owner is None else owner.slot()


def digest(*arrays, rng: np.random.Generator | None = None) -> str:
    """A SHA-256 of arrays (dtype, shape, bytes) and a generator's state: a call fingerprint."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    if rng is not None:
        h.update(repr(rng.bit_generator.state).encode())
    return h.hexdigest()
