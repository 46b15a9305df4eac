"""The import layers (docs/architecture.md "Layers"), read from the source of every module.

``simulations`` imports none of the other packages; ``proofs_checks`` and ``analysis`` import
only ``simulations`` (besides themselves); ``reports`` sits on top.  Every ``import`` and
``from … import`` statement is parsed with :mod:`ast`, relative ones resolved against the module's
package, wherever it stands (a function-local import counts as much as a top-level one).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("simulations", "proofs_checks", "analysis", "reports")
#: what each package may import of the others
ALLOWED = {
    "simulations": set(),
    "proofs_checks": {"simulations"},
    "analysis": {"simulations"},
    "reports": {"simulations", "proofs_checks", "analysis"},
}


def imported_packages(path: Path, package_parts: tuple[str, ...]) -> set[tuple[str, int]]:
    """``(top-level package of this project, line)`` for every import in the file at ``path``.

    ``package_parts``: the module's package inside ``rtrl_validation`` (e.g. ``("simulations",
    "estimators")``), for resolving relative imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[:len(package_parts) - (node.level - 1)])
                if node.level - 1 > len(package_parts):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the package")
                names = [".".join(["rtrl_validation", *base, *([node.module] if node.module else [])])]
                if not base and not node.module:                  # `from .. import simulations`
                    names = [f"rtrl_validation.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "rtrl_validation" and len(parts) > 1 and parts[1] in PACKAGES:
                out.add((parts[1], node.lineno))
            elif parts[0] in PACKAGES:                            # the old top-level names
                out.add((parts[0], node.lineno))
    return out


def modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_imports_only_the_layers_below(pkg):
    bad = []
    for owner, path in modules():
        if owner != pkg:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        for target, line in imported_packages(path, parts[:-1]):     # a module's package; __init__'s own
            if target != pkg and target not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_checker_sees_upward_imports(tmp_path):
    """The checker must be able to fail: relative and absolute upward imports are found."""
    f = tmp_path / "m.py"
    f.write_text("from ...analysis import rates\nimport rtrl_validation.reports.cli\n"
                 "def g():\n    from ..records import x\n")
    found = imported_packages(f, ("simulations", "experiments"))
    assert ("analysis", 1) in found and ("reports", 2) in found
    assert ("simulations", 4) in found
