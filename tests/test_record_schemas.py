"""Each experiment declares what its tasks write (``Experiment.schemas``); the runner checks a
task's result against it and the record reader can call ``check_record_data``.  A renamed key
fails here, not in a report."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from rtrl_validation.reports.registry import experiments
from rtrl_validation.simulations.experiments.base import Task, TaskResult
from rtrl_validation.simulations.records import load_records
from rtrl_validation.simulations.runner import execute_task, run_experiment, task_seed

ROOT = Path(__file__).resolve().parents[1]

#: a small config per experiment that still runs every kind of task
SMALL = {
    "gradients": dict(cells=["elman", "lstm"], hidden=2, inputs=2, steps=[1, 3], densities=[1.0]),
    "bias-variance": dict(steps=6, replicates=64, hidden=[4], densities=[], rhos=[], base_hidden=4,
                          base_density=0.5, orders=[1], check_replicates=500, enumeration_steps=2,
                          copy_length=2, copy_train_steps=200),
    "cost": dict(series={"snap-1": [4, 6, 8]}, sparse_series={"snap-2": [6, 8, 10]}, fit_points=3, min_time=1e-4,
                 repeats=2, batch_hidden=3, batch_replicates=4, batch_steps=2, compare_k=6),
    "convergence": dict(hidden=2, forget_blocks=1, forget_pairs=2, forget_steps=10, chains=10, chain_times=[1, 2],
                        j_coords=2, grad_cases=["linear"], grad_paths=4, grad_burn=10, grad_steps=40, fd_dirs=2,
                        ess_window=10, traj_cases=["linear", "tanh"], limit_cases=["linear-wide"],
                        limit_estimators=["rtrl", "tbptt-1"], train_replicates=2, train_steps=100,
                        log_checkpoints=5, late_points=5, eval_points=3, eval_paths=2,
                        eval_burn=10, eval_steps=20, floor_paths=2, floor_steps=200, floor_window=20,
                        app_taus=[1], app_replicates=2, app_steps=50, app_val_steps=10, app_test_steps=10,
                        trained_steps=20),
    "learning": dict(groups=["elman:0.5"], hidden=3, seeds=2, copy_steps=40, text_steps=40, record_every=20,
                     align_every=20, align_len=8, val_chars=40, val_every=20, vocab_size=8,
                     estimators=["rtrl", "tbptt-2"]),
}
ANALYSES = {"gradients": "gradients", "bias-variance": "bias_variance", "cost": "cost",
            "convergence": "convergence", "learning": "learning"}


def test_every_registered_experiment_declares_a_schema_and_a_small_config():
    assert set(experiments()) == set(SMALL) == set(ANALYSES)
    for exp in experiments().values():
        assert exp.schemas and exp.Config is not None, exp.name


@pytest.mark.parametrize("name", list(SMALL))
def test_small_runs_write_what_their_schema_declares(name, tmp_path):
    exp = experiments()[name]
    run_experiment(exp, exp.config("quick", SMALL[name]), 0, tmp_path, progress=False)
    records = load_records(tmp_path)
    assert records and all(r["status"] == "ok" for r in records), [(r["task"], r["reason"]) for r in records]
    kinds = {exp.task_kind(r["config"]) for r in records}
    assert kinds == set(exp.schemas), kinds            # every kind of task ran
    for r in records:
        assert exp.check_record_data(r) == []


def test_profiles_hold_exactly_the_typed_fields():
    for exp in experiments().values():
        fields = [f.name for f in dataclasses.fields(exp.Config)]
        for profile, config in exp.profiles.items():
            assert sorted(config) == sorted(fields), (exp.name, profile)
            exp.config(profile)


def _record(exp_name="learning", **edit):
    exp = experiments()[exp_name]
    (schema,) = [exp.schemas["copy"]]
    data = {k: 0 for k in schema.data.required}
    names = list(schema.arrays.required)
    record = {"task": "copy-x", "config": {"task": "copy"}, "status": "ok", "data": data, "array_names": names}
    record.update(edit)
    return exp, record


def test_a_renamed_or_missing_key_is_reported_one_line_each():
    exp, record = _record()
    assert exp.check_record_data(record) == []
    record["data"]["final_len"] = record["data"].pop("final_length")
    record["array_names"] = [n if n != "loss_bits" else "loss" for n in record["array_names"]] + ["cos.rtrl"]
    assert exp.check_record_data(record) == [
        "learning/copy-x: undeclared data key 'final_len'", "learning/copy-x: missing data key 'final_length'",
        "learning/copy-x: undeclared array 'loss'", "learning/copy-x: undeclared array 'cos.rtrl'",
        "learning/copy-x: missing array 'loss_bits'"]


def test_a_record_that_stopped_early_may_lack_keys_but_not_rename_them():
    exp, record = _record(status="diverged", data={"estimator": "rtrl"}, array_names=["t"])
    assert exp.check_record_data(record) == []
    record["data"]["estimator_name"] = "rtrl"
    assert exp.check_record_data(record) == ["learning/copy-x: undeclared data key 'estimator_name'"]
    assert exp.check_record_data(dict(record, status="failed")) == []


def test_bad_records_give_problems_not_exceptions():
    exp, record = _record()
    assert exp.check_record_data(dict(record, config={"task": "music"}))[0].endswith("kind of task of 'learning'")
    assert exp.check_record_data(dict(record, config=None))
    assert exp.check_record_data(dict(record, data=None)) == [
        "learning/copy-x: data must be a table and array_names a list"]
    bv = experiments()["bias-variance"]
    assert bv.check_record_data({"task": "h4", "config": {"setting": {"hidden": 4}}, "status": "ok",
                                 "data": {}, "array_names": ["g_norm", "sq_err.uoro"]})[0] \
        == "bias-variance/h4: missing data key 'hidden'"


def test_the_runner_fails_a_task_whose_result_breaks_its_schema(monkeypatch):
    exp = experiments()["gradients"]
    monkeypatch.setattr(type(exp), "run_task", lambda self, task, seed, progress=None:
                        TaskResult(data={"checks": [], "p": 1, "kk": 2}))
    record, _ = execute_task(exp, Task("elman-d1", {"cell": "elman"}), task_seed(0, 0))
    assert record["status"] == "failed"
    assert record["reason"] == ("ValueError: result does not match the schema of 'gradients': "
                                "undeclared data key 'kk'; missing data key 'k'")


#: reads of a record's data or arrays in an analysis module: r["data"]["x"], data.get("x"), arrays[f"x.{...}"]
READ = re.compile(r'(?:\["data"\]|\["arrays"\]|\bdata|\barrays)(?:\[|\.get\()\s*f?"([A-Za-z_]\w*\.?)')


@pytest.mark.parametrize("name", list(ANALYSES))
def test_analysis_reads_only_declared_names(name):
    exp = experiments()[name]
    source = (ROOT / "analysis" / f"{ANALYSES[name]}.py").read_text()
    read = set(READ.findall(source))
    assert read, "the pattern finds the analysis' reads"
    declared = set()
    for schema in exp.schemas.values():
        for names in (schema.data, schema.arrays):
            declared |= {p[:-1] if p.endswith(".*") else p for p in names.required + names.optional}
    assert sorted(read - declared) == []
