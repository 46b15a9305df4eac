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

    DIR/checkpoints/<experiment>/<task>/loop-<n>.npz     the newest snapshot of the task's n-th loop

A snapshot holds numbers and plain data only, never a pickle: a loop turns its state into plain
data (:mod:`simulations.plain`: numbers, strings, arrays, lists, dicts, a Generator as its
``bit_generator.state``), the arrays become ``.npz`` entries read with ``allow_pickle=False`` and
everything else (the structure of the payload, the fingerprints) one JSON entry (:func:`encode`,
:func:`decode`).  The file never names a class: the loop writes the values back into objects it
made itself (:func:`simulations.plain.restore`), so a results folder from someone else can never
run code.  Every snapshot carries the task's fingerprint (experiment, task key, task config, seed),
the loop's call fingerprint (e.g. start and end step, a digest of the initial arrays and of the
generator state) and a SHA-256 content hash; a snapshot that is damaged, tampered with or made by
another computation is ignored with a one-line note (the loop starts from its beginning), so a
checkpoint can cost time but never change a number.  Files are written atomically
(:func:`simulations.records.atomic_write`).  The driver removes a task's checkpoints once its
record is written.
"""
from __future__ import annotations

import contextvars
import hashlib
import io
import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .records import atomic_write, jsonable, safe_name

CHECKPOINTS_DIR = "checkpoints"
FORMAT = 3
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
        self.path = owner.folder / f"loop-{index}.npz"

    @property
    def every(self) -> int:
        return self.owner.every

    def load(self, call, like=None):
        """``(step, payload)`` of the newest snapshot made by the same task and the same ``call``
        (fingerprint of the loop's arguments), or ``None``.  ``like``: a payload of the expected
        structure (e.g. the loop's initial one); a snapshot whose payload does not fit it
        (:func:`fits`) is ignored.

        Nothing in the file is executed: the arrays are read with ``allow_pickle=False`` and the
        rest is JSON decoded by :func:`decode`.  A snapshot that cannot be read, whose content hash
        does not match, or that belongs to another computation is ignored with a one-line note in
        ``notes`` (the loop starts from its beginning)."""
        if not self.path.exists():
            return None
        try:
            snap = read_snapshot(self.path)
        except CheckpointError as e:
            self.owner.notes.append(f"loop {self.index}: checkpoint ignored ({e})")
            return None
        if snap["task"] != jsonable(self.owner.fingerprint) or snap["call"] != jsonable(call):
            self.owner.notes.append(f"loop {self.index}: checkpoint of another computation ignored")
            return None
        if like is not None and not _fits_safely(snap["payload"], like):
            self.owner.notes.append(f"loop {self.index}: checkpoint ignored (its payload does not fit this loop)")
            return None
        self.owner.restored.append({"loop": self.index, "step": snap["step"]})
        return snap["step"], snap["payload"]

    def reject(self, why: str) -> None:
        """The snapshot :meth:`load` returned could not be used after all (the loop found it does
        not fit while restoring it, ``why``): it counts as ignored, with a one-line note."""
        if self.owner.restored and self.owner.restored[-1]["loop"] == self.index:
            self.owner.restored.pop()
        self.owner.notes.append(f"loop {self.index}: checkpoint ignored ({why})")

    def save(self, call, step: int, payload) -> None:
        """Write the snapshot atomically; a folder that cannot be written, or a payload that
        :func:`encode` cannot hold, disables this slot's checkpoints with a warning (the run
        itself continues)."""
        if self.disabled:
            return
        try:
            blob = snapshot_bytes(self.owner.fingerprint, call, step, payload)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, blob)
        except (OSError, TypeError) as e:
            why = (e.strerror or str(e)) if isinstance(e, OSError) else ' '.join(str(e).split())
            warnings.warn(f"checkpoint {self.path} not written ({why}); continuing without it",
                          RuntimeWarning, stacklevel=2)
            self.owner.notes.append(f"loop {self.index}: checkpoint not written ({why})")
            self.disabled = True
            return
        self.owner.saved += 1


# ----------------------------------------------------------------------------------------------
# the snapshot file: arrays in an .npz, everything else JSON

class CheckpointError(ValueError):
    """A snapshot that cannot be used: unreadable, not of this format, or its content hash differs."""


def snapshot_bytes(task, call, step: int, payload) -> bytes:
    """The ``.npz`` of one snapshot: the payload's arrays ``a0, a1, ...`` and ``meta`` (UTF-8 JSON
    as ``uint8``: format, task and call fingerprints, step, the payload's :func:`encode` tree and
    the SHA-256 content hash of all of it).  Raises ``TypeError`` for a payload it cannot hold."""
    arrays: list[np.ndarray] = []
    meta = {"format": FORMAT, "task": jsonable(task), "call": jsonable(call), "step": int(step),
            "tree": encode(payload, arrays)}
    meta["hash"] = content_hash(meta, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             **{f"a{i}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def read_snapshot(path: Path) -> dict:
    """``{"task", "call", "step", "payload"}`` of a snapshot file; :class:`CheckpointError` (one
    line) if it is unreadable, of another format, or its content hash does not match."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            meta = json.loads(npz["meta"].tobytes().decode()) if "meta" in names else None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError("not a checkpoint of this version")
            n = len(names) - 1
            if names != {"meta", *(f"a{i}" for i in range(n))}:
                raise CheckpointError("unexpected entries")
            arrays = [npz[f"a{i}"] for i in range(n)]
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, KeyError, RuntimeError,
            NotImplementedError) as e:
        raise CheckpointError(f"unreadable: {type(e).__name__}") from None
    if content_hash({k: v for k, v in meta.items() if k != "hash"}, arrays) != meta.get("hash"):
        raise CheckpointError("content hash does not match")
    try:
        payload = decode(meta["tree"], arrays)
        step = meta["step"]
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError("step is not an integer")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
        raise CheckpointError(f"undecodable: {type(e).__name__}") from None
    return {"task": meta.get("task"), "call": meta.get("call"), "step": step, "payload": payload}


