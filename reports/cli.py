"""The ``rtrl-validate`` command line: ``run``, ``report``, ``figure``, ``list``, ``gradcheck``.

Exit status: 0 once the records and the report are written, whatever the verdicts (they are
results, not errors); with ``--fail-on fail`` 1 when a verdict is FAIL, with ``--fail-on
inconclusive`` 1 when one is FAIL or INCONCLUSIVE (for CI gating); ``gradcheck`` 1 on a failing
check; 2 bad input, reported as one line ``rtrl-validate: error: ...`` on stderr; 130 when
interrupted (finished records are kept, the run is marked interrupted in ``DIR/run.json`` and
``--resume DIR`` continues it). A results folder in use by another process, or made with
another configuration, is bad input too; 143 when stopped by SIGTERM like Ctrl-C.

The command line parses and dispatches; the run itself (folder, lock, manifest, backend,
checkpoints) is :mod:`simulations.orchestration`.

``run`` and ``report`` run their tasks on ``--workers N`` local processes (default: one per core;
1 = in this process) or on a Dask cluster (``--scheduler tcp://HOST:PORT``, or ``local`` for a
``LocalCluster``); the records are the same either way.  ``DIR/run.json`` (the run manifest)
keeps the command, profile, seed and config overrides, and the run's status.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import signal
import sys
import textwrap
import threading
import tomllib
from importlib import metadata
from pathlib import Path

from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.orchestration import (CHECKPOINT_EVERY, RunFolderError, backend, lock_folder,
                                                       prepare_out, read_manifest, release_locks, resume_manifest,
                                                       start_run)
from rtrl_validation.simulations.orchestration import compute as orchestrated_compute
from rtrl_validation.simulations.orchestration import finish_run as finish_manifest
from rtrl_validation.simulations.records import RecordError, write_json
from rtrl_validation.simulations.runner import one_line


def experiments() -> dict:
    """The registered experiments (imported on demand: the registry pulls in every section)."""
    from . import registry
    return registry.experiments()

PROG = "rtrl-validate"
FALLBACK_VERSION = "0.1.0"
PROFILES = ("quick", "full")


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


#: command -> (one line, an example), for the top-level help
USAGE = {
    "report": ("run every experiment (what is missing) and write report.html, report.pdf, figures/",
               f"{PROG} report --profile quick --out results"),
    "run": ("run one experiment, write its records and print its verdicts",
            f"{PROG} run gradients --out results"),
    "figure": ("regenerate one figure (SVG, PDF, PNG and CSV) from stored records",
               f"{PROG} figure bias-variance-2 --from results"),
    "list": ("show experiments, cells, estimators and profiles", f"{PROG} list -v"),
    "gradcheck": ("RTRL = BPTT = finite differences on one or all cells", f"{PROG} gradcheck --cell gru"),
}
FAIL_ON = ("never", "fail", "inconclusive")


def _epilog() -> str:
    lines = ["commands:"]
    for name, (what, example) in USAGE.items():
        lines += [f"  {name:<10} {what}", f"  {'':<10}   e.g. {example}"]
    lines.append(f"\n'{PROG} COMMAND --help' shows a command's options.")
    return "\n".join(lines)


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="Check RTRL theory against computation; write the validation "
                                           "report (HTML + PDF) and result records.",
                    epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                help=", ".join(USAGE))

    run = sub.add_parser("run", help=USAGE["run"][0], description=USAGE["run"][0],
                         epilog=f"example: {USAGE['run'][1]}")
    run.add_argument("experiment", metavar="EXPERIMENT", nargs="?",
                     help="a registered experiment (see 'list'); optional with --resume")
    report = sub.add_parser("report", help=USAGE["report"][0], description=USAGE["report"][0],
                            epilog=f"example: {USAGE['report'][1]}")
    for p in (run, report):
        p.add_argument("--profile", default=None, help="config profile: quick (default), full, paper or paper-claim1 "
                       "(learning only; hours)")
        p.add_argument("--config", metavar="FILE.toml", type=Path,
                       help="overrides: one [EXPERIMENT] table of config keys per experiment")
        p.add_argument("--out", metavar="DIR", type=Path,
                       help="results folder (default: a new timestamped folder under ./rtrl-results/)")
        p.add_argument("--seed", type=seed_int, default=None, help="run seed (default 0)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--fail-on", choices=FAIL_ON, default="never",
                       help="exit 1 when a verdict is FAIL ('fail') or FAIL or INCONCLUSIVE ('inconclusive'); "
                            "default 'never': exit 0 once written, whatever the verdicts")
        p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="local worker processes (default: one per core; 1 = in this process)")
        p.add_argument("--scheduler", type=scheduler_address, default=None, metavar="ADDRESS",
                       help="run the tasks on the Dask cluster at ADDRESS (tcp://HOST:PORT), or 'local' "
                            "for a LocalCluster of --workers processes (needs the 'distributed' extra)")
        p.add_argument("--resume", metavar="DIR", type=Path,
                       help="continue the interrupted run in DIR with its own settings (profile, config, seed)")
        p.add_argument("--checkpoint-every", type=seed_int, default=None, metavar="M",
                       help=f"long runs checkpoint every M steps (default {CHECKPOINT_EVERY}; 0 = never)")
        p.add_argument("--skip-bad-records", action="store_true",
                       help="leave out records in the results folder that cannot be read (and say so) "
                            "instead of refusing; 'run' and 'report' compute their tasks again")
    report.add_argument("--from", dest="from_dir", metavar="DIR", type=Path,
                        help="rebuild the report from the records in DIR only (nothing is computed)")
    report.add_argument("--format", type=formats, default=("html", "pdf"), metavar="html,pdf",
                        help="which files to write (default html,pdf)")

    fig = sub.add_parser("figure", help=USAGE["figure"][0], description=USAGE["figure"][0],
                         epilog=f"example: {USAGE['figure'][1]}")
    fig.add_argument("name", metavar="NAME", help="the figure's name as the report shows it, e.g. bias-variance-2")
    fig.add_argument("--from", dest="from_dir", metavar="DIR", type=Path, required=True,
                     help="results folder holding the records")
    fig.add_argument("--out", metavar="FOLDER", type=Path, help="where to write (default DIR/figures)")

    lst = sub.add_parser("list", help=USAGE["list"][0], epilog=f"example: {USAGE['list'][1]}")
    lst.add_argument("-v", "--verbose", action="store_true", help="also show every profile's default config")

    grad = sub.add_parser("gradcheck", help=USAGE["gradcheck"][0], epilog=f"example: {USAGE['gradcheck'][1]}")
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


def resume_settings(args) -> dict:
    """``--resume DIR``: the earlier run's manifest, checked against this command; the run
    continues in DIR with the manifest's profile, seed and config overrides."""
    for flag, value in (("--profile", args.profile), ("--config", args.config), ("--seed", args.seed),
                        ("--out", args.out)):
        if value is not None:
            raise CLIError(f"{flag} cannot be combined with --resume (the interrupted run's settings are used)")
    return resume_manifest(args.resume, args.command, args.experiment if args.command == "run" else None)


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
    """Lock ``out`` and write ``DIR/run.json`` (status ``running``); :func:`main` marks it
    interrupted on Ctrl-C or SIGTERM (:mod:`simulations.orchestration`)."""
    start_run(args.state, out, manifest, version())


