"""Progress on stderr when it is not a terminal: plain lines and a heartbeat, nothing before a task starts."""
from __future__ import annotations

import io

from rtrl_validation.simulations import progress


def test_plain_progress_lines_and_heartbeat():
    out = io.StringIO()
    bar = progress.PlainProgress(4, initial=1, desc="demo", stream=out, heartbeat=3600)
    assert out.getvalue() == ""                          # nothing until a task starts
    bar.set_postfix_str("t1")
    bar.update(0.5)                                      # within a task: no line
    bar.beat()
    bar.update(0.5)
    bar.update(2.0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "demo: 3 of 4 tasks to run (1 up to date)"
    assert lines[1].startswith("demo: 1.5/4 tasks, elapsed ") and "left (running t1)" in lines[1]
    assert [line.split(",")[0] for line in lines[2:]] == ["demo: finished 2/4 tasks", "demo: finished 3/4 tasks",
                                                          "demo: finished 4/4 tasks"]
    assert lines[-1].endswith("about 00:00 left")


def test_progress_bar_choice(monkeypatch):
    assert isinstance(progress.progress_bar(3, 0, "x", enabled=False), progress.NoProgress)
    monkeypatch.setattr("sys.stderr", io.StringIO())     # not a terminal
    assert isinstance(progress.progress_bar(3, 0, "x"), progress.PlainProgress)
    assert progress.HEARTBEAT <= 30


def test_stage_says_what_it_does_and_when_it_is_done():
    out = io.StringIO()
    with progress.stage("writing the report", stream=out, heartbeat=3600):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "writing the report ..." and lines[1].startswith("writing the report: done in ")
    quiet = io.StringIO()
    with progress.stage("nothing to say", enabled=False, stream=quiet):
        pass
    assert quiet.getvalue() == ""
