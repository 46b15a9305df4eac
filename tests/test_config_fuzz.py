"""Fuzzing ``--config``: whatever TOML a user writes (well-formed or not, right keys with wrong
values, wrong keys, nested tables, NaN, huge integers), ``run`` exits 0, 1 or 2 and never prints a
traceback; a refusal is one line.  Nothing is computed here: the run itself is replaced by an empty
one, so a config that passes is only checked, sized and turned into tasks."""
from __future__ import annotations

import dataclasses
import datetime
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtrl_validation.reports import cli, registry

EXPERIMENTS = {exp.name: exp for exp, _ in registry.SECTIONS}
FIELDS = {name: [f.name for f in dataclasses.fields(exp.Config)] for name, exp in EXPERIMENTS.items()}


def toml_string(text: str) -> str:
    """A TOML basic string (control characters and DEL escaped, the rest as is)."""
    return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c
                         for c in text) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


scalars = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.integers(-3, 70), st.floats(allow_nan=True), st.floats(0, 2),
    st.booleans(), st.text(max_size=12), st.dates(),
    st.sampled_from(["elman", "gru", "lstm", "rtrl", "snap-0", "snap-2", "kf-rtrl", "tbptt-4", "uoro", "copy",
                     "text", "elman:0.5", "gru:0.1", "lstm:2", "adam", "mse", "tanh", "linear"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


@st.composite
def configs(draw):
    """A TOML document: one table of the experiment that is run, sometimes another; keys mostly
    the config's own."""
    name = draw(st.sampled_from(sorted(EXPERIMENTS)))
    tables = [name] + draw(st.lists(st.sampled_from(sorted(EXPERIMENTS)), max_size=1))
    lines = []
    for table in dict.fromkeys(tables):
        keys = draw(st.lists(st.one_of(st.sampled_from(FIELDS[table]), st.text(min_size=1, max_size=8)),
                             max_size=4, unique=True))
        lines.append(f"[{toml_string(table)}]")
        lines += [f"{toml_string(k)} = {toml_value(draw(values))}" for k in keys]
    return name, "\n".join(lines) + "\n"


def run_cli(name: str, text: str | bytes, capsys) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        code = cli.main(["run", name, "--config", str(path), "--out", str(Path(tmp) / "out"), "--quiet",
                         "--workers", "1"])
    return code, capsys.readouterr().err


def check(code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    if code == 2:
        assert err.startswith("rtrl-validate: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture
def no_compute(monkeypatch):
    monkeypatch.setattr(registry, "SECTIONS", list(registry.SECTIONS))
    monkeypatch.setattr(cli, "compute", lambda args, plan, seed, out: {exp.name: [] for exp, _ in plan})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=configs())
def test_any_toml_config_exits_0_1_or_2_without_a_traceback(doc, no_compute, capsys):
    check(*run_cli(*doc, capsys))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(EXPERIMENTS)), text=st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_any_file_as_config_exits_0_1_or_2_without_a_traceback(name, text, no_compute, capsys):
    check(*run_cli(name, text, capsys))


def test_the_fuzzer_reaches_both_accepted_and_refused_configs(no_compute, capsys):
    """The harness itself: a config that passes exits 0 and a bad one 2."""
    assert run_cli("gradients", "[gradients]\nhidden = 2\n", capsys)[0] == 0
    assert run_cli("gradients", "[gradients]\nhidden = nan\n", capsys)[0] == 2
