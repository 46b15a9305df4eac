"""The experiment driver: per-task seeds, failed/diverged tasks recorded, up-to-date records reused."""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.simulations.records import load_records
from rtrl_validation.simulations.runner import execute_task, run_experiment, task_seed

try:
    from helpers import CALLS, FakeExperiment
except ImportError:  # tests collected as a package
    from tests.helpers import CALLS, FakeExperiment


def test_task_seed_is_the_spawned_child_by_position():
    children = np.random.SeedSequence(123).spawn(5)
    for i, child in enumerate(children):
        np.testing.assert_array_equal(task_seed(123, i).generate_state(4), child.generate_state(4))


def test_records_written_per_task_with_status_and_reasons(tmp_path):
    exp = FakeExperiment("fake-broken", broken=True)
    records = run_experiment(exp, exp.config("quick"), 5, tmp_path, progress=False)
    assert [r["task"] for r in records] == ["t0", "t1", "t2"]
    assert [r["status"] for r in records] == ["ok", "failed", "diverged"]
    assert records[1]["reason"] == "RuntimeError: boom in task t1 second line"     # one line
    assert "Traceback" in records[1]["data"]["traceback"]
    assert records[2]["reason"] == "NaN at step 7"
    assert records[0]["experiment_config"] == exp.config("quick")
    assert [r["task_index"] for r in records] == [0, 1, 2] and {r["seed"] for r in records} == {5}
    assert records[0]["data"]["n"] == 50 and records[0]["arrays"]["x"].shape == (50,)
    assert [r["task"] for r in load_records(tmp_path)] == ["t0", "t1", "t2"]


def test_same_numbers_whatever_the_schedule(tmp_path):
    """A task run alone with its derived seed reproduces the record of the full run."""
    exp = FakeExperiment("fake-pass")
    config = exp.config("quick")
    records = run_experiment(exp, config, 11, tmp_path, progress=True)
    for i in reversed(range(len(records))):
        record, arrays = execute_task(exp, exp.tasks(config)[i], task_seed(11, i))
        assert record["data"] == records[i]["data"]
        np.testing.assert_array_equal(arrays["x"], records[i]["arrays"]["x"])
    other = run_experiment(exp, config, 12, tmp_path / "other", progress=False)
    assert other[0]["data"]["mean"] != records[0]["data"]["mean"]


def test_up_to_date_records_are_reused_and_changes_rerun(tmp_path):
    exp = FakeExperiment("fake-broken", broken=True)
    config = exp.config("quick")
    run_experiment(exp, config, 0, tmp_path, progress=False)
    start = CALLS["run_task"]
    again = run_experiment(exp, config, 0, tmp_path, progress=False)
    assert CALLS["run_task"] - start == 1                    # only the failed task runs again
    assert [r["status"] for r in again] == ["ok", "failed", "diverged"]
    start = CALLS["run_task"]
    run_experiment(exp, config, 1, tmp_path, progress=False)                  # other seed
    assert CALLS["run_task"] - start == 3
    start = CALLS["run_task"]
    run_experiment(exp, exp.config("quick", {"scale": 2.0}), 1, tmp_path, progress=False)   # other config
    assert CALLS["run_task"] - start == 3
    start = CALLS["run_task"]
    run_experiment(exp, exp.config("quick", {"scale": 2.0}), 1, tmp_path, progress=False, skip_up_to_date=False)
    assert CALLS["run_task"] - start == 3


def test_interrupt_keeps_finished_records(tmp_path):
    exp = FakeExperiment("fake-pass", interrupt_at="t2")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, exp.config("quick"), 0, tmp_path, progress=False)
    assert [r["task"] for r in load_records(tmp_path)] == ["t0", "t1"]


def test_bad_task_results_become_failed_records(tmp_path, monkeypatch):
    exp = FakeExperiment("fake-pass")
    monkeypatch.setattr(exp, "run_task", lambda task, seed, progress=None: {"not": "a TaskResult"})
    records = run_experiment(exp, exp.config("quick"), 0, tmp_path, progress=False)
    assert {r["status"] for r in records} == {"failed"}
    assert records[0]["reason"] == "TypeError: run_task returned dict, not TaskResult"


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_seed_refused(tmp_path, seed):
    exp = FakeExperiment("fake-pass")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        run_experiment(exp, exp.config("quick"), seed, tmp_path, progress=False)
