"""One case, isolated: the solver runs in a child process that the runner can stop.

:func:`execute_case` is what every executor calls, once per case, in a process of its own (the
campaign's process for the local executor, a Dask worker for the Dask one). It

1. builds the solver and the problem there and fills the case record (config, settings resolved for
   the problem, code and provenance);
2. starts a **child process** that seeds every RNG with ``solver_seed(base_seed, problem, solver,
   repetition)``, runs ``prepare`` then ``solve`` (each timed in wall time), validates the
   trajectory and sends it back;
3. watches the child: its **budget is CPU time** (:func:`wgfbench.context.cpu_clock`: the child's
   CPU seconds per torch thread, which other processes on a loaded machine do not inflate). The
   solver's ``ctx.check_budget()`` uses that clock; a solver that never calls it is stopped by the
   runner (the child is killed) at :data:`KILL_SLACK` × budget + :data:`KILL_GRACE_SECONDS` CPU
   seconds, or after :data:`WALL_FACTOR` × budget + :data:`KILL_GRACE_SECONDS` wall seconds
   (a case blocked without using CPU). A child that dies (``os._exit``, a segfault, the kernel's
   out-of-memory killer) becomes a failure naming its exit code or signal;
4. scores the trajectory in the parent (never charged to the solver, sharing the process's
   :class:`~wgfbench.metrics.ScoreCache`), and returns a :class:`CaseOutcome`: the record, the
   results rows and the artefact files as bytes. Nothing is written to the run directory here:
   the campaign's client writes outcomes, so workers need no shared filesystem.

The child is forked from the executing process when that is safe and the solver may come from an
in-process host (the local executor on CPU); otherwise (a Dask worker, a CUDA device) it is forked
from a clean ``forkserver`` process and builds its host with an importable ``host_factory``.
Trajectories travel from the child as NumPy arrays over a pipe; nothing stored is ever pickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import multiprocessing as mp
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch

import wgfbench
from wgfbench import store
from wgfbench.context import Context, cpu_clock, get_tier
from wgfbench.errors import BudgetExceeded
from wgfbench.host import Host, set_default_host
from wgfbench.metrics import ScoreCache, Scorer, resample
from wgfbench.metrics.cache import FloorCache
from wgfbench.problem import solver_scope
from wgfbench.runner.plan import DTYPES, Case
from wgfbench.runner.provenance import case_provenance, code_hash, plain, resolved_settings, utc_now
from wgfbench.seeding import salt_digest, seed_everything, seed_from
from wgfbench.solver import problem_as_seen_by
from wgfbench.trajectory import GridSnapshot, Snapshot, Trajectory

COST_METRICS: tuple[str, ...] = (
    "prepare_seconds",
    "solve_seconds",
    "seconds_per_step",
    "peak_memory_mb",
    "iterations",
)
"""Per-case cost rows written to results with ``t = NaN`` and ``step = −1``."""

KILL_SLACK = 1.1
"""The runner stops a child whose CPU time passes this multiple of the budget (plus the grace):
the solver's own ``check_budget()`` fails it first when it calls it."""
KILL_GRACE_SECONDS = 5.0
WALL_FACTOR = 4.0
"""A child still running after this multiple of the budget in wall time (plus the grace) is
stopped whatever its CPU time: it is blocked, or the machine is overloaded beyond use."""
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class CaseTask:
    """Everything an executor needs to run one case; plain values, so it travels to any worker.

    ``checkpoints`` is the directory for the case's per-step checkpoints (``None``: off); with the
    Dask executor it is a path on the worker's filesystem (the run directory's when it is shared).
    ``torch_threads`` sets the child's intra-op threads (``None``: torch's default).
    """

    case: Case
    key: str
    run_id: str
    device: str
    dtype: str
    budget_seconds: float
    salt: str
    command: str = ""
    checkpoints: str | None = None
    torch_threads: int | None = None


@dataclass
class CaseOutcome:
    """What running one case produced: its record (cases schema plus ``stage``, ``traceback``,
    provenance and the solver's ``info``), its results rows (public schema) and its artefact
    files (path relative to ``artifacts/<case_key>/`` → bytes)."""

    record: dict[str, Any]
    results: pd.DataFrame
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


