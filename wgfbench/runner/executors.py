"""Executors: where a campaign's cases run. One case is one task; outcomes come back to the client.

* :class:`LocalExecutor` (the default) runs cases one after another from the campaign's process,
  each in a child process of its own (:func:`wgfbench.runner.execution.execute_case`).
* :class:`DaskExecutor` submits one Dask task per case to a ``distributed`` cluster: a
  ``LocalCluster`` of ``workers`` processes on this machine (TCP on loopback), or an existing
  scheduler (``scheduler="tcp://host:8786"``), e.g. one started on SLURM or PBS by dask-jobqueue
  (``docs/campaigns.md``). Each task runs :func:`execute_case` in its worker, scoring included
  (each worker keeps its own score cache), and returns the outcome (record, rows and artefact
  bytes) to the client, which writes it: workers need no shared filesystem. Cases on a CUDA device
  ask for one unit of the worker resource ``GPU`` (start GPU workers with ``--resources GPU=1``).
  A worker lost while running a case (killed, out of memory) has its case retried once on another
  worker (``distributed.scheduler.allowed-failures = 1`` on a cluster it starts); a case whose
  worker is lost again becomes a ``WorkerLost`` failure.

Both yield outcomes as they complete; the campaign (:mod:`wgfbench.runner.campaign`) writes them.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wgfbench.errors import ConfigError, WgfbenchError
from wgfbench.host import Host, default_host
from wgfbench.metrics import ScoreCache
from wgfbench.metrics.cache import FloorCache
from wgfbench.runner.execution import CaseOutcome, CaseTask, WorkerLost, execute_case, failure_outcome

EXECUTORS: tuple[str, ...] = ("local", "dask", "slurm")

CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.daemon": False,
    "distributed.scheduler.allowed-failures": 1,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}
"""Dask settings of a cluster the executor starts (and that the SLURM recipe sets): workers must
not be daemonic, since each case runs in a child process of its worker; a case whose worker is
lost is retried once, then recorded as ``WorkerLost``; and glibc keeps its dynamic allocation
thresholds (Dask's default ``MALLOC_TRIM_THRESHOLD_`` disables them, so every large array of the
scorer is a fresh ``mmap``: scoring in a worker took 45 % longer, measured on the smoke tier)."""


@dataclass
class CaseEvents:
    """Callbacks the campaign's display receives (all optional): a case was started (local
    executor only: Dask does not report starts), or reported progress ``(done, total)``."""

    started: Callable[[CaseTask], None] | None = None
    progress: Callable[[CaseTask, int, int], None] | None = None


class Executor(ABC):
    """Runs case tasks and yields their outcomes as they complete."""

    name: str

    @abstractmethod
    def run(self, tasks: Sequence[CaseTask], host: Host, events: CaseEvents) -> Iterator[CaseOutcome]:
        """Run ``tasks`` (in order of preference) and yield each outcome once, as it completes."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this executor."""
        return {"kind": self.name}

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the executor started (a cluster, a client)."""

    @property
    def torch_threads(self) -> int | None:
        """The intra-op threads each case runs with (``None``: torch's default)."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """One case at a time, each in its own child process of this one, with ``threads_per_case``
    torch threads (1 by default, as benchmarks are measured; ``None``: torch's default).

    ``host_factory`` (an importable callable returning a :class:`Host`) makes the children start
    from a clean ``forkserver`` process and build their host with it; without it, CPU cases fork
    this process and use the campaign's host (any in-process plugin works).
    """

    name = "local"

    def __init__(
        self,
        *,
        host_factory: Callable[[], Host] | None = None,
        floors: FloorCache | None = None,
        threads_per_case: int | None = 1,
    ):
        self.host_factory = host_factory
        self.threads_per_case = threads_per_case
        self.floors = floors if floors is not None else FloorCache()
        self.cache = ScoreCache()

    @property
    def torch_threads(self) -> int | None:
        return self.threads_per_case

    def run(self, tasks: Sequence[CaseTask], host: Host, events: CaseEvents) -> Iterator[CaseOutcome]:
        for task in tasks:
            if events.started is not None:
                events.started(task)
            hook = None
            if events.progress is not None:

                def hook(done: int, total: int, _task: CaseTask = task) -> None:
                    events.progress(_task, done, total)  # type: ignore[misc]

            yield execute_case(
                task,
                host,
                cache=self.cache,
                floors=self.floors,
                host_factory=self.host_factory,
                on_progress=hook,
            )


# ----------------------------------------------------------------------------------------------
# Dask

_WORKER_STATE: dict[str, tuple[Host, ScoreCache, FloorCache]] = {}


def _factory_name(factory: Callable[[], Host]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def run_case_on_worker(
    task: CaseTask, host_factory: Callable[[], Host], use_floor_cache: bool
) -> CaseOutcome:
    """The Dask task: run and score one case in this worker (host and caches kept per worker)."""
    if mp.current_process().daemon:
        raise ConfigError(
            "this Dask worker is a daemonic process and cannot start the case's child process: start "
            "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (or `distributed.worker.daemon: false`)"
        )
    name = _factory_name(host_factory)
    if name not in _WORKER_STATE:
        _WORKER_STATE[name] = (host_factory(), ScoreCache(), FloorCache(enabled=use_floor_cache))
    host, cache, floors = _WORKER_STATE[name]
    return execute_case(task, host, cache=cache, floors=floors, host_factory=host_factory)


def _is_daemon() -> bool:
    return mp.current_process().daemon


class DaskExecutor(Executor):
    """Cases as Dask tasks on a ``LocalCluster`` of ``workers`` processes or on ``scheduler``.

    ``host_factory`` builds each worker's host (default :func:`wgfbench.host.default_host`: the
    installed plugins); it must be importable on the workers. ``threads_per_case`` sets torch's
    intra-op threads in each case (1 by default: one single-threaded case per worker process).
    ``gpus_per_worker`` gives each worker of a local cluster that many units of the ``GPU``
    resource (default: 1 when CUDA is available, else none). ``cluster_factory`` starts another
    kind of cluster the executor owns (e.g. :func:`wgfbench.runner.jobqueue.slurm_cluster`).
    """

    name = "dask"

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        host_factory: Callable[[], Host] = default_host,
        threads_per_case: int | None = 1,
        gpus_per_worker: int | None = None,
        floors: FloorCache | None = None,
        cluster_factory: Callable[[], Any] | None = None,
    ):
        if scheduler is None and workers is None and cluster_factory is None:
            workers = 1
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.scheduler = scheduler
        self.workers = workers
        self.host_factory = host_factory
        self.threads_per_case = threads_per_case
        self.gpus_per_worker = gpus_per_worker
        self.cluster_factory = cluster_factory
        self.use_floor_cache = True if floors is None else floors.enabled
        self.cluster: Any = None
        self.client: Any = None
        self._config: Any = None

    @property
    def torch_threads(self) -> int | None:
        return self.threads_per_case

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.name, "scheduler": self.scheduler, "workers": self.workers}
        if self.client is not None:
            try:
                info = self.client.scheduler_info()
            except Exception:  # a lost scheduler must not hide why the campaign stopped
                return out
            out["address"] = info.get("address")
            out["n_workers"] = len(info.get("workers", {}))
        return out

    def start(self) -> None:
        """Connect to the scheduler, or start the local cluster (idempotent)."""
        if self.client is not None:
            return
        import dask
        from distributed import Client, LocalCluster

        try:
            if self.scheduler is not None:
                self.client = Client(self.scheduler, timeout="30s")
            elif self.cluster_factory is not None:
                self.cluster = self.cluster_factory()
                self.client = Client(self.cluster)
            else:
                import torch

                gpus = self.gpus_per_worker
                if gpus is None:
                    gpus = 1 if torch.cuda.is_available() else 0
                # Kept for the cluster's life: a nanny reads it again when it restarts a lost worker.
                self._config = dask.config.set(CLUSTER_CONFIG)
                self.cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    resources={"GPU": gpus} if gpus else None,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            self.close()
            raise ConfigError(f"cannot reach the Dask scheduler {self.scheduler}: {exc}") from None
        daemonic = [w for w, flag in self.client.run(_is_daemon).items() if flag]
        if daemonic:
            self.close()
            raise ConfigError(
                f"{len(daemonic)} Dask worker(s) are daemonic processes, which cannot start a case's child "
                "process: restart them with DASK_DISTRIBUTED__WORKER__DAEMON=False"
            )

    def run(self, tasks: Sequence[CaseTask], host: Host, events: CaseEvents) -> Iterator[CaseOutcome]:
        from distributed import as_completed

        self.start()
        futures = {}
        for priority, task in enumerate(tasks):
            gpu = task.device.startswith("cuda")
            future = self.client.submit(
                run_case_on_worker,
                task,
                self.host_factory,
                self.use_floor_cache,
                key=f"wgfbench-case-{task.key}-{uuid.uuid4().hex[:8]}",
                pure=False,
                priority=-priority,
                resources={"GPU": 1} if gpu else None,
            )
            futures[future.key] = (future, task)
        pending = dict(futures)
        cancelled = 0
        try:
            for future in as_completed([f for f, _ in futures.values()]):
                _, task = pending.pop(future.key)
                if future.cancelled():  # the scheduler restarted or the client lost it: not a result
                    cancelled += 1
                    continue
                if future.status == "finished":
                    outcome = future.result()
                else:
                    exc = future.exception()
                    lost = type(exc).__name__ == "KilledWorker"
                    outcome = failure_outcome(
                        task,
                        host,
                        WorkerLost.__name__ if lost else type(exc).__name__,
                        f"its Dask worker was lost twice while running it ({exc})" if lost else str(exc),
                        "worker",
                    )
                future.release()
                yield outcome
            if cancelled:
                raise WgfbenchError(
                    f"{cancelled} case(s) were cancelled by the Dask scheduler (restarted, or the connection "
                    "was lost); nothing was recorded for them: continue with --resume"
                )
        finally:
            if pending:
                self.client.cancel([f for f, _ in pending.values()], force=True)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None


def make_executor(
    kind: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    host_factory: Callable[[], Host] | None = None,
    floors: FloorCache | None = None,
    slurm: Any = None,
) -> Executor:
    """The executor named ``kind`` (``local``, ``dask`` or ``slurm``, the latter with ``slurm`` a
    :class:`~wgfbench.runner.jobqueue.SlurmSpec`); ``scheduler`` implies ``dask``."""
    if scheduler is not None and kind == "local":
        kind = "dask"
    if kind == "local":
        if workers not in (None, 1):
            raise ConfigError("the local executor runs one case at a time; use --executor dask --workers N")
        return LocalExecutor(host_factory=host_factory, floors=floors)
    if kind == "dask":
        return DaskExecutor(
            scheduler=scheduler, workers=workers, host_factory=host_factory or default_host, floors=floors
        )
    if kind == "slurm":
        from wgfbench.runner.jobqueue import SlurmSpec, slurm_cluster

        spec = slurm if slurm is not None else SlurmSpec()
        return DaskExecutor(
            host_factory=host_factory or default_host,
            floors=floors,
            cluster_factory=lambda: slurm_cluster(spec),
        )
    raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
