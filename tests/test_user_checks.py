"""The checks as a user API (``proofs_checks/assertions.py``): they pass on correct cells and
reject a cell whose sparsity pattern misses entries (the control)."""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.proofs_checks.assertions import (assert_gradients_correct, check_patterns,
                                                      check_snap_exact)
from rtrl_validation.simulations.cells import GRU, make_cell
from rtrl_validation.simulations.seeding import as_generator


class WrongPatternGRU(GRU):
    """A GRU whose declared patterns miss the candidate's path (reset gate diagonal, no weights in
    ``D``): SnAp at the "exact" order of those patterns is not RTRL."""

    name = "wrong-pattern-gru"

    def _structure(self):
        Dp, Gp = super()._structure()
        eye = np.eye(self.k, dtype=bool)
        return eye, dict(Gp, r=eye)


@pytest.mark.parametrize("name", ["elman", "gru", "gru-reset-after", "lstm"])
def test_built_in_cells_pass(name):
    result = assert_gradients_correct(make_cell(name, 3, 2, density=0.6, mask_seed=2), seed=4, steps=(5,))
    assert result["passed"] and len(result["checks"]) >= 10


def test_wrong_pattern_is_rejected_with_a_table():
    cell = WrongPatternGRU(3, 2)
    rows = {r["comparison"]: r for r in check_patterns(cell, 1) + check_snap_exact(cell, 1)}
    assert rows["D vs fd"]["passed"] and rows["I vs fd"]["passed"]
    assert not rows["nz(I) within pattern"]["passed"] and not rows["nz(D) within pattern"]["passed"]
    assert not next(r for name, r in rows.items() if name.startswith("snap-"))["passed"]
    with pytest.raises(AssertionError, match=r"(?s)nz\(I\) within pattern.*FAIL"):
        assert_gradients_correct(cell, seed=1, steps=(3,))


def test_seeds_and_generators():
    assert as_generator(3).integers(100) == np.random.default_rng(3).integers(100)
    g = np.random.default_rng(1)
    assert as_generator(g) is g
    for bad in (None, -1, 1.5, True, "1"):
        with pytest.raises(TypeError):
            as_generator(bad)
    cell = make_cell("gru", 3, 2)
    assert np.array_equal(cell.init(9), cell.init(np.random.default_rng(9)))
    a = assert_gradients_correct("elman", seed=5, steps=(2,))
    b = assert_gradients_correct("elman", seed=np.random.default_rng(5), steps=(2,))
    assert [r["max_abs_error"] for r in a["checks"]] == [r["max_abs_error"] for r in b["checks"]]


def test_stochastic_estimator_needs_a_generator():
    from rtrl_validation.simulations import LinearReadout, make_estimator, run_sequence
    cell = make_cell("elman", 2, 1)
    readout = LinearReadout(2, 1)
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((3, 1, 1)), rng.standard_normal((3, 1, 1))
    args = (cell, cell.init(rng), readout, readout.init(rng), xs, ys, make_estimator("uoro"))
    with pytest.raises(ValueError, match="draws random numbers"):
        run_sequence(*args)
    assert np.array_equal(run_sequence(*args, rng=7).grad_theta, run_sequence(*args, rng=7).grad_theta)
