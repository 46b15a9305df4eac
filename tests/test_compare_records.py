"""benchmarks/compare_records.py: identical folders compare identical; a reordering-sized change
(relative 1e-14) is classed within 1e-12; a larger change, a missing record, a missing field or a
changed string is DIFFERENT; timing and provenance fields are never compared."""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare_records", ROOT / "benchmarks" / "compare_records.py")
compare_records = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_records)


def write(folder: Path, theta: np.ndarray, loss: float = 0.5, seconds: float = 1.0, host: str = "a",
          estimator: str = "rtrl") -> None:
    d = folder / "records" / "learning"
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "task.abc.npz", theta=theta, seconds=np.asarray(seconds))
    record = {"experiment": "learning", "task": "task", "status": "ok",
              "data": {"loss": loss, "estimator": estimator, "seconds_per_step": seconds},
              "verdicts": [{"check": "c", "passed": True, "evidence": "e", "value": 1.0, "bound": 2.0}],
              "arrays_file": "task.abc.npz", "provenance": {"hostname": host, "wall_time": seconds}}
    (d / "task.json").write_text(json.dumps(record))


def compare(a, b):
    out = io.StringIO()
    bad = compare_records.compare_folders(a, b, stream=out)
    return bad, out.getvalue()


@pytest.fixture
def before(tmp_path):
    write(tmp_path / "before", np.array([1.0, -2.0, 3.0, np.nan]))
    return tmp_path / "before"


def test_identical_apart_from_timing_and_provenance(before, tmp_path):
    write(tmp_path / "after", np.array([1.0, -2.0, 3.0, np.nan]), seconds=9.0, host="b")
    bad, text = compare(before, tmp_path / "after")
    assert bad == 0 and "DIFFERENT" not in text and "rel<=" not in text


def test_reordering_sized_change_is_within_tolerance_and_larger_is_not(before, tmp_path):
    write(tmp_path / "close", np.array([1.0 * (1 + 1e-14), -2.0, 3.0, np.nan]))
    bad, text = compare(before, tmp_path / "close")
    assert bad == 0 and "array:theta: rel<=1e-12" in text
    write(tmp_path / "far", np.array([1.0 * (1 + 1e-10), -2.0, 3.0, np.nan]))
    bad, text = compare(before, tmp_path / "far")
    assert bad == 1 and "array:theta: DIFFERENT" in text


@pytest.mark.parametrize("change", [dict(loss=0.6), dict(estimator="uoro"),
                                    dict(theta=np.array([1.0, -2.0, 3.0, 0.0]))])
def test_changed_fields_are_different(before, tmp_path, change):
    write(tmp_path / "after", **{"theta": np.array([1.0, -2.0, 3.0, np.nan]), **change})
    bad, _ = compare(before, tmp_path / "after")
    assert bad == 1


def test_missing_record_and_verdict_evidence_fields(before, tmp_path):
    (tmp_path / "empty" / "records").mkdir(parents=True)
    assert compare(before, tmp_path / "empty")[0] == 1
    write(tmp_path / "after", np.array([1.0, -2.0, 3.0, np.nan]))
    path = tmp_path / "after" / "records" / "learning" / "task.json"
    rec = json.loads(path.read_text())
    rec["verdicts"][0].update(status="PASS", claim="")                  # empty evidence: added-empty
    path.write_text(json.dumps(rec))
    assert compare(before, tmp_path / "after")[0] == 0
    rec["verdicts"][0].update(claim="a claim")                           # evidence added: a difference
    path.write_text(json.dumps(rec))
    assert compare(before, tmp_path / "after")[0] == 1