class WorkerCrashed(Exception):
    """The case's process died without reporting (killed, segfault, ``os._exit``)."""


class WorkerLost(Exception):
    """The worker running the case was lost more often than the executor retries."""


# ----------------------------------------------------------------------------------------------
# Measurements


class PeakMemory:
    """Peak memory of one case (prepare + solve), measured in the case's process.

    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: the peak of
      tensor memory held by torch's caching allocator on that device.
    * CPU: the process's resident-set-size high-water mark (``VmHWM`` in ``/proc/self/status``),
      reset at the start of the case by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0).
      It includes the interpreter and torch (a constant offset across solvers of one run). Where
      the reset is unavailable it falls back to ``getrusage`` ``ru_maxrss`` (``kind`` says which).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = ""

    def start(self) -> None:
        """Reset the high-water mark (CUDA peak stats, or the process's VmHWM)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_max_memory_allocated"
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.kind = "process_rss_high_water_mark"
        except OSError:
            self.kind = "process_ru_maxrss_lifetime"

    def peak_mb(self) -> float:
        """The peak since :meth:`start`, in MiB (see the class docstring for what it measures)."""
        import resource
        import sys

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.kind == "process_rss_high_water_mark":
            try:
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return float(line.split()[1]) / 1024.0  # kB
            except OSError:
                pass
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0  # bytes vs kB


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _stopwatch(device: torch.device, into: dict[str, float], name: str) -> Iterator[None]:
    """Wall time of the block (CUDA-synchronised at both ends), stored even when it raises."""
    _synchronize(device)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _synchronize(device)
        into[name] = time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# Trajectories over a pipe: tensors travel as NumPy arrays


def _tensor_from_numpy(array: np.ndarray, requires_grad: bool) -> torch.Tensor:
    return torch.from_numpy(array)


class _ArrayPickler(pickle.Pickler):
    """Pickles tensors as CPU NumPy arrays (no shared-memory handles that die with the child)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return _tensor_from_numpy, (obj.detach().to("cpu").numpy().copy(), False)
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _ArrayPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# The child


@dataclass
class _ChildSetup:
    """What the child needs besides the task: its host (forked) or a factory (forkserver)."""

    task: CaseTask
    artifacts: str
    host: Host | None = None
    host_factory: Callable[[], Host] | None = None


def _child_main(conn: Any, setup: _ChildSetup) -> None:
    """The child's entry point: run prepare and solve, send ``("result", bytes)`` or
    ``("error", dict)``; progress and stage messages on the way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the campaign's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited by fork
    task, case = setup.task, setup.task.case
    timings: dict[str, float] = {}
    stage = "setup"
    peak: dict[str, Any] = {"peak_memory_mb": math.nan, "peak_memory_kind": None}
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.2 or done >= total:
            last[0] = now
            conn.send(("progress", int(done), int(total)))

    try:
        if task.torch_threads:
            torch.set_num_threads(task.torch_threads)
        host = setup.host if setup.host is not None else setup.host_factory()  # type: ignore[misc]
        set_default_host(host)
        device = torch.device(task.device)
        solver = case.build_solver(host)
        problem = wgfbench.get_problem(case.problem, host)
        seed = case.solver_seed()
        seed_everything(seed)
        ctx = Context.create(
            seed,
            get_tier(case.tier),
            device,
            DTYPES[task.dtype],
            artifacts=setup.artifacts,
            budget_seconds=task.budget_seconds,
            progress=progress,
            clock=cpu_clock,
            checkpoints=task.checkpoints,
        )
        seen = problem_as_seen_by(solver, problem)
        memory = PeakMemory(device)
        memory.start()
        conn.send(("started", time.process_time(), torch.get_num_threads()))
        ctx.restart_clock()
        stage = "prepare"
        conn.send(("stage", stage))
        with solver_scope(solver.role), _stopwatch(device, timings, "prepare_seconds"):
            solver.prepare(seen, ctx)
        stage = "solve"
        conn.send(("stage", stage))
        try:
            with solver_scope(solver.role), _stopwatch(device, timings, "solve_seconds"):
                trajectory = solver.solve(seen, ctx)
        finally:
            peak = {"peak_memory_mb": memory.peak_mb(), "peak_memory_kind": memory.kind}
        if ctx.elapsed > task.budget_seconds:
            raise BudgetExceeded(
                f"post-hoc: prepare + solve took {ctx.elapsed:.3f} CPU-s per thread, over the budget of "
                f"{task.budget_seconds:.3f} s (the solver did not stop at ctx.check_budget())"
            )
        stage = "validate"
        conn.send(("stage", stage))
        if not isinstance(trajectory, Trajectory):
            raise TypeError(f"solve() must return a Trajectory, got {type(trajectory).__name__}")
        trajectory.validate(problem.times, problem.dim)
        payload = _dumps({"trajectory": trajectory, "timings": timings, **peak})
        conn.send_bytes(payload)
    except BaseException as exc:
        conn.send(
            (
                "error",
                {
                    "error_type": type(exc).__name__,
                    "error": str(exc) or type(exc).__name__,
                    "traceback": traceback.format_exc(),
                    "stage": stage,
                    "timings": timings,
                    **peak,
                },
            )
        )
    finally:
        conn.close()


def _child_context(task: CaseTask, host_factory: Callable[[], Host] | None) -> mp.context.BaseContext:
    """``fork`` when the solver may come from this process's host (CPU, no factory), else a
    ``forkserver`` that preloads wgfbench (its children start clean, CUDA included)."""
    if (
        host_factory is None
        and torch.device(task.device).type == "cpu"
        and "fork" in mp.get_all_start_methods()
    ):
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["wgfbench.runner._preload"])
    return ctx


