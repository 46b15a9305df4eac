"""The bias-variance experiment and its analysis (THEORY.md §4): config checks, a small run whose
verdicts all hold, the jackknife statistics against brute force, and verdicts that fail when the
evidence says so."""
from __future__ import annotations

import numpy as np
import pytest

from rtrl_validation.analysis.bias_variance import (_claims, _unbiasedness, analyse, late_window, record_statistics,
                                                    statistics)
from rtrl_validation.simulations.experiments.base import ConfigError
from rtrl_validation.simulations.experiments.bias_variance import BiasVarianceExperiment

EXP = BiasVarianceExperiment()
SMALL = {"steps": 12, "replicates": 64, "hidden": [4, 6], "densities": [1.0], "rhos": [0.6],
         "base_hidden": 6, "base_density": 0.5, "base_rho": 0.9, "check_replicates": 4000,
         "enumeration_steps": 2, "orders": [1, 2], "instances": 4,
         "memory_train_steps": 100, "copy_train_steps": 200, "copy_length": 3}


def run(overrides=SMALL, seed=0):
    cfg = EXP.config("quick", overrides)
    tasks = EXP.tasks(cfg)
    seeds = np.random.SeedSequence(seed).spawn(len(tasks))
    out = []
    for task, ss in zip(tasks, seeds):
        res = EXP.run_task(task, ss)
        out.append({"experiment": EXP.name, "task": task.key, "config": task.config, "seed": seed,
                    "status": res.status, "reason": res.reason, "data": res.data,
                    "verdicts": [v.to_dict() for v in res.verdicts], "arrays": res.arrays})
    return out


@pytest.fixture(scope="module")
def records():
    return run()


@pytest.mark.parametrize("bad,match", [
    ({"orders": [0]}, "SnAp order"), ({"densities": [0.0]}, "density"), ({"base_density": 1.5}, "density"),
    ({"rhos": [1.0]}, "rho"), ({"cell": "gru", "rhos": []}, "kf-rtrl needs"), ({"cell": "gru"}, "rho sweep"),
    ({"estimators": ["snap-0"]}, "SnAp order"), ({"estimators": ["bptt"]}, "not an approximation"),
    ({"replicates": 1}, "replicates"), ({"nonsense": 1}, "unknown config key"), ({"cell": "nope"}, "unknown cell"),
    ({"steps": 8, "copy_length": 5}, "one copy episode"), ({"copy_alphabet": 1}, "alphabet")])
def test_bad_configs_are_refused_with_one_line(bad, match):
    with pytest.raises(ConfigError, match=match) as err:
        EXP.config("quick", bad)
    assert "\n" not in str(err.value)


def test_tasks_cover_the_three_sweeps_once():
    cfg = EXP.config("quick", SMALL)
    keys = [t.key for t in EXP.tasks(cfg)]
    assert keys[0] == "identities" and len(keys) == len(set(keys))
    assert set(keys[1:]) == ({f"h{h}-d0.5-rho0.9-i{i}" for h in (4, 6) for i in range(4)}
                             | {"h6-d1-rho0.9", "h6-d0.5-rho0.6"}
                             | {f"{task}-{w}-i{i}" for task in ("memory", "copy") for w in ("initial", "trained")
                                for i in range(4)})


def test_memory_task_instances_share_their_start():
    """The initial-θ and trained-θ tasks of an instance start from the same θ₀ and read the same path,
    whatever their task seeds; training moves θ."""
    cfg = EXP.config("quick", SMALL)
    a = EXP._memory_problem(cfg, 1)
    b = EXP._memory_problem(cfg, 1, train=False)
    np.testing.assert_array_equal(a[2][0], b[2][0])
    np.testing.assert_array_equal(a[4], b[4])
    assert b[3] is None
    assert a[3] is not None and np.linalg.norm(a[3][0] - a[2][0]) > 0


def test_copy_task_instances_share_their_start():
    """The copy task's initial-θ and trained-θ tasks of an instance share θ₀ and the measured path,
    which ends on a recall step (g_T ≠ 0); online RTRL moves θ and keeps it in the contraction set."""
    cfg = EXP.config("quick", SMALL)
    a = EXP._copy_problem(cfg, 2)
    b = EXP._copy_problem(cfg, 2, train=False)
    np.testing.assert_array_equal(a[2][0], b[2][0])
    np.testing.assert_array_equal(a[4], b[4])
    np.testing.assert_array_equal(a[5], b[5])
    assert b[3] is None and b[7] is None and a[7] >= 1
    assert a[5][-1] >= 0 and a[4].shape == (a[5].size, cfg["copy_alphabet"] + 2)
    cell = a[0]
    assert np.linalg.norm(a[3][0] - a[2][0]) > 0 and cell.contraction(a[3][0]) <= cfg["memory_rho"] + 1e-12