def executor(args):
    """The backend for ``--workers`` / ``--scheduler`` (:mod:`simulations.parallel`)."""
    return backend(args.workers, args.scheduler)


def compute(args, plan: list, seed: int, out: Path) -> dict:
    """Run ``plan`` (``[(experiment, config)]``) on the chosen backend, checkpointing into ``out``."""
    return orchestrated_compute(args.state, plan, seed, out, progress=not args.quiet, executor=args.executor,
                                checkpoint_every=args.checkpoint_every, on_bad_record=bad_record_handler(args))


def bad_record_handler(args):
    """With ``--skip-bad-records``: a function that notes a bad record (one line on stdout, and in
    ``args.state["skipped"]`` for the report's provenance) instead of refusing it."""
    if not args.skip_bad_records:
        return None

    def skip(error: RecordError) -> None:
        args.state.setdefault("skipped", []).append(one_line(str(error)))
        print(f"note: bad record left out: {one_line(str(error))}")
    return skip


def print_verdicts(verdicts: list[dict], not_run: list[str] = ()) -> None:
    """One line of counts, then every FAIL and INCONCLUSIVE with its reason."""
    from .build import status_counts, status_of

    status = [status_of(v) for v in verdicts]
    line = "verdicts: " + ", ".join(f"{n} {k.upper()}" for k, n in status_counts(verdicts).items())
    if not_run:
        line += f"; not run: {', '.join(not_run)}"
    print(line)
    for v, s in zip(verdicts, status):
        if s != "PASS":
            where = v.get("section") or v.get("task", "")
            print(f"  {s}  {where}: {v['check']}: {v['evidence']}")


def exit_status(verdicts: list[dict], fail_on: str) -> int:
    """``--fail-on``: 1 when a verdict is FAIL ('fail') or FAIL or INCONCLUSIVE ('inconclusive')."""
    gate = {"never": (), "fail": ("FAIL",), "inconclusive": ("FAIL", "INCONCLUSIVE")}[fail_on]
    from .build import status_of

    return 1 if any(status_of(v) in gate for v in verdicts) else 0


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
    from . import registry
    from .build import analyse
    result = analyse(args.experiment, registry.analyses().get(args.experiment), records)
    verdicts = [{**v, "section": result.section.title} for v in result.verdicts]
    print_verdicts(verdicts)
    return exit_status(verdicts, args.fail_on)