@contextmanager
def _main_not_reimported(context: mp.context.BaseContext) -> Iterator[None]:
    """Start a ``forkserver`` child without re-running the parent's ``__main__`` script in it.

    multiprocessing re-imports a script's ``__main__`` in every spawned or forkserver child (to
    unpickle what it may define); the case process needs nothing from it (its entry point and
    arguments live in importable modules), and re-importing the CLI or a benchmark script cost
    0.4 s per case (measured). The script's ``__file__`` is hidden while the child is started.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if context.get_start_method() == "fork" or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


def _run_child(
    task: CaseTask,
    artifacts: Path,
    host: Host,
    host_factory: Callable[[], Host] | None,
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Start the child, watch its budget and return its report (``result`` or ``error`` dict)."""
    context = _child_context(task, host_factory)
    parent_conn, child_conn = context.Pipe(duplex=False)
    # The child never holds the scoring salt: it only runs prepare and solve.
    child_task = dataclasses.replace(task, salt="")
    setup = _ChildSetup(child_task, str(artifacts), host if host_factory is None else None, host_factory)
    process = context.Process(target=_child_main, args=(child_conn, setup), daemon=False)
    with _main_not_reimported(context):
        process.start()
    child_conn.close()
    budget = task.budget_seconds
    threads = 1
    started_wall = time.monotonic()
    cpu_start: float | None = None
    stage = "setup"
    try:
        handle = psutil.Process(process.pid)
    except psutil.Error:
        handle = None
    try:
        while True:
            if parent_conn.poll(POLL_SECONDS):
                try:
                    message = parent_conn.recv_bytes()
                except EOFError:
                    break
                obj = pickle.loads(message)
                if isinstance(obj, dict):
                    return {"kind": "result", **obj}
                kind = obj[0]
                if kind == "progress" and on_progress is not None:
                    on_progress(obj[1], obj[2])
                elif kind == "started":  # the clock starts: CPU time so far, and the child's threads
                    cpu_start, threads = obj[1], max(1, obj[2])
                elif kind == "stage":
                    stage = obj[1]
                elif kind == "error":
                    if obj[1]["error_type"] == "KeyboardInterrupt":  # a signal meant for the campaign
                        raise KeyboardInterrupt
                    return {"kind": "error", **obj[1]}
                continue
            if not process.is_alive():
                if parent_conn.poll(0):
                    continue
                break
            wall = time.monotonic() - started_wall
            cpu = math.nan
            if handle is not None and cpu_start is not None:
                try:
                    times = handle.cpu_times()
                    cpu = (times.user + times.system - cpu_start) / threads
                except psutil.Error:
                    pass
            if (
                cpu > KILL_SLACK * budget + KILL_GRACE_SECONDS
                or wall > WALL_FACTOR * budget + KILL_GRACE_SECONDS
            ):
                process.kill()
                process.join()
                clock = f"{cpu:.1f} CPU-s per thread" if math.isfinite(cpu) else "no CPU reading"
                return {
                    "kind": "error",
                    "error_type": "BudgetExceeded",
                    "error": (
                        f"stopped by the runner in {stage} after {wall:.1f} s wall ({clock}) on a budget of "
                        f"{budget:.1f} s: the solver did not stop at ctx.check_budget()"
                    ),
                    "traceback": None,
                    "stage": stage,
                    "timings": {},
                }
        process.join(timeout=10)
        return {
            "kind": "error",
            "error_type": WorkerCrashed.__name__,
            "error": f"the case's process {_describe_exit(process.exitcode)} in {stage} without reporting",
            "traceback": None,
            "stage": stage,
            "timings": {},
        }
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
        parent_conn.close()


