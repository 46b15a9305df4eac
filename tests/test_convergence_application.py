"""The order-book application (RTRL against the best TBPTT(τ), held-out loss, paired), the frozen-θ
checks at a trained θ, the order book's noise-free twin, and the calibration of the application's
decision rule (false-pass and false-fail rates by simulation)."""
import copy

import numpy as np
import pytest

from rtrl_validation.analysis import application as app
from rtrl_validation.analysis import convergence as conv
from rtrl_validation.simulations.data import SyntheticOrderBook
from rtrl_validation.simulations.data.orderbook import folded_mean

try:
    from test_convergence import records
except ImportError:
    from tests.test_convergence import records

APP = dict(app_taus=[1, 4], app_steps=400, app_replicates=4, app_val_steps=100, app_test_steps=200)


# ---------------------------------------------------------------------------- the series
def sample(proc, seed=3, batch=64, steps=400):
    rng = np.random.default_rng(seed)
    return proc.sample(proc.init(rng, batch), steps, rng)


def replayed_mean(proc, state, xs, returns):
    """The conditional mean of each target recomputed from the observed series alone: σ²_{t+1} =
    ω + a u_t² + b σ²_t with u_t = r_t − κ σ_t o_{t−1}, from the state before the stretch."""
    sig2, u = state.sig2.copy(), state.u.copy()
    out = np.empty(xs.shape[:2])
    for i in range(xs.shape[0]):
        sig2 = proc.omega + proc.a * u * u + proc.b * sig2
        mu = proc.kappa * xs[i, :, 1]
        out[i] = np.sqrt(sig2) * (mu if proc.target == "value" else folded_mean(mu))
        u = returns[i] - np.sqrt(sig2) * mu
    return out


@pytest.mark.parametrize("target", ["value", "volatility"])
def test_noise_free_twin_is_the_conditional_mean(target):
    proc = SyntheticOrderBook(target=target, b=0.85)
    rng = np.random.default_rng(3)
    state = proc.init(rng, 16)
    twin_rng, twin_state = copy.deepcopy(rng), copy.deepcopy(state)
    _, xs, ys = proc.sample(state, 300, rng)
    _, xs0, m = proc.with_noise(0.0).sample(twin_state, 300, twin_rng)
    assert np.array_equal(xs, xs0)
    # the next return r_{t+1} is the next input's first entry (the last one is never used)
    returns = np.concatenate([xs[1:, :, 0], np.zeros((1, 16))])
    assert np.allclose(m[..., 0], replayed_mean(proc, state, xs, returns), rtol=1e-12, atol=1e-12)
    _, _, y = sample(proc)
    _, _, y1 = sample(proc.with_noise(1.0))
    _, _, y0 = sample(proc.with_noise(0.0))
    _, _, yh = sample(proc.with_noise(0.5))
    assert np.array_equal(y, y1) and np.allclose(yh, y0 + 0.5 * (y - y0), rtol=0, atol=1e-12)


def test_folded_normal_mean_and_refusals():
    z = np.random.default_rng(0).standard_normal(400_000)
    for mu in (0.0, 0.4, -1.3):
        mc = np.abs(mu + z)
        assert abs(folded_mean(np.array(mu)) - mc.mean()) < 5 * mc.std() / np.sqrt(z.size)
    with pytest.raises(ValueError):
        SyntheticOrderBook(target="sign").with_noise(0.0)
    with pytest.raises(ValueError):
        SyntheticOrderBook(noise=-1.0)


# ---------------------------------------------------------------------------- the application
@pytest.fixture(scope="module")
def app_records():
    return records(APP, only=["application"])


