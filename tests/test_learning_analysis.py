"""Verdict logic of the learning section on rigged records (no simulation)."""
import numpy as np
import pytest
from scipy import stats

from rtrl_validation.analysis.learning import (Run, analyse, chosen_tbptt, judge, matched_flops, mean_ci, snap1_vs_uoro,
                                              snap2_vs_tbptt, snap_to_rtrl)

B = 5
T = np.arange(0, 1001, 100.0)


def record(kind, label, values, fps=1e4, cosine=None, group=None, status="ok", hidden=16, steps=None, score=None):
    """A learning record with the given metric curve (``len(T) × B`` for copy, per validation point for text)."""
    group = group or f"{kind}-elman-d0.25"
    values = np.asarray(values, dtype=float)
    arrays = {"diverged_at": np.full(B, -1), "t": T}
    if kind == "copy":
        arrays["length"] = values
    else:
        arrays["val_t"], arrays["val_bits"] = T, values
    if cosine is not None:
        arrays["cosine"] = np.asarray(cosine, dtype=float)
        arrays["align_t"] = np.arange(len(arrays["cosine"])) * 250.0
    return {"task": f"{group}-{label}", "status": status, "reason": "",
            "config": {"task": kind, "group": group, "density": 0.25, "estimator": label, "hidden": hidden},
            "data": {"estimator": label, "flops_per_step": {"total": fps}, "steps": steps or int(T[-1]),
                     "seconds_per_step": 1e-3, "p": 100, "cell": "elman",
                     "tuning": {"grid": [1e-3, 3e-3], "scores": [score, score], "chosen_lr": 1e-3, "tuning_seeds": 3,
                                "steps": 100, "score": score}},
            "arrays": arrays, "verdicts": []}


def ramp(final, jitter=0.0, seed=0):
    """Curriculum curves rising linearly from 1 to ``final`` (+ jitter per replicate)."""
    end = final + jitter * np.random.default_rng(seed).standard_normal(B)
    return 1.0 + np.outer(T / T[-1], end - 1.0)


def runs_of(*recs):
    return {r["data"]["estimator"]: Run(r) for r in recs}


def test_mean_ci_is_the_student_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    m, lo, hi, n = mean_ci(x)
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert (m, n) == (3.5, 4) and np.isclose(lo, 3.5 - half) and np.isclose(hi, 3.5 + half)
    assert np.isnan(mean_ci([1.0])[1]) and mean_ci([np.nan, 2.0, 2.0])[:3] == (2.0, 2.0, 2.0)


PAPER = {"hidden": 128, "steps": 100_000}


def statuses(pending):
    return [v.status for v in judge(pending)]


@pytest.mark.parametrize("lead, small, paper", [(3.0, "PASS", "PASS"), (-3.0, "INCONCLUSIVE", "FAIL")])
def test_snap1_vs_uoro_fails_only_at_the_claims_scale(lead, small, paper):
    for scale, want in (({}, small), (PAPER, paper)):
        runs = runs_of(record("copy", "snap-1", ramp(10 + 2 * lead, 0.3, 1), 5e3, cosine=np.full((4, B), 0.8), **scale),
                       record("copy", "uoro", ramp(10, 0.3, 2), 6e3, cosine=np.full((4, B), 0.1), **scale))
        speed, align = judge(snap1_vs_uoro(runs, "g"))
        assert speed.status == want, speed.evidence
        assert align.status == "PASS"
        assert "0.83" in speed.evidence                    # the FLOP ratio is stated
        assert speed.interval is not None and speed.family.startswith("learning claims")


def test_a_wide_interval_is_inconclusive_with_its_reason():
    runs = runs_of(record("copy", "snap-1", ramp(11, 6.0, 1), **PAPER), record("copy", "uoro", ramp(10, 6.0, 2), **PAPER))
    speed, = judge(snap1_vs_uoro(runs, "g"))
    assert speed.status == "INCONCLUSIVE"
    assert "minimum detectable effect" in speed.evidence or "control not rejected" in speed.evidence


