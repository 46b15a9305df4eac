"""The documentation site: ``mkdocs build --strict`` passes (broken links and references fail),
and the tutorials' Python code runs as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
                           "--config-file", str(ROOT / "mkdocs.yml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    assert "--checkpoint-every" in cli and "gradcheck" in cli          # generated from the parser
    assert "register_cell" in (tmp_path / "site" / "api" / "index.html").read_text()


@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_code_runs(page, tmp_path, monkeypatch):
    code = "\n".join(FENCE.findall(page.read_text()))
    assert code.strip(), f"{page.name} has no python blocks"
    if re.search(r"^import torch|^from torch", code, re.M):
        pytest.importorskip("torch")
    if "dask" in code:
        pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from rtrl_validation.simulations.cells import CELLS
    before = dict(dict.items(CELLS))
    try:
        exec(compile(code, str(page), "exec"), {"__name__": f"tutorial_{page.stem.replace('-', '_')}"})
    finally:
        for name in set(dict.keys(CELLS)) - set(before):
            dict.pop(CELLS, name)


def _hooks():
    import importlib.util
    spec = importlib.util.spec_from_file_location("site_hooks", ROOT / "docs" / "hooks" / "site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_covers_every_command_and_option():
    from rtrl_validation.reports.cli import build_parser
    text = _hooks().cli_reference()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert f"## `rtrl-validate {name}`" in text
        for action in command._actions:
            for option in [] if action.dest == "help" else action.option_strings:
                assert f"`{option}`" in text, (name, option)


def test_architecture_page_joins_the_nav_when_present(tmp_path):
    hooks = _hooks()
    nav = [{"Home": "index.md"}, {"Concepts": ["concepts.md"]}, {"API reference": "api.md"}]
    assert hooks.on_config({"docs_dir": str(tmp_path), "nav": list(nav)})["nav"] == nav
    (tmp_path / "architecture.md").write_text("# Architecture\n")
    assert hooks.on_config({"docs_dir": str(tmp_path), "nav": list(nav)})["nav"][2] == {"Architecture": "architecture.md"}
