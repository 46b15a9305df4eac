"""FLOP estimates per step (simulations/flops.py) against independent structural counts."""
import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators import Estimator
from rtrl_validation.simulations.flops import estimator_flops, step_flops


def reachability(cell, n):
    """SnAp's M_n from the patterns, computed here independently: nz(I) ∪ nz(D I) ∪ … ∪ nz(D^{n−1} I)."""
    Dp, M = cell.patterns()
    for _ in range(n - 1):
        M = M | ((Dp.astype(int) @ M.astype(int)) > 0)
    return M


@pytest.mark.parametrize("name, density", [("elman", 1.0), ("gru-reset-after", 0.25), ("lstm", 0.3)])
def test_rtrl_is_the_dense_product(name, density):
    cell = make_cell(name, 5, 3, density=density)
    k, p, nI = cell.k, cell.p, int(cell.patterns()[1].sum())
    assert estimator_flops(cell, parse_estimator("rtrl")) == 2 * k * k * p + nI + 2 * k * p


@pytest.mark.parametrize("name, density", [("elman", 0.3), ("gru-reset-after", 0.25), ("lstm", 0.2)])
def test_sparse_snap_counts_the_structural_products(name, density):
    """2·Σ_ij D_ij (M Mᵀ)_ij + nnz(I) + 2·nnz(M) while the mask is not full."""
    cell = make_cell(name, 8, 2, density=density, mask_seed=3)
    Dp, Ip = cell.patterns()
    for n in (1, 2):
        M = reachability(cell, n)
        if M.all():
            continue
        Mi = M.astype(np.int64)
        expect = 2.0 * np.sum(Dp * (Mi @ Mi.T)) + Ip.sum() + 2.0 * M.sum()
        assert estimator_flops(cell, parse_estimator(f"snap-{n}")) == expect


def test_snap1_of_a_dense_elman_is_o_p_and_high_orders_cost_rtrl():
    cell = make_cell("elman", 6, 2)
    # one entry per column, one self-loop pair each: 2p + p + 2p
    assert estimator_flops(cell, parse_estimator("snap-1")) == 5 * cell.p
    assert estimator_flops(cell, parse_estimator("snap-4")) == estimator_flops(cell, parse_estimator("rtrl"))


def test_tbptt_cost_does_not_depend_on_tau_and_step_total_adds_up():
    cell = make_cell("gru-reset-after", 6, 4, density=0.5)
    costs = {tau: estimator_flops(cell, parse_estimator(f"tbptt-{tau}")) for tau in (1, 4, 64)}
    assert len(set(costs.values())) == 1
    f = step_flops(cell, parse_estimator("uoro"), 3)
    assert f["total"] == f["cell"] + f["readout"] + f["estimator"] and f["readout"] == 6 * cell.k * 3
    # UORO is O(k² + p) per step against RTRL's O(k² p): below a 1/k fraction already at k = 6
    assert f["estimator"] < estimator_flops(cell, parse_estimator("rtrl")) / cell.k


def test_estimator_without_a_flop_model_says_so():
    class Odd(Estimator):
        name = "odd"
    with pytest.raises(NotImplementedError, match="declares no FLOP model"):
        estimator_flops(make_cell("elman", 3, 1), Odd())


def test_memory_models():
    """Numbers held per replicate: RTRL ``k·p``, SnAp-1 ``p`` on a cell with one row per column,
    UORO ``k + p``, KF-RTRL ``(k + m + 1) + k²``; TBPTT grows linearly in ``τ``; full BPTT has no bound."""
    cell = make_cell("elman", 5, 3)
    k, p, m = cell.k, cell.p, cell.m
    assert parse_estimator("rtrl").memory(cell) == k * p
    assert parse_estimator("snap-1").memory(cell) == p
    assert parse_estimator("uoro").memory(cell) == k + p
    assert parse_estimator("kf-rtrl").memory(cell) == k + m + 1 + k * k
    m4, m8 = (parse_estimator(f"tbptt-{tau}").memory(cell) for tau in (4, 8))
    assert m8 == 2 * m4 > 0
    with pytest.raises(NotImplementedError, match="grows with T"):
        parse_estimator("bptt").memory(cell)
