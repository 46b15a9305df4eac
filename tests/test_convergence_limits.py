"""Check 5 of the convergence section (analysis/limit_points.py): the paired limit-point rule, its
calibration by simulation, the control gate, Holm, and the τ-decay fit."""
import numpy as np
import pytest

from rtrl_validation.analysis import limit_points as lp
from rtrl_validation.simulations.experiments.base import FAIL, INCONCLUSIVE, PASS

N_SIM = 2000
MC = 3 * np.sqrt(0.05 * 0.95 / N_SIM)          # Monte Carlo margin of a rate near 0.05


def rates(mean, sd, n, rng, delta=lp.DELTA):
    out = [lp.superiority_decision(rng.normal(mean, sd, n), delta).status for _ in range(N_SIM)]
    return {s: out.count(s) / N_SIM for s in (PASS, FAIL, INCONCLUSIVE)}


def test_no_gap_rarely_passes():
    """A control whose limit equals RTRL's (paired log-gap mean 0) PASSes at most at rate α."""
    rng = np.random.default_rng(0)
    for n, sd in ((4, 0.5), (8, 0.3), (8, 2.0)):
        assert rates(0.0, sd, n, rng)[PASS] <= lp.ALPHA + MC


def test_gap_of_delta_is_seen_when_resolved():
    """A gap of exactly δ (factor 2) PASSes at ≥ 80% when the MDE is below δ (sd 0.3, 8 replicates:
    MDE = (t₀.₉₅ + t₀.₈)·0.3/√8 ≈ 0.28 < ln 2)."""
    assert rates(lp.DELTA, 0.3, 8, np.random.default_rng(1))[PASS] >= 0.8


def test_no_gap_fails_when_resolved_and_is_inconclusive_when_not():
    rng = np.random.default_rng(2)
    assert rates(0.0, 0.3, 8, rng)[FAIL] >= 0.8              # upper bound below δ: the claim is refuted
    r = rates(0.0, 3.0, 4, rng)                              # MDE ≫ δ: neither
    assert r[INCONCLUSIVE] >= 0.8


def fake(spec, values, status="ok"):
    return {"task": f"limit-w-{spec}", "status": status, "reason": "diverged at step 9" if status != "ok" else "",
            "arrays": {"avg_grad_norm_exact": np.asarray(values, dtype=float)},
            "data": {"estimator": spec, "case": "w", "memory": {"kind": "e-folding", "steps": 2.8, "rate": 0.7}}}


CFG = {"limit_cases": ["w"], "limit_average": 0.1, "train_steps": 1000, "rho": 0.9,
       "limit_estimators": ["rtrl", "tbptt-1", "tbptt-2", "tbptt-4", "snap-1", "uoro"]}
RTRL = 0.01 * np.array([1.0, 1.3, 0.8, 1.1, 0.9, 1.2])


def status(verdicts, spec):
    return next(v.status for v in verdicts if v.check.endswith(f"{spec} stays above RTRL's ‖∇L‖"))


def test_limit_section_from_records():
    rng = np.random.default_rng(3)
    recs = [fake("rtrl", RTRL)] + [fake(f"tbptt-{t}", RTRL * (1 + 30 * 0.6 ** t) * np.exp(rng.normal(0, 0.05, 6)))
                                   for t in (1, 2, 4)]
    recs += [fake("snap-1", RTRL * np.exp(rng.normal(0, 0.05, 6))), fake("uoro", RTRL, "diverged")]
    v, tables, figs, notes = lp.limits(recs, CFG)
    assert status(v, "tbptt-1") == PASS and status(v, "tbptt-2") == PASS and status(v, "tbptt-4") == PASS
    assert status(v, "snap-1") == FAIL                        # equal limits, resolved: the control is no worse
    assert status(v, "uoro") == INCONCLUSIVE                  # diverged: no limit point
    assert all("Holm" in x.family for x in v if x.status != INCONCLUSIVE)
    r_hat, (lo, hi), n = lp.tau_decay({r["data"]["estimator"]: r["arrays"]["avg_grad_norm_exact"] for r in recs})
    assert lo < 0.6 < hi and n == 18                          # the gap's decay r = 0.6 is recovered
    assert len(tables) == 2 and figs


def test_control_gate():
    """When TBPTT(1) is not detected above RTRL, no other control's verdict counts."""
    rng = np.random.default_rng(4)
    recs = [fake("rtrl", RTRL), fake("tbptt-1", RTRL * np.exp(rng.normal(0, 0.05, 6))),
            fake("tbptt-2", RTRL * 10)]
    v, _, _, _ = lp.limits(recs, dict(CFG, limit_estimators=["rtrl", "tbptt-1", "tbptt-2"]))
    assert status(v, "tbptt-2") == INCONCLUSIVE and "control not rejected" in next(
        x.evidence for x in v if "tbptt-2" in x.check)


def test_holm_family_false_pass_rate(monkeypatch):
    """Five controls all equal to RTRL: the family passes any of them at most at rate α.
    (statsmodels' ``multipletests`` runs ``gc.collect()`` on every call, ~0.3 s in a full test
    process; it changes no number, so it is skipped here.)"""
    import gc
    monkeypatch.setattr(gc, "collect", lambda *a: 0)
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(400):
        norms = {"rtrl": np.exp(rng.normal(0, 0.5, 6))}
        norms["tbptt-1"] = norms["rtrl"] * np.exp(rng.normal(1.0, 0.3, 6))   # the gate control is seen
        for s in ("tbptt-2", "tbptt-4", "snap-1", "uoro"):
            norms[s] = norms["rtrl"] * np.exp(rng.normal(0, 0.5, 6))
        v = lp.limit_verdicts("w", norms, {})
        hits += any(x.status == PASS for x in v if "tbptt-1" not in x.check)
    assert hits / 400 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)