def test_copy_task_records_are_measured_and_reported(records):
    """Copy-task records carry the estimators' statistics on recall steps; the section reports the
    copy task's table (θ₀, trained θ, paired change over instances) and its alignment verdicts."""
    copy = [r for r in records if r["task"].startswith("copy-")]
    assert len(copy) == 8 and all(r["status"] == "ok" and r["data"]["memory_task"] == "copy" for r in copy)
    r = copy[0]
    g = r["arrays"]["g_norm"]
    assert g[-1] > 0 and np.any(g == 0)           # credit only on recall steps, the last step is one
    st = record_statistics(r, late_window(r))
    assert 0 < st["snap-1"]["rel_bias"][0] and np.isfinite(st["uoro"]["nvar"][0])
    sec = analyse(records)
    table = next(t for t in sec.tables if "copy task" in t.caption)
    assert [row[0] for row in table.rows][:2] == ["snap-1", "snap-2"]
    assert all(row[-1] == "4 / 4" for row in table.rows if row[0] in ("snap-1", "uoro", "kf-rtrl"))
    assert any(v.check.startswith("SnAp-1 aligns better than UORO per sample (copy task, trained θ") for v in sec.verdicts)
    assert any(v.check.startswith("[copy-trained-i0] ") for v in sec.verdicts)
    assert any(v.check.startswith("uoro is unbiased (copy task, trained θ") for v in sec.verdicts)


def test_window_statistics_skip_steps_without_gradient():
    """Steps with g_t = 0 (the copy task outside its recall phase) do not dilute window means."""
    rng = np.random.default_rng(4)
    R, T = 20, 6
    sq, proj, cos = rng.random((R, T)), rng.random((R, T)) * 0.1, rng.random((R, T))
    gn = np.array([1.0, 0.0, 2.0, 0.0, 1.5, 3.0])
    both = statistics(sq, proj, cos, gn, slice(2, None))
    kept = statistics(sq[:, [2, 4, 5]], proj[:, [2, 4, 5]], cos[:, [2, 4, 5]], gn[[2, 4, 5]], slice(0, None))
    for name in both:
        np.testing.assert_allclose(both[name], kept[name], rtol=1e-12)


def test_small_run_verdicts_hold(records):
    failed = [(r["task"], v["check"], v["evidence"]) for r in records for v in r["verdicts"] if not v["passed"]]
    assert not failed
    point = next(r for r in records if r["task"] == "h6-d0.5-rho0.9-i0")
    d = point["data"]
    assert d["exact_order"] >= 2 and f"snap-{d['exact_order']}" in d["estimators"]
    assert point["arrays"]["sq_err.uoro"].shape == (64, 12) and point["arrays"]["cos.snap-1"].shape == (1, 12)
    assert any(v["check"].startswith(f"snap-{d['exact_order']} = RTRL") for v in point["verdicts"])


def test_same_seed_same_numbers(records):
    again = run()
    for a, b in zip(records, again):
        for name, arr in a["arrays"].items():
            np.testing.assert_array_equal(arr, b["arrays"][name])


