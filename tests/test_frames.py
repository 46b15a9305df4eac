"""Records as data frames (``analysis/frames.py``)."""
from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from rtrl_validation.analysis.frames import record_frame, record_frames, verdict_frame  # noqa: E402
from rtrl_validation.simulations.runner import run_experiment  # noqa: E402

try:
    from helpers import FakeExperiment
except ImportError:  # tests collected as a package
    from tests.helpers import FakeExperiment


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames")
    exp = FakeExperiment("fake-frames", broken=True)
    config = exp.config("quick", {"tasks": 4})
    records = run_experiment(exp, config, seed=3, out_dir=out, progress=False)
    return out, records


def test_one_row_per_task_with_scalar_columns(folder):
    out, records = folder
    df = record_frame(out, "fake-frames")
    assert list(df["task"]) == ["t0", "t1", "t2", "t3"] and list(df["task_index"]) == [0, 1, 2, 3]
    assert list(df["status"]) == ["ok", "failed", "diverged", "ok"]
    assert df.loc[0, "data.mean"] == records[0]["data"]["mean"] and df.loc[0, "data.n"] == 50
    assert df.loc[3, "config.i"] == 3 and df.loc[0, "verdicts"] == 1
    assert df.loc[0, "verdicts_passed"] + df.loc[0, "verdicts_failed"] == 1
    assert not any(c.startswith("array.") for c in df.columns)


def test_arrays_on_request(folder):
    out, records = folder
    df = record_frame(out, "fake-frames", arrays=["cumsum"])
    assert "array.cumsum" in df.columns and "array.x" not in df.columns
    np.testing.assert_array_equal(df.loc[0, "array.cumsum"], records[0]["arrays"]["cumsum"])
    assert set(record_frames(out, arrays=True)["fake-frames"].columns) >= {"array.x", "array.cumsum"}


def test_verdicts_and_empty(folder, tmp_path):
    out, _ = folder
    v = verdict_frame(out)
    assert len(v) == 2 and set(v["experiment"]) == {"fake-frames"} and {"check", "status", "value"} <= set(v.columns)
    assert record_frame(tmp_path, "fake-frames").empty