def cmd_report(args) -> int:
    from rtrl_validation.simulations.progress import stage

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
        lock_folder(args.state, args.from_dir, read_only=True)     # no run writes there while we read
        records = stored_records(args.from_dir, bad_record_handler(args))
        if not any(records.values()):
            raise CLIError(f"--from {args.from_dir}: no records of registered experiments found")
        out = prepare_out(args.out or args.from_dir)
        lock_folder(args.state, out)
        seeds = sorted({r["seed"] for recs in records.values() for r in recs})
        with stage("analysing the records", not args.quiet):
            report = build_report(records, profile=None, seed=seeds[0] if len(seeds) == 1 else None,
                                  source=str(args.from_dir), skipped=args.state.get("skipped", []))
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
        with stage("analysing the records", not args.quiet):
            report = build_report(records, profile=profile, seed=seed, source=str(out),
                                  skipped=args.state.get("skipped", []))

    with stage(f"writing the report ({', '.join(args.format)}) and figures/", not args.quiet):
        paths, messages = write_report(report, out, args.format)
    for kind in ("html", "pdf"):
        if kind in paths:
            print(f"{kind}: {paths[kind]}")
    for message in messages:
        print(message)
    print(f"summary: {paths['summary']}")
    print(f"figures: {paths['figures']}")
    print_verdicts(report.verdicts, report.not_run)
    return exit_status(report.verdicts, args.fail_on)


def note_interrupted(folder: Path) -> None:
    """``report --from`` an interrupted run: say which tasks are missing and how to continue."""
    try:
        manifest = read_manifest(folder)
    except RunFolderError:
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
    width = max(shutil.get_terminal_size().columns, 40)
    print("experiments:")
    for name, exp in registered.items():
        print(textwrap.fill(f"{name:<16} [{', '.join(exp.profiles)}] {exp.description}", width,
                            initial_indent="  ", subsequent_indent=" " * 19))
        for profile, config in exp.profiles.items() if args.verbose else ():
            print(textwrap.fill(f"{profile:<6} " + ", ".join(f"{k}={v!r}" for k, v in config.items()), width,
                                initial_indent=" " * 6, subsequent_indent=" " * 13, break_long_words=False))
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


def cmd_figure(args) -> int:
    """Regenerate one figure of the report from the records of its experiment (nothing is computed)."""
    from . import registry
    from .build import analyse
    from .export import export_figure, split_name

    registered = experiments()
    parsed = split_name(args.name, registered)
    if parsed is None:
        raise CLIError(f"unknown figure {args.name!r}: names are EXPERIMENT-N (e.g. bias-variance-2) with "
                       f"EXPERIMENT one of {known(registered)}")
    name, index = parsed
    if not args.from_dir.is_dir():
        raise CLIError(f"--from {args.from_dir}: no such folder")
    try:
        from rtrl_validation.simulations.records import load_records
        records = load_records(args.from_dir, name)
    except RecordError as e:
        raise CLIError(one_line(str(e))) from None
    if not records:
        raise CLIError(f"--from {args.from_dir}: no records of {name!r}")
    figures = analyse(name, registry.analyses().get(name), records).section.figures
    if index > len(figures):
        raise CLIError(f"{args.name}: the {name} section has {len(figures)} figure(s)")
    out = args.out or args.from_dir / "figures"
    try:
        paths = export_figure(figures[index - 1].fig, out, args.name)
    except OSError as e:
        raise CLIError(f"cannot write to {out}: {e.strerror or e}") from None
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "figure": cmd_figure, "list": cmd_list,
            "gradcheck": cmd_gradcheck}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rtrl-validate``; returns the exit status (module docstring)."""
    state: dict = {}
    try:
        with terminate_as_interrupt(state):
            args = build_parser().parse_args(argv)
            args.state = state
            return COMMANDS[args.command](args)
    except (CLIError, RunFolderError) as e:
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except RecordError as e:         # a bad record in the results folder, refused by default
        print(f"{PROG}: error: {one_line(str(e))} (--skip-bad-records leaves it out)", file=sys.stderr)
        return 2
    except SystemExit as e:          # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt as e:
        signum = state.get("signal", signal.SIGINT)
        where = f" in {state['out']}" if "out" in state else ""
        unfinished = list(getattr(e, "running", []))
        try:
            finish_manifest(state, "interrupted", unfinished=unfinished, signal=signal.Signals(signum).name)
        except (OSError, KeyboardInterrupt):
            pass
        again = f"; continue with: {PROG} {state['manifest']['command']} --resume {state['out']}" \
            if "manifest" in state else ""
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"{PROG}: {what}; finished records are kept{where}{again}", file=sys.stderr)
        return 128 + signum
    finally:
        release_locks(state)


@contextlib.contextmanager
def terminate_as_interrupt(state: dict):
    """SIGTERM (``kill``, batch schedulers, containers) stops a command the way Ctrl-C does: a
    ``KeyboardInterrupt`` in the main thread, with ``state["signal"]`` saying which signal came
    (exit status 128 + its number: 130 for SIGINT, 143 for SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        state["signal"] = signum
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
