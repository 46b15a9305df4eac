"""Result records: schema round trip, atomic writes, clear errors for unreadable records."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from rtrl_validation.simulations import records as rec
from rtrl_validation.simulations.records import (SCHEMA_VERSION, RecordError, load_records, read_record, record_path,
                                 write_record)


def make_record(experiment="exp-a", task="k3/T=5", index=0, **extra):
    body = {"experiment": experiment, "task": task, "task_index": index, "seed": 7,
            "config": {"cell": "gru", "hidden": 3, "steps": [1, 5]},
            "experiment_config": {"cells": ["gru"], "hidden": [3], "steps": [1, 5]},
            "status": "ok", "reason": "",
            "data": {"max_rel_error": np.float64(1.5e-9), "count": np.int64(4), "flag": np.bool_(True),
                     "nan": float("nan"), "inf": -math.inf, "text": "ρ < 1 ✓", "nested": {"a": (1, 2)},
                     "vector": np.arange(3.0)},
            "verdicts": [{"check": "rtrl == bptt", "passed": True, "evidence": "3e-12 <= 1e-10",
                          "value": 3e-12, "bound": 1e-10}],
            "provenance": rec.provenance("2026-01-01T00:00:00.000+00:00", "2026-01-01T00:00:01.000+00:00", 1.0)}
    body.update(extra)
    return body


ARRAYS = {"errors": np.linspace(0, 1, 12).reshape(3, 4), "ints": np.arange(5, dtype=np.int32),
          "mask": np.array([True, False, True]), "z": np.array([1 + 2j])}


def test_round_trip_preserves_every_field_and_array(tmp_path):
    path = write_record(tmp_path, make_record(), ARRAYS)
    assert path == record_path(tmp_path, "exp-a", "k3/T=5")
    assert path.name == "k3_T_5.json" and path.parent.name == "exp-a"
    loaded = read_record(path)
    assert loaded["schema_version"] == SCHEMA_VERSION
    for key in ("experiment", "task", "task_index", "seed", "config", "experiment_config", "status",
                "reason", "verdicts", "provenance"):
        assert loaded[key] == json.loads(rec.to_json(make_record()[key])), key
    data = loaded["data"]
    assert data["max_rel_error"] == 1.5e-9 and data["count"] == 4 and data["flag"] is True
    assert math.isnan(data["nan"]) and data["inf"] == -math.inf
    assert data["text"] == "ρ < 1 ✓" and data["nested"] == {"a": [1, 2]} and data["vector"] == [0.0, 1.0, 2.0]
    assert sorted(loaded["arrays"]) == sorted(ARRAYS) == loaded["array_names"]
    assert len(loaded["arrays"]) == 4
    for name, value in ARRAYS.items():
        got = loaded["arrays"][name]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    with pytest.raises(KeyError):
        loaded["arrays"]["missing"]


def test_record_without_arrays_has_no_npz(tmp_path):
    path = write_record(tmp_path, make_record(), {})
    loaded = read_record(path)
    assert loaded["arrays_file"] is None and dict(loaded["arrays"]) == {}
    assert not list(path.parent.glob("*.npz"))


def test_provenance_fields(tmp_path):
    prov = read_record(write_record(tmp_path, make_record()))["provenance"]
    for key in ("versions", "git_revision", "git_dirty", "hostname", "platform", "cpu_count", "started",
                "finished", "wall_time"):
        assert key in prov
    assert {"python", "numpy", "scipy", "numba", "sympy", "statsmodels", "matplotlib"} <= set(prov["versions"])
    assert prov["versions"]["numpy"] == np.__version__
    assert prov["git_revision"] is None or len(prov["git_revision"]) == 40
    assert prov["cpu_count"] >= 1 and prov["wall_time"] == 1.0


def test_git_revision_never_fails(monkeypatch, tmp_path):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(rec.subprocess, "run", no_git)
    assert rec._git_revision(tmp_path) == (None, None)
    monkeypatch.undo()
    assert rec._git_revision(tmp_path) == (None, None)       # not a checkout of this package


def test_overwrite_replaces_arrays_and_removes_the_old_npz(tmp_path):
    write_record(tmp_path, make_record(), {"a": np.zeros(3)})
    path = write_record(tmp_path, make_record(seed=8), {"a": np.ones(3)})
    assert len(list(path.parent.glob("*.npz"))) == 1
    loaded = read_record(path)
    assert loaded["seed"] == 8
    np.testing.assert_array_equal(loaded["arrays"]["a"], np.ones(3))


@pytest.mark.parametrize("interrupt_at", [1, 2, 3, 4])
def test_interrupted_write_leaves_old_or_new_record_never_a_corrupt_one(tmp_path, monkeypatch, interrupt_at):
    """Interrupt at each of the four fsyncs of a write (new ``.npz``, its folder, new JSON, its
    folder): the record then reads back complete, either the old one (with its own arrays) or the
    new one, and no temporary or orphan file is left."""
    path = write_record(tmp_path, make_record(), {"a": np.zeros(3)})
    real_fsync, calls = os.fsync, []

    def interrupted_fsync(fd):
        calls.append(fd)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(rec.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        write_record(tmp_path, make_record(seed=99), {"a": np.ones(3)})
    monkeypatch.undo()
    loaded = read_record(path)
    expected = np.zeros(3) if loaded["seed"] == 7 else np.ones(3)
    assert loaded["seed"] == (7 if interrupt_at <= 3 else 99)
    np.testing.assert_array_equal(loaded["arrays"]["a"], expected)
    names = sorted(p.name for p in path.parent.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.endswith(".npz")]) == (1 if interrupt_at <= 3 else 2)
    write_record(tmp_path, make_record(), {"a": np.zeros(3)})          # the next write tidies up
    assert len(list(path.parent.glob("*.npz"))) == 1


def test_leftover_temporary_files_are_ignored(tmp_path):
    """A process killed mid-write (no cleanup) leaves only a dot-file ``.tmp``, never a record."""
    path = write_record(tmp_path, make_record(), {})
    (path.parent / f".{path.name}.abc123.tmp").write_text('{"schema_version": 1, "experi')
    assert [r["task"] for r in load_records(tmp_path)] == ["k3/T=5"]


def test_unserialisable_data_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="object"):
        write_record(tmp_path, make_record(), {"bad": np.array([object()])})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        write_record(tmp_path, make_record(data={"f": object()}), {"a": np.zeros(2)})
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.npz"))


def test_corrupt_json_is_a_clear_error_naming_the_file(tmp_path):
    path = write_record(tmp_path, make_record(), {})
    path.write_text(path.read_text()[:40])
    with pytest.raises(RecordError, match=r"k3_T_5\.json: corrupt record \(invalid JSON"):
        load_records(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match="not a JSON object"):
        read_record(path)


def _bump_version(body, folder):
    body["schema_version"] = SCHEMA_VERSION + 1


def _drop_npz(body, folder):
    next(folder.glob("*.npz")).unlink()


DAMAGE = [(_bump_version, f"schema version {SCHEMA_VERSION + 1} is not supported"),
          (lambda body, folder: body.pop("schema_version"), "schema version None is not supported"),
          (lambda body, folder: body.pop("verdicts"), "missing keys: verdicts"),
          (_drop_npz, r"its array file k3_T_5\.[0-9a-f]{8}\.npz is missing")]


@pytest.mark.parametrize("damage,message", DAMAGE, ids=["newer-version", "no-version", "missing-key", "missing-npz"])
def test_damaged_or_incompatible_records_are_refused_naming_the_file(tmp_path, damage, message):
    path = write_record(tmp_path, make_record(), {"a": np.zeros(2)})
    body = json.loads(path.read_text())
    damage(body, path.parent)
    path.write_text(json.dumps(body))
    with pytest.raises(RecordError, match=r"k3_T_5\.json: .*" + message):
        read_record(path)


def test_load_records_filters_and_orders(tmp_path):
    for index, task in [(2, "c"), (0, "z"), (1, "a")]:
        write_record(tmp_path, make_record(task=task, index=index), {})
    write_record(tmp_path, make_record(experiment="exp-b", task="only"), {})
    assert [r["task"] for r in load_records(tmp_path, "exp-a")] == ["z", "a", "c"]
    assert [r["experiment"] for r in load_records(tmp_path)] == ["exp-a"] * 3 + ["exp-b"]
    assert load_records(tmp_path, "nothing") == []
    assert load_records(tmp_path / "absent") == []


def test_safe_name():
    assert rec.safe_name("gru/k=3 T:5") == "gru_k_3_T_5"
    assert rec.safe_name("..") == "_.." and rec.safe_name("") == "_"
