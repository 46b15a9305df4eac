"""The paper profile's machinery: tuning seeds disjoint from evaluation seeds, the tuned learning
rate, the curriculum threshold, the corpus split, and the calibration of the learning section's
decision rules (THEORY §6; Menick et al. 2021)."""
import numpy as np
import pytest

from rtrl_validation.analysis.learning import DELTA, MARGIN, paired, settle
from rtrl_validation.simulations.curriculum import LengthCurriculum
from rtrl_validation.simulations.data.text import CharText, corpus_text
from rtrl_validation.simulations.experiments.learning import LearningExperiment, seed_plan, task_steps
from rtrl_validation.simulations.runner import task_seed

TINY = dict(groups=["elman:0.5"], hidden=4, seeds=2, copy_steps=60, text_steps=60, record_every=20,
            align_every=30, align_len=8, val_chars=40, val_every=30, vocab_size=8, estimators=["snap-1"],
            tasks=["text"])


def test_tuning_and_evaluation_seeds_are_disjoint():
    plan = seed_plan(task_seed(3, 0), "copy-gru-d0.1")
    keys = plan.keys()
    assert not {tuple(k) for k in keys["tuning"]} & {tuple(k) for k in keys["evaluation"]}
    draws = {name: np.random.default_rng(getattr(plan, name)).random(4) for name in
             ("init", "data", "tune_init", "tune_data", "train", "align", "tune_train", "mask")}
    values = np.concatenate(list(draws.values()))
    assert np.unique(values).size == values.size                        # eight independent streams
    # the group part is shared by every task of the group, the estimator's part is not
    other = seed_plan(task_seed(3, 5), "copy-gru-d0.1")
    assert other.tune_data.spawn_key == plan.tune_data.spawn_key and other.init.spawn_key == plan.init.spawn_key
    assert other.train.spawn_key != plan.train.spawn_key


def test_tuning_chooses_from_the_grid_without_touching_the_evaluation_run():
    exp = LearningExperiment()
    tuned_cfg = exp.config("quick", dict(TINY, tuning_seeds=2, lr_grid=[0.1, 1.0, 10.0], tuning_fraction=0.5))
    task, = exp.tasks(tuned_cfg)
    result = exp.run_task(task, task_seed(7, 0))
    t = result.data["tuning"]
    assert t["tuned"] and t["steps"] == 30 and len(t["scores"]) == 3
    assert t["chosen_lr"] in t["grid"] and t["grid"] == pytest.approx([3e-4, 3e-3, 3e-2])
    finite = [s for s in t["scores"] if s is not None]
    assert t["score"] == max(finite)
    # the evaluation run is the untuned run at the chosen rate: tuning draws nothing from its seeds
    plain_cfg = exp.config("quick", dict(TINY, text_lr=t["chosen_lr"]))
    plain = exp.run_task(exp.tasks(plain_cfg)[0], task_seed(7, 0))
    assert not plain.data["tuning"]["tuned"]
    for name in ("val_bits", "loss_bits", "theta"):
        np.testing.assert_array_equal(result.arrays[name], plain.arrays[name])
    assert task_steps(task.config) == (60, 30)


def test_paper_profile_has_the_claims_scale():
    exp = LearningExperiment()
    cfg = exp.config("paper")
    assert cfg["hidden"] >= 128 and cfg["seeds"] >= 5 and min(cfg["copy_steps"], cfg["text_steps"]) >= 100_000
    assert {g.split(":")[1] for g in cfg["groups"]} == {"0.1", "0.25"}
    assert {g.split(":")[0] for g in cfg["groups"]} == {"gru-reset-after", "lstm"}
    assert cfg["tuning_seeds"] > 0 and len(cfg["lr_grid"]) > 1
    taus = [int(e.split("-")[1]) for e in cfg["estimators"] if e.startswith("tbptt-")]
    assert len(taus) > 1
    assert exp.preamble(exp.config("quick")) == ""                    # small runs start at once


def test_claim1_profile_is_the_paper_profile_restricted_to_claim_1():
    """``paper-claim1``: the paper's scale and tuning, the O(p) estimators of claim 1, one sparse group."""
    exp = LearningExperiment()
    paper, claim1 = exp.config("paper"), exp.config("paper-claim1")
    assert {k: v for k, v in claim1.items() if k not in ("groups", "estimators")} == \
        {k: v for k, v in paper.items() if k not in ("groups", "estimators")}
    assert set(claim1["groups"]) <= set(paper["groups"]) and set(claim1["estimators"]) <= set(paper["estimators"])
    assert {"snap-1", "uoro"} <= set(claim1["estimators"]) and "snap-2" not in claim1["estimators"]
    assert [t.key for t in exp.tasks(claim1)] == [f"{kind}-gru-reset-after-d0.1-{e}" for kind in ("copy", "text")
                                                  for e in ("snap-1", "uoro", "rflo")]


