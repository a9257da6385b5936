"""The SLURM recipe, as far as it can be tested without SLURM: the job script dask-jobqueue writes
for a campaign file's ``[executor.slurm]`` table, and a campaign run by workers started exactly
as that script starts them (its prologue and worker command, run here instead of by sbatch)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import campaign_plugins
import dask
import pytest

from wgfbench import runner
from wgfbench.runner import DaskExecutor, parse_campaign
from wgfbench.runner.executors import CLUSTER_CONFIG
from wgfbench.runner.jobqueue import SlurmSpec, job_settings

dask_jobqueue = pytest.importorskip("dask_jobqueue")


def test_a_campaign_file_describes_slurm_jobs():
    spec = parse_campaign(
        {
            "solvers": ["langevin"],
            "problems": ["fokker-planck/*"],
            "executor": {
                "kind": "slurm",
                "slurm": {"jobs": 4, "cores": 16, "memory": "64GiB", "queue": "cpu"},
            },
        }
    )
    assert spec.executor.slurm == SlurmSpec(jobs=4, cores=16, memory="64GiB", queue="cpu")
    settings = job_settings(spec.executor.slurm)
    assert settings["processes"] == 16 and settings["cores"] == 16  # one single-threaded worker per core


def test_the_gpu_job_script_pins_one_worker_per_gpu_and_sets_what_workers_need():
    spec = SlurmSpec(
        jobs=2, cores=8, memory="32GiB", gpus=1, queue="gpu", account="proj", prologue=["module load cuda"]
    )
    with dask.config.set(CLUSTER_CONFIG), dask_jobqueue.SLURMCluster(**job_settings(spec)) as cluster:
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script and "#SBATCH -A proj" in script
    assert "module load cuda" in script and "export DASK_DISTRIBUTED__WORKER__DAEMON=False" in script
    assert "--resources GPU=1" in script
    assert re.findall(r"--nthreads (\d+)", script)[-1] == "1"  # the last one wins: one case at a time


def test_workers_started_as_the_job_script_starts_them_run_a_campaign(tmp_path):
    spec = SlurmSpec(jobs=1, cores=1, memory="4GiB")
    host = campaign_plugins.host()
    plan = runner.make_plan(
        ["campaign-frozen", "campaign-oskill"], ["fokker-planck/ou-1d"], tier="smoke", host=host
    )
    with dask.config.set(CLUSTER_CONFIG), dask_jobqueue.SLURMCluster(**job_settings(spec)) as cluster:
        script = cluster.job_script()
        body = [line for line in script.splitlines() if line and not line.startswith("#")]
        assert body[-1].startswith(sys.executable), body[-1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        worker = subprocess.Popen(["bash", "-c", "\n".join(body)], env=env)  # what sbatch would run
        try:
            executor = DaskExecutor(scheduler=cluster.scheduler_address, host_factory=campaign_plugins.host)
            executor.start()
            executor.client.wait_for_workers(1, timeout=120)
            environ = next(iter(executor.client.run(lambda: dict(os.environ)).values()))
            assert "MALLOC_TRIM_THRESHOLD_" not in environ and environ["OMP_NUM_THREADS"] == "1"
            result = runner.run_plan(plan, tmp_path / "run", host=host, executor=executor)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    statuses = {r["solver"]: (r["status"], r["error_type"]) for r in result.records}
    assert statuses == {"campaign-frozen": ("ok", None), "campaign-oskill": ("failed", "WorkerCrashed")}