# ----------------------------------------------------------------------------------------------
# The case


def _final_snapshot_arrays(
    snapshot: Snapshot, n_eval: int, generator: torch.Generator
) -> dict[str, np.ndarray]:
    """The final snapshot for ``final.npz`` (plots, quick looks): ``x`` (n_eval, d) float64 points
    resampled by :func:`wgfbench.metrics.resample`, ``t``, and for grids ``rho``, ``low``,
    ``high``. Scores are computed on the full output, not on these points."""
    arrays: dict[str, np.ndarray] = {
        "t": np.asarray(float(snapshot.t)),
        "x": resample(snapshot, n_eval, generator).numpy(),
    }
    if isinstance(snapshot, GridSnapshot):
        arrays["rho"] = snapshot.rho.detach().to("cpu", torch.float64).numpy()
        arrays["low"] = np.asarray(snapshot.box.low, dtype=np.float64)
        arrays["high"] = np.asarray(snapshot.box.high, dtype=np.float64)
    return arrays


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _collect_artifacts(directory: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(directory).as_posix()] = path.read_bytes()
    return files


def new_record(task: CaseTask, host: Host) -> dict[str, Any]:
    """A case record with every field of the cases schema, marked failed in ``setup``."""
    case = task.case
    entry = host.solvers.entry(case.solver)
    return {
        "case_key": task.key,
        "solver": case.solver,
        "problem": case.problem,
        "problem_version": None,
        "seed": case.repetition,
        "solver_seed": case.solver_seed(),
        "tier": case.tier,
        "device": task.device,
        "status": "failed",
        "error_type": None,
        "error": None,
        "config": None,
        "config_hash": None,
        "plugin": entry.plugin.name,
        "role": getattr(entry.item, "role", "solver"),
        "score_salt_sha256": salt_digest(task.salt),
        "prepare_seconds": math.nan,
        "solve_seconds": math.nan,
        "score_seconds": math.nan,
        "n_steps": None,
        "peak_memory_mb": math.nan,
        "started": utc_now(),
        "finished": None,
        "stage": "setup",
        "traceback": None,
        "overrides": case.overrides.to_dict(),
        "budget_seconds": task.budget_seconds,
        "budget_clock": "cpu_per_thread",
        "command": task.command,
        "settings": None,
        "code_hash": None,
        "info": None,
    }


def failure_outcome(task: CaseTask, host: Host, error_type: str, error: str, stage: str) -> CaseOutcome:
    """A failed outcome written by the campaign for a case whose worker never reported."""
    record = new_record(task, host)
    record.update({"error_type": error_type, "error": error, "stage": stage, "finished": utc_now()})
    return CaseOutcome(record, store.results_frame())


