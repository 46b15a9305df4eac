"""Runs that survive faults: checkpoint/resume gives the numbers of an uninterrupted run (in
process, and for a CLI run interrupted by SIGINT in a subprocess), Ctrl-C keeps finished records
and marks the run interrupted (exit 130), divergence is recorded with its step, never raised."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtrl_validation.reports import cli
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.checkpoint import CheckpointStore
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.parallel import InProcess
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.records import load_records
from rtrl_validation.simulations.runner import run_experiment
from rtrl_validation.simulations.training import OnlineTrainer, Schedule

try:
    from helpers import (CALLS, STEPS, WAIT_AFTER, FakeExperiment, Replay, TrainerExperiment, numbers, summarise,
                         train, use_trainer)
except ImportError:  # tests collected as a package
    from tests.helpers import (CALLS, STEPS, WAIT_AFTER, FakeExperiment, Replay, TrainerExperiment, numbers,
                               summarise, train, use_trainer)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------- trainer
@pytest.mark.parametrize("estimator", ["rtrl", "snap-1", "uoro", "kf-rtrl", "tbptt-4"])
def test_trainer_resumes_with_the_numbers_of_an_uninterrupted_run(estimator, tmp_path):
    reference, _ = train(estimator)
    store = CheckpointStore(tmp_path, every=64)
    with pytest.raises(KeyboardInterrupt):
        train(estimator, store, stop_at=200)
    resumed, ck = train(estimator, store)
    assert ck.restored == [{"loop": 0, "step": 192}]          # continued from the newest snapshot
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    again, ck = train(estimator, store)                        # the final snapshot: nothing to redo
    assert ck.restored == [{"loop": 0, "step": STEPS}]
    np.testing.assert_array_equal(again["after"], reference["after"])


def test_checkpoint_of_another_computation_is_ignored(tmp_path):
    reference, _ = train("rtrl")
    store = CheckpointStore(tmp_path, every=64)
    with pytest.raises(KeyboardInterrupt):
        train("rtrl", store, stop_at=200, config=2)           # another task config
    resumed, ck = train("rtrl", store)
    assert ck.restored == [] and "checkpoint of another computation ignored" in ck.notes[0]
    np.testing.assert_array_equal(resumed["theta"], reference["theta"])
    (tmp_path / "exp" / "task" / "loop-0.npz").write_bytes(b"not an npz")
    resumed, ck = train("rtrl", store)
    assert ck.restored == [] and "checkpoint ignored (unreadable" in ck.notes[0]
    np.testing.assert_array_equal(resumed["theta"], reference["theta"])


# ---------------------------------------------------------------------------- CLI: SIGINT, resume
SCRIPT = """
import signal, sys
sys.path.insert(0, {tests!r})
signal.signal(signal.SIGINT, signal.default_int_handler)
from helpers import Subset, TrainerExperiment
from rtrl_validation.reports import cli
cli.experiments = lambda: {{exp.name: exp for exp in [{experiment}]}}
sys.exit(cli.main(sys.argv[1:]))
"""
TRAINER_TOML = "[fake-trainer]\ntasks = 2\nsteps = 3000\n"


def interrupt_when(experiment: str, argv: list, out: Path, snapshot: str) -> str:
    """Run the CLI with ``argv`` in a subprocess that knows only ``experiment`` (Python source),
    send SIGINT to its process group (as Ctrl-C in a terminal does: the driver and its workers) as
    soon as a checkpoint file matching ``snapshot`` (a glob, e.g. ``run-0/loop-0.npz``: task run-0's
    first snapshot, whichever worker runs it) exists under ``out``, and return its stderr once it
    exited with status 130.  The fake-trainer's task run-0 waits at step 200
    (:data:`helpers.WAIT_AFTER`) until the signal comes, so the signal always finds it running."""
    return stop_when(experiment, argv, out, snapshot, signal.SIGINT, group=True)[0]


def stop_when(experiment: str, argv: list, out: Path, snapshot: str, sig: int, group: bool) -> tuple[str, list]:
    """:func:`interrupt_when` with signal ``sig`` sent to the process group (``group``) or to the
    driver alone; checks the exit status (128 + the signal when the driver handles it, killed by
    it for SIGKILL) and returns ``(stderr, pids of the driver's descendants just before the signal)``."""
    script = SCRIPT.format(tests=str(ROOT / "tests"), experiment=experiment)
    proc = subprocess.Popen([sys.executable, "-c", script, *argv, "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, WAIT_AFTER: "200"})
    try:
        deadline = time.monotonic() + 300
        while not list((out / "checkpoints").rglob(snapshot)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no {snapshot} within 300 s"
            time.sleep(0.01)
        family = descendants(proc.pid)
        (os.killpg if group else os.kill)(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), err
    return err, family


def descendants(pid: int) -> list[int]:
    """Every process whose chain of parents reaches ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(b")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are still alive (zombies, ended but not yet reaped, do not count)."""
    from rtrl_validation.simulations.parallel import alive
    return [p for p in pids if alive(p)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "cfg.toml").write_text(TRAINER_TOML)
    exp = TrainerExperiment()
    config = exp.config("quick", {"tasks": 2, "steps": 3000})
    return run_experiment(exp, config, 0, folder / "out", progress=False, executor=InProcess())


def test_a_resume_removes_the_snapshots_of_tasks_whose_record_was_written(tmp_path):
    """An interruption between a task's record and the removal of its snapshots leaves them behind;
    the next run finds the record up to date and removes them."""
    exp, out = TrainerExperiment(), tmp_path / "out"
    config = exp.config("quick", {"tasks": 2, "steps": 300})
    store = CheckpointStore.in_results(out, 100)
    first = run_experiment(exp, config, 0, out, progress=False, executor=InProcess(), checkpoints=store)
    assert not store.root.exists()
    stale = store.folder(exp.name, exp.tasks(config)[0].key)
    stale.mkdir(parents=True)
    (stale / "loop-0.npz").write_bytes(b"left by an interrupted run")
    again = run_experiment(exp, config, 0, out, progress=False, executor=InProcess(), checkpoints=store)
    assert not store.root.exists()
    assert [r["data"] for r in again] == [r["data"] for r in first]


@pytest.mark.parametrize("backend", [["--workers", "1"], ["--workers", "2"],
                                     pytest.param(["--scheduler", "local", "--workers", "2"], marks=pytest.mark.slow)],
                         ids=["one-process", "pool", "dask"])
def test_sigint_then_resume_gives_the_uninterrupted_numbers(backend, uninterrupted, tmp_path, monkeypatch, capsys):
    cfg, out = tmp_path / "cfg.toml", tmp_path / "out"
    cfg.write_text(TRAINER_TOML)
    err, family = stop_when("TrainerExperiment()", ["run", "fake-trainer", "--config", str(cfg), *backend,
                                                    "--checkpoint-every", "100"], out, "run-0/loop-0.npz",
                            signal.SIGINT, group=True)
    deadline = time.monotonic() + 10
    while running(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(family) == [], "worker processes outlived the driver"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted; finished records are kept" in lines[0], err
    assert f"rtrl-validate run --resume {out}" in lines[0]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and "fake-trainer/run-0" in manifest["unfinished"]
    assert len(load_records(out)) < 2

    use_trainer(monkeypatch)
    assert cli.main(["run", "--resume", str(out), "--workers", "1", "--quiet"]) == 0, capsys.readouterr()
    records = load_records(out)
    assert numbers(records) == numbers(uninterrupted)
    restored = records[0]["provenance"]["checkpoints"]["restored"]
    assert restored and restored[0]["step"] >= 100                # it did continue from a checkpoint
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not (out / "checkpoints").exists()                       # removed once records are written


def fault(sig, group, backend, slow=False):
    name = f"{signal.Signals(sig).name}-{'group' if group else 'driver'}-{'-'.join(b.strip('-') for b in backend)}"
    return pytest.param(sig, group, backend, id=name, marks=[pytest.mark.slow] if slow else [])


FAULTS = [fault(signal.SIGINT, False, ["--workers", "2"]),
          fault(signal.SIGTERM, False, ["--workers", "1"]), fault(signal.SIGTERM, False, ["--workers", "2"]),
          fault(signal.SIGTERM, True, ["--workers", "2"]),
          fault(signal.SIGKILL, False, ["--workers", "1"]), fault(signal.SIGKILL, False, ["--workers", "2"]),
          fault(signal.SIGTERM, False, ["--scheduler", "local", "--workers", "2"], slow=True),
          fault(signal.SIGKILL, False, ["--scheduler", "local", "--workers", "2"], slow=True)]


@pytest.mark.parametrize("sig,group,backend", FAULTS)
def test_signal_then_resume_gives_the_uninterrupted_numbers_and_leaves_no_process(sig, group, backend, uninterrupted,
                                                                                  tmp_path, monkeypatch, capsys):
    """SIGTERM (``kill``, batch schedulers, containers) behaves like Ctrl-C (exit 143); after
    SIGKILL of the driver nothing is marked, but no worker outlives it and the resume is exact."""
    cfg, out = tmp_path / "cfg.toml", tmp_path / "out"
    cfg.write_text(TRAINER_TOML)
    err, family = stop_when("TrainerExperiment()", ["run", "fake-trainer", "--config", str(cfg), *backend,
                                                    "--checkpoint-every", "100"], out, "run-0/loop-0.npz", sig, group)
    if backend[-1] == "2":
        assert family                                  # the pool's processes existed
    deadline = time.monotonic() + 10
    while running(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(family) == [], "worker processes outlived the driver"
    manifest = json.loads((out / "run.json").read_text())
    if sig == signal.SIGKILL:
        # nothing of ours speaks; multiprocessing's resource tracker may note the semaphores it frees
        assert "Traceback" not in err and manifest["status"] == "running"
    else:
        lines = err.strip().splitlines()
        what = "interrupted" if sig == signal.SIGINT else "stopped by SIGTERM"
        assert len(lines) == 1 and f"{what}; finished records are kept" in lines[0], err
        assert manifest["status"] == "interrupted" and manifest["signal"] == signal.Signals(sig).name

    use_trainer(monkeypatch)
    assert cli.main(["run", "--resume", str(out), "--workers", "1", "--quiet"]) == 0, capsys.readouterr()
    records = load_records(out)
    assert numbers(records) == numbers(uninterrupted)
    assert records[0]["provenance"]["checkpoints"]["restored"][0]["step"] >= 100
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_second_writer_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path, monkeypatch,
                                                                                            capsys):
    from rtrl_validation.simulations.orchestration import FolderLock
    cfg, out = tmp_path / "cfg.toml", tmp_path / "out"
    cfg.write_text("[fake-trainer]\ntasks = 2\nsteps = 1000000\n")          # busy until killed
    script = SCRIPT.format(tests=str(ROOT / "tests"), experiment="TrainerExperiment()")
    holder = subprocess.Popen([sys.executable, "-c", script, "run", "fake-trainer", "--config", str(cfg), "--workers",
                               "1", "--checkpoint-every", "100", "--out", str(out), "--quiet"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "checkpoints").rglob("loop-0.npz")):
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        use_trainer(monkeypatch)
        for argv in (["run", "fake-trainer", "--config", str(cfg), "--out", str(out)],
                     ["run", "--resume", str(out)], ["report", "--from", str(out), "--format", "html"]):
            assert cli.main([*argv, "--quiet"] if argv[0] == "run" else argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"is in use by another rtrl-validate process (pid {holder.pid} on " in err[0], err
            assert "run fake-trainer" in err[0] and "since 20" in err[0]
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        holder.kill()
    with FolderLock(out, "test"):                    # the OS released the killed holder's lock
        pass


def test_run_with_another_config_into_the_same_folder_is_refused_naming_the_keys(tmp_path, monkeypatch, capsys):
    use_trainer(monkeypatch)
    out, cfg = tmp_path / "out", tmp_path / "cfg.toml"
    cfg.write_text("[fake-trainer]\ntasks = 1\nsteps = 200\n")
    assert cli.main(["run", "fake-trainer", "--config", str(cfg), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    before = {p: p.read_bytes() for p in (out / "records").rglob("*.*")}
    cfg.write_text("[fake-trainer]\ntasks = 1\nsteps = 300\nalpha0 = 0.01\n")
    capsys.readouterr()
    assert cli.main(["run", "fake-trainer", "--config", str(cfg), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds results of another configuration (fake-trainer: alpha0, steps)" in err[0], err
    assert "choose a new --out folder" in err[0]
    assert {p: p.read_bytes() for p in (out / "records").rglob("*.*")} == before
    assert cli.main(["run", "fake-trainer", "--config", str(cfg), "--out", str(tmp_path / "new"), "--workers", "1",
                     "--quiet"]) == 0


def test_folder_without_fingerprint_is_judged_by_its_records(tmp_path, monkeypatch, capsys):
    """A results folder written before ``config.json`` existed: its records give the fingerprint."""
    use_trainer(monkeypatch)
    out, cfg = tmp_path / "out", tmp_path / "cfg.toml"
    cfg.write_text("[fake-trainer]\ntasks = 1\nsteps = 200\n")
    argv = ["run", "fake-trainer", "--config", str(cfg), "--out", str(out), "--workers", "1", "--quiet"]
    assert cli.main(argv) == 0
    (out / "config.json").unlink()
    assert cli.main(argv) == 0 and (out / "config.json").is_file()          # the same config: accepted
    (out / "config.json").unlink()
    assert cli.main([*argv, "--seed", "4"]) == 2
    assert "holds results of another configuration (seed 0 -> 4)" in capsys.readouterr().err


def test_planted_pickle_in_a_results_folder_never_runs(tmp_path, monkeypatch, capsys):
    """A plain ``run --out DIR`` into a folder with planted checkpoints: nothing runs, the numbers
    are those of a clean folder, and the record says which checkpoint was ignored."""
    import pickle

    class Planted:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "code ran"))
    use_trainer(monkeypatch)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[fake-trainer]\ntasks = 1\nsteps = 300\n")
    argv = ["run", "fake-trainer", "--config", str(cfg), "--workers", "1", "--quiet", "--checkpoint-every", "100"]
    assert cli.main([*argv, "--out", str(tmp_path / "clean")]) == 0
    task = tmp_path / "dirty" / "checkpoints" / "fake-trainer" / "run-0"
    task.mkdir(parents=True)
    (task / "loop-0.pkl").write_bytes(pickle.dumps(Planted()))
    evil = np.empty(1, dtype=object)
    evil[0] = Planted()
    with open(task / "loop-0.npz", "wb") as f:
        np.savez(f, meta=evil)
    assert cli.main([*argv, "--out", str(tmp_path / "dirty")]) == 0
    assert not (tmp_path / "pwned").exists()
    dirty = load_records(tmp_path / "dirty")
    assert numbers(dirty) == numbers(load_records(tmp_path / "clean"))
    assert dirty[0]["provenance"]["checkpoints"]["notes"] == ["loop 0: checkpoint ignored (unreadable: ValueError)"]


@pytest.mark.slow
def test_real_convergence_task_resumes_with_the_uninterrupted_numbers(tmp_path, monkeypatch, capsys):
    """A ``trajectory-tanh`` task of the convergence experiment (online RTRL, then ``∇L`` estimated
    at frozen checkpoints: two checkpointed loops) interrupted during its second loop."""
    from rtrl_validation.simulations.experiments.convergence import ConvergenceExperiment
    try:
        from helpers import Subset
    except ImportError:
        from tests.helpers import Subset
    exp = Subset(ConvergenceExperiment(), ["trajectory-tanh"])
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[convergence]\ntraj_cases = ["tanh"]\ntrain_steps = 3000\neval_points = 4\n')
    out, reference = tmp_path / "out", tmp_path / "reference"
    interrupt_when('Subset(__import__("rtrl_validation.simulations.experiments.convergence").simulations.experiments.convergence'
                   '.ConvergenceExperiment(), ["trajectory-tanh"])',
                   ["run", "convergence", "--config", str(cfg), "--workers", "1", "--checkpoint-every", "200"],
                   out, "loop-1.npz")
    monkeypatch.setattr(cli, "experiments", lambda: {exp.name: exp})
    assert cli.main(["run", "--resume", str(out), "--workers", "1", "--quiet"]) in (0, 1)
    assert cli.main(["run", "convergence", "--config", str(cfg), "--out", str(reference), "--workers", "1",
                     "--checkpoint-every", "0", "--quiet"]) in (0, 1)
    capsys.readouterr()
    resumed = load_records(out)
    assert numbers(resumed) == numbers(load_records(reference))
    loops = [r["loop"] for r in resumed[0]["provenance"]["checkpoints"]["restored"]]
    assert loops == [0, 1]                 # the training loop's final snapshot, the evaluation's newest


def test_report_ctrl_c_marks_the_run_and_resume_finishes_it(monkeypatch, tmp_path, capsys):
    from rtrl_validation.reports import registry
    monkeypatch.setattr(registry, "SECTIONS", [(FakeExperiment("fake-pass", bound=10.0, interrupt_at="t1"),
                                                summarise)])
    out = tmp_path / "out"
    assert cli.main(["report", "--out", str(out), "--workers", "1", "--quiet", "--format", "html"]) == 130
    err = capsys.readouterr().err
    assert f"continue with: rtrl-validate report --resume {out}" in err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["unfinished"] == ["fake-pass/t1"]
    assert [r["task"] for r in load_records(out)] == ["t0"]          # the finished record is kept

    assert cli.main(["report", "--from", str(out), "--format", "html"]) == 0
    assert "is from an interrupted run (1 unfinished task(s): fake-pass/t1)" in capsys.readouterr().out

    monkeypatch.setattr(registry, "SECTIONS", [(FakeExperiment("fake-pass", bound=10.0), summarise)])
    start = CALLS["run_task"]
    assert cli.main(["report", "--resume", str(out), "--workers", "1", "--quiet", "--format", "html"]) == 0
    assert CALLS["run_task"] - start == 2                           # t0 is reused, t1 and t2 run
    assert (out / "report.html").is_file() and [r["task"] for r in load_records(out)] == ["t0", "t1", "t2"]
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


# ------------------------------------------------------------------------------------ divergence
def test_non_finite_input_stops_the_run_at_its_step():
    cell, readout = make_cell("elman", 3, 2), LinearReadout(3, 1)
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((40, 2, 2)), rng.standard_normal((40, 2, 1))
    xs[17, 1, 0] = np.nan
    trainer = OnlineTrainer(cell, readout, parse_estimator("rtrl"), Replay(xs, ys), Schedule(0.01), chunk=8)
    state, traj = trainer.run(trainer.init(cell.init(rng, batch=2), readout.init(rng, 2), rng), 40, rng)
    assert traj.diverged_at == 18 and state.t == 18 and traj.diverged_reason == "state non-finite"


def test_influence_blow_up_is_detected_with_a_bounded_state():
    """Linear cell with ``W = 2I``, zero inputs, bias and targets: ``s_t = 0`` and the credit is 0,
    but the influence of the bias doubles each step, ``J_t = (2^t − 1) I`` (``‖J_t‖_F = (2^t − 1)√k``)."""
    k = 3
    cell, readout = make_cell("elman", k, 2, activation="identity"), LinearReadout(k, 1)
    P = {name: np.zeros_like(value) for name, value in cell.unpack(cell.init(np.random.default_rng(0))).items()}
    P["W"] = 2.0 * np.eye(k)
    theta = cell.pack(P)[None]
    zeros = Replay(np.zeros((100, 1, 2)), np.zeros((100, 1, 1)))
    blowup = 1e8
    trainer = OnlineTrainer(cell, readout, parse_estimator("rtrl"), zeros, None, chunk=1, blowup=blowup)
    state, traj = trainer.run(trainer.init(theta, np.zeros((1, readout.q)), None), 100, None)
    expected = next(t for t in range(1, 100) if (2.0 ** t - 1) * np.sqrt(k) >= blowup)
    assert traj.diverged_at == expected and not np.any(state.s)
    assert traj.diverged_reason.startswith("influence norm") and "beyond the bound 1e+08" in traj.diverged_reason


def test_diverged_task_is_a_record_with_its_step(tmp_path):
    exp = TrainerExperiment()
    records = run_experiment(exp, exp.config("quick", {"tasks": 1, "alpha0": 50.0}), 0, tmp_path, progress=False)
    r = records[0]
    assert r["status"] == "diverged" and isinstance(r["data"]["diverged_at"], int)
    assert r["reason"].startswith(f"training diverged at step {r['data']['diverged_at']}: ")
    assert r["data"]["diverged_at"] < 600
