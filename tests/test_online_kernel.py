"""The compiled online loop (:mod:`simulations.online_kernel`) against the general loop of
:class:`OnlineTrainer` (``kernel=False``, the reference).

Tolerance (float64, unit roundoff ``u = 2⁻⁵³``): the two paths do the same arithmetic in a
different order (the pre-activation, ``D_t J``, ``c_t J`` and ``‖g_t‖`` are sums of at most
``n = k (k + m + 1)`` products, each with relative error ≤ ``n u`` in either order; the projection
by an eigen-decomposition of ``WᵀW`` instead of an SVD agrees to the same order).  The state and
influence recursions contract (``‖D_t‖ ≤ ρ < 1``), so the error of one step is not amplified
exponentially; ``θ`` and ``φ`` add ``α_t`` times the gradient's error, so after ``T`` steps the
difference is at most about ``T n u`` relative to the largest magnitude of a quantity
(:func:`bound`).  A reference run with ``α₀`` changed by one part in ``10⁸`` leaves that bound,
so the comparison can fail.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.data import MarkovRegime, VAR1Teacher
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.estimators.signs import SignReplay, rademacher
from rtrl_validation.simulations.online_kernel import ElmanKernel, SpectralClip
from rtrl_validation.simulations.optimizers import Adam, Schedule
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.training import Hook, OnlineTrainer, log_checkpoints

K, M, B, T = 4, 2, 3, 300
U = np.finfo(float).eps / 2


def bound(steps: int, k: int = K, m: int = M) -> float:
    """``T n u``: the rounding bound of the module docstring (relative)."""
    return steps * k * (k + m + 1) * U


def problem(activation: str, k: int = K, m: int = M):
    if activation == "identity":
        proc = VAR1Teacher(hidden=2 * k, inputs=m, activation="identity", teacher_rho=0.7, ar=0.5, noise=0.1, seed=1)
    else:
        proc = MarkovRegime(inputs=m, states=3, stay=0.9, lag=3, noise=0.1, seed=1)
    cell = make_cell("contractive-elman", k, m, rho=0.9, activation=activation)
    return cell, LinearReadout(cell.k, proc.n_out, proc.loss), proc


def train(spec, activation, kernel, steps=T, alpha0=0.05, update_every=1, learn=True, project=True,
          record_grad=True, slot=False, k=K, m=M):
    cell, ro, proc = problem(activation, k, m)
    tr = OnlineTrainer(cell, ro, parse_estimator(spec), proc, Schedule(alpha0, 100.0, 0.75) if learn else None,
                       update_every, project=SpectralClip(cell) if project else None,
                       checkpoints=log_checkpoints(steps, 12), record_grad=record_grad, chunk=64, kernel=kernel)
    rng = np.random.default_rng(4)
    state = tr.init(cell.init(rng, scale=2.5, batch=B), ro.init(rng, B), rng)
    state, traj = tr.run(state, steps, rng, checkpoint=slot)
    return tr, state, traj


def assert_close(ref, fast, steps=T):
    (_, s1, t1), (tr, s2, t2) = ref, fast
    assert tr.kernel is not None
    a1, a2 = t1.arrays(), t2.arrays()
    assert a1.keys() == a2.keys()
    tol = bound(steps, tr.cell.k, tr.cell.m)
    for name in a1:
        scale = max(1.0, float(np.abs(a1[name]).max()))
        assert np.abs(a1[name] - a2[name]).max() <= tol * scale, name
    for name in ("theta", "phi", "s", "g_acc", "gphi_acc"):
        x, y = getattr(s1, name), getattr(s2, name)
        assert np.abs(x - y).max() <= tol * max(1.0, float(np.abs(x).max())), name
    J1 = tr.estimator.influence(s1.est) if tr.estimator.capabilities.holds_influence else None
    if J1 is not None:
        J2 = tr.estimator.influence(s2.est)
        assert np.abs(J1 - J2).max() <= tol * max(1.0, float(np.abs(J1).max()))
    assert t1.diverged_at == t2.diverged_at


@pytest.mark.parametrize("spec", ["rtrl", "snap-1", "tbptt-1", "tbptt-4", "uoro"])
@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_kernel_matches_the_general_loop(spec, activation):
    # UORO at the step size the convergence experiment gives it (``stochastic_alpha0``): at α₀ = 0.05 the
    # linear student trained with UORO amplifies any difference (×10 every ~40 steps), so no rounding
    # bound holds for any two orders of summation; with θ frozen the two agree to 10⁻¹⁵ at α₀ = 0.05 too
    alpha0 = 0.005 if spec == "uoro" else 0.05
    ref = train(spec, activation, kernel=False, alpha0=alpha0)
    fast = train(spec, activation, kernel=True, alpha0=alpha0)
    assert_close(ref, fast)
    # the projection was active: the comparison covers it
    assert np.any(np.isclose(ref[2].arrays()["contraction"], 0.9, rtol=1e-9, atol=0))


@pytest.mark.parametrize("spec", ["rtrl", "tbptt-2"])
def test_kernel_matches_with_sparse_updates_frozen_and_unprojected(spec):
    assert_close(train(spec, "tanh", False, update_every=2), train(spec, "tanh", True, update_every=2))
    assert_close(train(spec, "identity", False, project=False, alpha0=0.01),
                 train(spec, "identity", True, project=False, alpha0=0.01))
    assert_close(train(spec, "identity", False, project=False, alpha0=0.01, record_grad=False),      # RTRL: fused
                 train(spec, "identity", True, project=False, alpha0=0.01, record_grad=False))
    assert_close(train(spec, "tanh", False, learn=False), train(spec, "tanh", True, learn=False))


@pytest.mark.parametrize("spec", ["rtrl", "tbptt-4"])
@pytest.mark.parametrize("record_grad", [True, False])
def test_products_of_several_row_blocks_match_the_general_loop(spec, record_grad):
    """k = 11, m = 3 (p = 165): the product's rows in two blocks with AVX-512 (three with AVX2), the
    first held in the scratch, a last block of columns of fewer vectors and columns after the last
    whole vector in scalar code (5 with AVX-512, 1 with AVX2)
    (:func:`~rtrl_validation.simulations.kernels_dense.elman_influence_and_credit`); exact RTRL without
    a window gradient takes the one-pass update (``fuse``)."""
    steps = 120
    ref = train(spec, "tanh", kernel=False, steps=steps, record_grad=record_grad, k=11, m=3)
    fast = train(spec, "tanh", kernel=True, steps=steps, record_grad=record_grad, k=11, m=3)
    assert_close(ref, fast, steps)


@pytest.mark.parametrize("record_grad", [True, False])
def test_the_comparison_can_fail(record_grad):
    """α₀ changed by one part in 10⁸: θ moves by far more than the rounding bound."""
    ref = train("rtrl", "identity", kernel=False, alpha0=0.05 * (1 + 1e-8), record_grad=record_grad)
    fast = train("rtrl", "identity", kernel=True, record_grad=record_grad)
    with pytest.raises(AssertionError):
        assert_close(ref, fast)


@pytest.mark.parametrize("blowup", [1e8, 10.0])
def test_uoro_draws_the_signs_of_the_general_loop(blowup):
    """The kernel draws UORO's signs per block of steps before the call: the generator ends where the
    general loop leaves it, also when a replicate leaves the bounds inside a block (``blowup = 10``:
    the kernel stops early and the generator is set back), and the numbers agree."""
    ends = []
    for kernel in (False, True):
        cell, ro, proc = problem("tanh")
        rng = np.random.default_rng(5)
        tr = OnlineTrainer(cell, ro, parse_estimator("uoro"), proc, Schedule(0.005, 100.0, 0.75), chunk=64,
                           record_every=50, blowup=blowup, stop="all", kernel=kernel)
        state, traj = tr.run(tr.init(cell.init(rng, batch=B), ro.init(rng, B), rng), 200, rng)
        ends.append((state, traj, rng.bit_generator.state, tr))
    (s1, t1, g1, _), (s2, t2, g2, tr) = ends
    assert tr.kernel is not None and g1 == g2
    assert t1.diverged_at == t2.diverged_at and s1.diverged.tolist() == s2.diverged.tolist()
    if blowup < 1e8:
        assert t1.diverged_at is not None and 0 < t1.diverged_at < 200
    else:
        tol = bound(200) * max(1.0, float(np.abs(s1.theta).max()))
        assert np.abs(s1.theta - s2.theta).max() <= tol
        assert np.abs(s1.est.theta - s2.est.theta).max() <= bound(200) * max(1.0, float(np.abs(s1.est.theta).max()))


def test_uoro_kernel_uses_the_general_loop_signs_and_one_flipped_sign_shows():
    """The general loop fed the kernel's signs one step at a time (:class:`SignReplay` of the same
    Generator's draws, ``T × B × k``) gives the kernel's numbers to rounding; with one sign of one
    step flipped it leaves the rounding bound (the comparison sees the signs)."""
    cell, ro, proc = problem("tanh")
    steps = 120

    def run(kernel, rng):
        tr = OnlineTrainer(cell, ro, parse_estimator("uoro"), proc, Schedule(0.005, 100.0, 0.75),
                           project=SpectralClip(cell), chunk=64, record_every=40, kernel=kernel)
        init = np.random.default_rng(3)
        state = tr.init(cell.init(init, scale=2.5, batch=B), ro.init(init, B), init, data_rng=np.random.default_rng(8))
        return tr, tr.run(state, steps, rng, data_rng=np.random.default_rng(9))[0]

    tr, fast = run(True, np.random.default_rng(7))
    assert tr.kernel is not None
    signs = rademacher(np.random.default_rng(7), (steps, B, K))
    _, ref = run(False, SignReplay(signs))
    flipped = signs.copy()
    flipped[60, 1, 2] *= -1
    _, off = run(False, SignReplay(flipped))
    tol = bound(steps) * max(1.0, float(np.abs(ref.theta).max()))
    assert np.abs(ref.theta - fast.theta).max() <= tol
    assert np.abs(ref.est.theta - fast.est.theta).max() <= bound(steps) * max(1.0, float(np.abs(ref.est.theta).max()))
    assert np.abs(off.theta - fast.theta).max() > 100 * tol


def test_tbptt_block_straddling_the_run_takes_the_general_loop():
    """301 steps are not a whole number of TBPTT(4) blocks: the general loop runs (same numbers)."""
    ref = train("tbptt-4", "tanh", kernel=False, steps=301)
    fast = train("tbptt-4", "tanh", kernel=True, steps=301)
    assert_close(ref, fast, steps=301)
    assert fast[0].kernel.begin(fast[1], 3, np.random.default_rng(0)) is None


@pytest.mark.parametrize("spec, density", [("rtrl", 1.0), ("snap-1", 1.0), ("uoro", 1.0), ("kf-rtrl", 1.0),
                                           ("kf-rtrl", 0.5)])
def test_influence_norms_without_the_formed_influence(spec, density):
    """An estimator's ``‖J̃_t‖_F`` (the trainer's divergence check: exact RTRL and SnAp-1 from their
    stored entries in their own order, UORO as ``‖s̃‖ |factor| ‖direction‖``, KF-RTRL from ``u``
    and ``A``) against the norm of the influence formed in θ's order (``Estimator.influence_norms``):
    sums of the same ``k p`` squares in another order, relative error ≤ ``k p u`` (the closed forms:
    ``(k + p) u``); one stored number changed by one part in 10⁸ leaves that bound."""
    from rtrl_validation.simulations.estimators.base import Estimator
    if spec == "kf-rtrl":
        cell, est = make_cell("elman", 5, 3, density=density), parse_estimator(spec)
        rng = np.random.default_rng(3)
        st = est.init(cell, cell.init(rng, batch=3), 3, rng)
        st.u[...] = rng.standard_normal(st.u.shape)
        st.A[...] = rng.standard_normal(st.A.shape)
        stored = st.A
    else:
        tr, state, _ = train(spec, "tanh", kernel=True, steps=50)
        cell, est, st = tr.cell, tr.estimator, state.est
        stored = st.direction if spec == "uoro" else st.J
        if spec == "uoro":
            st.factor = st.factor * np.where(np.arange(st.batch) == 0, -1.0, 1.0)     # a negative factor
    tol = (cell.k + cell.p if spec in ("uoro", "kf-rtrl") else cell.k * cell.p) * U
    ref = Estimator.influence_norms(est, st)
    assert np.all(ref > 0)
    assert np.all(np.abs(est.influence_norms(st) - ref) <= tol * ref)
    if spec == "uoro":
        st.sq = None                                 # ‖direction‖², kept by the last step, no longer holds
    stored.flat[int(np.argmax(np.abs(stored)))] *= 1 + 1e-8
    assert np.any(np.abs(est.influence_norms(st) - ref) > tol * ref)


@pytest.mark.parametrize("record_grad", [True, False])
@pytest.mark.parametrize("activation, alpha0, blowup", [("identity", 10.0, 1e8), ("tanh", 1.0, 2.5)])
def test_divergence_is_recorded_at_the_same_step(record_grad, activation, alpha0, blowup):
    """Students that leave the bounds: an unstable linear one with a large step, and a tanh one whose
    parameters pass a bound of 2.5 at the third step (one replicate of two, with the state bounded
    by 1); the step, the replicates and the reason as the general loop records them, with a window
    gradient and without (then exact RTRL's update is fused), with checkpoints 64 steps apart (the
    compiled loop runs up to 64 steps per call)."""
    results = []
    for kernel in (False, True):
        cell, ro, proc = problem(activation)
        rng = np.random.default_rng(0)
        theta, phi = cell.init(rng, batch=2), ro.init(rng, 2)
        if activation == "identity":
            theta[:, cell.block["W"].cols] = (3.0 * np.eye(K)).ravel()  # unstable, no projection
        tr = OnlineTrainer(cell, ro, parse_estimator("rtrl"), proc, Schedule(alpha0), record_every=64, kernel=kernel,
                           record_grad=record_grad, blowup=blowup)
        state, traj = tr.run(tr.init(theta, phi, np.random.default_rng(0)), 200, np.random.default_rng(0))
        results.append((state.t, traj.diverged_at, traj.diverged_reason, state.diverged.tolist()))
    assert results[0][1] is not None and results[0][1] < 200
    assert results[0] == results[1]


class MemorySlot:
    every = 64

    def __init__(self, snapshot=None):
        self.saved, self.snapshot = [], snapshot

    def load(self, call, like=None):
        return self.snapshot

    def reject(self, why):
        raise AssertionError(why)

    def save(self, call, step, payload):
        self.saved.append((step, copy.deepcopy(payload)))


@pytest.mark.parametrize("spec", ["rtrl", "snap-1", "tbptt-4", "uoro"])
def test_kernel_run_resumed_from_a_checkpoint_gives_the_same_numbers(spec):
    saver = MemorySlot()
    _, state, traj = train(spec, "tanh", True, slot=saver)
    mid = saver.saved[len(saver.saved) // 2]
    assert 0 < mid[0] < T
    _, state2, traj2 = train(spec, "tanh", True, slot=MemorySlot(snapshot=mid))
    for name in ("theta", "phi", "s"):
        np.testing.assert_array_equal(getattr(state2, name), getattr(state, name))
    for name, x in traj.arrays().items():
        np.testing.assert_array_equal(traj2.arrays()[name], x)


def test_plan_covers_only_its_setting():
    cell, ro, proc = problem("tanh")
    sched = Schedule(0.01)
    for spec in ("rtrl", "snap-1", "tbptt-3", "uoro"):
        assert ElmanKernel.plan(OnlineTrainer(cell, ro, parse_estimator(spec), proc, sched)) is not None
    for spec in ("kf-rtrl", "snap-2", "rflo", "bptt"):
        assert ElmanKernel.plan(OnlineTrainer(cell, ro, parse_estimator(spec), proc, sched)) is None
    rtrl = parse_estimator("rtrl")
    assert ElmanKernel.plan(OnlineTrainer(cell, ro, rtrl, proc, sched, optimizer=Adam())) is None
    assert ElmanKernel.plan(OnlineTrainer(cell, ro, rtrl, proc, sched, hooks=[Hook()])) is None
    assert ElmanKernel.plan(OnlineTrainer(cell, ro, rtrl, proc, sched, project=cell.project)) is None
    assert OnlineTrainer(cell, ro, rtrl, proc, sched, kernel=False).kernel is None
    gru = make_cell("gru", K, M)
    assert ElmanKernel.plan(OnlineTrainer(gru, LinearReadout(K, 1), rtrl, proc, sched)) is None
    sparse = make_cell("elman", K, M, density=0.5, mask_seed=1)
    assert ElmanKernel.plan(OnlineTrainer(sparse, LinearReadout(K, 1), rtrl, proc, sched)) is None


def test_spectral_clip_is_the_projection_outside_and_the_identity_inside():
    """(``lazy_projection`` of the convergence experiment is this for a dense ``W``.)"""
    cell = make_cell("contractive-elman", 4, 2, rho=0.7)
    rng = np.random.default_rng(2)
    clip = SpectralClip(cell)
    inside = cell.init(rng, batch=3)
    inside[:, cell.block["W"].cols] *= 0.5
    assert clip(inside) is inside
    mixed = np.concatenate([inside[:1], cell.init(rng, scale=4.0, batch=2)])
    mixed[1:, cell.block["W"].cols] *= 5
    out = clip(mixed)
    np.testing.assert_array_equal(out[0], mixed[0])
    np.testing.assert_allclose(out[1:], cell.project(mixed[1:]), rtol=0, atol=1e-12)
    assert np.all(cell.contraction(out) <= 0.7 * (1 + 1e-12))
    with pytest.raises(ValueError):
        SpectralClip(make_cell("contractive-elman", 4, 2, rho=0.7, density=0.5, mask_seed=1))


def test_tanh_into_is_within_four_ulp_of_tanh():
    """The compiled loop's ``tanh`` (:func:`~simulations.kernels.tanh_into`, no libm calls) against
    the correctly rounded ``math.tanh``: at most 4 ulp (its rounding: reduction, Horner, scaling,
    quotient; numpy's own ``tanh`` is within 3 ulp here), and the special values map as ``tanh``."""
    import math

    from rtrl_validation.simulations.kernels import tanh_into
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.standard_normal(20000) * s for s in (1e-9, 1e-3, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0)]
                       + [np.array([0.0, -0.0, 1e-300, -5e-324, 19.06, 20.0, 20.5, np.inf, -np.inf, np.nan])])
    out = np.empty_like(z)
    tanh_into(z, out, np.empty(z.size, dtype=np.int64))
    ref = np.array([math.tanh(v) for v in z])
    fin = np.isfinite(z)
    ulp = np.abs(out[fin] - ref[fin]) / np.spacing(np.abs(ref[fin])).clip(min=np.finfo(float).smallest_subnormal)
    assert ulp.max() <= 4
    np.testing.assert_array_equal(out[~fin], ref[~fin])
    assert np.signbit(out[z.size - 9]) and out[z.size - 9] == 0.0          # tanh(−0) = −0


