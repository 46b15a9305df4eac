"""A run in a results folder: the folder, its lock, its config fingerprint, the run manifest, the
backend and the checkpoint store (README "Faults and bad input").  The command line
(:mod:`reports.cli`) parses arguments and calls these; every refusal is a :class:`RunFolderError`
(one line, exit status 2).

Files a run keeps in its results folder ``DIR`` beside ``records/`` and ``checkpoints/``::

    DIR/run.json      the run manifest: command, experiment, profile, seed, config overrides, status
                      (running | complete | interrupted | failed), start and end times
    DIR/config.json   the fingerprint of the folder: the run seed and each experiment's full config;
                      a run whose seed or config differs is refused (the folder holds one configuration)
    DIR/.lock         the writer's lock (``fcntl.flock``, released by the OS when the process ends)
                      and who holds it: pid, host, command, start time

One writer at a time: :class:`FolderLock` is taken before anything in the folder is read for
writing and held until the process ends, so a second ``run``/``report`` into the same folder
exits at once naming the holder, and a crashed process never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from .checkpoint import CheckpointStore
from .parallel import SchedulerError, import_distributed, make_executor
from .records import RECORDS_DIR, RecordError, jsonable, safe_name, utc_now, write_json
from .runner import one_line, run_experiments

RESULTS_ROOT = Path("rtrl-results")
MANIFEST = "run.json"
MANIFEST_VERSION = 1
FOLDER_CONFIG = "config.json"
FOLDER_CONFIG_VERSION = 1
LOCK = ".lock"
CHECKPOINT_EVERY = 1000
PROG = "rtrl-validate"


class RunFolderError(ValueError):
    """A results folder or run setting that cannot be used: one line, exit status 2."""


# ----------------------------------------------------------------------------------------------
# the folder

def prepare_out(out: Path | None, root: Path = RESULTS_ROOT) -> Path:
    """The results folder, created and checked writable; a fresh timestamped one under ``root`` by default."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out, n = root / stamp, 1
        while out.exists():
            n += 1
            out = root / f"{stamp}-{n}"
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise RunFolderError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``DIR/.lock``, held while this object lives (or until
    :meth:`release`); the OS releases it when the process ends, however it ends.  The file says
    who holds it (pid, host, command, start time) so that a refused process can name the holder."""

    def __init__(self, folder: Path, command: str):
        self.path = Path(folder) / LOCK
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunFolderError(f"cannot lock {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderError(f"{folder} is in use by another {PROG} process ({holder}); wait for it to "
                                 f"finish or choose another --out") from None
        except OSError as e:
            os.close(fd)
            raise RunFolderError(f"cannot lock {folder}: {e.strerror or e}") from None
        self.fd = fd
        info = {"pid": os.getpid(), "host": platform.node(), "command": command, "started": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)            # closing the descriptor releases the lock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return (f"pid {int(info['pid'])} on {one_line(info['host'])}, '{one_line(info['command'])[:120]}', "
                f"since {one_line(info['started'])}")
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def check_folder_config(folder: Path, seed: int, configs: dict[str, dict]) -> None:
    """Refuse to mix configurations: ``DIR/config.json`` records the run seed and each experiment's
    full config the folder was made with.  An experiment already there with another config, or a
    run with another seed, is a :class:`RunFolderError` naming the keys that differ; new
    experiments are added to the fingerprint."""
    path = folder / FOLDER_CONFIG
    configs = jsonable(configs)
    stored = {"schema_version": FOLDER_CONFIG_VERSION, "seed": seed, "experiments": {}}
    if not path.exists():                        # a folder made before fingerprints: its records say
        stored = {**stored, **_fingerprint_of_records(folder, list(configs))}
    else:
        try:
            stored = json.loads(path.read_text())
            ok = (isinstance(stored, dict) and stored.get("schema_version") == FOLDER_CONFIG_VERSION
                  and isinstance(stored.get("seed"), int) and isinstance(stored.get("experiments"), dict))
        except (OSError, UnicodeDecodeError, ValueError):
            ok = False
        if not ok:
            raise RunFolderError(f"{path}: corrupt folder fingerprint; choose another --out")
    differ = [f"{name}: {', '.join(config_differences(stored['experiments'][name], config))}"
              for name, config in configs.items()
              if name in stored["experiments"] and stored["experiments"][name] != config]
    if stored["seed"] != seed:
        differ.insert(0, f"seed {stored['seed']} -> {seed}")
    if differ:
        raise RunFolderError(f"{folder} holds results of another configuration ({'; '.join(differ)}); "
                             f"choose a new --out folder (or omit --out for a fresh one)")
    if not path.exists() or not all(name in stored["experiments"] for name in configs):
        write_json(path, {**stored, "experiments": {**stored["experiments"], **configs}})


def _fingerprint_of_records(folder: Path, names: list[str]) -> dict:
    """``{"seed", "experiments"}`` as the first readable record of each of ``names`` in ``folder``
    tells them (the fingerprint of a folder written before ``config.json`` existed)."""
    found: dict = {"experiments": {}}
    for name in names:
        for path in sorted((folder / RECORDS_DIR / safe_name(name)).glob("*.json")):
            try:
                body = json.loads(path.read_text())
                config, seed = body["experiment_config"], body["seed"]
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                continue
            if isinstance(config, dict) and isinstance(seed, int) and not isinstance(seed, bool):
                found["experiments"][name] = config
                found.setdefault("seed", seed)
                break
    return found


def config_differences(old, new) -> list[str]:
    """Top-level keys whose values differ between two configs (``old`` may be any JSON value)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["(whole config)"]
    return sorted(k for k in {*old, *new} if old.get(k, ...) != new.get(k, ...))


