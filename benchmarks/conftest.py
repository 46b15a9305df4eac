"""The harness times each goal in one process: ``pyproject.toml``'s ``addopts`` run the test suite
on several workers (pytest-xdist), which would time goals side by side on the same cores (and
pytest-benchmark switches itself off under xdist), so a parallel run of the harness is refused."""
from __future__ import annotations

import pytest


def pytest_configure(config):
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("the benchmark harness times in one process: run it with -n 0")
