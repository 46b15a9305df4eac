"""Result records: one JSON file per task plus an ``.npz`` for its large arrays (docs/records.md; docs/architecture.md "Data flow").

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

The schema is written once, as :data:`RECORD_SCHEMA` (with :data:`VERDICT_SCHEMA` and
:data:`PROVENANCE_SCHEMA`), and checked by :func:`check_record` both before a record is written and
when it is read: a record that does not conform, names another experiment or task than its place
in the folder, or whose ``.npz`` is empty, truncated, damaged, holds other arrays than it names or
Python objects, is refused with :class:`RecordError` naming the file.

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
import zipfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

from .experiments.base import STATUSES as VERDICT_STATUSES

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
#: packages whose versions every record carries
PROVENANCE_PACKAGES = ("rtrl-validation", "numpy", "scipy", "numba", "sympy", "statsmodels", "matplotlib")
STATUSES = ("ok", "diverged", "failed")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class RecordError(ValueError):
    """A record that cannot be read: corrupt JSON, a field of the wrong type or missing, a damaged or
    missing array file, an incompatible schema version.  ``path``: the offending file."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


# ----------------------------------------------------------------------------------------------
# the schema: one description of the envelope, used by the writer and the reader

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _optional(test):
    return lambda v: v is None or test(v)


def _is_str(v) -> bool:
    return isinstance(v, str)


def _is_name(v) -> bool:
    return isinstance(v, str) and v != ""


def _is_file_name(v) -> bool:
    return isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\\" not in v


#: verdict dict (``Verdict.to_dict()``, simulations.experiments.base): key -> (required, test, what).
#: Verdicts written before the evidence fields existed carry only check, passed, evidence, value, bound.
VERDICT_SCHEMA = {
    "check": (True, _is_name, "a non-empty string"),
    "passed": (True, lambda v: isinstance(v, bool), "true or false"),
    "evidence": (True, _is_str, "a string"),
    "status": (False, lambda v: v in VERDICT_STATUSES, " | ".join(VERDICT_STATUSES)),
    "value": (False, _optional(_is_number), "a number or null"),
    "bound": (False, _optional(_is_number), "a number or null"),
    "effect": (False, _optional(_is_number), "a number or null"),
    "interval": (False, _optional(lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))),
                 "null or [low, high]"),
    **{key: (False, _is_str, "a string")
       for key in ("rule", "claim", "source", "statistic", "resolution", "control", "family")},
}

#: record ``provenance``: key -> (required, test, what); ``checkpoints`` and other keys may be added
PROVENANCE_SCHEMA = {
    "versions": (True, lambda v: isinstance(v, dict) and all(isinstance(x, (str, type(None))) for x in v.values()),
                 "a table of package versions"),
    "git_revision": (True, _optional(_is_str), "a string or null"),
    "git_dirty": (False, _optional(lambda v: isinstance(v, bool)), "true, false or null"),
    "hostname": (True, _is_str, "a string"),
    "platform": (True, _is_str, "a string"),
    "cpu_count": (True, _optional(_is_int), "an integer or null"),
    "started": (True, _is_str, "an ISO time"),
    "finished": (True, _is_str, "an ISO time"),
    "wall_time": (True, _is_number, "a number of seconds"),
}

