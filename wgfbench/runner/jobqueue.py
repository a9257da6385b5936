"""SLURM clusters for the Dask executor, through dask-jobqueue (``pip install 'wgfbench[jobqueue]'``).

:func:`slurm_cluster` starts a Dask scheduler in this process and submits batch jobs, each running
``processes`` single-threaded Dask workers set up as wgfbench needs them:

* ``DASK_DISTRIBUTED__WORKER__DAEMON=False``: each case runs in a child process of its worker;
* ``OMP_NUM_THREADS=1`` and one thread per worker: one single-threaded case per core;
* no ``MALLOC_TRIM_THRESHOLD_`` in the workers (see :data:`~wgfbench.runner.executors.CLUSTER_CONFIG`);
* GPU jobs (``gpus = 1``) ask SLURM for ``--gres=gpu:1`` and start one worker with the worker
  resource ``GPU=1`` that CUDA cases request; SLURM's ``CUDA_VISIBLE_DEVICES`` pins it to its GPU,
  so ``jobs`` is the number of GPUs (several workers in one job would share device 0);
* the scheduler retries a case once when its worker is lost (a pre-empted or killed job).

A campaign file selects it with ``[executor] kind = "slurm"`` and a ``[executor.slurm]`` table
(``docs/campaigns.md``); Python code passes ``cluster.scheduler_address`` to
:class:`~wgfbench.runner.executors.DaskExecutor`.
"""

from __future__ import annotations

from typing import Any

import pydantic

from wgfbench.errors import ConfigError
from wgfbench.runner.executors import CLUSTER_CONFIG


class SlurmSpec(pydantic.BaseModel):
    """The batch jobs of a SLURM campaign: ``jobs`` jobs of ``cores`` cores and ``memory`` each,
    ``gpus`` GPUs per job (0: CPU workers, one per core; 1: one GPU worker per job), in ``queue``
    (partition) under ``account`` for at most ``walltime``; ``prologue`` lines run before the
    workers start (module loads, activating an environment)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    jobs: pydantic.PositiveInt = 1
    cores: pydantic.PositiveInt = 8
    memory: str = "32GiB"
    gpus: int = pydantic.Field(0, ge=0, le=1)
    walltime: str = "04:00:00"
    queue: str | None = None
    account: str | None = None
    prologue: list[str] = pydantic.Field(default_factory=list)


def job_settings(spec: SlurmSpec) -> dict[str, Any]:
    """The keyword arguments of ``dask_jobqueue.SLURMCluster`` for ``spec`` (see the module)."""
    gpu = spec.gpus > 0
    processes = 1 if gpu else spec.cores
    extra_directives = ["--gres=gpu:1"] if gpu else []
    return {
        "cores": spec.cores,
        "processes": processes,
        "memory": spec.memory,
        "walltime": spec.walltime,
        "queue": spec.queue,
        "account": spec.account,
        "job_extra_directives": extra_directives,
        # A GPU job's one worker would get cores threads: the last --nthreads wins, one case at a time.
        "worker_extra_args": ["--nthreads", "1", "--resources", "GPU=1"] if gpu else [],
        "job_script_prologue": [
            *spec.prologue,
            "export DASK_DISTRIBUTED__WORKER__DAEMON=False",
            # MALLOC_TRIM_THRESHOLD_ cannot be unset by an environment variable: a config file can.
            'export DASK_CONFIG="${TMPDIR:-/tmp}/wgfbench-dask-${SLURM_JOB_ID:-$$}"',
            'mkdir -p "$DASK_CONFIG"',
            "printf 'distributed:\\n  nanny:\\n    pre-spawn-environ:\\n"
            '      MALLOC_TRIM_THRESHOLD_: null\\n\' > "$DASK_CONFIG/wgfbench.yaml"',
            "export OMP_NUM_THREADS=1",
        ],
    }


def slurm_cluster(spec: SlurmSpec) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` for ``spec``, scaled to ``spec.jobs`` jobs (submitted with
    ``sbatch``; the workers join as SLURM starts them)."""
    try:
        import dask
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            "the slurm executor needs dask-jobqueue: pip install 'wgfbench[jobqueue]'"
        ) from None
    retries = {
        "distributed.scheduler.allowed-failures": CLUSTER_CONFIG["distributed.scheduler.allowed-failures"]
    }
    with dask.config.set(retries):
        cluster = SLURMCluster(**job_settings(spec))
    cluster.scale(jobs=spec.jobs)
    return cluster
