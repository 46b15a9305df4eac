"""Records are validated when read, against the one schema the writer also uses: a damaged record
is never a traceback and never silently vanishes.  ``report --from`` and ``run`` name the bad file
and exit 2, or with ``--skip-bad-records`` leave it out and say so (stdout and the report's
provenance); so is a record whose data breaks its experiment's declared schema (a missing or
undeclared key); numpy's "contains pickled data" never reaches the user."""
from __future__ import annotations

import io
import json
import pickle
import shutil

import numpy as np
import pytest

from rtrl_validation.reports import cli
from rtrl_validation.simulations.experiments.base import Experiment, Task, TaskResult, Verdict
from rtrl_validation.simulations.records import (RECORD_SCHEMA, VERDICT_SCHEMA, RecordError, check_record,
                                                 load_records, provenance, read_record, write_record)
from rtrl_validation.simulations.runner import run_experiment

try:
    from helpers import FakeExperiment, use_fakes
except ImportError:  # tests collected as a package
    from tests.helpers import FakeExperiment, use_fakes


@pytest.fixture
def made(tmp_path_factory):
    """A results folder of ``report`` over the passing fakes (3 records of fake-pass with arrays)."""
    folder = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        use_fakes(mp, passing=True)
        assert cli.main(["report", "--out", str(folder), "--format", "html", "--quiet"]) == 0
    return folder


def record_file(folder, task="t1"):
    return folder / "records" / "fake-pass" / f"{task}.json"


def edit_json(change):
    def damage(path):
        body = json.loads(path.read_text())
        change(body)
        path.write_text(json.dumps(body))
    return damage


def npz_of(path):
    return path.parent / json.loads(path.read_text())["arrays_file"]


def object_array_npz(path):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}, 2], dtype=object), cumsum=np.zeros(3))
    npz_of(path).write_bytes(buffer.getvalue())


def pickle_in_npz_name(path):
    npz_of(path).write_bytes(pickle.dumps({"x": 1}))


def moved_to_another_experiment(path):
    body = json.loads(path.read_text())
    body["experiment"] = "fake-other"
    path.write_text(json.dumps(body))


DAMAGES = {
    "verdicts-null": (edit_json(lambda b: b.update(verdicts=None)), "verdicts must be a list of tables, got None"),
    "verdict-status-5": (edit_json(lambda b: b["verdicts"][0].update(status=5)), "status must be PASS"),
    "verdict-passed-string": (edit_json(lambda b: b["verdicts"][0].update(passed="yes")), "passed must be true or false"),
    "verdict-status-disagrees": (edit_json(lambda b: b["verdicts"][0].update(status="FAIL")),
                                 "status FAIL disagrees with passed True"),
    "verdict-missing-check": (edit_json(lambda b: b["verdicts"][0].pop("check")), "missing keys in verdicts[0]: check"),
    "verdict-interval-bad": (edit_json(lambda b: b["verdicts"][0].update(interval=[1])), "interval must be null or"),
    "missing-reason": (edit_json(lambda b: b.pop("reason")), "missing keys: reason"),
    "task-index-string": (edit_json(lambda b: b.update(task_index="1")), "task_index must be a non-negative integer"),
    "seed-negative": (edit_json(lambda b: b.update(seed=-1)), "seed must be a non-negative integer"),
    "status-unknown": (edit_json(lambda b: b.update(status="done")), "status must be ok | diverged | failed"),
    "data-list": (edit_json(lambda b: b.update(data=[1, 2])), "data must be a table"),
    "config-null": (edit_json(lambda b: b.update(config=None)), "config must be a table"),
    "provenance-no-wall-time": (edit_json(lambda b: b["provenance"].pop("wall_time")),
                                "missing keys in provenance: wall_time"),
    "provenance-string": (edit_json(lambda b: b.update(provenance="x")), "provenance must be a table"),
    "arrays-file-escapes": (edit_json(lambda b: b.update(arrays_file="../../run.json")), "arrays_file must be a file name"),
    "array-names-not-in-file": (edit_json(lambda b: b.update(array_names=["x", "y"])),
                                "does not hold the arrays the record names"),
    "experiment-disagrees-with-folder": (moved_to_another_experiment,
                                         "its experiment field 'fake-other' disagrees with its place 'fake-pass'"),
    "task-disagrees-with-file": (edit_json(lambda b: b.update(task="t2")), "its task field 't2' disagrees"),
    "json-null": (lambda p: p.write_text("null"), "not a JSON object"),
    "json-empty": (lambda p: p.write_text(""), "invalid JSON"),
    "json-truncated": (lambda p: p.write_text(p.read_text()[:100]), "invalid JSON"),
    "json-binary": (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "cannot read record"),
    "npz-empty": (lambda p: npz_of(p).write_bytes(b""), "is empty"),
    "npz-truncated": (lambda p: npz_of(p).write_bytes(npz_of(p).read_bytes()[:60]), "is truncated or not an .npz"),
    "npz-garbage": (lambda p: npz_of(p).write_bytes(b"garbage" * 50), "is truncated or not an .npz"),
    "npz-is-a-pickle": (pickle_in_npz_name, "is truncated or not an .npz"),
    "npz-object-array": (object_array_npz, "holds Python objects in 'x'; records hold numeric arrays only"),
    "npz-missing": (lambda p: npz_of(p).unlink(), "is missing"),
    "data-lacks-declared-key": (edit_json(lambda b: b["data"].pop("mean")),
                                "data does not match its experiment's schema (fake-pass/t1: missing data key 'mean')"),
    "data-undeclared-key": (edit_json(lambda b: b["data"].update(average=0.0)), "undeclared data key 'average'"),
}


