"""Result records: one JSON file per task plus an ``.npz`` for its large arrays (README "Result records"; docs/architecture.md "Data flow").

Records are the only input of analysis and rendering: a report is rebuilt from a results folder
without recomputing anything.

Layout inside a results folder ``DIR``::

    DIR/records/<experiment>/<task>.json          the record
    DIR/records/<experiment>/<task>.<token>.npz   its arrays (absent when there are none)

``<experiment>`` and ``<task>`` are the experiment name and the task key with every character
outside ``[A-Za-z0-9._-]`` replaced by ``_``.  ``<token>`` is random per write, so a JSON file
always names the one ``.npz`` that was complete before the JSON itself was written.

Schema (``schema_version`` 1), the JSON object::

    schema_version     int, SCHEMA_VERSION; other versions are refused with a clear error
    experiment         str, registered experiment name
    task               str, task key (unique within the experiment, stable across runs)
    task_index         int, position of the task in ``experiment.tasks(config)``
    seed               int, the run seed; the task's own seed is
                       ``SeedSequence(seed).spawn(n_tasks)[task_index]``
                       (= ``SeedSequence(seed, spawn_key=(task_index,))``)
    config             dict, the task's config (everything the task computed from)
    experiment_config  dict, the experiment's full config the tasks were built from
    status             "ok" | "diverged" (NaN/inf; ``reason`` says where) | "failed" (exception)
    reason             str, one line; empty when status is "ok"
    data               dict, JSON-able scalars, short lists, strings
    verdicts           list of Verdict.to_dict() (simulations.experiments.base): "check",
                       "status" (PASS | FAIL | INCONCLUSIVE), "passed", "evidence", "value",
                       "bound", "rule", "claim", "source", "statistic", "effect", "interval",
                       "resolution", "control", "family"
    arrays_file        str | null, file name of the ``.npz`` beside the record
    array_names        list of str, the arrays in that file
    provenance         {"versions": {package: version | null, "python": ...},
                        "git_revision": str | null, "git_dirty": bool | null,
                        "hostname", "platform": str, "cpu_count": int,
                        "started", "finished": ISO 8601 UTC times, "wall_time": seconds}

Non-finite floats are written as ``NaN``/``Infinity`` (Python's JSON extension).  A record
loaded with :func:`read_record` / :func:`load_records` additionally has ``"arrays"`` (a lazy
read-only mapping name -> numpy array, read from the ``.npz`` on first access) and ``"path"``.

Every file is written atomically: a temporary file in the same folder, flushed and fsynced, then
``os.replace``; the ``.npz`` first, then the JSON, so an interrupted write leaves either the old
record or the new one, never a corrupt one.
"""
from __future__ import annotations

import glob
import json
import os
import platform
import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
#: packages whose versions every record carries
PROVENANCE_PACKAGES = ("rtrl-validation", "numpy", "scipy", "numba", "sympy", "statsmodels", "matplotlib")
_JSON_KEYS = ("schema_version", "experiment", "task", "task_index", "seed", "config",
              "experiment_config", "status", "reason", "data", "verdicts", "arrays_file",
              "array_names", "provenance")
STATUSES = ("ok", "diverged", "failed")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class RecordError(ValueError):
    """A record that cannot be read: corrupt JSON, missing array file, incompatible schema version."""


# ----------------------------------------------------------------------------------------------
# atomic files

def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any] | bytes | str) -> Path:
    """Write ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    ``write`` is the content (``bytes``/``str``) or a function that writes to the open binary file.
    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and ``path``
    keeps its previous content.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)              # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode() if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def to_json(obj, indent: int | None = 1) -> str:
    """JSON text of ``obj``; numpy scalars and arrays become Python numbers and lists."""
    return json.dumps(obj, indent=indent, default=_json_default)


def jsonable(obj):
    """``obj`` as it reads back from JSON (tuples -> lists, numpy -> Python); raises ``TypeError``."""
    return json.loads(to_json(obj, indent=None))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Atomically write ``obj`` as JSON to ``path``."""
    return atomic_write(path, to_json(obj) + "\n")


# ----------------------------------------------------------------------------------------------
# provenance

def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@lru_cache(maxsize=1)
def environment() -> dict:
    """Package versions, git revision, machine: the part of provenance fixed for a process."""
    versions = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    revision, dirty = _git_revision(Path(__file__).resolve().parent.parent)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count()
    return {"versions": versions, "git_revision": revision, "git_dirty": dirty,
            "hostname": platform.node(), "platform": platform.platform(), "cpu_count": cpus}


def _git_revision(source: Path) -> tuple[str | None, bool | None]:
    """``git rev-parse HEAD`` of the source tree the package was loaded from; ``(None, None)`` when
    it is not a git checkout (an installed copy) or git is unavailable.  Never raises."""
    def git(*args):
        out = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.strip() if out.returncode == 0 else None
    try:
        top = git("rev-parse", "--show-toplevel")
        if top is None or Path(top).resolve() != source:
            return None, None
        revision = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
        return revision, (None if status is None else bool(status))
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance(started: str, finished: str, wall_time: float) -> dict:
    return {**environment(), "started": started, "finished": finished, "wall_time": float(wall_time)}