@pytest.mark.parametrize("activation", ["identity", "tanh"])
@pytest.mark.parametrize("spec, project", [("snap-1", True), ("snap-1", False), ("uoro", True), ("rtrl", True)])
def test_step_and_update_in_one_pass_match_the_general_loop(spec, project, activation):
    """Without a window gradient and with an update at every step, SnAp-1's (UORO's) step, or exact
    RTRL's gradient, and the SGD update are one pass (``ElmanKernel.fuse``); within the same bound of
    the general loop (UORO
    at its convergence-experiment step size, as in :func:`test_kernel_matches_the_general_loop`,
    and projected: without the projection the linear student diverges at step 49 in both loops and
    the difference grows with θ)."""
    alpha0 = 0.005 if spec == "uoro" else 0.05
    ref = train(spec, activation, kernel=False, record_grad=False, project=project, alpha0=alpha0)
    fast = train(spec, activation, kernel=True, record_grad=False, project=project, alpha0=alpha0)
    tr, state, _ = train(spec, activation, kernel=True, record_grad=False, project=project, steps=1)
    assert tr.kernel.begin(state, 1, np.random.default_rng(0)).fuse          # the path under test
    assert_close(ref, fast)


@pytest.mark.parametrize("use", ["snap-1", "uoro"])
def test_the_fused_pass_against_its_numpy_reference(use):
    """``_fused_update_pass`` against numpy, as SnAp-1 calls it (``d = diag(D_t)``, ``c = c_t``) and as
    UORO does (``d ≡ 1``, ``c ≡ γ``, the new ``‖direction‖²`` summed too): the new influence and
    ``θ`` exactly (the same operations), its running sums within ``n u`` of ``‖g‖²``, of ``‖g‖²`` over
    ``W``'s entries and of the new ``‖x‖²``."""
    from rtrl_validation.simulations.kernels import _fused_update_pass
    k, m = 6, 3
    q = k + m + 1
    rng = np.random.default_rng(0)
    J, th = rng.standard_normal(k * q), rng.standard_normal(k * q)
    w, v = rng.random(k), rng.standard_normal(q)
    d, c = (rng.standard_normal(k), rng.standard_normal(k)) if use == "snap-1" else (np.ones(k), np.full(k, -1.3))
    alpha = 0.3
    x = (d * J.reshape(q, k) + v[:, None] * w).reshape(-1)              # row j: entries j·k + r
    g = (c * x.reshape(q, k)).reshape(-1)
    thn = th + -(alpha * g)
    J2, th2, part = J.copy(), th.copy(), np.empty((3, k))
    _fused_update_pass(J2, th2, d, w, v, c, alpha, k, part, use == "uoro")
    np.testing.assert_array_equal(J2, x)
    np.testing.assert_array_equal(th2, thn)
    n = k * q
    sums = [(part[0].sum(), g @ g), (part[1].sum(), g[:k * k] @ g[:k * k])]
    sums += [(part[2].sum(), x @ x)] if use == "uoro" else []
    for got, want in sums:
        assert abs(got - want) <= n * U * want