def test_statistics_match_brute_force():
    """Relative bias, normalised variance, noise floor and their jackknife intervals against direct
    recomputation from the replicate gradients (leave-one-out done by brute force)."""
    rng = np.random.default_rng(1)
    R, T, p = 30, 5, 7
    g = rng.standard_normal((T, p))
    gh = g + 0.3 + rng.standard_normal((R, T, p))
    diff = gh - g
    mean = diff.mean(axis=0)
    sq = np.einsum("rtp,rtp->rt", diff, diff)
    proj = np.einsum("rtp,tp->rt", diff, mean)
    gn = np.linalg.norm(g, axis=1)
    cos = np.einsum("rtp,tp->rt", gh, g) / (np.linalg.norm(gh, axis=2) * gn)
    st = statistics(sq, proj, cos, gn)
    np.testing.assert_allclose(st["rel_bias"][0], np.linalg.norm(mean, axis=1) / gn, rtol=1e-12)
    var = ((gh - gh.mean(axis=0)) ** 2).sum(axis=2).sum(axis=0) / (R - 1)
    np.testing.assert_allclose(st["nvar"][0], var / gn ** 2, rtol=1e-12)
    np.testing.assert_allclose(st["floor"][0], np.sqrt(var / R) / gn, rtol=1e-12)
    np.testing.assert_allclose(st["cos"][0], cos.mean(axis=0), rtol=1e-12)
    loo_rb = np.array([np.linalg.norm(np.delete(diff, r, 0).mean(axis=0), axis=1) / gn for r in range(R)])
    loo_var = np.array([((np.delete(gh, r, 0) - np.delete(gh, r, 0).mean(axis=0)) ** 2).sum(axis=2).sum(axis=0)
                        / (R - 2) / gn ** 2 for r in range(R)])
    for est, loo in ((st["rel_bias"], loo_rb), (st["nvar"], loo_var)):
        se = np.sqrt((R - 1) / R * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
        np.testing.assert_allclose(est[2] - est[0], 1.959963984540054 * se, rtol=1e-9)
    w = statistics(sq, proj, cos, gn, slice(2, None))
    assert w["rel_bias"].shape == (3,) and w["rel_bias"][1] <= w["rel_bias"][0] <= w["rel_bias"][2]


def test_deterministic_estimators_have_exact_values(records):
    point = next(r for r in records if r["task"] == "h6-d0.5-rho0.9-i0")
    st = record_statistics(point)
    n_star = point["data"]["exact_order"]
    assert np.all(st[f"snap-{n_star}"]["rel_bias"] < 1e-12)
    assert np.all(st["snap-1"]["rel_bias"][0] == st["snap-1"]["rel_bias"][1])
    assert np.all(st["snap-1"]["nvar"] == 0)


def test_section_has_figures_tables_and_claims(records):
    sec = analyse(records)
    assert sec.experiment == "bias-variance" and len(sec.figures) >= 4 and sec.tables
    checks = [v.check for v in sec.verdicts]
    assert any(c.startswith("KF-RTRL variance below UORO's") for c in checks)
    assert any(c.startswith("SnAp-1 aligns better") for c in checks)
    assert "UORO variance grows with k" in checks
    assert any(c.startswith("uoro is unbiased") for c in checks)
    assert not [v for v in sec.verdicts if v.status == "FAIL"], [(v.check, v.evidence) for v in sec.verdicts]
    for v in sec.verdicts:                      # every statistical verdict carries its evidence
        if v.family:
            assert v.claim and v.source and v.statistic and v.rule and v.resolution


def _direction_record(errors, control):
    return {"config": {"bias_margin": 0.1, "alpha": 0.01},
            "data": {"stochastic": ["uoro"], "k": 4, "density": 1.0, "rho": None},
            "arrays": {"dir.uoro": errors, "dirctl.uoro": control}}


@pytest.mark.parametrize("shift,control,status", [(0.0, 0.1, "PASS"), (0.3, 0.1, "FAIL"), (0.0, 0.0, "INCONCLUSIVE")])
def test_unbiasedness_rule_on_known_errors(shift, control, status):
    """Errors with no bias PASS; a bias of 3 margins FAILs; a control that carries no bias (so
    cannot be detected) makes the verdict INCONCLUSIVE."""
    rng = np.random.default_rng(0)
    errors = shift + 0.01 * rng.standard_normal((400, 3))
    ctl = control + 0.01 * rng.standard_normal((400, 3))
    v = _unbiasedness([_direction_record(errors, ctl)])[0]
    assert v.status == status, v.evidence
    assert v.family.startswith("bias-variance: unbiasedness") and v.interval is not None


def test_a_claim_that_does_not_hold_is_reported_as_fail(records):
    """Swap UORO's and KF-RTRL's statistics: the variance claim must then fail."""
    swapped = []
    for r in records:
        r = dict(r, arrays=dict(r["arrays"]))
        if "uoro" in r["data"].get("estimators", []):
            for name in ("sq_err", "proj", "cos"):
                r["arrays"][f"{name}.uoro"], r["arrays"][f"{name}.kf-rtrl"] = (
                    r["arrays"][f"{name}.kf-rtrl"], r["arrays"][f"{name}.uoro"])
        swapped.append(r)
    kf = [v for v in _claims([r for r in swapped if r["data"].get("kind") != "identities"])
          if v.check.startswith("KF-RTRL variance below UORO's")]
    assert kf and all(v.status == "FAIL" for v in kf)


def test_failed_records_are_listed():
    sec = analyse([{"experiment": "bias-variance", "task": "h4", "config": {}, "status": "failed",
                    "reason": "boom", "data": {}, "verdicts": [], "arrays": {}}])
    assert sec.failures == ["h4: failed (boom)"]


def test_a_vacuous_rounding_bound_is_inconclusive():
    """When the propagated bound exceeds |J_T| everywhere, neither equality nor bias can be shown."""
    from rtrl_validation.simulations.experiments.bias_variance import snap_identity_verdicts
    J = np.ones((1, 2, 3))
    finals = {"J": J[0], "bound": np.full((2, 3), 10.0), "snap-1": (J + 0.5, None), "snap-2": (J + 1e-3, None),
              "snap-3": (J.copy(), None)}
    v = snap_identity_verdicts([("snap-1", 1), ("snap-2", 2), ("snap-3", 3)], finals, 2)
    assert [x.status for x in v] == ["INCONCLUSIVE", "INCONCLUSIVE", "PASS"]
    finals["bound"] = np.full((2, 3), 1e-6)
    v = snap_identity_verdicts([("snap-1", 1), ("snap-2", 2)], finals, 2)
    assert [x.status for x in v] == ["PASS", "FAIL"]
