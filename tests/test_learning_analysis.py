"""Verdict logic of the learning section on rigged records (no simulation)."""
import numpy as np
import pytest
from scipy import stats

from rtrl_validation.analysis.learning import Run, analyse, matched_flops, mean_ci, snap1_vs_uoro, snap2_vs_tbptt, snap_to_rtrl

B = 5
T = np.arange(0, 1001, 100.0)


def record(kind, label, values, fps=1e4, cosine=None, group=None, status="ok"):
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
            "config": {"task": kind, "group": group, "density": 0.25, "estimator": label},
            "data": {"estimator": label, "flops_per_step": {"total": fps}, "steps": int(T[-1]),
                     "seconds_per_step": 1e-3, "p": 100},
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


@pytest.mark.parametrize("lead, passed", [(3.0, True), (0.0, False), (-3.0, False)])
def test_snap1_vs_uoro_verdict_follows_the_paired_interval(lead, passed):
    runs = runs_of(record("copy", "snap-1", ramp(10 + lead, 0.3, 1), 5e3, cosine=np.full((4, B), 0.8)),
                   record("copy", "uoro", ramp(10, 0.3, 2), 6e3, cosine=np.full((4, B), 0.1)))
    speed, align = snap1_vs_uoro(runs, "g")
    assert speed.passed is passed
    assert align.passed
    assert "0.83" in speed.evidence                    # the FLOP ratio is stated


def test_text_metric_is_lower_is_better():
    good, bad = np.full((len(T), B), 3.0), np.full((len(T), B), 3.5)
    good += 0.01 * np.arange(B)
    runs = runs_of(record("text", "snap-1", good), record("text", "uoro", bad))
    assert snap1_vs_uoro(runs, "g")[0].passed
    runs = runs_of(record("text", "snap-1", bad + 0.01 * np.arange(B)), record("text", "uoro", good))
    assert not snap1_vs_uoro(runs, "g")[0].passed


def test_snap2_vs_tbptt_per_step_and_per_flop():
    # SnAp-2 reaches L=12, TBPTT L=8 after all steps; SnAp-2 costs 10x per step, so at TBPTT's budget
    # (1/10 of SnAp-2's run) it is only at ~2: faster per step, slower per FLOP.
    runs = runs_of(record("copy", "snap-2", ramp(12, 0.2, 3), fps=1e5),
                   record("copy", "tbptt-4", ramp(8, 0.2, 4), fps=1e4),
                   record("copy", "tbptt-16", ramp(9, 0.2, 5), fps=1e4))
    step, flop = snap2_vs_tbptt(runs, "g", 0.25)
    assert step.passed and "tbptt-16" in step.evidence.split("strongest, ")[1]
    assert not flop.passed
    va, vb, F = matched_flops(runs["snap-2"], runs["tbptt-16"])
    assert F == 1e4 * 1000
    np.testing.assert_array_equal(va, runs["snap-2"].values[1])          # the record at t = 100
    np.testing.assert_array_equal(vb, runs["tbptt-16"].final)
    assert snap2_vs_tbptt(runs, "g", 1.0) == []                           # dense: no sparse claim


def test_snap_to_rtrl_verdicts():
    cos = {1: 0.7, 2: 0.95, 3: 1.0}
    jit = 0.01 * np.random.default_rng(0).standard_normal((4, B))
    recs = [record("copy", f"snap-{n}", ramp(10 - (3 - n), 0.3, n), cosine=np.minimum(c + jit, 1.0))
            for n, c in cos.items()]
    runs = runs_of(*recs, record("copy", "rtrl", ramp(10, 0.3, 3)))
    align, learn = snap_to_rtrl(runs, "g")
    assert align.passed and learn.passed
    # cosine falling with n fails
    recs = [record("copy", f"snap-{n}", ramp(10, 0.3, n), cosine=np.full((4, B), 1.0 - 0.2 * n) + jit)
            for n in (1, 2, 3)]
    align, _ = snap_to_rtrl(runs_of(*recs, record("copy", "rtrl", ramp(10, 0.3, 3))), "g")
    assert not align.passed
    # the highest order still clearly behind RTRL fails the learning check
    recs = [record("copy", f"snap-{n}", ramp(5, 0.3, n), cosine=np.full((4, B), 0.9)) for n in (1, 2)]
    _, learn = snap_to_rtrl(runs_of(*recs, record("copy", "rtrl", ramp(10, 0.3, 9))), "g")
    assert not learn.passed


def test_section_from_records_with_a_failure():
    recs = [record("copy", lab, ramp(f, 0.3, i), fps, cosine=None if lab == "rtrl" else np.full((4, B), 0.5))
            for i, (lab, f, fps) in enumerate([("rtrl", 10, 1e6), ("snap-1", 8, 5e3), ("snap-2", 9, 5e4),
                                               ("uoro", 6, 6e3), ("tbptt-4", 7, 4e3)])]
    recs += [record("text", "rtrl", np.full((len(T), B), 3.0) + 0.01 * np.arange(B)),
             record("text", "uoro", np.full((len(T), B), 3.2) + 0.01 * np.arange(B), cosine=np.full((4, B), 0.1))]
    recs.append(dict(record("copy", "kf-rtrl", ramp(3)), status="failed", reason="ValueError: no"))
    sec = analyse(recs)
    assert sec.experiment == "learning"
    assert any("kf-rtrl" in f for f in sec.failures)
    checks = [v.check for v in sec.verdicts]
    assert any(c.startswith("SnAp-1 learns faster than UORO") for c in checks)
    assert any("per FLOP" in c for c in checks)
    assert len(sec.figures) == 3 and len(sec.tables[0].rows) == 7