def content_hash(meta: dict, arrays: list[np.ndarray]) -> str:
    """SHA-256 of the canonical JSON of ``meta`` and of each array's dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# payload trees

_NUMERIC = "biufc"


def encode(obj, arrays: list):
    """A JSON tree of the plain data ``obj`` (:mod:`simulations.plain`), its numeric arrays
    appended to ``arrays`` (referenced by position).

    Holds ``None``, ``bool``, ``int``, ``float``, ``str``, numeric numpy arrays and scalars,
    lists (tuples become lists) and dicts with string keys: what a loop's state becomes with
    :func:`simulations.plain.to_plain` (the estimators' ``export_state``, generators as their
    ``bit_generator.state``).  Anything else (objects, functions, object arrays) raises ``TypeError``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if type(obj) in (int, float):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        if a.dtype.kind not in _NUMERIC:
            raise TypeError(f"array of dtype {a.dtype} cannot be checkpointed")
        arrays.append(np.array(a, copy=True))
        return {"nd": len(arrays) - 1, **({"scalar": True} if isinstance(obj, np.generic) else {})}
    if type(obj) in (list, tuple):
        return {"list": [encode(v, arrays) for v in obj]}
    if type(obj) is dict:
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("a dict with keys other than strings cannot be checkpointed")
        return {"dict": {k: encode(v, arrays) for k, v in obj.items()}}
    cls = type(obj)
    raise TypeError(f"{cls.__module__}.{cls.__qualname__} cannot be checkpointed (plain data only)")


def decode(tree, arrays: list[np.ndarray]):
    """The plain data :func:`encode` made ``tree`` from (``arrays``: its arrays, in order).  Only
    numbers, strings, ``None``, arrays, lists and dicts come out: no class is named by the file,
    none is looked up or built (a loop writes the data into objects of its own making,
    :func:`simulations.plain.restore`); raises on anything else."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if not isinstance(tree, dict) or len(tree.keys() - {"scalar"}) != 1:
        raise TypeError(f"unexpected {type(tree).__name__} in a checkpoint tree")
    if "nd" in tree:
        a = arrays[tree["nd"]]
        return a[()] if tree.get("scalar") is True else a
    if "list" in tree and isinstance(tree["list"], list):
        return [decode(v, arrays) for v in tree["list"]]
    if "dict" in tree and isinstance(tree["dict"], dict):
        return {str(k): decode(v, arrays) for k, v in tree["dict"].items()}
    raise TypeError(f"unexpected node {sorted(tree)} in a checkpoint tree")


def _fits_safely(value, like) -> bool:
    try:
        return fits(value, like)
    except Exception:  # noqa: BLE001 - a payload that cannot even be compared does not fit
        return False


def fits(value, like, shapes: bool = False) -> bool:
    """Whether the plain data ``value`` has the structure of ``like``: same types (ints and
    floats interchangeable), dict keys, array dtypes and ranks (and shapes, with ``shapes``),
    recursively (lists by their first element; ``None`` fits anything)."""
    if like is None or value is None:
        return True
    if type(value) is not type(like):
        return isinstance(value, (int, float)) and isinstance(like, (int, float)) \
            and not isinstance(value, bool) and not isinstance(like, bool)
    if isinstance(like, np.ndarray):
        return value.dtype == like.dtype and (value.shape == like.shape if shapes else value.ndim == like.ndim)
    if isinstance(like, list):
        return all(fits(v, like[0], shapes) for v in value[:1]) if like else True
    if isinstance(like, dict):
        return value.keys() == like.keys() and all(fits(value[k], like[k], shapes) for k in like)
    return True


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
