"""Geyer's effective sample size (analysis/ess.py) on AR(1) series whose ESS is known:
τ = (1 + φ)/(1 − φ), ESS = n(1 − φ)/(1 + φ) (asymptotically in n)."""
import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from rtrl_validation.analysis.ess import autocorrelation_time, effective_sample_size, time_average_se


def ar1(phi, n, reps, rng, burn=500):
    e = rng.standard_normal((reps, n + burn))
    return lfilter([1.0], [1.0, -phi], e, axis=1)[:, burn:]


@pytest.mark.parametrize("phi", [0.9, 0.5, 0.0, -0.5])
def test_ar1_autocorrelation_time(phi):
    # 100 series of n = 5000: the mean of τ̂ must lie within 3 Monte Carlo standard errors of the
    # true τ, plus 3% for the estimator's finite-n truncation bias (measured ≤ 2.8% at n = 2000).
    rng = np.random.default_rng(11)
    x = ar1(phi, 5000, 100, rng)
    tau = (1 + phi) / (1 - phi)
    est = np.array([autocorrelation_time(s) for s in x])
    assert abs(est.mean() - tau) <= 3 * est.std(ddof=1) / np.sqrt(est.size) + 0.03 * tau
    ess = np.array([effective_sample_size(s) for s in x])
    assert abs(np.median(ess) / (5000 * (1 - phi) / (1 + phi)) - 1) < 0.15


def test_monotone_never_exceeds_positive():
    rng = np.random.default_rng(3)
    for s in ar1(0.7, 1000, 20, rng):
        assert autocorrelation_time(s, "monotone") <= autocorrelation_time(s, "positive") + 1e-12


def test_time_average_standard_error_covers():
    # The ESS-based standard error of a time average must match the spread of time averages over
    # 200 independent series: the variance ratio lies in its 99% chi-square interval (199 df),
    # widened by 10% for the noise of the ESS estimates themselves.
    rng = np.random.default_rng(5)
    x = ar1(0.8, 2000, 200, rng)
    se = np.array([time_average_se(s)[1] for s in x])
    ratio = x.mean(axis=1).var(ddof=1) / np.mean(se ** 2)
    lo, hi = stats.chi2.ppf([0.005, 0.995], 199) / 199
    assert 0.9 * lo <= ratio <= 1.1 * hi


def test_wrong_ess_is_detected():
    # Treating an AR(1) series as independent (τ = 1) understates the error: the same check fails.
    rng = np.random.default_rng(5)
    x = ar1(0.8, 2000, 200, rng)
    naive = x.std(axis=1, ddof=1) / np.sqrt(x.shape[1])
    ratio = x.mean(axis=1).var(ddof=1) / np.mean(naive ** 2)
    assert ratio > 2 * stats.chi2.ppf(0.995, 199) / 199


def test_constant_and_bad_input():
    assert autocorrelation_time(np.ones(10)) == 1.0
    for bad in (np.zeros((3, 3)), np.arange(3.0), np.array([1.0, np.nan, 2.0, 3.0, 4.0])):
        with pytest.raises(ValueError):
            autocorrelation_time(bad)
    with pytest.raises(ValueError):
        autocorrelation_time(np.arange(10.0), method="batch")


@pytest.mark.parametrize("phi,kind", [(0.0, "normal"), (0.3, "skewed"), (0.8, "normal")])
def test_pooled_calibration_of_short_series(phi, kind):
    # The convergence section's series are short (300 window means per path).  Pooled over 1000
    # independent series, the across-series variance of the time averages divided by the mean
    # ESS-based variance has sampling sd √(2/999) ≈ 0.045 (3 sd = 0.13); a factor 1.4 in standard
    # deviation (ratio 0.5 or 2) is 11 sd away.  Geyer's initial sequence keeps a few positive noise
    # pairs at this length, so τ̂ runs high by at most about 10% (measured ratios 0.89-0.97 at
    # n = 300 and 0.94-1.04 at n = 3000 over 2000 series): the ratio must lie in
    # [1/1.15 − 3 sd, 1 + 3 sd].
    rng = np.random.default_rng(21)
    e = rng.standard_normal((1000, 800))
    if kind == "skewed":
        e = (e ** 2 - 1) / np.sqrt(2)
    x = lfilter([1.0], [1.0, -phi], e, axis=1)[:, 500:]
    se2 = np.array([time_average_se(s)[1] ** 2 for s in x])
    ratio = x.mean(axis=1).var(ddof=1) / se2.mean()
    sd = np.sqrt(2 / 999)
    print(f"\n[ESS pooled calibration] phi={phi}, {kind}, n=300, 1000 series: ratio {ratio:.3f}")
    assert 1 / 1.15 - 3 * sd <= ratio <= 1 + 3 * sd
    # the same pooled check sees a factor 1.4 in standard deviation
    assert not (1 / 1.15 - 3 * sd <= ratio / 2 <= 1 + 3 * sd)


@pytest.mark.slow
def test_pooled_calibration_on_the_convergence_series():
    # The convergence section's own series (quick profile: 300 window means of the frozen-θ loss and
    # of one coordinate of the RTRL direction, tanh and linear cases) pooled over 512 independent
    # paths: the ratio's sampling sd is √(2/511) ≈ 0.063, so a factor 1.4 in standard deviation
    # (ratio 0.5 or 2) is 8 sd away.  Measured ratios 0.96-1.00.
    from rtrl_validation.simulations.estimators.rtrl import RTRL
    from rtrl_validation.simulations.experiments import convergence as cv
    from rtrl_validation.simulations.training import frozen_windows

    cfg = dict(cv.ConvergenceExperiment.profiles["quick"])
    sd = np.sqrt(2 / 511)
    for case in ("tanh", "linear"):
        cell, readout, proc = cv.problem(cfg, case)
        theta, phi = cv.boundary_point(cell, readout, cfg, salt=300 + cv.CASES.index(case))
        T, burn = cfg["grad_steps"], cfg["grad_burn"]
        series = {"loss": [], "direction": []}
        for r in range(8):
            res = frozen_windows(cell, readout, RTRL(), proc, np.tile(theta, (64, 1)), np.tile(phi, (64, 1)),
                                 burn, T, T // cfg["ess_window"], np.random.default_rng([77, r]))
            series["loss"].append(res["loss"])
            series["direction"].append(res["grad"][..., 0])
        for name, parts in series.items():
            x = np.concatenate(parts, axis=1)                 # windows × 512 paths
            se2 = np.array([time_average_se(x[:, j])[1] ** 2 for j in range(x.shape[1])])
            ratio = x.mean(axis=0).var(ddof=1) / se2.mean()
            print(f"\n[ESS pooled calibration] convergence {case} {name}: {x.shape[1]} paths of {x.shape[0]} "
                  f"windows, ratio {ratio:.3f}")
            assert 1 / 1.15 - 3 * sd <= ratio <= 1 + 3 * sd
            assert not (1 / 1.15 - 3 * sd <= ratio / 2 <= 1 + 3 * sd)