def test_text_metric_is_lower_is_better():
    good, bad = np.full((len(T), B), 3.0), np.full((len(T), B), 3.5)
    good += 0.01 * np.arange(B)
    runs = runs_of(record("text", "snap-1", good, **PAPER), record("text", "uoro", bad, **PAPER))
    assert statuses(snap1_vs_uoro(runs, "g")) == ["PASS"]
    runs = runs_of(record("text", "snap-1", bad + 0.01 * np.arange(B), **PAPER), record("text", "uoro", good, **PAPER))
    assert statuses(snap1_vs_uoro(runs, "g")) == ["FAIL"]


def test_tbptt_tau_is_the_tuned_one_and_the_curriculum_must_exceed_it():
    runs = runs_of(record("copy", "snap-2", ramp(12, 0.2, 3), fps=1e5),
                   record("copy", "tbptt-4", ramp(8, 0.2, 4), fps=1e4, score=2.0),
                   record("copy", "tbptt-8", ramp(9, 0.2, 5), fps=1e4, score=1.5))
    tb, how = chosen_tbptt(runs)
    assert tb.label == "tbptt-4" and "tuned" in how
    step, = judge(snap2_vs_tbptt(runs, "g", 0.25))
    assert step.status == "PASS" and "tbptt-4" in step.evidence
    # the longest length 9 never exceeds τ = 16: INCONCLUSIVE, whatever the curves say
    runs = runs_of(record("copy", "snap-2", ramp(9, 0.0, 3)), record("copy", "tbptt-16", ramp(3, 0.2, 4), score=1.0))
    step, = judge(snap2_vs_tbptt(runs, "g", 0.25))
    assert step.status == "INCONCLUSIVE" and "curriculum never exceeded τ" in step.evidence
    assert snap2_vs_tbptt(runs, "g", 1.0) == []                           # dense: no sparse claim


def test_snap2_is_judged_against_each_tbptt_variant_with_its_own_tuned_tau():
    """Online TBPTT (every step) and TBPTT per block are two baselines, each with its own τ; a
    variant's τ never comes from the other's runs."""
    runs = runs_of(record("copy", "snap-2", ramp(12, 0.2, 3), fps=1e5),
                   record("copy", "tbptt-4", ramp(8, 0.2, 4), score=1.0),
                   record("copy", "tbptt-8", ramp(9, 0.2, 5), score=2.0),
                   record("copy", "online-tbptt-4", ramp(14, 0.2, 6), score=3.0),
                   record("copy", "online-tbptt-8", ramp(10, 0.2, 7), score=0.5))
    assert chosen_tbptt(runs)[0].label == "tbptt-8"
    assert chosen_tbptt(runs, "online-tbptt-")[0].label == "online-tbptt-4"
    online, block = judge(snap2_vs_tbptt(runs, "g", 0.25))
    assert "online, every step" in online.check and "online-tbptt-4" in online.evidence
    assert online.status == "INCONCLUSIVE" and "below the claim's scale" in online.evidence   # TBPTT ahead: FAIL at 16 units
    assert "every τ steps" in block.check and "tbptt-8" in block.evidence and block.status == "PASS"
    # the curriculum gate reads the variant's own τ (online-tbptt-16 -> 16)
    runs = runs_of(record("copy", "snap-2", ramp(9, 0.0, 3)), record("copy", "online-tbptt-16", ramp(3, 0.2, 4), score=1.0))
    step, = judge(snap2_vs_tbptt(runs, "g", 0.25))
    assert step.status == "INCONCLUSIVE" and "τ = 16" in step.evidence


def test_untuned_tbptt_baseline_is_the_strongest_on_evaluation_seeds():
    runs = runs_of(record("copy", "snap-2", ramp(12, 0.2, 3)), record("copy", "tbptt-4", ramp(8, 0.2, 4)),
                   record("copy", "tbptt-16", ramp(9, 0.2, 5)))
    tb, how = chosen_tbptt(runs)
    assert tb.label == "tbptt-16" and "not tuned" in how


