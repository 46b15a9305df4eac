"""Bad input is refused with one clear line: exit 2 and ``rtrl-validate: error: ...`` on the CLI,
a ``ValueError`` / ``TypeError`` (or a subclass: ``ConfigError``, ``RecordError``,
``SchedulerError``) with a clear message in the Python API.  One row per bad input."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from rtrl_validation.reports import cli
from rtrl_validation.simulations import parallel
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.checkpoint import CheckpointStore
from rtrl_validation.simulations.estimators import make_estimator, parse_estimator
from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.parallel import DaskCluster, ProcessPool, SchedulerError, make_executor
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.records import RecordError, load_records, provenance, read_record, write_record
from rtrl_validation.simulations.runner import run_experiment, run_experiments
from rtrl_validation.simulations.training import OnlineTrainer, Schedule, frozen_windows

try:
    from helpers import TrainerExperiment, use_trainer
except ImportError:  # tests collected as a package
    from tests.helpers import TrainerExperiment, use_trainer

# ---------------------------------------------------------------------------------------------- CLI
# argv ({name} = a prepared file or folder) -> fragments the one error line must contain
CLI_ROWS = [
    (["run", "fake-trainer", "--workers", "0"], ["--workers", "positive integer, got '0'"]),
    (["run", "fake-trainer", "--workers", "two"], ["--workers", "'two'"]),
    (["report", "--workers", "-1"], ["--workers", "positive integer"]),
    (["run", "fake-trainer", "--scheduler", "nonsense"], ["--scheduler", "address must be 'local', tcp://HOST:PORT"]),
    (["run", "fake-trainer", "--scheduler", "http://host:8786"], ["--scheduler", "'http://host:8786'"]),
    (["run", "fake-trainer", "--scheduler", "tcp://host:99999"], ["port must be in 1..65535"]),
    (["run", "fake-trainer", "--scheduler", "tcp://127.0.0.1:9", "--workers", "2"],
     ["number of workers of a running Dask cluster"]),
    (["run", "fake-trainer", "--scheduler", "tcp://127.0.0.1:9"], ["cannot reach the Dask scheduler at tcp://127.0.0.1:9"]),
    (["run", "fake-trainer", "--checkpoint-every", "-5"], ["--checkpoint-every", "non-negative integer"]),
    (["run", "fake-trainer", "--checkpoint-every", "often"], ["--checkpoint-every", "'often'"]),
    (["run", "fake-trainer", "--seed", "1.5"], ["--seed", "non-negative integer, got '1.5'"]),
    (["run", "fake-trainer", "--seed", "1e3"], ["--seed", "'1e3'"]),
    (["run", "Fake-Trainer"], ["unknown experiment 'Fake-Trainer'", "fake-trainer"]),
    (["run", "fake-trainer", "--profile", "Quick"], ["unknown profile 'Quick'"]),
    (["run"], ["required: EXPERIMENT (or --resume DIR)"]),
    (["run", "--resume", "{tmp}/missing"], ["--resume", "no such folder"]),
    (["run", "--resume", "{empty}"], ["not a results folder", "no run.json"]),
    (["run", "--resume", "{corrupt_manifest}"], ["corrupt run manifest"]),
    (["run", "--resume", "{manifest_v99}"], ["run manifest version 99 is not supported"]),
    (["run", "--resume", "{manifest_bad_seed}"], ["corrupt run manifest (missing or bad: seed)"]),
    (["run", "--resume", "{report_run}"], ["holds a 'report' run", "rtrl-validate report --resume"]),
    (["report", "--resume", "{trainer_run}"], ["holds a 'run' run", "rtrl-validate run --resume"]),
    (["run", "fake-pass", "--resume", "{trainer_run}"], ["holds a run of 'fake-trainer', not 'fake-pass'"]),
    (["run", "--resume", "{trainer_run}", "--seed", "3"], ["--seed cannot be combined with --resume"]),
    (["run", "--resume", "{trainer_run}", "--out", "{tmp}/elsewhere"], ["--out cannot be combined with --resume"]),
    (["report", "--from", "{tmp}", "--workers", "2"], ["--workers cannot be combined with --from"]),
    (["report", "--from", "{tmp}", "--resume", "{trainer_run}"], ["--resume cannot be combined with --from"]),
    (["report", "--from", "{schema99}"], ["record schema version 99 is not supported"]),
    (["report", "--from", "{missing_keys}"], ["corrupt record (missing keys"]),
    (["report", "--from", "{missing_npz}"], ["array file", "is missing"]),
    (["run", "fake-trainer", "--out", "/dev/null/results"], ["cannot write to --out /dev/null/results"]),
    (["run", "fake-trainer", "--config", "{bad_type}"], ["fake-trainer: steps must be a positive integer, got 'many'"]),
    (["run", "fake-trainer", "--config", "{bad_estimator}"], ["unknown estimator 'sgd'"]),
    (["run", "fake-trainer", "--config", "{duplicate_key}"], ["malformed TOML", "duplicate_key.toml"]),
    (["run", "fake-trainer", "--config", "{array_of_tables}"], ["top-level key 'fake-trainer' must be a table"]),
    (["run", "fake-trainer", "--config", "{date_value}"], ["steps must be a positive integer, got datetime.date"]),
    (["report", "--format", ","], ["unknown format"]),
    (["list", "--bogus"], ["unrecognized arguments: --bogus"]),
]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def manifest(command, **extra):
    return json.dumps({"schema_version": 1, "command": command, "experiment": None, "profile": "quick", "seed": 0,
                       "overrides": {}, "status": "interrupted", **extra})


def record_folder(tmp_path, name, edit=None, arrays=None):
    """A results folder with one record of ``fake-trainer``; ``edit(json dict)`` damages it."""
    folder = tmp_path / name
    path = write_record(folder, {"experiment": "fake-trainer", "task": "run-0", "task_index": 0, "seed": 0,
                                 "config": {}, "experiment_config": {}, "status": "ok", "reason": "", "data": {},
                                 "verdicts": [], "provenance": provenance("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", 1.0)},
                        arrays)
    if edit is not None:
        body = json.loads(path.read_text())
        edit(body, path)
        path.write_text(json.dumps(body))
    return folder


@pytest.fixture
def files(tmp_path, monkeypatch):
    use_trainer(monkeypatch)
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.chdir(tmp_path)                  # default results folders go under ./rtrl-results/
    toml = tmp_path / "toml"
    return {
        "tmp": tmp_path,
        "empty": (tmp_path / "empty").mkdir() or tmp_path / "empty",
        "corrupt_manifest": write(tmp_path / "corrupt_manifest" / "run.json", "{").parent,
        "manifest_v99": write(tmp_path / "v99" / "run.json", json.dumps({"schema_version": 99})).parent,
        "manifest_bad_seed": write(tmp_path / "bad_seed" / "run.json", manifest("run", seed="x")).parent,
        "report_run": write(tmp_path / "report_run" / "run.json", manifest("report")).parent,
        "trainer_run": write(tmp_path / "trainer_run" / "run.json",
                             manifest("run", experiment="fake-trainer")).parent,
        "schema99": record_folder(tmp_path, "schema99", lambda body, path: body.update(schema_version=99)),
        "missing_keys": record_folder(tmp_path, "missing_keys", lambda body, path: body.pop("verdicts")),
        "missing_npz": record_folder(tmp_path, "missing_npz", lambda body, path: (path.parent / body["arrays_file"]).unlink(),
                                     arrays={"x": np.zeros(3)}),
        "bad_type": write(toml / "bad_type.toml", '[fake-trainer]\nsteps = "many"\n'),
        "bad_estimator": write(toml / "bad_estimator.toml", '[fake-trainer]\nestimator = "sgd"\n'),
        "duplicate_key": write(toml / "duplicate_key.toml", "[fake-trainer]\nsteps = 3\nsteps = 4\n"),
        "array_of_tables": write(toml / "array_of_tables.toml", "[[fake-trainer]]\nsteps = 3\n"),
        "date_value": write(toml / "date_value.toml", "[fake-trainer]\nsteps = 1979-05-27\n"),
    }


def snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv, fragments, folder, capsys) -> str:
    """Run ``argv``; assert exit 2, one line ``rtrl-validate: error: ...`` with every fragment (and
    no doubled experiment prefix), no traceback, and no file under ``folder`` lost or changed and no
    record added (an unreachable scheduler leaves the new run's manifest, marked failed)."""
    before = snapshot(folder)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 3 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("rtrl-validate: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    head = lines[0].removeprefix("rtrl-validate: error: ").split(": ")
    assert len(head) < 2 or head[0] != head[1], lines[0]              # "convergence: convergence: ..."
    after = snapshot(folder)
    assert {p: after.get(p) for p in before} == before
    assert not [p for p in after if p not in before and "records" in p.parts]
    return lines[0]


@pytest.mark.parametrize("argv,fragments", CLI_ROWS, ids=[" ".join(a) for a, _ in CLI_ROWS])
def test_cli_bad_input_is_one_line_and_exit_2(argv, fragments, files, capsys):
    refused([a.format(**files) for a in argv], fragments, files["tmp"], capsys)


# ------------------------------------------------------------------------- the real experiments
# (experiment, TOML lines of its table) -> fragments; run as ``run EXPERIMENT --config F --out DIR``
# into a folder that already holds a run, which must stay as it was
MEMORY = ["memory: ", "needs about", "this machine has", "available"]
CONFIG_ROWS = [
    ("gradients", 'cells = "elman"', ["gradients: cells: must be a non-empty list of cells", "got 'elman'"]),
    ("gradients", "cells = []", ["gradients: cells: must be a non-empty list of cells", "got []"]),
    ("gradients", 'cells = ["hopfield"]', ["gradients: cells: item 0: unknown cell 'hopfield'"]),
    ("gradients", "cells = [1]", ["cells: item 0: must be a cell"]),
    ("gradients", "hidden = 0", ["gradients: hidden: must be a positive integer, got 0"]),
    ("gradients", "hidden = true", ["gradients: hidden: must be a positive integer, got True"]),
    ("gradients", "hidden = 2.5", ["hidden: must be a positive integer, got 2.5"]),
    ("gradients", 'hidden = "4"', ["hidden: must be a positive integer, got '4'"]),
    ("gradients", "hidden = [2, 3]", ["hidden: must be a positive integer, got [2, 3]"]),
    ("gradients", "hidden = 3000", ["gradients: memory: task 'lstm-d1' needs about", *MEMORY]),
    ("gradients", "hidden = 9223372036854775807", MEMORY),
    ("gradients", "inputs = -1", ["gradients: inputs: must be a positive integer, got -1"]),
    ("gradients", "steps = [0]", ["gradients: steps: item 0: must be a positive integer, got 0"]),
    ("gradients", "steps = 7", ["gradients: steps: must be a non-empty list of positive integers, got 7"]),
    ("gradients", "steps = []", ["steps: must be a non-empty list"]),
    ("gradients", "steps = [10000000000]", MEMORY),
    ("gradients", "densities = [0]", ["gradients: densities: item 0: must be a density in (0, 1], got 0"]),
    ("gradients", "densities = [1.5]", ["densities: item 0: must be a density in (0, 1], got 1.5"]),
    ("gradients", "densities = [nan]", ["densities: item 0: must be a density in (0, 1], got nan"]),
    ("gradients", 'symbolic_losses = ["hinge"]', ["symbolic_losses: item 0: unknown loss 'hinge'"]),
    ("gradients", "nonsense = 1", ["gradients: nonsense: unknown config key 'nonsense'", "known keys: cells"]),
    ("bias-variance", 'cell = "gru"', ["bias-variance: rhos: a rho sweep needs cell 'contractive-elman'"]),
    ("bias-variance", 'cell = "gru"\nrhos = []', ["bias-variance: estimators: kf-rtrl needs"]),
    ("bias-variance", "orders = [0]", ["bias-variance: orders: item 0: must be a SnAp order n >= 1, got 0"]),
    ("bias-variance", 'estimators = ["snap-0"]', ["estimators: item 0: SnAp order n must be an integer >= 1"]),
    ("bias-variance", 'estimators = ["bptt"]', ["estimators: 'bptt' is not an approximation"]),
    ("bias-variance", 'estimators = "uoro"', ["estimators: must be a list of estimator specs", "got 'uoro'"]),
    ("bias-variance", "replicates = 2", ["bias-variance: replicates: must be >= 3, got 2"]),
    ("bias-variance", "replicates = 1000000000000", MEMORY),
    ("bias-variance", "hidden = [100000]", MEMORY),
    ("bias-variance", "steps = 1", ["bias-variance: steps: must be >= 2, got 1"]),
    ("bias-variance", "rhos = [1.0]", ["rhos: contraction constant rho must be in (0, 1), got 1.0"]),
    ("bias-variance", "alpha = 0", ["bias-variance: alpha: must be a number in (0, 1), got 0"]),
    ("bias-variance", "shift = 1.5", ["shift: must be a number in (0, 1), got 1.5"]),
    ("bias-variance", "enumeration_steps = 9", ["enumeration_steps: must be an integer (4^T sign sequences) in [1, 5]"]),
    ("bias-variance", "base_density = 0", ["base_density: must be a density in (0, 1], got 0"]),
    ("bias-variance", "check_replicates = 0", ["check_replicates: must be a positive integer, got 0"]),
    ("bias-variance", "memory_train_steps = -1", ["memory_train_steps: must be a non-negative integer, got -1"]),
    ("bias-variance", "bias_margin = 1.5", ["bias-variance: bias_margin: must be a number in (0, 1), got 1.5"]),
    ("bias-variance", "memory_lr = 0", ["bias-variance: memory_lr: must be a positive number, got 0"]),
    ("bias-variance", "instances = 0", ["bias-variance: instances: must be a positive integer, got 0"]),
    ("cost", "series = {rtrl = [8, 16]}", ["cost: series['rtrl']: must list at least fit_points = 5 hidden sizes"]),
    ("cost", 'series = {"snap-0" = [8, 16, 32, 64, 128]}', ["cost: series: ['snap-0']: SnAp order n must be"]),
    ("cost", "series = []", ["cost: series: must be a non-empty table of non-empty lists of positive integers"]),
    ("cost", "series = {}", ["cost: series: must be a non-empty table"]),
    ("cost", "series = {rtrl = [8, 0, 16, 32, 64]}", ["series: ['rtrl']: item 1: must be a positive integer, got 0"]),
    ("cost", 'cell = "lstm"', ["cost: estimators: kf-rtrl needs"]),
    ("cost", "fit_points = 2", ["cost: fit_points: must be >= 3"]),
    ("cost", "min_time = -1", ["cost: min_time: must be a time in seconds in (0, 10], got -1"]),
    ("cost", "min_time = 100", ["min_time: must be a time in seconds in (0, 10], got 100"]),
    ("cost", "threads = 0", ["cost: threads: must be a positive integer, got 0"]),
    ("cost", "sparse_density = 0", ["cost: sparse_density: must be a density in (0, 1], got 0"]),
    ("cost", 'batch_estimator = "magic"', ["cost: batch_estimator: unknown estimator 'magic'"]),
    ("cost", "series = {rtrl = [100000, 200000, 300000, 400000, 500000]}", ["cost: memory: task 'scaling'", *MEMORY]),
    ("cost", "batch_replicates = 10000000000", MEMORY),
    ("convergence", "gamma = 0.3", ["convergence: gamma: schedule gamma=0.3 violates the theorem's step-size"]),
    ("convergence", "hidden = 0", ["convergence: hidden: must be a positive integer, got 0"]),
    ("convergence", "grad_steps = 3001", ["convergence: grad_steps: must be a multiple of ess_window = 10"]),
    ("convergence", 'limit_estimators = ["tbptt-1"]', ["limit_estimators: must include 'rtrl'"]),
    ("convergence", 'limit_estimators = ["rtrl", "snap-0"]', ["limit_estimators: item 1: SnAp order n"]),
    ("convergence", 'limit_estimators = ["rtrl", "nope"]', ["limit_estimators: item 1: unknown estimator 'nope'"]),
    ("convergence", "chain_times = [4, 2]", ["convergence: chain_times: must be increasing positive steps"]),
    ("convergence", "teacher_rho = 0.95", ["convergence: teacher_rho: need 0 < teacher_rho < rho < 1"]),
    ("convergence", "rho = 1.0", ["convergence: rho: must be a number in (0, 1), got 1.0"]),
    ("convergence", 'grad_cases = "tanh"', ["convergence: grad_cases: must be a list of cases", "got 'tanh'"]),
    ("convergence", 'grad_cases = ["xx"]', ["grad_cases: item 0: unknown case 'xx'"]),
    ("convergence", "forget_blocks = 1000000000000000", ["convergence: memory: the task list needs about"]),
    ("convergence", "chains = 100000000000", ["convergence: memory: task 'stationary", *MEMORY]),
    ("convergence", "hidden = 5000", MEMORY),
    ("convergence", "train_replicates = 0", ["train_replicates: must be a positive integer, got 0"]),
    ("convergence", "late_fraction = 1.0", ["late_fraction: must be a number in (0, 1), got 1.0"]),
    ("convergence", "limit_average = 0.9", ["limit_average: need 0 < limit_average <= late_fraction < 1"]),
    ("convergence", "fd_step = 0", ["convergence: fd_step: must be a positive number, got 0"]),
    ("convergence", "eval_points = 1", ["convergence: eval_points: must be >= 2"]),
    ("convergence", "grad_paths = 2", ["convergence: grad_paths: must be >= 4 for standard errors"]),
    ("convergence", "alpha0 = inf", ["convergence: alpha0: must be a positive number, got inf"]),
    ("learning", 'estimators = ["snap-0"]', ["learning: estimators: item 0: SnAp order n must be an integer >= 1"]),
    ("learning", "estimators = []", ["learning: estimators: must be a non-empty list of estimator specs"]),
    ("learning", 'estimators = "rtrl"', ["learning: estimators: must be a non-empty list", "got 'rtrl'"]),
    ("learning", 'groups = ["gru:0.1"]\nestimators = ["kf-rtrl"]',
     ["learning: estimators: 'kf-rtrl' does not apply to cell 'gru' (group 'gru:0.1')"]),
    ("learning", 'groups = ["gru:0.1"]', ["learning: estimators: 'kf-rtrl' does not apply to cell 'gru'"]),
    ("learning", 'groups = ["elman:0.5", "lstm:0.5"]\nestimators = ["rtrl", "kf-rtrl"]',
     ["'kf-rtrl' does not apply to cell 'lstm'"]),
    ("learning", 'groups = ["elman"]', ["learning: groups: item 0: group 'elman' must be 'cell:density'"]),
    ("learning", 'groups = ["elman:0"]', ["groups: item 0: group 'elman:0' must be 'cell:density'"]),
    ("learning", 'groups = "elman:0.5"', ["learning: groups: must be a non-empty list", "got 'elman:0.5'"]),
    ("learning", 'tasks = ["music"]', ["learning: tasks: item 0: unknown task 'music'"]),
    ("learning", "tasks = []", ["learning: tasks: must be a non-empty list of tasks"]),
    ("learning", 'optimizer = "lbfgs"', ["learning: optimizer: unknown optimizer 'lbfgs'"]),
    ("learning", "copy_lr = -1", ["learning: copy_lr: must be a positive number, got -1"]),
    ("learning", "copy_lr = inf", ["learning: copy_lr: must be a positive number, got inf"]),
    ("learning", "text_lr = nan", ["learning: text_lr: must be a positive number, got nan"]),
    ("learning", "val_fraction = 1.0", ["learning: val_fraction: must be a number in (0, 1), got 1.0"]),
    ("learning", "spread = -1", ["learning: spread: must be a non-negative integer, got -1"]),
    ("learning", "alphabet = 1", ["learning: alphabet: must be an integer >= 2, got 1"]),
    ("learning", "seeds = 0", ["learning: seeds: must be a positive integer, got 0"]),
    ("learning", "hidden = 100000", ["learning: memory: task", *MEMORY]),
    ("learning", "seeds = 100000000000", MEMORY),
    ("learning", "copy_steps = 10000000000000", ["learning: memory: task 'copy-", *MEMORY]),
    ("learning", "text_steps = 0", ["learning: text_steps: must be a positive integer, got 0"]),
    ("learning", "record_every = true", ["learning: record_every: must be a positive integer, got True"]),
    ("learning", "hidden = 1979-05-27", ["learning: hidden: must be a positive integer, got datetime.date(1979, 5, 27)"]),
    ("learning", "hidden = {k = 4}", ["learning: hidden: must be a positive integer, got {'k': 4}"]),
]


@pytest.fixture
def existing(tmp_path, monkeypatch):
    """A results folder with a finished run (manifest and one record), in the real registry."""
    from rtrl_validation.reports import registry
    monkeypatch.setattr(registry, "SECTIONS", list(registry.SECTIONS))
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "results"
    write(folder / "run.json", manifest("run", experiment="gradients", status="complete"))
    write_record(folder, {"experiment": "gradients", "task": "elman-d1", "task_index": 0, "seed": 0, "config": {},
                          "experiment_config": {}, "status": "ok", "reason": "", "data": {"checks": [], "p": 1, "k": 1},
                          "verdicts": [],
                          "provenance": provenance("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", 1.0)},
                 {"x": np.arange(3.0)})
    return folder


@pytest.mark.parametrize("experiment,lines,fragments", CONFIG_ROWS,
                         ids=[f"{e}: {t}" for e, t, _ in CONFIG_ROWS])
def test_bad_config_of_a_real_experiment_is_refused_up_front(experiment, lines, fragments, existing, tmp_path,
                                                            capsys):
    toml = write(tmp_path / "config.toml", f"[{experiment}]\n{lines}\n")
    refused(["run", experiment, "--config", str(toml), "--out", str(existing)], fragments, tmp_path, capsys)


# argv ({tmp}, {out}: the folder with a finished run) -> fragments, in the real registry
REAL_ROWS = [
    (["gradcheck", "--hidden", "3000"], ["memory: gradcheck --hidden 3000 --steps 60 needs about", *MEMORY[2:]]),
    (["gradcheck", "--steps", "10000000000"], ["memory: gradcheck --hidden 3 --steps 10000000000 needs about"]),
    (["gradcheck", "--inputs", "1" + "0" * 400], ["needs about over 1e308 B"]),
    (["gradcheck", "--cell", "lstm", "--hidden", "400"], MEMORY),
    (["gradcheck", "--cell", "hopfield"], ["unknown cell 'hopfield'", "(or 'all')"]),
    (["gradcheck", "--hidden", "0"], ["--hidden", "must be a positive integer, got '0'"]),
    (["gradcheck", "--hidden", "x"], ["--hidden", "got 'x'"]),
    (["gradcheck", "--inputs", "0"], ["--inputs", "positive integer"]),
    (["gradcheck", "--steps", "0"], ["--steps", "positive integer, got '0'"]),
    (["gradcheck", "--steps", "1,,2"], ["--steps", "got ''"]),
    (["gradcheck", "--steps", "5,abc"], ["--steps", "got 'abc'"]),
    (["gradcheck", "--density", "0"], ["--density", "must be in (0, 1], got '0'"]),
    (["gradcheck", "--density", "1.5"], ["--density", "got '1.5'"]),
    (["gradcheck", "--density", "nan"], ["--density", "got 'nan'"]),
    (["gradcheck", "--density", "half"], ["--density", "must be a number in (0, 1], got 'half'"]),
    (["gradcheck", "--seed", "-1"], ["--seed", "non-negative integer"]),
    (["gradcheck", "--json", "{tmp}/missing/out.json"], ["--json", "does not exist"]),
    (["run", "gradients", "--profile", "huge"], ["unknown profile 'huge'"]),
    (["run", "nope"], ["unknown experiment 'nope'", "gradients"]),
    (["run", "gradients", "--config", "{tmp}/missing.toml"], ["--config", "no such file"]),
    (["run", "gradients", "--config", "{tmp}"], ["cannot read --config"]),
    (["run", "gradients", "--config", "{binary}"], ["--config"]),
    (["run", "gradients", "--config", "{unknown_table}"], ["unknown experiment table [nope]", "known experiments: gradients"]),
    (["run", "gradients", "--config", "{top_level_key}"], ["top-level key 'hidden' must be a table"]),
    (["run", "gradients", "--config", "{other_table_bad}"], ["learning: seeds: must be a positive integer, got 0"]),
    (["run", "gradients", "--out", "{out}/run.json"], ["--out", "exists and is not a folder"]),
    (["report", "--config", "{other_table_bad}", "--out", "{out}"], ["learning: seeds: must be a positive integer"]),
    (["report", "--from", "{out}", "--config", "{other_table_bad}"], ["--config cannot be combined with --from"]),
    (["report", "--from", "{tmp}/missing"], ["--from", "no such folder"]),
    (["report", "--format", "pdf,docx"], ["unknown format docx"]),
    (["list", "extra"], ["unrecognized arguments: extra"]),
    ([], ["the following arguments are required: COMMAND"]),
]


@pytest.mark.parametrize("argv,fragments", REAL_ROWS, ids=[" ".join(a) or "(nothing)" for a, _ in REAL_ROWS])
def test_bad_command_of_the_real_cli_is_refused(argv, fragments, existing, tmp_path, capsys):
    write(tmp_path / "binary.toml", "").write_bytes(b"\xff\xfe\x00[")
    write(tmp_path / "toml" / "unknown_table.toml", "[nope]\nx = 1\n")
    write(tmp_path / "toml" / "top_level_key.toml", "hidden = 3\n")
    write(tmp_path / "toml" / "other_table_bad.toml", "[gradients]\nhidden = 2\n[learning]\nseeds = 0\n")
    names = {"tmp": tmp_path, "out": existing, "binary": tmp_path / "binary.toml",
             **{p.stem: p for p in (tmp_path / "toml").iterdir()}}
    refused([a.format(**names) for a in argv], fragments, tmp_path, capsys)


def test_scheduler_without_distributed_says_how_to_install_it(files, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)      # import distributed fails
    assert cli.main(["run", "fake-trainer", "--scheduler", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("rtrl-validate: error: --scheduler needs Dask's 'distributed' package: "
                   "pip install 'rtrl-validation[distributed]'")


# ---------------------------------------------------------------------------------------------- API
def _trainer(**kwargs):
    cell = make_cell("elman", 2, 1)
    return OnlineTrainer(cell, LinearReadout(2, 1), parse_estimator("rtrl"), None, Schedule(0.1), **kwargs)


def _experiment(overrides=None, profile="quick"):
    exp = TrainerExperiment()
    return exp, exp.config(profile, overrides)


API_ROWS = [
    ("seed negative", lambda t: run_experiment(*_experiment(), -1, t), ValueError, "seed must be a non-negative integer"),
    ("seed string", lambda t: run_experiment(*_experiment(), "3", t), ValueError, "got '3'"),
    ("seed bool", lambda t: run_experiment(*_experiment(), True, t), ValueError, "got True"),
    ("experiment twice", lambda t: run_experiments([_experiment(), _experiment()], 0, t), ValueError, "appears twice"),
    ("pool of 0 workers", lambda t: ProcessPool(0), ValueError, "workers must be a positive integer, got 0"),
    ("pool of 2.5 workers", lambda t: ProcessPool(2.5), ValueError, "got 2.5"),
    ("pool threads 0", lambda t: ProcessPool(2, threads=0), ValueError, "got 0"),
    ("workers True", lambda t: make_executor(True), ValueError, "got True"),
    ("scheduler address", lambda t: DaskCluster("nonsense"), SchedulerError, "scheduler address must be"),
    ("remote scheduler with workers", lambda t: DaskCluster("tcp://h:1", workers=2), SchedulerError,
     "set where its workers start"),
    ("checkpoint interval 0", lambda t: CheckpointStore(t, 0), ValueError, "positive integer number of steps"),
    ("checkpoint interval str", lambda t: CheckpointStore(t, "10"), ValueError, "got '10'"),
    ("unknown config key", lambda t: _experiment({"stepz": 1}), ConfigError, "unknown config key 'stepz'"),
    ("unknown profile", lambda t: _experiment(profile="huge"), ConfigError, "no profile 'huge'"),
    ("bad estimator in config", lambda t: _experiment({"estimator": "snap-0"}), ConfigError, "SnAp order"),
    ("unknown cell", lambda t: make_cell("hopfield", 3, 2), ValueError, "unknown cell 'hopfield'"),
    ("hidden 0", lambda t: make_cell("elman", 0, 2), ValueError, "hidden size must be a positive integer"),
    ("inputs str", lambda t: make_cell("elman", 3, "2"), ValueError, "inputs size must be a positive integer"),
    ("density 0", lambda t: make_cell("elman", 3, 2, density=0), ValueError, "density must be in (0, 1]"),
    ("density nan", lambda t: make_cell("elman", 3, 2, density=float("nan")), ValueError, "got nan"),
    ("contraction rho", lambda t: make_cell("contractive-elman", 3, 2, rho=1.5), ValueError, "rho must be in (0, 1)"),
    ("unknown activation", lambda t: make_cell("elman", 3, 2, activation="relu"), ValueError, "unknown activation"),
    ("unknown estimator", lambda t: parse_estimator("magic"), ValueError, "unknown estimator 'magic'"),
    ("snap order 0", lambda t: parse_estimator("snap-0"), ValueError, "SnAp order n must be an integer >= 1"),
    ("estimator option", lambda t: make_estimator("snap", m=3), TypeError, "unexpected keyword argument 'm'"),
    ("unknown loss", lambda t: LinearReadout(3, 1, loss="hinge"), ValueError, "unknown loss 'hinge'"),
    ("negative learning rate", lambda t: Schedule(-1.0), ValueError, "alpha0 must be positive"),
    ("schedule exponent", lambda t: Schedule(1.0, gamma=2.0), ValueError, "gamma must be in [0, 1]"),
    ("not Robbins-Monro", lambda t: Schedule(1.0, gamma=0.3).require_robbins_monro(), ValueError,
     "violates the theorem's step-size conditions"),
    ("update_every 0", lambda t: _trainer(update_every=0), ValueError, "must be positive integers"),
    ("checkpoint steps", lambda t: _trainer(checkpoints=[0, 5]), ValueError, "checkpoints must be positive"),
    ("windows", lambda t: frozen_windows(make_cell("elman", 2, 1), LinearReadout(2, 1), parse_estimator("rtrl"), None,
                                         np.zeros((1, 10)), np.zeros((1, 3)), 0, 10, 3, None),
     ValueError, "must split into windows=3"),
    ("record schema 99", lambda t: read_record(record_folder(t, "r", lambda b, p: b.update(schema_version=99))
                                               / "records" / "fake-trainer" / "run-0.json"),
     RecordError, "schema version 99 is not supported"),
    ("corrupt record", lambda t: load_records(record_folder(t, "c", lambda b, p: b.clear())), RecordError,
     "schema version None"),
    ("object array", lambda t: write_record(t, {"experiment": "e", "task": "t"}, {"x": np.array([{}, 1])}),
     TypeError, "dtype object"),
]


@pytest.mark.parametrize("name,call,error,fragment", API_ROWS, ids=[r[0] for r in API_ROWS])
def test_api_bad_input_raises_a_clear_error(name, call, error, fragment, tmp_path):
    with pytest.raises(error) as info:
        call(tmp_path)
    assert isinstance(info.value, (ValueError, TypeError))
    message = str(info.value)
    assert fragment in message and "\n" not in message.strip(), message


def test_the_table_has_at_least_30_distinct_bad_inputs():
    assert len({" ".join(a) for a, _ in CLI_ROWS}) == len(CLI_ROWS) >= 30
    assert len({r[0] for r in API_ROWS}) == len(API_ROWS) >= 30


def test_at_least_120_distinct_bad_inputs_reach_the_cli():
    rows = {" ".join(a) for a, _ in CLI_ROWS} | {f"{e}: {t}" for e, t, _ in CONFIG_ROWS} \
        | {" ".join(a) for a, _ in REAL_ROWS}
    assert len(rows) == len(CLI_ROWS) + len(CONFIG_ROWS) + len(REAL_ROWS) >= 120
