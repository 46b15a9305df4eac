"""The ``rtrl-validate`` command line: exit codes, one-line errors, run/list/gradcheck."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from rtrl_validation.reports import cli
from rtrl_validation.simulations.records import load_records

try:
    from helpers import FakeExperiment, use_fakes
except ImportError:  # tests collected as a package
    from tests.helpers import FakeExperiment, use_fakes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fakes(monkeypatch):
    return use_fakes(monkeypatch, passing=True, failing=True, broken=True)


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rtrl-validate: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def toml(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_INPUTS = [
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["required: COMMAND"]),
    (["run"], ["required: EXPERIMENT"]),
    (["run", "no-such-experiment"], ["unknown experiment 'no-such-experiment'", "fake-pass"]),
    (["run", "fake-pass", "--profile", "huge"], ["unknown profile 'huge'", "quick, full"]),
    (["report", "--profile", "huge"], ["unknown profile 'huge'"]),
    (["run", "fake-pass", "--seed", "-1"], ["--seed", "non-negative integer"]),
    (["run", "fake-pass", "--seed", "abc"], ["--seed", "'abc'"]),
    (["run", "fake-pass", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["run", "fake-pass", "--config", "{tmp}/absent.toml"], ["absent.toml: no such file"]),
    (["run", "fake-pass", "--config", "{bad_toml}"], ["malformed TOML", "bad.toml"]),
    (["run", "fake-pass", "--config", "{unknown_key}"], ["unknown config key 'n_sampels'", "fake-pass"]),
    (["report", "--config", "{unknown_key}"], ["unknown config key 'n_sampels'"]),
    (["run", "fake-pass", "--config", "{unknown_table}"], ["unknown experiment table [gradient]"]),
    (["run", "fake-pass", "--config", "{flat_key}"], ["top-level key 'tasks' must be a table"]),
    (["run", "fake-pass", "--config", "{bad_value}"], ["tasks must be a positive integer, got 0"]),
    (["run", "fake-pass", "--out", "{a_file}"], ["exists and is not a folder"]),
    (["run", "fake-pass", "--out", "{a_file}/sub"], ["cannot write to --out"]),
    (["report", "--from", "{tmp}/missing"], ["--from", "no such folder"]),
    (["report", "--from", "{tmp}"], ["no records of registered experiments"]),
    (["report", "--from", "{corrupt}"], ["corrupt record", "t0.json"]),
    (["report", "--from", "{tmp}", "--seed", "3"], ["--seed cannot be combined with --from"]),
    (["report", "--format", "docx"], ["unknown format docx"]),
    (["gradcheck", "--cell", "hopfield"], ["unknown cell 'hopfield'", "elman", "lstm"]),
    (["gradcheck", "--hidden", "0"], ["--hidden", "positive integer"]),
    (["gradcheck", "--inputs", "-2"], ["--inputs", "positive integer"]),
    (["gradcheck", "--steps", "5,0"], ["--steps", "positive integer, got '0'"]),
    (["gradcheck", "--steps", "five"], ["--steps"]),
    (["gradcheck", "--density", "0"], ["--density", "(0, 1]"]),
    (["gradcheck", "--density", "1.5"], ["--density", "(0, 1]"]),
    (["gradcheck", "--density", "nan"], ["--density"]),
    (["gradcheck", "--json", "{tmp}/no/such/dir/out.json"], ["--json", "does not exist"]),
]


@pytest.mark.parametrize("argv,fragments", BAD_INPUTS, ids=[" ".join(a) or "empty" for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(argv, fragments, fakes, tmp_path, capsys):
    files = {"tmp": tmp_path,
             "bad_toml": toml(tmp_path, "[fake-pass\ntasks = 2\n", "bad.toml"),
             "unknown_key": toml(tmp_path, name="unknown_key.toml", text="[fake-pass]\nn_sampels = 3\n"),
             "unknown_table": toml(tmp_path, name="unknown_table.toml", text="[gradient]\nhidden = 3\n"),
             "flat_key": toml(tmp_path, name="flat_key.toml", text="tasks = 3\n"),
             "bad_value": toml(tmp_path, name="bad_value.toml", text="[fake-pass]\ntasks = 0\n"),
             "a_file": toml(tmp_path, "", "a_file"),
             "corrupt": tmp_path / "corrupt"}
    (files["corrupt"] / "records" / "fake-pass").mkdir(parents=True)
    (files["corrupt"] / "records" / "fake-pass" / "t0.json").write_text('{"schema_version": 1,')
    argv = [a.format(**files) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *fragments)


def test_console_script_process_reports_one_line(tmp_path):
    """The real entry point in a fresh process: a bad argument -> exit 2 and one line on stderr."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from reports.cli import main; sys.exit(main())",
                           "gradcheck", "--cell", "hopfield"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "unknown cell 'hopfield'")


def test_help_and_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("rtrl-validate ")
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and all(c in out for c in ("run", "report", "list", "gradcheck"))
    code, out, _ = run_cli(capsys, "report", "--help")
    assert code == 0 and "--from" in out and "--format" in out