def test_application_runs_paired_and_reports(app_records):
    recs = app_records
    assert [r["task"] for r in recs] == ["application-rtrl", "application-tbptt-1", "application-tbptt-4"]
    assert all(r["status"] == "ok" for r in recs)
    a = [r["arrays"] for r in recs]
    # the same held-out stretch for every method (the conditional mean's loss is the series's own)
    assert all(np.array_equal(a[0]["test_oracle"], x["test_oracle"]) for x in a[1:])
    # the same θ₀ and series: the first step's loss (before any update) is identical
    assert all(np.array_equal(a[0]["train_loss"][0], x["train_loss"][0]) for x in a[1:])
    assert all(np.all(x["test_excess"] > 0) and np.all(x["test_loss"] > x["test_excess"] * 0) for x in a)
    v, tables, figs = app.application(recs)
    assert len(v) == 1 and v[0].status == "INCONCLUSIVE" and "limit regime" in v[0].evidence
    assert v[0].control and v[0].claim and v[0].resolution and v[0].interval is not None
    assert len(tables[0].rows) == 3 and figs
    # the convergence section carries it
    assert any(x.check.startswith("8 application") for x in conv.analyse(recs).verdicts)


def test_application_without_rtrl_or_diverged_is_inconclusive(app_records):
    recs = [r for r in app_records if r["task"] != "application-rtrl"]
    (v,), _, _ = app.application(recs)
    assert v.status == "INCONCLUSIVE"
    div = [dict(r, status="diverged", reason="x") if r["task"] == "application-tbptt-1" else r for r in app_records]
    sec = conv.analyse(div)
    assert not any(x.check.startswith("application-") for x in sec.verdicts)     # a result, not a crash


def test_decision_rule_outcomes():
    rng = np.random.default_rng(1)
    steps = app.MIN_STEPS
    noise = 0.0005 * rng.standard_normal(16)
    big = 0.03 + noise                                  # RTRL 3% better: PASS (control: d + δ, detected)
    dec, ctrl = app.decide(big, big + app.DELTA, steps)
    assert dec.status == "PASS" and ctrl.status == "PASS"
    none = noise                                        # no difference, resolved: FAIL (< δ)
    dec, _ = app.decide(none, none + app.DELTA, steps)
    assert dec.status == "FAIL"
    assert app.decide(none, none + app.DELTA, steps - 1)[0].status == "INCONCLUSIVE"   # horizon too short
    assert app.decide(big, big - 0.1, steps)[0].status == "INCONCLUSIVE"              # control not seen
    assert app.decide(-big, -big + app.DELTA, steps)[0].status == "FAIL"               # RTRL worse: FAIL
    wide = 0.02 * rng.standard_normal(16)
    assert app.decide(wide, wide + app.DELTA, steps)[0].status == "INCONCLUSIVE"      # MDE > δ


def test_shifted_predictions_raise_the_held_out_loss_by_the_factor():
    rng = np.random.default_rng(2)
    y, yhat = rng.standard_normal((500, 3)), 0.1 + 0.5 * rng.standard_normal((500, 3))
    L, r = 0.5 * ((yhat - y) ** 2).mean(axis=0), (yhat - y).mean(axis=0)
    c = app.shift(L, r)
    shifted = 0.5 * ((yhat + c - y) ** 2).mean(axis=0)          # the predictions themselves, shifted
    assert np.all(c >= 0)
    assert np.allclose(shifted / L, np.exp(app.DELTA), rtol=1e-12) and np.allclose(app.shifted_loss(L, r), shifted)


