"""Bring your own cell, end to end: a minimal gated unit written in sympy, registered, checked,
run by SnAp-1, SnAp-2, UORO and RTRL, and named in a TOML config of the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rtrl_validation.simulations.cells import CELLS


def minimal_gated_unit():
    # --- what a researcher writes: 7 lines (2 imports, 5 equations) -------------------------
    import sympy as sp
    from rtrl_validation import Equations, sigmoid

    eq = Equations("mgu")
    s, x = eq.s, eq.x
    f = sigmoid(eq.gate("f", W_f=s, U_f=x, b_f=1))
    h = sp.tanh(eq.gate("h", W_h=f * s, U_h=x, b_h=1))
    return eq.update((1 - f) * s + f * h)
    # ------------------------------------------------------------------------------------------


@pytest.fixture
def mgu():
    from rtrl_validation import register_cell
    cell = minimal_gated_unit()
    register_cell("mgu", cell)
    yield cell
    dict.pop(CELLS, "mgu")


def test_minimal_gated_unit_end_to_end(mgu, tmp_path):
    from rtrl_validation import assert_gradients_correct, make_cell
    from rtrl_validation.reports.cli import main
    from rtrl_validation.simulations import LinearReadout, parse_estimator, run_sequence

    assert_gradients_correct("mgu", seed=0, steps=(1, 6))
    assert_gradients_correct(mgu(4, 2, density=0.5, mask_seed=3), seed=1, steps=(6,))

    cell = make_cell("mgu", 4, 2)
    rng = np.random.default_rng(2)
    theta, readout = cell.init(rng), LinearReadout(cell.k, 1)
    phi = readout.init(rng)
    xs, ys = rng.standard_normal((8, 3, 2)), rng.standard_normal((8, 3, 1))
    grads = {spec: run_sequence(cell, theta, readout, phi, xs, ys, parse_estimator(spec), rng=5).grad_theta
             for spec in ("rtrl", "snap-1", "snap-2", "uoro")}
    for spec, g in grads.items():
        assert g.shape == (3, cell.p) and np.all(np.isfinite(g)), spec
    # SnAp-2 on a dense cell is exact (n* = 2); SnAp-1 is not.
    assert np.allclose(grads["snap-2"], grads["rtrl"], rtol=1e-12, atol=1e-14)
    assert not np.allclose(grads["snap-1"], grads["rtrl"], rtol=1e-3)

    config = tmp_path / "mgu.toml"
    config.write_text('[gradients]\ncells = ["mgu"]\nhidden = 3\ninputs = 2\nsteps = [1, 5]\n'
                      'densities = [1.0]\n')
    out = tmp_path / "out"
    code = main(["run", "gradients", "--config", str(config), "--workers", "1", "--out", str(out)])
    assert code == 0
    texts = [p.read_text() for p in out.rglob("*.json")]
    assert any('"mgu' in t for t in texts)


def test_unknown_cell_in_config_is_one_line(tmp_path, capsys):
    from rtrl_validation.reports.cli import main
    config = tmp_path / "c.toml"
    config.write_text('[gradients]\ncells = ["no-such-cell"]\n')
    assert main(["run", "gradients", "--config", str(config), "--workers", "1",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-cell" in err[0]


def test_entry_points_are_loaded_lazily(monkeypatch):
    """A package's entry point in group ``rtrl_validation.cells`` becomes a cell name on first look-up."""
    from rtrl_validation.simulations import registry

    class FakeEntryPoint:
        name = "plugin-mgu"

        def load(self):
            return minimal_gated_unit()

    class Broken(FakeEntryPoint):
        name = "broken"

        def load(self):
            raise ImportError("no module named nowhere")

    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [FakeEntryPoint(), Broken()] if group == registry.CELL_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    reg = registry.Registry(registry.CELL_GROUP, {"elman": object})
    assert calls == []
    with pytest.warns(UserWarning, match="broken"):
        assert "plugin-mgu" in reg
    assert calls == [registry.CELL_GROUP] and "broken" not in reg and list(reg) == ["elman", "plugin-mgu"]
    assert reg["plugin-mgu"](2, 1).p > 0


def test_register_rejects_bad_input():
    from rtrl_validation import make_cell, register_cell, register_estimator
    with pytest.raises(ValueError, match="already registered"):
        register_cell("elman", minimal_gated_unit())
    with pytest.raises(TypeError, match="Cell class or a CellEquations"):
        register_cell("x-cell", make_cell("elman", 2, 1))
    with pytest.raises(TypeError, match="Estimator subclass"):
        register_estimator("x-est", object)


def test_register_estimator_by_name():
    from rtrl_validation import register_estimator
    from rtrl_validation.simulations.estimators import ESTIMATORS, SPEC_OPTION, SnAp, parse_estimator

    class MySnAp(SnAp):
        name = "my-snap"

    register_estimator("my-snap", MySnAp, spec_option="n")
    try:
        est = parse_estimator("my-snap-2")
        assert isinstance(est, MySnAp) and est.order == 2
    finally:
        dict.pop(ESTIMATORS, "my-snap")
        SPEC_OPTION.pop("my-snap")


def test_indrnn_with_a_fixed_diagonal_mask():
    """IndRNN, s' = tanh(w ⊙ s + U x + b): the recurrent block is declared diagonal, so D is
    diagonal, n* = 1 and SnAp-1 is exact RTRL; density leaves the fixed mask alone."""
    import sympy as sp
    from rtrl_validation import Equations, assert_gradients_correct
    from rtrl_validation.simulations import LinearReadout, parse_estimator, run_sequence
    from rtrl_validation.simulations.estimators.masked import exact_order

    eq = Equations("indrnn")
    a = eq.gate("a", w=eq.s, U=eq.x, b=1)
    eq.mask("w", "diagonal")
    indrnn = eq.update(sp.tanh(a))

    cell = indrnn(5, 2, density=0.5)
    assert cell.p == 5 + 10 + 5 and np.array_equal(cell.mask("w"), np.eye(5, dtype=bool))
    assert exact_order(cell) == 1 and np.array_equal(cell.patterns()[0], np.eye(5, dtype=bool))
    assert_gradients_correct(cell, seed=2, steps=(6,))
    rng = np.random.default_rng(0)
    theta, readout = cell.init(rng), LinearReadout(5, 1)
    phi = readout.init(rng)
    xs, ys = rng.standard_normal((7, 2, 2)), rng.standard_normal((7, 2, 1))
    g = {s: run_sequence(cell, theta, readout, phi, xs, ys, parse_estimator(s), rng=3).grad_theta
         for s in ("rtrl", "snap-1", "uoro", "kf-rtrl")}
    assert np.allclose(g["snap-1"], g["rtrl"], rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="undeclared block"):
        eq.mask("V", "diagonal")