def execute_case(
    task: CaseTask,
    host: Host,
    *,
    cache: ScoreCache | None = None,
    floors: FloorCache | None = None,
    host_factory: Callable[[], Host] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> CaseOutcome:
    """Run one case isolated in a child process and score it here (see the module docstring).

    Every failure, the child's death and a budget overrun included, becomes a failed outcome with
    its error type, message, traceback (when there is one) and the stage it happened in;
    ``KeyboardInterrupt`` stops the child and propagates.
    """
    case = task.case
    device = torch.device(task.device)
    tier = get_tier(case.tier)
    record = new_record(task, host)
    record.update(case_provenance(host, task.device))
    rows: list[dict[str, Any]] = []
    artifacts: dict[str, bytes] = {}
    stage = "setup"
    scratch = Path(tempfile.mkdtemp(prefix=f"wgfbench-{task.key}-"))
    try:
        solver = case.build_solver(host)
        record["config"] = solver.config.model_dump_json()
        record["config_hash"] = hashlib.blake2b(record["config"].encode(), digest_size=8).hexdigest()
        problem = wgfbench.get_problem(case.problem, host)
        record["problem_version"] = problem.version
        record["code_hash"] = code_hash(host.solvers.entry(case.solver).plugin.module, type(solver))
        record["settings"] = resolved_settings(solver, problem)

        stage = "run"
        report = _run_child(task, scratch, host, host_factory, on_progress)
        timings = report.get("timings", {})
        for name in ("prepare_seconds", "solve_seconds"):
            record[name] = timings.get(name, math.nan)
        record["peak_memory_mb"] = report.get("peak_memory_mb", math.nan)
        record["peak_memory_kind"] = report.get("peak_memory_kind")
        if report["kind"] == "error":
            record.update({k: report[k] for k in ("error_type", "error", "traceback", "stage")})
            stage = report["stage"]
            raise _ReportedFailure
        trajectory: Trajectory = report["trajectory"]
        record["n_steps"] = len(trajectory.steps)
        record["info"] = plain(trajectory.info)

        stage = "score"
        t0 = time.perf_counter()
        scorer = Scorer(
            problem,
            tier,
            case.base_seed,
            case.repetition,
            cache,
            salt=task.salt,
            metrics=host.metrics,
            floors=floors,
        )
        metric_rows = scorer.score(trajectory)
        record["score_seconds"] = time.perf_counter() - t0
        rows = [
            {"t": float(r.t), "step": int(r.step), "metric": str(r.metric), "value": float(r.value)}
            for r in metric_rows
        ]

        stage = "store"
        final_gen = torch.Generator().manual_seed(
            seed_from("final-snapshot", case.base_seed, case.problem, case.solver, case.repetition)
        )
        artifacts = _collect_artifacts(scratch)
        artifacts[store.FINAL_SNAPSHOT] = _npz_bytes(
            _final_snapshot_arrays(trajectory.snapshots[-1], tier.n_eval, final_gen)
        )
        costs = {
            "prepare_seconds": record["prepare_seconds"],
            "solve_seconds": record["solve_seconds"],
            "peak_memory_mb": record["peak_memory_mb"],
        }
        if trajectory.steps:
            costs["seconds_per_step"] = record["solve_seconds"] / len(trajectory.steps)
            costs["iterations"] = float(sum(int(s.iterations) for s in trajectory.steps))
        for name in COST_METRICS:
            if name in costs:
                rows.append({"t": math.nan, "step": -1, "metric": name, "value": float(costs[name])})
        record["status"] = "ok"
        record["stage"] = stage = "done"
        if task.checkpoints is not None:  # a finished case needs no resume point
            shutil.rmtree(task.checkpoints, ignore_errors=True)
    except _ReportedFailure:
        rows = []
        artifacts = _collect_artifacts(scratch)
    except Exception as exc:
        record["error_type"] = type(exc).__name__
        record["error"] = str(exc) or type(exc).__name__
        record["traceback"] = traceback.format_exc()
        record["stage"] = stage
        rows = []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if device.type == "cuda" and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    record["finished"] = utc_now()
    results = store.results_frame(
        {
            "run_id": [task.run_id] * len(rows),
            "solver": [case.solver] * len(rows),
            "problem": [case.problem] * len(rows),
            "seed": [case.repetition] * len(rows),
            "t": [r["t"] for r in rows],
            "step": [r["step"] for r in rows],
            "metric": [r["metric"] for r in rows],
            "value": [r["value"] for r in rows],
        }
    )
    return CaseOutcome(record, results, artifacts)


class _ReportedFailure(Exception):
    """The child reported a failure (already in the record)."""