@pytest.mark.parametrize("threshold", [0.15, 0.5])
def test_curriculum_steps_exactly_below_the_threshold(threshold):
    """L grows when the window's mean bits are below the threshold (strictly), not at it."""
    cur = LengthCurriculum(threshold=threshold, window=4, spread=5)
    st = cur.init(2)
    at, below = threshold, np.nextafter(threshold, 0.0)
    for _ in range(4):
        cur.observe(st, np.array([at, below]), np.array([True, True]))
    np.testing.assert_array_equal(st.length, [1, 2])


def test_corpus_splits_are_disjoint_and_the_stream_reads_only_training_text():
    p = CharText(vocab_size=24, val_fraction=0.1)
    text = corpus_text()
    n_train = p.train.size
    # the splits are two disjoint slices of the corpus: train = [0, n), validation = [n, N)
    assert n_train + p.valid.size == len(text)
    train_text, valid_text = text[:n_train], text[n_train:]
    unk = "\ufffd"
    assert p.decode(p.train[:200]) == "".join(c if c in p.vocab else unk for c in train_text[:200])
    assert p.decode(p.valid[:200]) == "".join(c if c in p.vocab else unk for c in valid_text[:200])
    # the training stream is train[(start + t) mod n]: never a validation character
    st = p.init(np.random.default_rng(0), 3)
    start = st.position.copy()
    T = 500
    st, xs, ys = p.sample(st, T)
    idx = (start[None, :] + np.arange(T)[:, None]) % n_train
    np.testing.assert_array_equal(xs.argmax(axis=2), p.train[idx])
    # validation reads the validation split only
    vx, vy = p.validation(100)
    np.testing.assert_array_equal(vx[:, 0].argmax(axis=1), p.valid[:100])


# ----------------------------------------------------------------------- calibration of the rules
def pass_rates(effect, sd, delta, kind, n_seeds=5, reps=400, seed=0):
    """Rates of PASS and FAIL of the learning section's rule on simulated paired differences
    (``n_seeds`` normal values with mean ``effect`` and sd ``sd``), at the claims' scale (a family of
    one: Holm leaves the decision as it is)."""
    rng = np.random.default_rng(seed)
    status = []
    for _ in range(reps):
        x = effect + sd * rng.standard_normal(n_seeds)
        claim = paired("c", "claim", "stat", x, delta, "", "", kind=kind)
        v = settle(claim, claim.decision)
        status.append(v.status)
    status = np.array(status)
    return float(np.mean(status == "PASS")), float(np.mean(status == "FAIL"))


def mc(p, reps):
    """Three Monte Carlo standard errors of a rate ``p`` over ``reps`` draws."""
    return 3 * np.sqrt(p * (1 - p) / reps)


def check_rules(reps):
    a, d, m = 0.05, DELTA["copy"], MARGIN["copy"]
    # superiority: no effect -> PASS at most α; the minimum effect δ with power -> PASS ≥ 80%
    p, _ = pass_rates(0.0, 1.0, d, "superiority", reps=reps)
    assert p <= a + mc(a, reps)
    p, _ = pass_rates(d, 1.0, d, "superiority", reps=reps, seed=1)
    assert p >= 0.8 - mc(0.8, reps)
    # a true effect δ measured with too little power is never FAILed beyond α (INCONCLUSIVE instead)
    _, f = pass_rates(d, 8.0, d, "superiority", reps=reps, seed=2)
    assert f <= a + mc(a, reps)
    # equivalence: an effect at the margin PASSes at most α; no effect with a tight interval PASSes
    p, _ = pass_rates(m, 0.2, m, "equivalence", reps=reps, seed=3)
    assert p <= a + mc(a, reps)
    p, _ = pass_rates(0.0, 0.2, m, "equivalence", reps=reps, seed=4)
    assert p >= 1 - a - mc(a, reps)
    # "indistinguishable from zero" with a wide interval is not a PASS
    p, _ = pass_rates(0.0, 5.0, m, "equivalence", reps=reps, seed=5)
    assert p <= a + mc(a, reps)
    return True


def test_decision_rules_calibration_smoke():
    assert check_rules(200)


@pytest.mark.slow
def test_decision_rules_calibration():
    assert check_rules(4000)


def test_a_long_run_states_its_predicted_time_and_the_cluster_command(monkeypatch):
    import rtrl_validation.simulations.experiments.learning as learning
    monkeypatch.setattr(learning, "PLAN_FLOPS", 0.0)
    exp = LearningExperiment()
    cfg = exp.config("quick", dict(TINY, tasks=["copy"], estimators=["snap-1", "tbptt-2"]))
    note = exp.preamble(cfg)
    assert note.startswith("learning: 2 tasks, predicted ") and "--scheduler tcp://HOST:8786" in note