@pytest.mark.parametrize("damage,fragment", DAMAGES.values(), ids=DAMAGES.keys())
def test_bad_record_is_refused_naming_the_file_or_skipped_and_said(damage, fragment, made, tmp_path, monkeypatch,
                                                                   capsys):
    folder = tmp_path / "copy"
    shutil.copytree(made, folder)
    damage(record_file(folder))
    use_fakes(monkeypatch, passing=True)

    with pytest.raises(RecordError, match="t1.json"):
        load_records(folder, check=FakeExperiment("fake-pass").check_record_data)

    code = cli.main(["report", "--from", str(folder), "--format", "html", "--quiet"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("rtrl-validate: error: ") and str(record_file(folder)) in lines[0], err
    assert fragment in lines[0] and "--skip-bad-records" in lines[0], err
    assert "Traceback" not in err + out and "pickle" not in err + out

    code = cli.main(["report", "--from", str(folder), "--format", "html", "--skip-bad-records", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    assert f"note: bad record left out: {record_file(folder)}" in out and "pickle" not in out
    html = (folder / "report.html").read_text()
    assert "bad record left out" in html and "t1.json" in html
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary["skipped_records"]) == 1 and fragment.split("'")[0] in summary["skipped_records"][0]


COMPUTING = [(["run", "fake-pass", "--quiet"], "3 tasks: 3 ok"),
             (["report", "--quiet", "--format", "html"], "verdicts: 3 PASS, 0 FAIL")]


@pytest.mark.parametrize("name", ["verdicts-null", "npz-garbage", "experiment-disagrees-with-folder",
                                  "data-lacks-declared-key"])
@pytest.mark.parametrize("argv,done", COMPUTING, ids=["run", "report"])
def test_computing_refuses_a_bad_record_before_computing_or_recomputes_it_when_asked(name, argv, done, made, tmp_path,
                                                                                    monkeypatch, capsys):
    damage, fragment = DAMAGES[name]
    folder = tmp_path / "copy"
    shutil.copytree(made, folder)
    damage(record_file(folder))
    before = {p.name: p.read_bytes() for p in (folder / "records" / "fake-pass").iterdir()}
    use_fakes(monkeypatch, passing=True)

    code = cli.main([*argv, "--out", str(folder)])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err and "t1.json" in err, err
    assert {p.name: p.read_bytes() for p in (folder / "records" / "fake-pass").iterdir()} == before

    code = cli.main([*argv, "--out", str(folder), "--skip-bad-records"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "note: bad record left out" in out and done in out
    assert [r["task"] for r in load_records(folder)] == ["t0", "t1", "t2"]
    if argv[0] == "report":
        assert "bad record left out" in (folder / "report.html").read_text()


def test_the_writer_uses_the_readers_schema(tmp_path):
    """A body the reader would refuse is never written (nothing lands on disk)."""
    good = {"experiment": "e", "task": "t", "task_index": 0, "seed": 0, "config": {}, "experiment_config": {},
            "status": "ok", "reason": "", "data": {}, "verdicts": [Verdict("c", True, "fine").to_dict()],
            "provenance": provenance("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", 1.0)}
    assert read_record(write_record(tmp_path / "ok", good))["verdicts"][0]["status"] == "PASS"
    for bad in ({"status": "finished"}, {"verdicts": [{"check": "c"}]}, {"seed": True}, {"provenance": {}}):
        with pytest.raises(RecordError, match="not written"):
            write_record(tmp_path / "bad", {**good, **bad}, {"x": np.zeros(2)})
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.*"))


def test_verdict_schema_covers_every_key_verdicts_write():
    written = Verdict("c", "INCONCLUSIVE", "e", 1.0, 2.0, effect=0.1, interval=(0.0, 0.2)).to_dict()
    assert set(written) == set(VERDICT_SCHEMA)
    assert check_record({key: None for key in RECORD_SCHEMA}) != []


class BadOutput(Experiment):
    """Task ``list-data`` returns data that is not a table; task ``fine`` is well formed."""

    name = "bad-output"
    profiles = {"quick": {}}

    def tasks(self, config):
        return [Task("list-data", {}), Task("fine", {})]

    def run_task(self, task, seed, progress=None):
        return TaskResult(data=[1, 2] if task.key == "list-data" else {"x": 1})


def test_task_output_that_breaks_the_schema_becomes_a_failed_record(tmp_path):
    exp = BadOutput()
    records = run_experiment(exp, exp.config("quick"), 0, tmp_path, progress=False)
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert "data must be a table, got [1, 2]" in records[0]["reason"]
    assert [r["task"] for r in load_records(tmp_path)] == ["list-data", "fine"]