# ----------------------------------------------------------------------------------------------
# records

def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(name))
    return "_" + safe if safe.startswith(".") or not safe else safe


def record_path(out_dir: str | os.PathLike, experiment: str, task: str) -> Path:
    """Where the JSON record of ``experiment``'s task ``task`` lives inside results folder ``out_dir``."""
    return Path(out_dir) / RECORDS_DIR / safe_name(experiment) / f"{safe_name(task)}.json"


def write_record(out_dir: str | os.PathLike, record: dict, arrays: Mapping[str, Any] | None = None) -> Path:
    """Write ``record`` (the schema's keys; ``schema_version``, ``arrays_file`` and ``array_names``
    are filled in) and ``arrays`` (name -> array) atomically; return the JSON path.

    The ``.npz`` is written first under a fresh name, then the JSON that names it, then the
    record's other ``.npz`` files (the previous record's) are removed.  Raises ``TypeError`` for data that JSON or
    ``.npz`` cannot hold (object arrays), before anything is written.
    """
    path = record_path(out_dir, record["experiment"], record["task"])
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {str(k): np.asarray(v) for k, v in (arrays or {}).items()}
    for name, value in arrays.items():
        if value.dtype.kind == "O":
            raise TypeError(f"array {name!r} has dtype object; records hold numeric arrays only")
    body = {key: record.get(key) for key in _JSON_KEYS}
    body["schema_version"] = SCHEMA_VERSION
    body["array_names"] = sorted(arrays)
    body["arrays_file"] = f"{path.stem}.{secrets.token_hex(4)}.npz" if arrays else None
    text = to_json(body) + "\n"                      # fail on unserialisable data before writing

    try:
        if arrays:
            atomic_write(path.parent / body["arrays_file"], lambda f: np.savez_compressed(f, **arrays))
        atomic_write(path, text)
    except BaseException:
        if arrays and _previous_arrays_file(path) != body["arrays_file"]:
            (path.parent / body["arrays_file"]).unlink(missing_ok=True)
        raise
    own = re.compile(re.escape(path.stem) + r"\.[0-9a-f]{8}\.npz")
    for stale in path.parent.glob(f"{glob.escape(path.stem)}.*.npz"):   # the previous record's, or
        if own.fullmatch(stale.name) and stale.name != body["arrays_file"]:  # left by an interruption
            stale.unlink(missing_ok=True)
    return path


def _previous_arrays_file(path: Path) -> str | None:
    try:
        name = json.loads(path.read_text()).get("arrays_file")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and Path(name).name == name else None


class LazyArrays(Mapping):
    """Read-only mapping name -> array backed by an ``.npz``; each array is read on first access."""

    def __init__(self, path: Path | None, names: list[str]):
        self.path, self._names, self._cache = path, list(names), {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self._names:
                raise KeyError(name)
            try:
                with np.load(self.path, allow_pickle=False) as npz:
                    self._cache[name] = npz[name]
            except (OSError, ValueError, KeyError) as e:
                raise RecordError(f"{self.path}: cannot read array {name!r}: {e}") from None
        return self._cache[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"LazyArrays({self._names})"


def read_record(path: str | os.PathLike) -> dict:
    """Load one record; raise :class:`RecordError` naming the file if it is corrupt, of another
    schema version, or its ``.npz`` is missing."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: corrupt record (invalid JSON: {e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot read record: {e}") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: corrupt record (not a JSON object)")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{path}: record schema version {version!r} is not supported (this version "
                          f"reads {SCHEMA_VERSION}); re-run the experiment to rewrite it")
    missing = [key for key in _JSON_KEYS if key not in record]
    if missing:
        raise RecordError(f"{path}: corrupt record (missing keys: {', '.join(missing)})")
    npz = None
    if record["arrays_file"]:
        npz = path.parent / Path(record["arrays_file"]).name
        if not npz.is_file():
            raise RecordError(f"{path}: its array file {npz.name} is missing")
    record["arrays"] = LazyArrays(npz, record["array_names"])
    record["path"] = str(path)
    return record


def load_records(out_dir: str | os.PathLike, experiment: str | None = None) -> list[dict]:
    """All records in results folder ``out_dir`` (of one ``experiment`` if given), ordered by
    experiment, then task position.  Raises :class:`RecordError` on the first unreadable record."""
    root = Path(out_dir) / RECORDS_DIR
    pattern = f"{safe_name(experiment)}/*.json" if experiment is not None else "*/*.json"
    records = [read_record(p) for p in sorted(root.glob(pattern)) if p.is_file()]
    if experiment is not None:
        records = [r for r in records if r["experiment"] == experiment]
    return sorted(records, key=lambda r: (r["experiment"], r["task_index"] if isinstance(r["task_index"], int)
                                          else -1, r["task"]))