#: the record: key -> (required, test, what).  Nested schemas are checked by :func:`check_record`.
RECORD_SCHEMA = {
    "schema_version": (True, lambda v: v == SCHEMA_VERSION, f"{SCHEMA_VERSION}"),
    "experiment": (True, _is_name, "a non-empty string"),
    "task": (True, _is_name, "a non-empty string"),
    "task_index": (True, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "seed": (True, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "config": (True, lambda v: isinstance(v, dict), "a table"),
    "experiment_config": (True, lambda v: isinstance(v, dict), "a table"),
    "status": (True, lambda v: v in STATUSES, " | ".join(STATUSES)),
    "reason": (True, _is_str, "a string"),
    "data": (True, lambda v: isinstance(v, dict), "a table"),
    "verdicts": (True, lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of tables"),
    "arrays_file": (True, _optional(_is_file_name), "a file name or null"),
    "array_names": (True, lambda v: isinstance(v, list) and all(map(_is_name, v)) and len(set(v)) == len(v),
                    "a list of distinct names"),
    "provenance": (True, lambda v: isinstance(v, dict), "a table"),
}
_JSON_KEYS = tuple(RECORD_SCHEMA)


def schema_problems(obj: dict, schema: dict, where: str = "") -> list[str]:
    """What is wrong with ``obj`` against ``schema`` (key -> (required, test, what)): missing
    required keys, and keys whose value fails the test; ``[]`` when it conforms."""
    missing = [key for key, (required, _, _) in schema.items() if required and key not in obj]
    problems = [f"missing keys{where}: {', '.join(missing)}"] if missing else []
    for key, (_, test, what) in schema.items():
        if key in obj and not test(obj[key]):
            problems.append(f"{where.strip(' ')+'.' if where else ''}{key} must be {what}, got {_short(obj[key])}")
    return problems


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_record(record: dict) -> list[str]:
    """Every problem of a record body against :data:`RECORD_SCHEMA` (with its verdicts against
    :data:`VERDICT_SCHEMA` and provenance against :data:`PROVENANCE_SCHEMA`); ``[]`` if valid."""
    problems = schema_problems(record, RECORD_SCHEMA)
    if not problems:
        for i, verdict in enumerate(record["verdicts"]):
            problems += schema_problems(verdict, VERDICT_SCHEMA, f" in verdicts[{i}]")
            if "status" in verdict and isinstance(verdict.get("passed"), bool) \
                    and (verdict["status"] == "PASS") != verdict["passed"]:
                problems.append(f"verdicts[{i}]: status {verdict['status']} disagrees with passed {verdict['passed']}")
        problems += schema_problems(record["provenance"], PROVENANCE_SCHEMA, " in provenance")
        if (record["arrays_file"] is None) != (not record["array_names"]):
            problems.append("arrays_file and array_names disagree")
    return problems


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
    problems = check_record(json.loads(text))        # the reader's schema, checked before writing
    if problems:
        raise RecordError(f"record {record['experiment']}/{record['task']} not written: {'; '.join(problems[:3])}")

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


def read_record(path: str | os.PathLike, check: Callable[[dict], list[str]] | None = None) -> dict:
    """Load one record; raise :class:`RecordError` naming the file if it is corrupt, of another
    schema version, does not match :data:`RECORD_SCHEMA`, names another experiment or task than
    its place in ``records/<experiment>/<task>.json`` says, its ``.npz`` is missing or damaged, or
    ``check`` (e.g. :meth:`~simulations.experiments.base.Experiment.check_record_data`, the
    experiment's declared data) finds problems in it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: corrupt record (invalid JSON: {e})", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path}: cannot read record: {e}", path) from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: corrupt record (not a JSON object)", path)
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{path}: record schema version {version!r} is not supported (this version "
                          f"reads {SCHEMA_VERSION}); re-run the experiment to rewrite it", path)
    problems = check_record(record)
    if problems:
        raise RecordError(f"{path}: corrupt record ({'; '.join(problems[:3])})", path)
    if path.parent.parent.name == RECORDS_DIR:
        for key, where in (("experiment", path.parent.name), ("task", path.stem)):
            if safe_name(record[key]) != where:
                raise RecordError(f"{path}: its {key} field {_short(record[key])} disagrees with its place "
                                  f"{where!r} in the results folder", path)
    npz = None
    if record["arrays_file"]:
        npz = path.parent / record["arrays_file"]
        if not npz.is_file():
            raise RecordError(f"{path}: its array file {npz.name} is missing", path)
        problem = arrays_file_problem(npz, record["array_names"])
        if problem:
            raise RecordError(f"{path}: its array file {npz.name} {problem}", path)
    record["arrays"] = LazyArrays(npz, record["array_names"])
    record["path"] = str(path)
    problems = check(record) if check is not None else []
    if problems:
        raise RecordError(f"{path}: data does not match its experiment's schema ({'; '.join(problems[:3])})", path)
    return record


def arrays_file_problem(npz: Path, names: list[str]) -> str | None:
    """What is wrong with a record's ``.npz``, or ``None``: it must be a complete zip (every CRC
    checks) of exactly the ``names`` as ``.npy`` files of numeric dtype (never Python objects)."""
    try:
        with zipfile.ZipFile(npz) as z:
            members = z.namelist()
            if sorted(members) != sorted(f"{n}.npy" for n in names):
                return f"does not hold the arrays the record names ({', '.join(names) or 'none'})"
            if z.testzip() is not None:
                return "is damaged (checksum mismatch)"
            for member in members:
                with z.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    _, _, dtype = read_header(f)
                if dtype.hasobject:
                    return f"holds Python objects in {member[:-4]!r}; records hold numeric arrays only"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError, RuntimeError,
            NotImplementedError) as e:                 # RuntimeError: encrypted, NotImplemented: compression
        kind = "empty" if npz.stat().st_size == 0 else "truncated or not an .npz"
        return f"is {kind} ({type(e).__name__})"
    return None


def load_records(out_dir: str | os.PathLike, experiment: str | None = None,
                 on_bad: Callable[[RecordError], None] | None = None,
                 check: Callable[[dict], list[str]] | None = None) -> list[dict]:
    """All records in results folder ``out_dir`` (of one ``experiment`` if given), ordered by
    experiment, then task position.  A record that cannot be read (or that ``check`` finds
    problems in, :func:`read_record`) raises :class:`RecordError`, or with ``on_bad`` is handed
    to it and left out (the caller says so)."""
    root = Path(out_dir) / RECORDS_DIR
    pattern = f"{safe_name(experiment)}/*.json" if experiment is not None else "*/*.json"
    records = []
    for path in sorted(root.glob(pattern)):
        if not path.is_file():
            continue
        try:
            records.append(read_record(path, check))
        except RecordError as e:
            if on_bad is None:
                raise
            on_bad(e)
    if experiment is not None:
        records = [r for r in records if r["experiment"] == experiment]
    return sorted(records, key=lambda r: (r["experiment"], r["task_index"], r["task"]))