def test_list_shows_experiments_cells_estimators_profiles(fakes, capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for word in ("fake-pass", "fake-broken", "elman", "gru-reset-after", "lstm", "rtrl", "tbptt", "quick, full"):
        assert word in out
    assert "n_samples=50" not in out
    code, out, _ = run_cli(capsys, "list", "-v")
    assert code == 0 and "n_samples=50" in out and "n_samples=200" in out


def test_run_exit_codes_and_records(fakes, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "fake-pass", "--out", tmp_path / "a", "--quiet", "--seed", 3)
    assert code == 0, err
    assert "3 tasks: 3 ok" in out and "verdicts: 3 PASS, 0 FAIL" in out
    assert [r["seed"] for r in load_records(tmp_path / "a")] == [3, 3, 3]
    code, out, _ = run_cli(capsys, "run", "fake-fail", "--out", tmp_path / "b", "--quiet")
    assert code == 0 and "FAIL  Fake section fake-fail: mean small fake-fail" in out     # a result, not an error
    assert "verdicts: 0 PASS, 3 FAIL, 0 INCONCLUSIVE" in out                          # analysed like the report
    code, out, _ = run_cli(capsys, "run", "fake-fail", "--out", tmp_path / "b", "--quiet", "--fail-on", "fail")
    assert code == 1
    code, out, _ = run_cli(capsys, "run", "fake-broken", "--out", tmp_path / "c", "--quiet", "--fail-on", "fail")
    assert code == 1 and "1 failed" in out and "tasks completed" in out and "RuntimeError: boom" in out


def test_run_config_file_and_profile(fakes, tmp_path, capsys):
    cfg = toml(tmp_path, "[fake-pass]\ntasks = 2\nn_samples = 7\n\n[fake-fail]\nscale = 0.5\n")
    code, _, err = run_cli(capsys, "run", "fake-pass", "--config", cfg, "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    records = load_records(tmp_path / "o")
    assert [r["task"] for r in records] == ["t0", "t1"]
    assert records[0]["experiment_config"] == {"tasks": 2, "n_samples": 7, "scale": 1.0}
    code, _, _ = run_cli(capsys, "run", "fake-pass", "--profile", "full", "--out", tmp_path / "f", "--quiet")
    assert code == 0 and len(load_records(tmp_path / "f")) == 4


def test_default_out_is_a_new_timestamped_folder(fakes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run_cli(capsys, "run", "fake-pass", "--quiet")[0] == 0
    folders = sorted(p.name for p in (tmp_path / "rtrl-results").iterdir())
    assert len(folders) == 2 and folders[0][:8].isdigit()


def test_interrupt_keeps_finished_records_and_exits_130(fakes, tmp_path, monkeypatch, capsys):
    from rtrl_validation.reports import registry
    use_fakes(monkeypatch)
    monkeypatch.setattr(registry, "SECTIONS", [(FakeExperiment("fake-pass", interrupt_at="t2"), None)])
    code, _, err = run_cli(capsys, "run", "fake-pass", "--out", tmp_path, "--quiet")
    assert code == 130 and "interrupted" in err and str(tmp_path) in err
    assert [r["task"] for r in load_records(tmp_path)] == ["t0", "t1"]


@pytest.fixture
def fake_gradcheck(monkeypatch):
    """A stand-in for ``proofs_checks.gradcheck`` recording its arguments."""
    calls = []

    def run_gradcheck(cells, hidden, inputs, steps, density, seed):
        calls.append(dict(cells=cells, hidden=hidden, inputs=inputs, steps=steps, density=density, seed=seed))
        if hidden == 13:
            raise ValueError("hidden=13 is unlucky")
        checks = [{"cell": c, "comparison": "rtrl-bptt", "max_abs_error": 1e-15, "max_rel_error": 1e-14,
                   "bound": 1e-12, "passed": hidden != 7} for c in cells]
        return {"passed": all(c["passed"] for c in checks), "checks": checks}

    def format_table(result):
        return "\n".join(f"{c['cell']:<20}{'PASS' if c['passed'] else 'FAIL'}" for c in result["checks"])

    module = types.ModuleType("rtrl_validation.proofs_checks.gradcheck")
    module.run_gradcheck, module.format_table = run_gradcheck, format_table
    monkeypatch.setitem(sys.modules, "rtrl_validation.proofs_checks.gradcheck", module)
    return calls


def test_gradcheck_passes_arguments_prints_table_and_writes_json(fake_gradcheck, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "gradcheck", "--cell", "gru", "--hidden", 4, "--inputs", 2, "--steps", "1,7",
                           "--density", 0.5, "--seed", 9, "--json", tmp_path / "g.json")
    assert code == 0
    assert fake_gradcheck == [dict(cells=["gru"], hidden=4, inputs=2, steps=[1, 7], density=0.5, seed=9)]
    assert "gru" in out and "PASS" in out
    assert json.loads((tmp_path / "g.json").read_text())["passed"] is True
    code, out, _ = run_cli(capsys, "gradcheck", "--hidden", 7)
    assert code == 1 and "FAIL" in out
    assert fake_gradcheck[-1]["cells"] == ["elman", "contractive-elman", "gru", "gru-reset-after", "lstm"]
    code, _, err = run_cli(capsys, "gradcheck", "--hidden", 13)
    assert_one_line_error(code, err, "hidden=13 is unlucky")
