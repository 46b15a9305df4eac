"""The ``rtrl-validate`` command line: ``run``, ``report``, ``list``, ``gradcheck``.

Exit status: 0 every verdict passes; 1 a verdict failed (the report and records are still
written); 2 bad input, reported as one line ``rtrl-validate: error: ...`` on stderr; 130 when
interrupted (finished records are kept, the run is marked interrupted in ``DIR/run.json`` and
``--resume DIR`` continues it).

``run`` and ``report`` run their tasks on ``--workers N`` local processes (default: one per core;
1 = in this process) or on a Dask cluster (``--scheduler tcp://HOST:PORT``, or ``local`` for a
``LocalCluster``); the records are the same either way.  ``DIR/run.json`` (the run manifest)
keeps the command, profile, seed and config overrides, and the run's status.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import tomllib
from datetime import datetime
from importlib import metadata
from pathlib import Path

from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.records import RecordError, jsonable, utc_now, write_json
from rtrl_validation.simulations.runner import one_line


def experiments() -> dict:
    """The registered experiments (imported on demand: the registry pulls in every section)."""
    from . import registry
    return registry.experiments()

PROG = "rtrl-validate"
FALLBACK_VERSION = "0.1.0"
PROFILES = ("quick", "full")
RESULTS_ROOT = Path("rtrl-results")
MANIFEST = "run.json"
MANIFEST_VERSION = 1
CHECKPOINT_EVERY = 1000


class CLIError(Exception):
    """Bad input: printed as one line and exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors become :class:`CLIError` (one line, exit 2, no usage dump)."""

    def error(self, message):
        raise CLIError(message)


def version() -> str:
    try:
        return metadata.version("rtrl-validation")
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


# ----------------------------------------------------------------------------------------------
# argument types

def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "positive")


def seed_int(text: str) -> int:
    return _integer(text, 0, "non-negative")


def scheduler_address(text: str) -> str:
    from rtrl_validation.simulations.parallel import SchedulerError, check_address
    try:
        return check_address(text)
    except SchedulerError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def density(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """``"1,5,20"`` -> ``[1, 5, 20]`` (positive integers)."""
    return [positive_int(part.strip()) for part in text.split(",")]


def formats(text: str) -> tuple[str, ...]:
    from .output import FORMATS
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or repr(text)}; "
                                          f"choose from {','.join(FORMATS)}")
    return chosen


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Check RTRL theory against computation; write the validation "
                                           "report (HTML + PDF) and result records.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run one experiment and write its records")
    run.add_argument("experiment", metavar="EXPERIMENT", nargs="?",
                     help="a registered experiment (see 'list'); optional with --resume")
    report = sub.add_parser("report", help="run what is missing, then write report.html and report.pdf")
    for p in (run, report):
        p.add_argument("--profile", default=None, help="config profile: quick (default), full, or paper (learning only; hours)")
        p.add_argument("--config", metavar="FILE.toml", type=Path,
                       help="overrides: one [EXPERIMENT] table of config keys per experiment")
        p.add_argument("--out", metavar="DIR", type=Path,
                       help="results folder (default: a new timestamped folder under ./rtrl-results/)")
        p.add_argument("--seed", type=seed_int, default=None, help="run seed (default 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="local worker processes (default: one per core; 1 = in this process)")
        p.add_argument("--scheduler", type=scheduler_address, default=None, metavar="ADDRESS",
                       help="run the tasks on the Dask cluster at ADDRESS (tcp://HOST:PORT), or 'local' "
                            "for a LocalCluster of --workers processes (needs the 'distributed' extra)")
        p.add_argument("--resume", metavar="DIR", type=Path,
                       help="continue the interrupted run in DIR with its own settings (profile, config, seed)")
        p.add_argument("--checkpoint-every", type=seed_int, default=None, metavar="M",
                       help=f"long runs checkpoint every M steps (default {CHECKPOINT_EVERY}; 0 = never)")
    report.add_argument("--from", dest="from_dir", metavar="DIR", type=Path,
                        help="rebuild the report from the records in DIR only (nothing is computed)")
    report.add_argument("--format", type=formats, default=("html", "pdf"), metavar="html,pdf",
                        help="which files to write (default html,pdf)")

    lst = sub.add_parser("list", help="show experiments, cells, estimators and profiles")
    lst.add_argument("-v", "--verbose", action="store_true", help="also show every profile's default config")

    grad = sub.add_parser("gradcheck", help="RTRL = BPTT = finite differences on one or all cells")
    grad.add_argument("--cell", default="all", help="a cell name or 'all' (default)")
    grad.add_argument("--hidden", type=positive_int, default=3, metavar="K", help="hidden units (default 3)")
    grad.add_argument("--inputs", type=positive_int, default=2, metavar="M", help="input size (default 2)")
    grad.add_argument("--steps", type=int_list, default=[1, 7, 60], metavar="T[,T...]",
                      help="sequence lengths (default 1,7,60)")
    grad.add_argument("--density", type=density, default=1.0, metavar="D",
                      help="weight density in (0, 1] (default 1)")
    grad.add_argument("--seed", type=seed_int, default=0)
    grad.add_argument("--json", type=Path, metavar="PATH", help="also write the result as JSON")
    return parser


# ----------------------------------------------------------------------------------------------
# helpers

def known(names) -> str:
    return ", ".join(names) or "(none registered)"


def profiles() -> list[str]:
    return list(dict.fromkeys(p for exp in experiments().values() for p in exp.profiles)) or list(PROFILES)


def check_profile(profile: str | None) -> str:
    if profile is None:
        return "quick"
    if profile not in profiles():
        raise CLIError(f"unknown profile {profile!r}; profiles: {', '.join(profiles())}")
    return profile


def read_overrides(path: Path | None) -> dict[str, dict]:
    """``--config FILE.toml``: one table per experiment, ``[gradients] hidden = [2, 3]``."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise CLIError(f"--config {path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise CLIError(f"malformed TOML in {path}: {one_line(str(e))}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CLIError(f"cannot read --config {path}: {one_line(str(e))}") from None
    registered = experiments()
    for key, value in data.items():
        if not isinstance(value, dict):
            example = next(iter(registered), "EXPERIMENT")
            raise CLIError(f"{path}: top-level key {key!r} must be a table of config keys, one per experiment, "
                           f"e.g. [{example}] followed by {key} = ... lines")
        if key not in registered:
            raise CLIError(f"{path}: unknown experiment table [{key}]; known experiments: {known(registered)}")
    return data


def configure(names: list[str], profile: str, overrides: dict[str, dict]) -> dict[str, dict]:
    """Validated configs of the named experiments (and of every table in ``overrides``) before
    anything is computed; a refused config is a :class:`CLIError`."""
    registered = experiments()
    configs = {}
    for name in dict.fromkeys([*names, *overrides]):
        exp = registered[name]
        try:
            config = exp.config(profile, overrides.get(name))
            exp.tasks(config)
        except (ConfigError, ValueError, TypeError) as e:
            message = one_line(str(e))           # ConfigError already names the experiment
            raise CLIError(message if message.startswith(f"{name}: ") else f"{name}: {message}") from None
        if name in names:
            configs[name] = config
    return configs


def prepare_out(out: Path | None) -> Path:
    """The results folder, created; a fresh timestamped one under ./rtrl-results/ by default."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out, n = RESULTS_ROOT / stamp, 1
        while out.exists():
            n += 1
            out = RESULTS_ROOT / f"{stamp}-{n}"
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise CLIError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out


def read_manifest(folder: Path) -> dict:
    """The run manifest ``DIR/run.json`` of an earlier ``run`` or ``report``; :class:`CLIError` if
    it is missing, corrupt or of another version."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CLIError(f"{folder} is not a results folder of 'run' or 'report' (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CLIError(f"{path}: corrupt run manifest ({one_line(str(e))})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != MANIFEST_VERSION:
        version = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise CLIError(f"{path}: run manifest version {version!r} is not supported (this version reads "
                       f"{MANIFEST_VERSION}); start a new run")
    kinds = {"command": lambda v: v in ("run", "report"), "profile": lambda v: isinstance(v, str),
             "seed": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
             "overrides": lambda v: isinstance(v, dict)}
    bad = [key for key, ok in kinds.items() if key not in manifest or not ok(manifest[key])]
    if bad:
        raise CLIError(f"{path}: corrupt run manifest (missing or bad: {', '.join(bad)})")
    return manifest


def resume_settings(args) -> dict:
    """``--resume DIR``: the earlier run's manifest, checked against this command; the run
    continues in DIR with the manifest's profile, seed and config overrides."""
    for flag, value in (("--profile", args.profile), ("--config", args.config), ("--seed", args.seed),
                        ("--out", args.out)):
        if value is not None:
            raise CLIError(f"{flag} cannot be combined with --resume (the interrupted run's settings are used)")
    if not args.resume.is_dir():
        raise CLIError(f"--resume {args.resume}: no such folder")
    manifest = read_manifest(args.resume)
    if manifest["command"] != args.command:
        raise CLIError(f"--resume {args.resume}: that folder holds a '{manifest['command']}' run; continue it with "
                       f"'{PROG} {manifest['command']} --resume {args.resume}'")
    if args.command == "run" and args.experiment not in (None, manifest.get("experiment")):
        raise CLIError(f"--resume {args.resume}: that folder holds a run of {manifest.get('experiment')!r}, "
                       f"not {args.experiment!r}")
    return manifest


def settings(args) -> tuple[str, int, dict]:
    """``(profile, seed, config overrides)``: the interrupted run's with ``--resume`` (which also
    names the experiment of ``run``), else from ``--profile``, ``--seed``, ``--config``."""
    if args.resume is None:
        return check_profile(args.profile), 0 if args.seed is None else args.seed, read_overrides(args.config)
    manifest = resume_settings(args)
    if args.command == "run":
        args.experiment = manifest.get("experiment")
    return manifest["profile"], manifest["seed"], manifest["overrides"]


def start_manifest(args, out: Path, manifest: dict) -> None:
    """Write ``DIR/run.json`` (status ``running``); :func:`main` marks it interrupted on Ctrl-C."""
    try:
        manifest = {"schema_version": MANIFEST_VERSION, **jsonable(manifest), "status": "running",
                    "started": utc_now(), "version": version()}
    except TypeError:
        raise CLIError("--config values must be numbers, strings, booleans, lists or tables") from None
    args.state.update(out=out, manifest=manifest)
    write_json(out / MANIFEST, manifest)


def finish_manifest(state: dict, status: str, **extra) -> None:
    manifest = state.get("manifest")
    if manifest is not None:
        write_json(state["out"] / MANIFEST, {**manifest, "status": status, "finished": utc_now(), **extra})


def executor(args):
    """The backend for ``--workers`` / ``--scheduler`` (:mod:`simulations.parallel`)."""
    from rtrl_validation.simulations.parallel import SchedulerError, import_distributed, make_executor
    try:
        if args.scheduler is not None:
            import_distributed()
        return make_executor(args.workers, args.scheduler)
    except SchedulerError as e:
        raise CLIError(one_line(str(e))) from None


def checkpoint_store(every: int | None, out: Path):
    from rtrl_validation.simulations.checkpoint import CheckpointStore
    every = CHECKPOINT_EVERY if every is None else every
    return CheckpointStore.in_results(out, every) if every else None


def compute(args, plan: list, seed: int, out: Path) -> dict:
    """Run ``plan`` (``[(experiment, config)]``) on the chosen backend, checkpointing into ``out``."""
    from rtrl_validation.simulations.parallel import SchedulerError
    from rtrl_validation.simulations.runner import run_experiments
    try:
        return run_experiments(plan, seed, out, progress=not args.quiet, executor=args.executor,
                               checkpoints=checkpoint_store(args.checkpoint_every, out))
    except SchedulerError as e:
        finish_manifest(args.state, "failed", reason=one_line(str(e)))
        raise CLIError(one_line(str(e))) from None


def print_verdicts(verdicts: list[dict], not_run: list[str] = ()) -> None:
    n_fail = sum(not v["passed"] for v in verdicts)
    line = f"verdicts: {len(verdicts) - n_fail} PASS, {n_fail} FAIL"
    if not_run:
        line += f"; not run: {', '.join(not_run)}"
    print(line)
    for v in verdicts:
        if not v["passed"]:
            where = v.get("section") or v.get("task", "")
            print(f"  FAIL  {where}: {v['check']}: {v['evidence']}")


# ----------------------------------------------------------------------------------------------
# commands

def cmd_run(args) -> int:
    registered = experiments()
    if args.experiment is None and args.resume is None:
        raise CLIError("the following arguments are required: EXPERIMENT (or --resume DIR)")
    if args.resume is None and args.experiment not in registered:      # before reading --config
        raise CLIError(f"unknown experiment {args.experiment!r}; known experiments: {known(registered)}")
    profile, seed, overrides = settings(args)
    if args.experiment not in registered:
        raise CLIError(f"unknown experiment {args.experiment!r}; known experiments: {known(registered)}")
    config = configure([args.experiment], profile, overrides)[args.experiment]
    if args.resume is None and (note := registered[args.experiment].preamble(config)):
        print(note, flush=True)
    args.executor = executor(args)
    out = args.resume if args.resume is not None else prepare_out(args.out)
    start_manifest(args, out, {"command": "run", "experiment": args.experiment, "profile": profile,
                               "seed": seed, "overrides": overrides})
    records = compute(args, [(registered[args.experiment], config)], seed, out)[args.experiment]
    finish_manifest(args.state, "complete")
    status = [r["status"] for r in records]
    print(f"records: {out / 'records' / args.experiment} ({len(records)} tasks: {status.count('ok')} ok, "
          f"{status.count('diverged')} diverged, {status.count('failed')} failed)")
    verdicts = [{**v, "task": r["task"]} for r in records for v in r["verdicts"]]
    verdicts += [{"check": "task completed", "passed": False, "evidence": r["reason"], "task": r["task"]}
                 for r in records if r["status"] == "failed"]
    print_verdicts(verdicts)
    return 0 if all(v["passed"] for v in verdicts) else 1


def cmd_report(args) -> int:
    from .build import build_report, stored_records
    from .output import write_report

    if args.from_dir is not None:
        for flag, value in (("--profile", args.profile), ("--config", args.config), ("--seed", args.seed),
                            ("--workers", args.workers), ("--scheduler", args.scheduler),
                            ("--resume", args.resume), ("--checkpoint-every", args.checkpoint_every)):
            if value is not None:
                raise CLIError(f"{flag} cannot be combined with --from (nothing is computed)")
        if not args.from_dir.is_dir():
            raise CLIError(f"--from {args.from_dir}: no such folder")
        try:
            records = stored_records(args.from_dir)
        except RecordError as e:
            raise CLIError(one_line(str(e))) from None
        if not any(records.values()):
            raise CLIError(f"--from {args.from_dir}: no records of registered experiments found")
        out = prepare_out(args.out or args.from_dir)
        seeds = sorted({r["seed"] for recs in records.values() for r in recs})
        report = build_report(records, profile=None, seed=seeds[0] if len(seeds) == 1 else None,
                              source=str(args.from_dir))
        note_interrupted(args.from_dir)
    else:
        profile, seed, overrides = settings(args)
        configs = configure(list(experiments()), profile, overrides)
        args.executor = executor(args)
        out = args.resume if args.resume is not None else prepare_out(args.out)
        start_manifest(args, out, {"command": "report", "experiment": None, "profile": profile, "seed": seed,
                                   "overrides": overrides})
        registered = experiments()
        records = compute(args, [(registered[name], config) for name, config in configs.items()], seed, out)
        finish_manifest(args.state, "complete")
        report = build_report(records, profile=profile, seed=seed, source=str(out))

    paths, messages = write_report(report, out, args.format)
    for kind in ("html", "pdf"):
        if kind in paths:
            print(f"{kind}: {paths[kind]}")
    for message in messages:
        print(message)
    print(f"summary: {paths['summary']}")
    print_verdicts(report.verdicts, report.not_run)
    return 0 if report.passed else 1


def note_interrupted(folder: Path) -> None:
    """``report --from`` an interrupted run: say which tasks are missing and how to continue."""
    try:
        manifest = read_manifest(folder)
    except CLIError:
        return
    if manifest.get("status") == "interrupted":
        unfinished = manifest.get("unfinished") or []
        print(f"note: {folder} is from an interrupted run ({len(unfinished)} unfinished task(s): "
              f"{', '.join(unfinished[:5])}{' ...' if len(unfinished) > 5 else ''}); continue it with "
              f"'{PROG} {manifest['command']} --resume {folder}'")


def cmd_list(args) -> int:
    from rtrl_validation.simulations.cells import CELLS
    from rtrl_validation.simulations.estimators import ESTIMATORS, SPEC_OPTION

    registered = experiments()
    print("experiments:")
    for name, exp in registered.items():
        print(f"  {name:<16} [{', '.join(exp.profiles)}] {exp.description}")
        for profile, config in exp.profiles.items() if args.verbose else ():
            print(f"      {profile:<6} " + ", ".join(f"{k}={v!r}" for k, v in config.items()))
    if not registered:
        print("  (none registered)")
    print("cells:      " + ", ".join(CELLS))
    print("estimators: " + ", ".join(f"{n} ({n}-N sets {SPEC_OPTION[n]})" if n in SPEC_OPTION else n
                                     for n in ESTIMATORS))
    print("profiles:   " + ", ".join(profiles()))
    return 0


def cmd_gradcheck(args) -> int:
    from rtrl_validation.simulations.cells import CELLS
    from rtrl_validation.simulations.memory import require

    if args.cell != "all" and args.cell not in CELLS:
        raise CLIError(f"unknown cell {args.cell!r}; known cells: {', '.join(CELLS)} (or 'all')")
    if args.json is not None and not args.json.parent.is_dir():
        raise CLIError(f"--json {args.json}: folder {args.json.parent} does not exist")
    try:
        from rtrl_validation.proofs_checks.experiment import gradcheck_memory
        from rtrl_validation.proofs_checks.gradcheck import format_table, run_gradcheck
    except ModuleNotFoundError as e:
        if e.name not in ("rtrl_validation.proofs_checks.gradcheck", "rtrl_validation.proofs_checks"):
            raise
        raise CLIError("gradcheck is unavailable: proofs_checks.gradcheck is not installed") from None
    cells = list(CELLS) if args.cell == "all" else [args.cell]
    try:
        require(max(gradcheck_memory(cell, args.hidden, args.inputs, args.steps, args.density) for cell in cells),
                f"gradcheck --hidden {args.hidden} --steps {max(args.steps)}")
    except ConfigError as e:
        raise CLIError(one_line(str(e))) from None
    try:
        result = run_gradcheck(cells=cells, hidden=args.hidden, inputs=args.inputs, steps=args.steps,
                               density=args.density, seed=args.seed)
    except (ConfigError, ValueError) as e:
        raise CLIError(one_line(str(e))) from None
    print(format_table(result))
    if args.json is not None:
        try:
            write_json(args.json, result)
        except OSError as e:
            raise CLIError(f"cannot write --json {args.json}: {e.strerror or e}") from None
        print(f"json: {args.json}")
    return 0 if result["passed"] else 1


COMMANDS = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "gradcheck": cmd_gradcheck}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rtrl-validate``; returns the exit status."""
    state: dict = {}
    try:
        args = build_parser().parse_args(argv)
        args.state = state
        return COMMANDS[args.command](args)
    except CLIError as e:
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except SystemExit as e:          # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt as e:
        where = f" in {state['out']}" if "out" in state else ""
        unfinished = list(getattr(e, "running", []))
        try:
            finish_manifest(state, "interrupted", unfinished=unfinished)
        except (OSError, KeyboardInterrupt):
            pass
        again = f"; continue with: {PROG} {state['manifest']['command']} --resume {state['out']}" \
            if "manifest" in state else ""
        print(f"{PROG}: interrupted; finished records are kept{where}{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