def test_matched_flops_is_descriptive():
    runs = runs_of(record("copy", "snap-2", ramp(12, 0.2, 3), fps=1e5), record("copy", "tbptt-16", ramp(9, 0.2, 5)))
    va, vb, F = matched_flops(runs["snap-2"], runs["tbptt-16"])
    assert F == 1e4 * 1000
    np.testing.assert_array_equal(va, runs["snap-2"].values[1])          # the record at t = 100
    np.testing.assert_array_equal(vb, runs["tbptt-16"].final)


def test_approaching_rtrl_needs_equivalence_not_just_no_difference():
    cos = {1: 0.7, 2: 0.95, 3: 1.0}
    jit = 0.01 * np.random.default_rng(0).standard_normal((4, B))
    recs = [record("copy", f"snap-{n}", ramp(10, 0.05, n), cosine=np.minimum(c + jit, 1.0))
            for n, c in cos.items()]
    align, learn = judge(snap_to_rtrl(runs_of(*recs, record("copy", "rtrl", ramp(10, 0.05, 9))), "g"))
    assert align.status == "PASS" and learn.status == "PASS"
    # RTRL's lead indistinguishable from 0 but with an interval wider than the margin: not a PASS
    recs = [record("copy", f"snap-{n}", ramp(10, 4.0, n), cosine=np.minimum(c + jit, 1.0)) for n, c in cos.items()]
    _, learn = judge(snap_to_rtrl(runs_of(*recs, record("copy", "rtrl", ramp(10, 4.0, 9))), "g"))
    assert learn.status == "INCONCLUSIVE"
    # cosine falling with n: not a PASS
    recs = [record("copy", f"snap-{n}", ramp(10, 0.3, n), cosine=np.full((4, B), 1.0 - 0.2 * n) + jit)
            for n in (1, 2, 3)]
    align, _ = judge(snap_to_rtrl(runs_of(*recs, record("copy", "rtrl", ramp(10, 0.3, 3))), "g"))
    assert align.status != "PASS"
    # without an RTRL run the learning-curve claim is INCONCLUSIVE with the reason
    align, learn = judge(snap_to_rtrl(runs_of(*recs), "g"))
    assert learn.status == "INCONCLUSIVE" and "not trained" in learn.evidence


def test_section_from_records_with_a_failure():
    recs = [record("copy", lab, ramp(f, 0.3, i), fps, cosine=None if lab == "rtrl" else np.full((4, B), 0.5))
            for i, (lab, f, fps) in enumerate([("rtrl", 10, 1e6), ("snap-1", 8, 5e3), ("snap-2", 9, 5e4),
                                               ("uoro", 6, 6e3), ("tbptt-4", 7, 4e3)])]
    recs += [record("text", "rtrl", np.full((len(T), B), 3.0) + 0.01 * np.arange(B)),
             record("text", "uoro", np.full((len(T), B), 3.2) + 0.01 * np.arange(B), cosine=np.full((4, B), 0.1))]
    recs.append(dict(record("copy", "kf-rtrl", ramp(3)), status="failed", reason="ValueError: no"))
    for r in recs:
        r["config"]["estimators"] = ["rtrl", "snap-1", "kf-rtrl"]
        r["data"]["cell"] = "gru-reset-after"
    sec = analyse(recs)
    assert sec.experiment == "learning"
    assert any("kf-rtrl" in f for f in sec.failures)
    checks = [v.check for v in sec.verdicts]
    assert any(c.startswith("SnAp-1 learns faster than UORO") for c in checks)
    assert not any("per FLOP" in c for c in checks)                      # per FLOP: a descriptive table only
    assert any(t.caption.startswith("Extra question") for t in sec.tables)
    assert any("not applicable to gru-reset-after: kf-rtrl" in n for n in sec.notes)
    for r in recs:                                 # a profile that does not list KF-RTRL still names it
        r["config"]["estimators"] = ["rtrl", "snap-1"]
    assert any("not applicable to gru-reset-after: kf-rtrl" in n for n in analyse(recs).notes)
    assert all(v.status in ("PASS", "FAIL", "INCONCLUSIVE") for v in sec.verdicts)
    assert len(sec.tables[0].rows) == 7
    assert len(sec.figures) == 6                  # per kind: panels and curves; alignment; compute per step
