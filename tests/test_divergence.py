"""Divergence is recorded, never raised: every experiment driven into NaN/inf gives records with
status ``"diverged"`` and a reason that names the step, and the run itself goes on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rtrl_validation.proofs_checks import experiment as gradients_module
from rtrl_validation.reports import cli, registry
from rtrl_validation.simulations.cells import make_cell
from rtrl_validation.simulations.experiments import bias_variance, cost
from rtrl_validation.simulations.experiments.convergence import ConvergenceExperiment
from rtrl_validation.simulations.experiments.learning import LearningExperiment
from rtrl_validation.simulations.records import load_records
from rtrl_validation.simulations.runner import run_experiment

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")      # overflow is the point here


def exploding_make_cell(hidden_to_break):
    """``make_cell`` whose cells of ``hidden_to_break`` units are linear and start from ``θ`` scaled
    by 1e100: the state overflows within a few steps."""
    def make(name, hidden, inputs, **opts):
        if hidden != hidden_to_break:
            return make_cell(name, hidden, inputs, **opts)
        opts.pop("rho", None)
        cell = make_cell("elman", hidden, inputs, activation="identity",
                         **{k: v for k, v in opts.items() if k in ("density", "mask_seed", "masks")})
        init = cell.init
        cell.init = lambda rng, *a, **kw: 1e100 * init(rng, *a, **kw)
        return cell
    return make


def run(exp, overrides, tmp_path):
    records = run_experiment(exp, exp.config("quick", overrides), 0, tmp_path, progress=False)
    return [(r["task"], r["status"], r["reason"]) for r in records]


def assert_diverged_with_step(rows):
    diverged = [r for r in rows if r[1] == "diverged"]
    assert diverged, rows
    assert not [r for r in rows if r[1] == "failed"], rows
    for _, _, reason in diverged:
        assert "step" in reason and any(ch.isdigit() for ch in reason), reason


def test_learning_with_a_huge_learning_rate_records_diverged(tmp_path):
    """The reported case: ``copy_lr = 1e300`` gave ``KeyError: 't'`` (every replicate diverged
    before the first record)."""
    rows = run(LearningExperiment(), dict(groups=["elman:0.5"], hidden=4, seeds=2, copy_steps=60, text_steps=60,
                                          record_every=50, align_every=30, align_len=8, val_chars=40, val_every=30,
                                          vocab_size=8, estimators=["rtrl", "tbptt-2"], copy_lr=1e300,
                                          text_lr=1e300), tmp_path)
    assert_diverged_with_step(rows)
    assert all(status == "diverged" for _, status, _ in rows)
    assert "diverged at steps [" in rows[0][2]


def test_learning_divergence_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "SECTIONS", [(LearningExperiment(), None)])
    toml = tmp_path / "c.toml"
    toml.write_text('[learning]\ntasks = ["copy"]\ngroups = ["elman:0.5"]\nhidden = 3\nseeds = 2\n'
                    'estimators = ["rtrl"]\ncopy_steps = 40\ncopy_lr = 1e300\n')
    assert cli.main(["run", "learning", "--config", str(toml), "--out", str(tmp_path / "out"), "--quiet",
                     "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "1 diverged" in out and "Traceback" not in err
    (record,) = load_records(tmp_path / "out")
    assert record["status"] == "diverged" and "diverged at steps" in record["reason"]


def test_convergence_with_a_huge_step_size_records_diverged(tmp_path):
    small = dict(hidden=3, forget_blocks=1, forget_pairs=2, forget_steps=10, chains=10, chain_times=[1, 2],
                 j_coords=2, grad_cases=[], traj_cases=["linear"], limit_cases=["linear-wide"],
                 limit_estimators=["rtrl", "tbptt-1"], train_replicates=2, train_steps=200, log_checkpoints=5,
                 late_points=5, eval_points=3, eval_paths=2, eval_burn=10, eval_steps=20,
                 alpha0=1e300, noise=1e6, unprojected_cases=[], app_taus=[1], app_replicates=2, app_steps=50,
                 app_val_steps=10, app_test_steps=10, trained_steps=0)
    rows = run(ConvergenceExperiment(), small, tmp_path)
    assert_diverged_with_step(rows)
    assert {t for t, s, _ in rows if s == "diverged"} == {"trajectory-linear", "limit-linear-wide-rtrl",
                                                         "limit-linear-wide-tbptt-1", "application-rtrl",
                                                         "application-tbptt-1"}


def test_bias_variance_with_an_overflowing_network_records_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(bias_variance, "make_cell", exploding_make_cell(5))
    exp = bias_variance.BiasVarianceExperiment()
    rows = run(exp, dict(hidden=[5], densities=[], rhos=[], cell="elman", base_hidden=5, base_density=1.0,
                         replicates=8, steps=10, orders=[1], check_replicates=64, instances=1), tmp_path)
    assert_diverged_with_step(rows)
    assert ("h5-d1", "diverged", "gradients not finite at step 3") in rows


def test_cost_with_an_overflowing_network_records_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "make_cell", exploding_make_cell(6))
    rows = run(cost.CostExperiment(), dict(series={"rtrl": [4, 5, 6]}, sparse_series={"snap-2": [4, 5, 6]},
                                          fit_points=3, min_time=1e-4, repeats=2, batch_hidden=3,
                                          batch_replicates=2, batch_steps=2, compare_k=6), tmp_path)
    assert_diverged_with_step(rows)
    assert "rtrl at hidden size 6" in rows[0][2]


def test_gradients_with_an_overflowing_network_records_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(gradients_module, "make_cell", exploding_make_cell(3))
    exp = gradients_module.GradientsExperiment()
    rows = run(exp, dict(cells=["elman"], hidden=3, inputs=2, steps=[1, 7], densities=[1.0]), tmp_path)
    assert_diverged_with_step(rows)
    assert rows[0][2].startswith("gradients not finite at step T = ")
    record = json.loads((tmp_path / "records" / "gradients" / "elman-d1.json").read_text())
    assert record["status"] == "diverged"
