"""Copy task: episode layout, stream shapes, the ignore mask of the readout, the length curriculum."""
import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.curriculum import LengthCurriculum
from rtrl_validation.simulations.data.copy_task import IGNORE, CopyTask, MaskedReadout, episodes
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.sequence import run_sequence, sequence_loss


def split_episodes(lengths, codes):
    out, start = [], 0
    for ell in lengths:
        out.append(slice(start, start + 2 * ell + 1))
        start += 2 * ell + 1
    assert start == codes.size
    return out


@pytest.mark.parametrize("alphabet", [2, 5])
def test_episode_layout(alphabet):
    rng = np.random.default_rng(1)
    lengths = np.array([1, 4, 2, 7, 1])
    codes, targets = episodes(lengths, alphabet, rng)
    assert codes.shape == targets.shape == (int(np.sum(2 * lengths + 1)),)
    for ell, sl in zip(lengths, split_episodes(lengths, codes)):
        c, y = codes[sl], targets[sl]
        assert np.all(c[:ell] < alphabet)                       # the string
        assert c[ell] == alphabet                               # the delimiter
        assert np.all(c[ell + 1:] == alphabet + 1)              # recall markers
        assert np.all(y[: ell + 1] == IGNORE)                   # no loss before recall
        np.testing.assert_array_equal(y[ell + 1:], c[:ell])     # reproduce the string, in order


def test_stream_shapes_one_hot_and_chunk_invariance():
    task = CopyTask(alphabet=3, curriculum=LengthCurriculum(start=4, spread=2))
    st = task.init(np.random.default_rng(5), batch=4)
    st, xs, ys = task.sample(st, 50)
    assert xs.shape == (50, 4, 5) and ys.shape == (50, 4)
    assert np.all(xs.sum(axis=2) == 1.0)
    code = xs.argmax(axis=2)
    # targets only on recall-marker steps, and every recall step has a target
    np.testing.assert_array_equal(ys != IGNORE, code == 4)
    # drawing 50 steps in chunks gives the same stream (the curriculum does not move here)
    st2 = task.init(np.random.default_rng(5), batch=4)
    parts = [task.sample(st2, n)[1:] for n in (7, 1, 30, 12)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), xs)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), ys)


def test_episode_lengths_follow_the_curriculum_range():
    cur = LengthCurriculum(spread=5)
    rng = np.random.default_rng(0)
    assert set(cur.lengths(1, 200, rng)) == {1}
    assert set(cur.lengths(3, 500, rng)) == {1, 2, 3}
    assert set(cur.lengths(9, 2000, rng)) == {4, 5, 6, 7, 8, 9}


def test_replicate_streams_are_independent_of_each_other():
    """A replicate's stream depends on its own curriculum only."""
    task = CopyTask()
    a = task.init(np.random.default_rng(3), 2)
    b = task.init(np.random.default_rng(3), 2)
    b.curriculum.length[1] = 9                      # replicate 1 much further along in b
    _, xa, _ = task.sample(a, 40)
    _, xb, _ = task.sample(b, 40)
    np.testing.assert_array_equal(xa[:, 0], xb[:, 0])
    assert not np.array_equal(xa[:, 1], xb[:, 1])


def test_curriculum_advances_on_rigged_loss():
    cur = LengthCurriculum(threshold=0.15, window=10, spread=5)
    st = cur.init(3)
    counted = np.array([True, True, False])
    low, high = np.array([0.1, 0.2, 0.0]), np.array([0.2, 0.1, 0.0])
    for _ in range(9):
        cur.observe(st, low, counted)
    np.testing.assert_array_equal(st.length, [1, 1, 1])          # window not yet full
    cur.observe(st, low, counted)
    np.testing.assert_array_equal(st.length, [2, 1, 1])          # 0.1 < 0.15 grows, 0.2 does not
    assert np.all(st.count[:2] == 0)                             # the window restarts
    for _ in range(10):
        cur.observe(st, high, counted)
    np.testing.assert_array_equal(st.length, [2, 2, 1])
    # uncounted steps never fill a window, whatever their loss
    for _ in range(100):
        cur.observe(st, np.zeros(3), np.zeros(3, dtype=bool))
    np.testing.assert_array_equal(st.length, [2, 2, 1])


