"""The online-learning harness of the learning experiment (THEORY §6): optimiser, loop, experiment."""
import numpy as np
import pytest

from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.curriculum import LengthCurriculum
from rtrl_validation.simulations.data.copy_task import CopyTask, MaskedReadout
from rtrl_validation.simulations.data.text import CharText
from rtrl_validation.simulations.estimators import parse_estimator
from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.experiments.learning import (LearningExperiment, applies, cosine_rows, learn_online,
                                                              parse_group)
from rtrl_validation.simulations.optimizers import SGD, Adam, make_optimizer
from rtrl_validation.simulations.readouts import LinearReadout
from rtrl_validation.simulations.runner import task_seed
from rtrl_validation.simulations.sequence import run_sequence
from rtrl_validation.simulations.training import OnlineTrainer, Schedule


def test_adam_moves_only_active_rows_and_matches_the_formula():
    opt = Adam()
    x = np.ones((3, 4))
    st = opt.init(x)
    g = np.arange(12.0).reshape(3, 4) - 5.0
    g[1] = 0.0                                                           # row 1 received no gradient
    u, st = opt.update(g, st, 0.1)
    x += u
    # first bias-corrected Adam step is α·g/(|g| + ε): a step of α·sign(g)
    expect = 1.0 - 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(x[[0, 2]], expect[[0, 2]], rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(x[1], 1.0)
    np.testing.assert_array_equal(st.n, [1, 0, 1])
    u, st = opt.update(np.zeros_like(g), st, 0.1)                        # no gradient: no change
    np.testing.assert_array_equal(u, 0.0)
    np.testing.assert_array_equal(st.n, [1, 0, 1])


def test_sgd_step():
    opt = SGD()
    x, g = np.zeros((2, 3)), np.ones((2, 3))
    g[0] = 0.0
    u, _ = opt.update(g, opt.init(x), 0.5)
    np.testing.assert_array_equal(x + u, [[0, 0, 0], [-0.5, -0.5, -0.5]])
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop")


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    c = cosine_rows(a, b)
    np.testing.assert_allclose(c[:2], [1.0, -1.0], rtol=1e-15)
    assert np.isnan(c[2])


def text_setup(B=2, hidden=4, vocab=8):
    process = CharText(vocab_size=vocab)
    cell = make_cell("gru-reset-after", hidden, process.m, density=0.5)
    readout = MaskedReadout(LinearReadout(cell.k, process.n_out, "xent"))
    rng = np.random.default_rng(11)
    return process, cell, readout, cell.init(rng, batch=B), readout.init(rng, B)


def test_loop_equals_the_online_trainer_with_sgd():
    """With SGD, every step counted and exact RTRL, the harness is OnlineTrainer's algorithm."""
    process, cell, readout, theta0, phi0 = text_setup()
    steps, sched = 120, Schedule(0.05)
    trainer = OnlineTrainer(cell, readout.readout, parse_estimator("rtrl"), process, sched, update_every=3,
                            record_every=40)
    state = trainer.init(theta0, phi0, np.random.default_rng(5))
    state, traj = trainer.run(state, steps, np.random.default_rng(6))
    out = learn_online(cell, readout, parse_estimator("rtrl"), process, theta0, phi0, steps,
                       np.random.default_rng(6), np.random.default_rng(5), SGD(), sched,
                       update_every=3, record_every=40)
    np.testing.assert_array_equal(out["t"], traj.t)
    np.testing.assert_allclose(out["loss_bits"] * np.log(2), np.stack(traj.loss), rtol=1e-12)
    # the same arithmetic in the same order: the final parameters agree to rounding
    assert np.max(np.abs(state.theta - theta0)) > 1e-3
    np.testing.assert_allclose(out["theta"], state.theta, rtol=1e-13, atol=0)
    np.testing.assert_allclose(out["phi"], state.phi, rtol=1e-13, atol=0)


def test_alignment_of_exact_rtrl_with_itself_is_one_and_tbptt_below():
    """The checkpoint alignment replays the stream at frozen θ: RTRL against RTRL is exactly
    aligned (cosine 1 to rounding, 1e-12 ≫ float64 rounding of a 16-step sum); TBPTT(2) is not."""
    process, cell, readout, theta0, phi0 = text_setup()
    kw = dict(update_every=1, record_every=20, align_every=20, align_len=16)
    opt = Adam(), Schedule(0.01)
    out = learn_online(cell, readout, parse_estimator("rtrl"), process, theta0, phi0, 60,
                       np.random.default_rng(1), np.random.default_rng(2), *opt, align_rng=np.random.default_rng(3),
                       **kw)
    np.testing.assert_array_equal(out["align_t"], [0, 20, 40])
    np.testing.assert_allclose(out["cosine"], 1.0, rtol=0, atol=1e-12)
    out = learn_online(cell, readout, parse_estimator("tbptt-2"), process, theta0, phi0, 60,
                       np.random.default_rng(1), np.random.default_rng(2), *opt, align_rng=np.random.default_rng(3),
                       **kw)
    assert np.all(out["cosine"] < 1.0 - 1e-6)


def test_alignment_segment_matches_a_direct_replay():
    """The t = 0 alignment segment is the first align_len steps of the stream at θ₀, s₀ = 0."""
    process, cell, readout, theta0, phi0 = text_setup()
    out = learn_online(cell, readout, parse_estimator("tbptt-3"), process, theta0, phi0, 30,
                       np.random.default_rng(1), np.random.default_rng(2), Adam(), Schedule(0.01),
                       record_every=10, align_every=100, align_len=12, align_rng=np.random.default_rng(3))
    _, xs, ys = process.sample(process.init(np.random.default_rng(2), 2), 12)
    g = run_sequence(cell, theta0, readout, phi0, xs, ys, parse_estimator("tbptt-3")).grad_theta
    g_ex = run_sequence(cell, theta0, readout, phi0, xs, ys, parse_estimator("rtrl")).grad_theta
    np.testing.assert_allclose(out["cosine"][0], cosine_rows(g, g_ex), rtol=1e-13)


def test_copy_loop_records_curriculum_and_validation_is_frozen_theta():
    task = CopyTask(curriculum=LengthCurriculum(window=8))
    cell = make_cell("elman", 6, task.m)
    readout = MaskedReadout(LinearReadout(cell.k, task.n_out, "xent"))
    rng = np.random.default_rng(0)
    theta0, phi0 = cell.init(rng, batch=3), readout.init(rng, 3)
    out = learn_online(cell, readout, parse_estimator("rtrl"), task, theta0, phi0, 100, np.random.default_rng(1),
                       np.random.default_rng(2), Adam(), Schedule(0.01), record_every=25)
    assert out["length"].shape == out["loss_bits"].shape == (4, 3)
    assert np.all(out["length"] >= 1) and np.all(np.diff(out["length"], axis=0) >= 0)
    assert np.all(out["diverged_at"] == -1)


def test_divergence_is_recorded_per_replicate():
    process, cell, readout, theta0, phi0 = text_setup()
    theta0 = theta0.copy()
    theta0[1] = np.nan
    out = learn_online(cell, readout, parse_estimator("rtrl"), process, theta0, phi0, 20, np.random.default_rng(1),
                       np.random.default_rng(2), Adam(), Schedule(0.01), record_every=10)
    np.testing.assert_array_equal(out["diverged_at"], [-1, 1])
    assert np.all(np.isfinite(out["loss_bits"][:, 0]))


# ---------------------------------------------------------------------------- the experiment
TINY = dict(groups=["elman:0.5"], hidden=4, seeds=2, copy_steps=60, text_steps=60, record_every=20,
            align_every=30, align_len=8, val_chars=40, val_every=30, vocab_size=8,
            estimators=["rtrl", "tbptt-2"])


def test_config_is_refused_with_one_clear_line():
    exp = LearningExperiment()
    for bad in (dict(groups=["elman"]), dict(groups=["nope:0.5"]), dict(groups=["elman:1.5"]),
                dict(hidden=0), dict(tasks=["music"]), dict(estimators=[]), dict(optimizer="lbfgs"),
                dict(copy_lr=-1.0), dict(val_fraction=1.0), dict(spread=-1), dict(nonsense=1)):
        with pytest.raises(ConfigError) as e:
            exp.config("quick", bad)
        assert "\n" not in str(e.value)
    assert parse_group("gru-reset-after:0.25") == ("gru-reset-after", 0.25)


def test_tasks_cover_the_grid_and_a_requested_kf_rtrl_on_a_gru_is_refused():
    exp = LearningExperiment()
    cfg = exp.config("quick", dict(groups=["gru-reset-after:0.1", "elman:0.25"], estimators=["rtrl", "snap-2"]))
    keys = [t.key for t in exp.tasks(cfg)]
    assert len(keys) == len(set(keys)) == 2 * 2 * 2
    with pytest.raises(ConfigError, match="'kf-rtrl' does not apply to cell 'gru-reset-after'"):
        exp.config("quick", dict(groups=["gru-reset-after:0.1", "elman:0.25"], estimators=["rtrl", "kf-rtrl"]))
    assert applies("kf-rtrl", "elman") and not applies("kf-rtrl", "lstm") and applies("snap-1", "lstm")
    for profile in ("quick", "full"):      # the profiles run KF-RTRL on the groups it applies to
        keys = [t.key for t in exp.tasks(exp.config(profile))]
        assert not any("kf-rtrl" in key and "elman" not in key for key in keys)


def run_tiny(**over):
    exp = LearningExperiment()
    cfg = exp.config("quick", dict(TINY, **over))
    tasks = exp.tasks(cfg)
    return tasks, [exp.run_task(t, task_seed(7, i)) for i, t in enumerate(tasks)]


def test_tasks_run_are_reproducible_and_paired():
    tasks, results = run_tiny()
    by = {t.key: r for t, r in zip(tasks, results)}
    copy_rtrl, text_rtrl, text_tb = (by["copy-elman-d0.5-rtrl"], by["text-elman-d0.5-rtrl"],
                                     by["text-elman-d0.5-tbptt-2"])
    assert copy_rtrl.status == "ok" and copy_rtrl.arrays["length"].shape == (3, 2)
    assert text_rtrl.arrays["val_bits"].shape == (3, 2)
    # paired: both estimators start from the same θ₀, φ₀ (same validation loss at t = 0) ...
    np.testing.assert_array_equal(text_rtrl.arrays["val_bits"][0], text_tb.arrays["val_bits"][0])
    # ... and replicates differ from each other
    assert text_rtrl.arrays["val_bits"][0, 0] != text_rtrl.arrays["val_bits"][0, 1]
    assert "cosine" not in text_rtrl.arrays and text_tb.arrays["cosine"].shape == (2, 2)
    np.testing.assert_array_equal(text_tb.arrays["flops"],
                                  text_tb.arrays["t"] * text_tb.data["flops_per_step"]["total"])
    # same seed and config: the same numbers
    _, again = run_tiny()
    for r, q in zip(results, again):
        for name in r.arrays:
            if name != "seconds":
                np.testing.assert_array_equal(r.arrays[name], q.arrays[name])


def test_unregistered_estimator_is_refused_up_front():
    with pytest.raises(ConfigError, match="learning: estimators: item 0: unknown estimator"):
        LearningExperiment().config("quick", dict(TINY, estimators=["no-such-estimator"], tasks=["copy"]))


def test_a_run_that_diverges_at_once_still_has_empty_curves():
    """Every replicate non-finite from the start: the run stops at step 1, before any record."""
    process, cell, readout, theta0, phi0 = text_setup()
    out = learn_online(cell, readout, parse_estimator("rtrl"), process, np.full_like(theta0, np.nan), phi0, 20,
                       np.random.default_rng(1), np.random.default_rng(2), Adam(), Schedule(0.01), record_every=10)
    np.testing.assert_array_equal(out["diverged_at"], [1, 1])
    assert out["t"].shape == (0,) and out["loss_bits"].shape == (0, 2)