# ----------------------------------------------------------------------------------------------
# the run manifest

def read_manifest(folder: Path) -> dict:
    """The run manifest ``DIR/run.json`` of an earlier ``run`` or ``report``; :class:`RunFolderError`
    if it is missing, corrupt or of another version."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{folder} is not a results folder of 'run' or 'report' (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunFolderError(f"{path}: corrupt run manifest ({one_line(str(e))})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != MANIFEST_VERSION:
        version = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise RunFolderError(f"{path}: run manifest version {version!r} is not supported (this version reads "
                             f"{MANIFEST_VERSION}); start a new run")
    kinds = {"command": lambda v: v in ("run", "report"), "profile": lambda v: isinstance(v, str),
             "seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
             "overrides": lambda v: isinstance(v, dict)}
    bad = [key for key, ok in kinds.items() if key not in manifest or not ok(manifest[key])]
    if bad:
        raise RunFolderError(f"{path}: corrupt run manifest (missing or bad: {', '.join(bad)})")
    return manifest


def resume_manifest(folder: Path, command: str, experiment: str | None) -> dict:
    """``--resume DIR``: the earlier run's manifest, checked against this ``command`` (and the
    ``experiment`` of ``run``, if named)."""
    if not folder.is_dir():
        raise RunFolderError(f"--resume {folder}: no such folder")
    manifest = read_manifest(folder)
    if manifest["command"] != command:
        raise RunFolderError(f"--resume {folder}: that folder holds a '{manifest['command']}' run; continue it "
                             f"with '{PROG} {manifest['command']} --resume {folder}'")
    if command == "run" and experiment not in (None, manifest.get("experiment")):
        raise RunFolderError(f"--resume {folder}: that folder holds a run of {manifest.get('experiment')!r}, "
                             f"not {experiment!r}")
    return manifest


def start_run(state: dict, out: Path, manifest: dict, version: str) -> None:
    """Take the folder's lock (held until the process ends) and write ``DIR/run.json`` with status
    ``running``; ``state`` keeps the folder, lock and manifest for :func:`finish_run`."""
    lock_folder(state, out)
    try:
        manifest = {"schema_version": MANIFEST_VERSION, **jsonable(manifest), "status": "running",
                    "started": utc_now(), "version": version}
    except TypeError:
        raise RunFolderError("--config values must be numbers, strings, booleans, lists or tables") from None
    state.update(out=out, manifest=manifest)
    write_json(out / MANIFEST, manifest)


def lock_folder(state: dict, folder: Path, read_only: bool = False) -> None:
    """Take ``folder``'s lock (once per process) and keep it in ``state["locks"]`` until
    :func:`release_locks` or the end of the process.  ``read_only``: a folder that is only read
    (``report --from DIR --out OTHER``) and may be on a read-only drive: a lock file that cannot
    be created is no error there (a folder in use still is)."""
    locks = state.setdefault("locks", {})
    key = Path(folder).resolve()
    if key in locks:
        return
    try:
        locks[key] = FolderLock(folder, " ".join([PROG, *sys.argv[1:]]))
    except RunFolderError as e:
        if not (read_only and e.args[0].startswith("cannot lock")):
            raise


def release_locks(state: dict) -> None:
    for lock in state.pop("locks", {}).values():
        lock.release()


def finish_run(state: dict, status: str, **extra) -> None:
    """Mark the run ``status`` (complete | interrupted | failed) in ``DIR/run.json``."""
    manifest = state.get("manifest")
    if manifest is not None:
        write_json(state["out"] / MANIFEST, {**manifest, "status": status, "finished": utc_now(), **extra})


# ----------------------------------------------------------------------------------------------
# backend and computation

def backend(workers: int | None, scheduler: str | None):
    """The executor for ``--workers`` / ``--scheduler`` (:mod:`simulations.parallel`)."""
    try:
        if scheduler is not None:
            import_distributed()
        return make_executor(workers, scheduler)
    except SchedulerError as e:
        raise RunFolderError(one_line(str(e))) from None


def checkpoint_store(every: int | None, out: Path) -> CheckpointStore | None:
    """Checkpoints in ``DIR/checkpoints`` every ``every`` steps (default :data:`CHECKPOINT_EVERY`; 0: none)."""
    every = CHECKPOINT_EVERY if every is None else every
    return CheckpointStore.in_results(out, every) if every else None


def compute(state: dict, plan: Iterable, seed: int, out: Path, *, progress: bool, executor,
            checkpoint_every: int | None, on_bad_record: Callable[[RecordError], None] | None = None) -> dict:
    """Run ``plan`` (``[(experiment, config)]``) on ``executor`` into ``out`` after checking the
    folder's config fingerprint; a scheduler that fails marks the run failed.  A bad record in the
    folder raises :class:`~simulations.records.RecordError` before any task runs, or with
    ``on_bad_record`` is handed to it and its task computed again."""
    plan = list(plan)
    check_folder_config(out, seed, {exp.name: config for exp, config in plan})
    try:
        return run_experiments(plan, seed, out, progress=progress, executor=executor,
                               checkpoints=checkpoint_store(checkpoint_every, out), on_bad_record=on_bad_record)
    except SchedulerError as e:
        finish_run(state, "failed", reason=one_line(str(e)))
        raise RunFolderError(one_line(str(e))) from None
