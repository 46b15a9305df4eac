"""The typed-config checker (``simulations/config.py``) and the memory estimates
(``simulations/memory.py``) on their own."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pytest

from rtrl_validation.reports.registry import experiments
from rtrl_validation.simulations.cells import CELLS, make_cell
from rtrl_validation.simulations.config import (NON_EMPTY, CellName, Density, EstimatorSpec, Fraction,
                                                NonNegativeInt, Positive, PositiveInt, check_config, describe,
                                                interval, problem)
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.experiments.cost import state_bytes
from rtrl_validation.simulations.memory import (available_bytes, cell_size, check_fits, estimator_floats, human,
                                                require)


@dataclass(frozen=True)
class Toy:
    cells: Annotated[list[CellName], NON_EMPTY]
    hidden: PositiveInt
    burn: NonNegativeInt
    lr: Positive
    density: Density
    share: Fraction
    grid: dict[EstimatorSpec, list[PositiveInt]]
    window: Annotated[int, interval(1, 5, "[]", "an integer", "integers")]


GOOD = dict(cells=["elman"], hidden=3, burn=0, lr=0.1, density=1.0, share=0.5, grid={"snap-2": [4, 8]}, window=5)


def test_a_good_config_passes_and_numpy_integers_count_as_integers():
    check_config(Toy, GOOD)
    check_config(Toy, dict(GOOD, hidden=np.int64(3), lr=np.float64(2.0), density=1))


@pytest.mark.parametrize("key,value,message", [
    ("hidden", True, "hidden: must be a positive integer, got True"),
    ("hidden", 0, "hidden: must be a positive integer, got 0"),
    ("hidden", 3.0, "hidden: must be a positive integer, got 3.0"),
    ("hidden", np.bool_(True), "hidden: must be a positive integer, got "),
    ("burn", -1, "burn: must be a non-negative integer, got -1"),
    ("lr", float("nan"), "lr: must be a positive number, got nan"),
    ("lr", float("inf"), "lr: must be a positive number, got inf"),
    ("lr", "0.1", "lr: must be a positive number, got '0.1'"),
    ("density", 0.0, "density: must be a density in (0, 1], got 0.0"),
    ("share", 1.0, "share: must be a number in (0, 1), got 1.0"),
    ("cells", "elman", "cells: must be a non-empty list of cells (elman, contractive-elman, gru, gru-reset-after, "
                       "lstm), got 'elman'"),
    ("cells", [], "cells: must be a non-empty list of cells"),
    ("cells", ["elman", "hopfield"], "cells: item 1: unknown cell 'hopfield'; known: elman, contractive-elman"),
    ("grid", {"snap-0": [4]}, "grid: ['snap-0']: SnAp order n must be an integer >= 1, got 0"),
    ("grid", {"rtrl": 4}, "grid: ['rtrl']: must be a list of positive integers, got 4"),
    ("grid", ["rtrl"], "grid: must be a table of lists of positive integers, got ['rtrl']"),
    ("window", 6, "window: must be an integer in [1, 5], got 6"),
])
def test_one_line_per_bad_value(key, value, message):
    with pytest.raises(ConfigError) as err:
        check_config(Toy, dict(GOOD, **{key: value}))
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match="^hiden: unknown config key 'hiden'; known keys: burn, cells"):
        check_config(Toy, dict(GOOD, hiden=3))
    with pytest.raises(ConfigError, match="^window: missing$"):
        check_config(Toy, {k: v for k, v in GOOD.items() if k != "window"})


def test_descriptions():
    assert describe(PositiveInt) == "a positive integer"
    assert describe(Annotated[list[PositiveInt], NON_EMPTY]) == "a non-empty list of positive integers"
    assert describe(list[Density]) == "a list of densities in (0, 1]"
    assert describe(dict[str, list[int]]) == "a table of lists of integers"
    assert problem(list[EstimatorSpec], ["rtrl", "tbptt-4", "kf-rtrl"]) is None


def test_experiment_errors_name_the_experiment_once():
    exp = experiments()["convergence"]
    with pytest.raises(ConfigError) as err:
        exp.config("quick", {"gamma": 0.3})
    assert str(err.value).startswith("convergence: gamma: schedule gamma=0.3 violates")
    assert str(err.value).count("convergence:") == 1


# ---------------------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_size_is_exact_without_building_the_cell(name):
    for hidden, inputs, density in [(1, 1, 1.0), (5, 3, 1.0), (17, 2, 1.0), (16, 4, 0.25), (40, 1, 0.1)]:
        cell = make_cell(name, hidden, inputs, density=density)
        assert cell_size(name, hidden, inputs, density) == pytest.approx((cell.k, cell.p), rel=1e-9, abs=1e-6)
    assert cell_size(name, 10**400, 2) == (math.inf, math.inf)


@pytest.mark.parametrize("spec,cell_name,hidden,density",
                         [(s, "elman", h, d) for s in ("rtrl", "snap-1", "snap-2", "uoro", "kf-rtrl", "rflo", "bptt")
                          for h, d in ((16, 1.0), (32, 0.25))]
                         + [("online-tbptt-4", c, h, d) for c in ("elman", "gru", "lstm")    # copies of masked W
                            for h, d in ((16, 1.0), (32, 0.25), (48, 0.1))])                 # are full matrices
def test_estimator_state_estimate_bounds_the_measured_state(spec, cell_name, hidden, density):
    """Measured: the bytes of the arrays the state holds after 8 steps with 4 replicates."""
    rng = np.random.default_rng(0)
    cell = make_cell(cell_name, hidden, 3, density=density)
    est, theta = parse_estimator(spec), cell.init(rng)
    state, s = est.init(cell, theta, 4, rng), np.zeros((4, cell.k))
    for _ in range(8):
        lin = cell.linearize(theta, s, rng.standard_normal((4, 3)))
        s = lin.state
        state, _ = est.step(state, lin, rng.standard_normal((4, cell.k)), rng)
    measured = state_bytes(state)
    estimate = 8 * estimator_floats(spec, cell.k, cell.p, 3, batch=4, steps=8, density=density)
    assert measured <= estimate <= 8 * measured, (measured, estimate)


def test_require_names_what_is_needed_and_what_there_is():
    require(10.0, "x", available=100)
    with pytest.raises(ConfigError, match=r"^memory: task 'a' needs about 1\.5 KiB; this machine has 100 B "
                                          r"available$"):
        require(1536.0, "task 'a'", available=100)
    with pytest.raises(ConfigError, match="needs about over 1e308 B"):
        require(math.inf, "x", available=100)
    with pytest.raises(ConfigError):
        require(float("nan"), "x", available=100)          # inf · 0: too much, never "fits"
    assert human(3 * 2**30) == "3 GiB" and available_bytes() > 0


def test_every_quick_and_full_profile_fits_in_a_few_gigabytes():
    for exp in experiments().values():
        for profile in exp.profiles:
            check_fits(exp, exp.config(profile), available=4 * 2**30)


def test_a_long_value_is_cut_in_the_message():
    with pytest.raises(ConfigError) as err:
        check_config(Toy, dict(GOOD, hidden=list(range(10**4))))
    assert str(err.value).endswith("...") and len(str(err.value)) < 160