# ---------------------------------------------------------------------------- calibration
def simulate_rule(effect, n_sim, rng, replicates=8, taus=4, train_sd=0.01, stretch_sd=0.004):
    """Outcomes of the application's rule on simulated held-out losses: per replicate and method
    ``ln L = u_b + μ_m + e_mb + ε`` with a replicate effect ``u_b`` (shared), a training effect
    ``e_mb`` shared by the method's validation and test losses (so that choosing τ* on validation
    favours a lucky run), independent stretch noise ``ε``; every TBPTT(τ) has ``μ = effect``
    (the least favourable case for selection), RTRL ``μ = 0``."""
    out = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0}
    for _ in range(n_sim):
        u = rng.standard_normal(replicates)
        mu = np.r_[0.0, np.full(taus, effect)]
        e = train_sd * rng.standard_normal((taus + 1, replicates))
        val = np.exp(0.3 * u - 1.5 + mu[:, None] + e + stretch_sd * rng.standard_normal(e.shape))
        test = np.exp(0.3 * u - 1.5 + mu[:, None] + e + stretch_sd * rng.standard_normal(e.shape))
        resid = 0.01 * rng.standard_normal(e.shape)
        star = 1 + int(np.argmin(val[1:].mean(axis=1)))
        d = app.log_ratio(test[star], test[0])
        dc = app.log_ratio(app.shifted_loss(test[star], resid[star]), test[0])
        out[app.decide(d, dc, app.MIN_STEPS)[0].status] += 1
    return {k: v / n_sim for k, v in out.items()}


def rates(n_sim, seed=0):
    rng = np.random.default_rng(seed)
    return {"no effect (false PASS)": simulate_rule(0.0, n_sim, rng)["PASS"],
            "effect δ (false FAIL)": simulate_rule(app.DELTA, n_sim, rng)["FAIL"],
            "effect 4δ (power)": simulate_rule(4 * app.DELTA, n_sim, rng)["PASS"],
            "RTRL worse by 4δ (false PASS)": simulate_rule(-4 * app.DELTA, n_sim, rng)["PASS"],
            "RTRL worse by 4δ (FAIL)": simulate_rule(-4 * app.DELTA, n_sim, rng)["FAIL"]}


def test_calibration_smoke():
    r = rates(150)
    assert r["no effect (false PASS)"] <= 0.15 and r["effect δ (false FAIL)"] <= 0.15 and r["effect 4δ (power)"] > 0.5


@pytest.mark.slow
def test_calibration_of_the_application_rule():
    n = 4000
    r = rates(n, seed=7)
    print("application rule:", {k: round(v, 4) for k, v in r.items()})
    # at most the level α = 0.05 each (the rule's claim), within the Monte Carlo error of n runs
    assert r["no effect (false PASS)"] <= 0.05 + 0.012 and r["RTRL worse by 4δ (false PASS)"] <= 0.05 + 0.012
    assert r["effect δ (false FAIL)"] <= 0.05 + 0.012
    # power at |effect| = 4δ, beyond the minimum detectable effect of this model (≈ 2.9δ: per-replicate
    # sd of d ≈ √2·train_sd, 8 replicates, (t₀.₉₅ + t₀.₈)·se): at least 80% either way
    assert r["effect 4δ (power)"] >= 0.8 and r["RTRL worse by 4δ (FAIL)"] >= 0.8


# ---------------------------------------------------------------------------- trained θ
def test_frozen_theta_checks_at_the_trained_theta():
    recs = records(dict(trained_steps=600, chains=200, grad_cases=["linear"], trained_cases=["linear"]),
                   only=["stationary", "gradient"])
    tasks = {r["task"]: r for r in recs}
    assert {"stationary-trained", "gradient-linear-trained"} <= set(tasks)
    assert tasks["stationary-trained"]["data"]["trained_steps"] == 600
    assert tasks["stationary-trained"]["data"]["contraction"] <= 0.9 + 1e-9
    # a θ along the run, not the boundary point
    assert not np.array_equal(tasks["gradient-linear-trained"]["arrays"]["closed_form"],
                              tasks["gradient-linear"]["arrays"]["closed_form"])
    v, _, figs = conv.stationary(recs)
    assert any("at the trained θ" in x.check for x in v) and len(figs) == 2
    v, tables, _ = conv.gradient(recs)
    assert any("trained θ" in x.check for x in v)
    assert any("trained θ" in str(row[0]) for row in tables[0].rows)      # the MDB per direction at both θ
