"""The Dask executor on a real ``LocalCluster`` (worker processes, TCP on loopback): a smoke campaign
equals the local executor's, a case that kills its process or never checks its budget is one
failure row, and a worker killed mid-campaign loses nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import campaign_plugins
import dask
import numpy as np
import pytest
from distributed import LocalCluster

from wgfbench import runner, store
from wgfbench.runner import DaskExecutor, LocalExecutor
from wgfbench.runner.executors import CLUSTER_CONFIG

SALT = "0f" * 16
"""One scoring salt for both executors, so their scores are comparable number for number."""


@contextmanager
def _cluster(n_workers: int) -> Iterator[LocalCluster]:
    """A cluster as the executor starts one; the config stays set while it lives, since a nanny
    reads it again when it restarts a worker."""
    with (
        dask.config.set(CLUSTER_CONFIG),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
    ):
        yield cluster


@pytest.fixture(scope="module")
def cluster():
    with _cluster(2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def host():
    return campaign_plugins.host()


def _dask(cluster) -> DaskExecutor:
    return DaskExecutor(scheduler=cluster.scheduler_address, host_factory=campaign_plugins.host)


def _metric_rows(run_dir):
    results = store.read_results(run_dir)
    timed = results[results["t"].notna()]
    return timed.sort_values(["solver", "problem", "seed", "t", "step", "metric"]).reset_index(drop=True)


def test_a_smoke_campaign_on_dask_equals_the_local_executor(cluster, host, tmp_path):
    plan = runner.make_plan(
        ["reference", "langevin", "frozen"],
        ["fokker-planck/ou-1d", "porous-medium/barenblatt-1d-m2"],
        seeds=2,
        tier="smoke",
        host=host,
    )
    local = runner.run_plan(plan, tmp_path / "local", host=host, executor=LocalExecutor(), salt=SALT)
    remote = runner.run_plan(plan, tmp_path / "dask", host=host, executor=_dask(cluster), salt=SALT)
    assert local.n_ok == remote.n_ok == len(plan.cases) == 10
    a, b = _metric_rows(local.run_dir), _metric_rows(remote.run_dir)
    assert a[["solver", "problem", "seed", "t", "step", "metric"]].equals(
        b[["solver", "problem", "seed", "t", "step", "metric"]]
    )
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), rtol=1e-9, atol=1e-12)
    # The client wrote every artefact: the workers need no shared filesystem.
    for record in remote.records:
        final = store.load_npz(store.final_snapshot_path(remote.run_dir, record["case_key"]))
        reference = store.load_npz(store.final_snapshot_path(local.run_dir, record["case_key"]))
        np.testing.assert_allclose(final["x"], reference["x"], rtol=1e-9)
    workers = {r["worker"] for r in remote.records}
    assert len(workers) == 2, workers  # both workers ran cases
    manifest = store.read_manifest(remote.run_dir)
    assert manifest["sessions"][-1]["executor"]["kind"] == "dask"


@pytest.mark.parametrize("kind", ["local", "dask"])
def test_a_process_killer_and_a_budget_ignorer_are_one_failure_row_each(cluster, host, tmp_path, kind):
    plan = runner.make_plan(
        ["campaign-frozen", "campaign-oskill", "campaign-hang"],
        ["fokker-planck/ou-1d", "fokker-planck/ou-2d"],
        tier="smoke",
        budget_seconds=1.0,
        host=host,
    )
    executor = LocalExecutor() if kind == "local" else _dask(cluster)
    result = runner.run_plan(plan, tmp_path / kind, host=host, executor=executor)
    cases = result.cases()
    assert len(cases) == 6 and cases["case_key"].is_unique
    by_solver = cases.groupby("solver")
    assert (by_solver.get_group("campaign-frozen")["status"] == "ok").all()
    crashed = by_solver.get_group("campaign-oskill")
    assert (crashed["error_type"] == "WorkerCrashed").all()
    assert crashed["error"].str.contains("exited with code 7").all()
    hung = by_solver.get_group("campaign-hang")
    assert (hung["error_type"] == "BudgetExceeded").all()
    assert hung["error"].str.contains("stopped by the runner").all()


def test_killing_a_worker_mid_campaign_loses_nothing(host, tmp_path):
    plan = runner.make_plan(
        ["campaign-slow"],
        ["fokker-planck/ou-1d", "fokker-planck/ou-2d", "fokker-planck/ou-10d"],
        seeds=3,
        tier="smoke",
        host=host,
    )
    with _cluster(2) as cluster:
        executor = _dask(cluster)
        killed = []

        def kill_a_worker(outcome):
            if not killed:  # SIGKILL one worker process while the other cases run
                pid = next(iter(executor.client.run(os.getpid).values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        out = tmp_path / "run"
        result = runner.run_plan(plan, out, host=host, executor=executor, on_outcome=kill_a_worker)
    assert killed
    cases = store.read_cases(result.run_dir)
    assert len(cases) == len(plan.cases) == 9 and cases["case_key"].is_unique
    assert (cases["status"] == "ok").all(), cases[["solver", "problem", "error"]]
    results = store.read_results(result.run_dir)
    assert results.groupby(["solver", "problem", "seed"]).ngroups == 9
    assert not results.duplicated(["solver", "problem", "seed", "t", "step", "metric"]).any()
