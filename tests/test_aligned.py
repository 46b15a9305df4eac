"""Arrays that start a 64-byte line (`simulations/aligned.py`): the long stores of SnAp-1 and UORO
and the gradients their compiled steps return."""
import numpy as np
import pytest

from rtrl_validation.simulations import aligned
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators.base import linearize_for


@pytest.mark.parametrize("shape", [7, (3, 5), (1, 66816), (2, 3, 4), (0,)])
def test_empty_and_zeros_start_a_line_with_the_shape_asked(shape):
    a, z = aligned.empty(shape), aligned.zeros(shape)
    want = (shape,) if isinstance(shape, int) else shape
    assert a.shape == z.shape == want and a.dtype == z.dtype == np.float64
    assert a.flags.c_contiguous and z.flags.c_contiguous
    assert aligned.is_aligned(a) and aligned.is_aligned(z)
    assert not z.any()


def test_is_aligned_tells_an_offset_view():
    a = aligned.zeros(16)
    assert aligned.is_aligned(a) and not aligned.is_aligned(a[1:])


@pytest.mark.parametrize("spec", ["snap-1", "rflo", "uoro"])
@pytest.mark.parametrize("k", [24, 40, 56])                   # a store from np.zeros starts a line 1 time in 4
def test_the_long_stores_and_the_gradient_start_a_line(spec, k):
    cell = make_cell("elman", k, 3)
    rng = np.random.default_rng(0)
    theta = cell.init(rng)[None]
    est = parse_estimator(spec)
    st = est.init(cell, theta, 1, rng)
    s, x = 0.1 * rng.standard_normal((1, cell.k)), rng.standard_normal((1, cell.m))
    for _ in range(2):
        lin = linearize_for(est, st, cell, theta, s, x)
        st, g = est.step(st, lin, rng.standard_normal((1, cell.k)), rng)
        store = st.direction if spec == "uoro" else st.J
        assert aligned.is_aligned(store) and aligned.is_aligned(g)


def test_copy_keeps_the_numbers_and_starts_a_line():
    a = np.arange(12.0).reshape(3, 4)[:, 1:]
    c = aligned.copy(a)
    np.testing.assert_array_equal(c, a)
    assert aligned.is_aligned(c) and c.flags.c_contiguous and c.dtype == np.float64


def test_an_aligned_theta_keeps_the_cells_views_between_calls():
    """θ made by a compiled function has another float64 descriptor object; the cell still keeps
    its block views for it instead of rebuilding them at every call."""
    cell = make_cell("elman", 8, 3)
    theta = aligned.copy(cell.init(np.random.default_rng(0))[None])
    assert cell._weights(theta) is cell._weights(theta)


def test_the_trainer_holds_theta_aligned():
    from rtrl_validation.simulations.data import VAR1Teacher
    from rtrl_validation.simulations.optimizers import Schedule
    from rtrl_validation.simulations.readouts import LinearReadout
    from rtrl_validation.simulations.training import OnlineTrainer
    cell = make_cell("elman", 8, 2)
    rng = np.random.default_rng(0)
    proc = VAR1Teacher(hidden=8, inputs=2)
    ro = LinearReadout(cell.k, proc.n_out)
    tr = OnlineTrainer(cell, ro, parse_estimator("snap-1"), proc, Schedule(1e-3))
    state = tr.init(np.repeat(cell.init(rng)[None], 2, axis=0)[:, :], ro.init(rng, 2), rng)
    assert aligned.is_aligned(state.theta)
    state, _ = tr.run(state, 5, rng, checkpoint=False)
    assert aligned.is_aligned(state.theta)