def test_curriculum_mean_is_over_the_window_and_capped():
    cur = LengthCurriculum(threshold=0.5, window=4, max_length=2)
    st = cur.init(1)
    for bits in (0.0, 0.0, 0.0, 1.9):                 # mean 0.475 < 0.5
        cur.observe(st, np.array([bits]), np.array([True]))
    assert st.length[0] == 2
    for _ in range(8):
        cur.observe(st, np.array([0.0]), np.array([True]))
    assert st.length[0] == 2                          # capped


def test_copy_task_observe_feeds_recall_steps_in_bits():
    task = CopyTask(curriculum=LengthCurriculum(threshold=0.15, window=2))
    st = task.init(np.random.default_rng(0), 2)
    y = np.array([0, IGNORE])
    task.observe(st, np.array([0.1 * np.log(2), 5.0]), y)        # 0.1 bits on a recall step
    task.observe(st, np.array([0.1 * np.log(2), 5.0]), y)
    np.testing.assert_array_equal(task.lengths(st), [2, 1])


@pytest.mark.parametrize("bad", [dict(threshold=0.0), dict(window=0), dict(spread=-1), dict(start=0),
                                 dict(max_length=0)])
def test_curriculum_refuses_bad_options(bad):
    with pytest.raises(ValueError):
        LengthCurriculum(**bad)


def test_copy_task_refuses_bad_alphabet():
    with pytest.raises(ValueError):
        CopyTask(alphabet=1)


def test_masked_readout_zeroes_ignored_steps():
    rng = np.random.default_rng(2)
    base = LinearReadout(6, 3, "xent")
    ro = MaskedReadout(base)
    phi, s = base.init(rng, 4), rng.standard_normal((4, 6))
    y = np.array([2, IGNORE, 0, IGNORE])
    loss, credit, dphi = ro.evaluate(phi, s, y)
    ref = base.evaluate(phi, s, np.array([2, 0, 0, 0]))
    keep = y != IGNORE
    for got, want in zip((loss, credit, dphi), ref):
        np.testing.assert_array_equal(got[keep], want[keep])
        assert np.all(got[~keep] == 0.0)


def test_masked_gradient_is_the_gradient_of_the_recall_loss():
    """RTRL through the masked readout = BPTT = central differences of the masked sequence loss,
    so no credit leaks from the ignored steps."""
    rng = np.random.default_rng(4)
    task = CopyTask(alphabet=2, curriculum=LengthCurriculum(start=3))
    st = task.init(rng, 2)
    _, xs, ys = task.sample(st, 14)
    cell = make_cell("gru-reset-after", 4, task.m, density=0.5)
    ro = MaskedReadout(LinearReadout(cell.k, task.n_out, "xent"))
    theta, phi = cell.init(rng, batch=2), ro.init(rng, 2)
    g_rtrl = run_sequence(cell, theta, ro, phi, xs, ys, parse_estimator("rtrl")).grad_theta
    g_bptt = run_sequence(cell, theta, ro, phi, xs, ys, parse_estimator("bptt")).grad_theta
    scale = np.abs(g_rtrl).max()
    np.testing.assert_allclose(g_bptt, g_rtrl, rtol=0, atol=1e-12 * scale)  # float64 rounding
    # directional central difference along a random unit direction v
    v = rng.standard_normal(theta.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    h = 1e-4
    fd = (sequence_loss(cell, theta + h * v, ro, phi, xs, ys)
          - sequence_loss(cell, theta - h * v, ro, phi, xs, ys)) / (2 * h)
    fd_half = (sequence_loss(cell, theta + h / 2 * v, ro, phi, xs, ys)
               - sequence_loss(cell, theta - h / 2 * v, ro, phi, xs, ys)) / h
    # truncation error O(h²): |fd − exact| ≈ (4/3)|fd − fd_half|; rounding ≈ ε|L|/h; margin 10×
    L = sequence_loss(cell, theta, ro, phi, xs, ys)
    bound = 10 * (4 / 3 * np.abs(fd - fd_half) + 2.2e-16 * np.abs(L) / h)
    exact = np.sum(g_rtrl * v, axis=1)
    assert np.all(np.abs(fd - exact) <= bound), (fd, exact, bound)
    # the unmasked readout gives a different gradient: the check above can fail
    g_all = run_sequence(cell, theta, LinearReadout(cell.k, task.n_out, "xent"), phi, xs,
                         np.where(ys == IGNORE, 0, ys), parse_estimator("rtrl")).grad_theta
    assert np.abs(np.sum(g_all * v, axis=1) - exact).max() > 1e3 * bound.max()