def test_rtrl_input_and_credit_against_numpy():
    """``_add_input_and_credit`` (a TBPTT block's first step) against numpy: from
    ``[D_t J_{t−1}; c_t D_t J_{t−1}]`` (unit-major columns), ``J_t = D_t J_{t−1} + I_t`` and
    ``g_t = c_t D_t J_{t−1} + c_t I_t`` in θ's order, exactly (the same operations)."""
    from rtrl_validation.simulations.kernels import _add_input_and_credit
    k, m = 5, 3
    q = k + m + 1
    p = k * q
    rng = np.random.default_rng(1)
    Jb = rng.standard_normal((k + 1, p))
    ds, ah, c = rng.random(k), rng.standard_normal(q), rng.standard_normal(k)
    J = Jb[:k].copy()
    for r in range(k):
        J[r, r * q:(r + 1) * q] += ds[r] * ah                          # I_t's row r, unit-major
    gu = Jb[k].reshape(k, q) + (c * ds)[:, None] * ah[None, :]         # unit-major (r, j)
    g = gu.T.reshape(-1)                                               # θ's order: j·k + r
    J1, g1 = Jb.copy(), np.empty(p)
    _add_input_and_credit(J1, ds, ah, c, g1)
    np.testing.assert_array_equal(J1[:k], J)
    np.testing.assert_array_equal(g1, g)
