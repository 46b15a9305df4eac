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
    from test_parallel_fakes import TrainerExperiment, use_trainer
except ImportError:  # tests collected as a package
    from tests.test_parallel_fakes import TrainerExperiment, use_trainer

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


@pytest.mark.parametrize("argv,fragments", CLI_ROWS, ids=[" ".join(a) for a, _ in CLI_ROWS])
def test_cli_bad_input_is_one_line_and_exit_2(argv, fragments, files, capsys):
    code = cli.main([a.format(**files) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtrl-validate: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


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
