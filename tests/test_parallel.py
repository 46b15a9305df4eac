"""Tasks on a process pool and on a Dask LocalCluster: the same records, bit for bit, as in one
process; a worker that dies fails its own task only; BLAS threads per worker."""
from __future__ import annotations

import pytest

from rtrl_validation.reports import cli
from rtrl_validation.reports.build import analyse
from rtrl_validation.simulations.parallel import (DaskCluster, InProcess, ProcessPool, blas_threads, cores, make_executor)
from rtrl_validation.simulations.records import load_records
from rtrl_validation.simulations.runner import run_experiment

try:
    from helpers import TrainerExperiment, blas_threads_in_worker, numbers, use_trainer
except ImportError:  # tests collected as a package
    from tests.helpers import TrainerExperiment, blas_threads_in_worker, numbers, use_trainer


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The reference: every task in this process, one after another."""
    exp = TrainerExperiment()
    config = exp.config("quick", {"tasks": 4, "steps": 300})
    out = tmp_path_factory.mktemp("sequential")
    return exp, config, run_experiment(exp, config, 7, out, progress=False, executor=InProcess())


def test_process_pool_gives_the_same_records(sequential, tmp_path):
    exp, config, reference = sequential
    records = run_experiment(exp, config, 7, tmp_path, progress=False, executor=ProcessPool(2))
    assert [r["status"] for r in records] == ["ok"] * 4
    assert numbers(records) == numbers(reference)
    other_seed = run_experiment(exp, config, 8, tmp_path / "other", progress=False, executor=ProcessPool(2))
    assert numbers(other_seed) != numbers(reference)       # the comparison can fail


def test_dask_local_cluster_gives_the_same_records(sequential, monkeypatch, tmp_path, capsys):
    """``--scheduler local`` (a LocalCluster of two single-threaded worker processes) through the CLI."""
    exp, config, reference = sequential
    use_trainer(monkeypatch)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[fake-trainer]\ntasks = 4\nsteps = 300\n")
    assert cli.main(["run", "fake-trainer", "--scheduler", "local", "--workers", "2", "--seed", "7", "--config",
                     str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0, capsys.readouterr()
    assert numbers(load_records(tmp_path / "o")) == numbers(reference)


def test_killed_worker_fails_its_task_and_the_sweep_completes(sequential, tmp_path):
    exp, config, reference = sequential
    killing = dict(config, kill=1)
    records = run_experiment(exp, killing, 7, tmp_path, progress=False, executor=ProcessPool(2))
    assert [r["status"] for r in records] == ["ok", "failed", "ok", "ok"]
    assert records[1]["reason"] == "worker process died while running this task (killed by SIGKILL)"
    # the other tasks are the reference's (their configs differ only in 'kill')
    strip = [n[:5] + n[6:] for n in numbers(records)]
    assert [s for i, s in enumerate(strip) if i != 1] == [n[:5] + n[6:] for i, n in enumerate(numbers(reference))
                                                          if i != 1]
    section = analyse(exp.name, None, records)             # the report shows the gap
    gap = [v for v in section.verdicts if v["check"] == "tasks completed"]
    assert gap and not gap[0]["passed"] and "run-1 (worker process died" in gap[0]["evidence"]
    assert any(f.startswith("run-1: failed: worker process died") for f in section.failures)


def test_cli_workers_and_kill_exit_codes(monkeypatch, tmp_path, capsys):
    use_trainer(monkeypatch)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[fake-trainer]\ntasks = 3\nsteps = 100\nkill = 2\n")
    code = cli.main(["run", "fake-trainer", "--workers", "2", "--config", str(cfg), "--out", str(tmp_path / "o"),
                     "--quiet", "--fail-on", "fail"])
    out = capsys.readouterr().out
    assert code == 1 and "2 ok, 0 diverged, 1 failed" in out and "worker process died" in out
    assert [r["status"] for r in load_records(tmp_path / "o")] == ["ok", "ok", "failed"]


def test_blas_threads_and_default_workers():
    n = cores()
    assert blas_threads(1) == n and blas_threads(n) == 1 and blas_threads(10 * n) == 1
    assert all(w * blas_threads(w) <= n for w in range(1, n + 1))     # more workers than cores: 1 thread each
    assert isinstance(make_executor(1), InProcess)
    pool = make_executor()
    assert (isinstance(pool, ProcessPool) and pool.workers == n) if n > 1 else isinstance(pool, InProcess)
    assert ProcessPool(2, threads=1).threads == 1


def test_pool_workers_limit_blas_threads():
    got = []
    ProcessPool(2, threads=1).map(blas_threads_in_worker, [0, 1], lambda job, r: got.append(r),
                                  lambda job, reason: pytest.fail(reason))
    assert got == [([1], "1"), ([1], "1")]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gradients", "bias-variance"])
def test_real_experiments_give_the_same_records_on_every_backend(name, tmp_path):
    """Quick profile of two real experiments: one process, a pool of two, a LocalCluster of two."""
    from rtrl_validation.reports import registry
    exp = registry.experiments()[name]
    config = exp.config("quick")
    runs = [run_experiment(exp, config, 3, tmp_path / type(ex).__name__, progress=False, executor=ex)
            for ex in (InProcess(), ProcessPool(2), DaskCluster("local", workers=2))]
    assert numbers(runs[1]) == numbers(runs[0]) and numbers(runs[2]) == numbers(runs[0])


@pytest.mark.slow
def test_killed_dask_worker_fails_its_task_and_the_sweep_completes(sequential, tmp_path):
    """The scheduler retries a task whose worker died on other workers, then gives up (KilledWorker)."""
    exp, config, reference = sequential
    records = run_experiment(exp, dict(config, kill=1), 7, tmp_path, progress=False,
                             executor=DaskCluster("local", workers=2))
    assert [r["status"] for r in records] == ["ok", "failed", "ok", "ok"]
    assert records[1]["reason"].startswith("worker process died while running this task (KilledWorker: ")
    assert "fake-trainer/run-1" in records[1]["reason"] and "workers died" in records[1]["reason"]


class TimingExperiment(TrainerExperiment):
    """``fake-trainer`` marked ``exclusive`` (as the ``cost`` experiment is), reporting its process."""

    name = "fake-timing"
    exclusive = True

    def run_task(self, task, seed, progress=None):
        import os
        result = super().run_task(task, seed, progress)
        result.data["pid"] = os.getpid()
        return result


def test_exclusive_tasks_run_alone_after_the_others(tmp_path):
    """The tasks of an ``exclusive`` experiment (timings) run in the driving process once the pool's
    tasks are done, never beside them; their numbers are those of a run on their own."""
    import os
    from datetime import datetime
    from rtrl_validation.simulations.runner import run_experiments
    shared, timing = TrainerExperiment(), TimingExperiment()
    plan = [(timing, timing.config("quick", {"tasks": 2, "steps": 200})),
            (shared, shared.config("quick", {"tasks": 3, "steps": 200}))]
    records = run_experiments(plan, 7, tmp_path / "both", progress=False, executor=ProcessPool(2))
    alone = run_experiments(plan[:1], 7, tmp_path / "alone", progress=False, executor=InProcess())
    assert [r["data"]["pid"] for r in records["fake-timing"]] == [os.getpid()] * 2
    finished = max(datetime.fromisoformat(r["provenance"]["finished"]) for r in records["fake-trainer"])
    started = min(datetime.fromisoformat(r["provenance"]["started"]) for r in records["fake-timing"])
    assert started >= finished
    assert numbers(records["fake-timing"]) == numbers(alone["fake-timing"])


@pytest.mark.slow
def test_local_cluster_listens_on_the_loopback_interface_only():
    """``--scheduler local``: the scheduler, its HTTP endpoint and the workers on 127.0.0.1 only."""
    distributed = pytest.importorskip("distributed")
    cluster, client = DaskCluster("local", 1)._client(distributed)
    try:
        workers = list(client.scheduler_info()["workers"])
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:") and len(workers) == 1
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers)
        assert cluster.scheduler.http_server.address == "127.0.0.1"
        assert cluster.scheduler.http_server.port != 8787
    finally:
        client.close()
        cluster.close()
