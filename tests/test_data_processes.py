"""Ergodic data processes (simulations/data: var1, markov, orderbook): shapes, seeding, the
defining recursions and their stationary moments."""
import numpy as np
import pytest

from rtrl_validation.simulations.data import PROCESSES, MarkovRegime, SyntheticOrderBook, VAR1Teacher, make_process


def draw(proc, B, T, seed=0, chunks=1):
    rng = np.random.default_rng(seed)
    state = proc.init(rng, B)
    xs, ys = [], []
    for _ in range(chunks):
        state, x, y = proc.sample(state, T // chunks, rng)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("name,opts", [("var1-teacher", {}), ("var1-teacher", {"activation": "identity"}),
                                       ("markov-lag", {}), ("orderbook", {}), ("orderbook", {"target": "sign"})])
def test_shapes_and_seeding(name, opts):
    proc = make_process(name, **opts)
    xs, ys = draw(proc, 3, 50)
    assert xs.shape == (50, 3, proc.m)
    assert ys.shape == ((50, 3, proc.n_out) if proc.loss == "mse" else (50, 3))
    xs2, ys2 = draw(proc, 3, 50)
    assert np.array_equal(xs, xs2) and np.array_equal(ys, ys2)
    assert not np.array_equal(xs, draw(proc, 3, 50, seed=1)[0])
    assert np.all(np.isfinite(xs))


def test_registry_and_bad_options():
    assert {"var1-teacher", "markov-lag", "orderbook"} <= set(PROCESSES)
    with pytest.raises(ValueError):
        make_process("no-such-process")
    for bad in (dict(ar=1.0), dict(teacher_rho=1.2), dict(noise=-1.0)):
        with pytest.raises(ValueError):
            VAR1Teacher(**bad)
    for bad in (dict(states=1), dict(lag=-1), dict(stay=1.0)):
        with pytest.raises(ValueError):
            MarkovRegime(**bad)
    for bad in (dict(target="price"), dict(a=0.5, b=0.6), dict(phi=1.0)):
        with pytest.raises(ValueError):
            SyntheticOrderBook(**bad)


def test_var1_recursion_and_stationary_covariance():
    proc = VAR1Teacher(hidden=3, inputs=2, ar=0.6, noise=0.2, seed=3)
    xs, ys = draw(proc, 200, 400, chunks=2)
    eps = xs[1:] - xs[:-1] @ proc.A.T                      # must be N(0, (1 − a²) I), independent
    cov = np.cov(eps.reshape(-1, 2).T)
    n = eps.shape[0] * eps.shape[1]
    # sample covariance entries: sd ≈ σ²·√(2/n) on the diagonal; 6 sd allowance
    assert np.allclose(cov, (1 - 0.36) * np.eye(2), atol=6 * 0.64 * np.sqrt(2 / n))
    # stationary law of x is N(0, I) from the first step on (x_0 drawn from it)
    first = xs[0]
    assert np.allclose(first.var(axis=0), 1.0, atol=6 * np.sqrt(2 / first.shape[0]))


def test_var1_targets_are_teacher_plus_noise():
    proc = VAR1Teacher(hidden=3, inputs=2, noise=0.2, seed=3)
    W = proc.teacher.unpack(proc.teacher_theta)["W"]
    assert np.isclose(np.linalg.norm(W, 2), proc.teacher_rho)
    assert np.isclose(np.abs(np.linalg.eigvals(W)).max(), proc.teacher_rho)      # memory decays like ρ*^t
    for p, sd in ((proc.with_noise(0.0), 0.0), (proc, 0.2)):
        rng = np.random.default_rng(1)
        state = p.init(rng, 40)
        s = state.s.copy()
        state, xs, ys = p.sample(state, 50, rng)
        res = []
        for t in range(50):                                 # replay the teacher on the same inputs
            s = p.teacher.step(p.teacher_theta, s, xs[t])
            res.append(ys[t] - p.teacher_readout.predict(p.teacher_phi, s))
        res = np.array(res)
        if sd == 0.0:
            assert np.abs(res).max() < 1e-13
        else:                                               # sd of a sample sd ≈ σ/√(2n); 6 sd allowance
            assert abs(res.std() - sd) < 6 * sd / np.sqrt(2 * res.size)


def test_markov_transitions_and_lagged_target_across_chunks():
    proc = MarkovRegime(inputs=2, states=3, stay=0.8, lag=5, noise=0.0, seed=2)
    rng = np.random.default_rng(7)
    state = proc.init(rng, 50)
    xs, ys, zs = [], [], []
    for _ in range(3):                                      # chunk boundaries must keep the lag buffer
        zs.append(state.z.copy())
        state, x, y = proc.sample(state, 40, rng)
        xs.append(x)
        ys.append(y)
    xs, ys = np.concatenate(xs), np.concatenate(ys)
    assert np.allclose(ys[5:, :, 0], xs[:-5] @ proc.w, atol=1e-13)
    assert proc.mixing_rate == pytest.approx(0.8 - 0.2 / 2)
    # empirical transition matrix from a long run
    st = proc.init(np.random.default_rng(0), 400)
    path = []
    for _ in range(200):
        st, _, _ = proc.sample(st, 1, np.random.default_rng(len(path)))
        path.append(st.z.copy())
    path = np.array(path)
    counts = np.zeros((3, 3))
    np.add.at(counts, (path[:-1].ravel(), path[1:].ravel()), 1)
    freq = counts / counts.sum(axis=1, keepdims=True)
    n = counts.sum(axis=1, keepdims=True)
    assert np.all(np.abs(freq - proc.P) <= 6 * np.sqrt(proc.P * (1 - proc.P) / n))


def test_orderbook_alignment_and_moments():
    proc = SyntheticOrderBook(target="value", kappa=0.3)
    xs, ys = draw(proc, 200, 600, chunks=3)
    # the target at t is the input return at t + 1 (also across chunk boundaries)
    assert np.array_equal(ys[:-1, :, 0], xs[1:, :, 0])
    assert np.array_equal(xs[:, :, 2], np.abs(xs[:, :, 0]))
    # stationary moments: E o² = 1, E r²/v̄ = 1 + κ² (o independent of σ); sd of the mean of
    # squares from 200 independent paths, 6 sd allowance
    o2 = (xs[:, :, 1] ** 2).mean(axis=0)
    r2 = (xs[:, :, 0] ** 2).mean(axis=0)
    assert abs(o2.mean() - 1.0) < 6 * o2.std(ddof=1) / np.sqrt(o2.size)
    assert abs(r2.mean() - 1.09) < 6 * r2.std(ddof=1) / np.sqrt(r2.size)
    assert proc.finite_fourth_moment
    sign = SyntheticOrderBook(target="sign")
    xs, ys = draw(sign, 5, 100)
    assert set(np.unique(ys)) <= {0, 1} and np.array_equal(ys[:-1], (xs[1:, :, 0] > 0).astype(int))
