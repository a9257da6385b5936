"""Campaigns: a plan of (solver, problem, repetition) cases, run one isolated case at a time.

A run is a :class:`Plan`: solvers × problems × repetitions at one tier, filtered by
``Solver.supports`` (unsupported pairs are kept as :class:`Skip` with their reason). Each case

1. gets the seed ``solver_seed(base_seed, problem, solver, repetition)`` (a hash of names, so
   reruns and resumed runs draw the same numbers) for its context's generators and for Python's,
   NumPy's and torch's global RNGs;
2. runs ``prepare`` then ``solve``, each timed separately (CUDA-synchronised on a GPU), under the
   tier's wall-time budget — cooperative (``ctx.check_budget()``) and checked again afterwards;
3. has its trajectory validated (times, shapes, no NaN/inf) and scored by
   :class:`wgfbench.metrics.Scorer` — scoring is timed on its own and never charged to the solver;
4. is committed atomically to the run directory (:mod:`wgfbench.store`).

An exception, a budget overrun (either kind) or a non-finite output makes a *failed* case carrying
its error type, message and traceback; the campaign goes on. ``KeyboardInterrupt`` stops the run
after consolidating what finished, which ``--resume`` keeps.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import wgfbench
from wgfbench import store
from wgfbench.context import TIERS, Context, get_tier
from wgfbench.errors import BudgetExceeded, ConfigError, UnknownNameError, WgfbenchError
from wgfbench.host import Host, default_host
from wgfbench.metrics import MetricRow, ScoreCache, Scorer, resample
from wgfbench.metrics.cache import FLOOR_SCHEME, FloorCache
from wgfbench.metrics.distances import N_PROJECTIONS
from wgfbench.metrics.scorer import SCORING_VERSION
from wgfbench.problem import Problem, solver_scope
from wgfbench.seeding import new_scoring_salt, salt_digest, seed_everything, seed_from, solver_seed
from wgfbench.solver import Solver, problem_as_seen_by, support_reason
from wgfbench.trajectory import GridSnapshot, Snapshot, Trajectory

COST_METRICS: tuple[str, ...] = (
    "prepare_seconds",
    "solve_seconds",
    "seconds_per_step",
    "peak_memory_mb",
    "iterations",
)
"""Per-case cost rows written to results with ``t = NaN`` and ``step = −1``."""

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------------------------
# Overrides (``--set solver.field=value``)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenMapping(value)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenMapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class FrozenMapping(Mapping[str, Any]):
    """An immutable, hashable mapping (sorted by key) used for config overrides in a :class:`Case`."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._items = {k: _freeze(v) for k, v in sorted((items or {}).items())}

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenMapping({self._items!r})"

    def to_dict(self) -> dict[str, Any]:
        """A plain (JSON-able) dict; tuples become lists."""
        return {k: _thaw(v) for k, v in self._items.items()}


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``solver.field=value`` into ``(solver, field, value)``.

    The value is read as JSON when it parses (numbers, ``true``, lists, ...), else kept as a
    string; pydantic then validates it against the solver's config. The solver part may be a glob.
    """
    lhs, sep, raw = text.partition("=")
    solver, dot, name = lhs.strip().rpartition(".")
    if not sep or not dot or not solver or not name:
        raise ConfigError(f"--set expects solver.field=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return solver, name, value


def overrides_from_options(options: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["langevin.dt=0.01", "langevin.n_particles=200"]`` → ``{"langevin": {"dt": 0.01, ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for text in options:
        solver, name, value = parse_override(text)
        out.setdefault(solver, {})[name] = value
    return out


# ----------------------------------------------------------------------------------------------
# Plan


def _hex_key(*parts: object) -> str:
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Case:
    """One (solver, problem, repetition) at a tier, with the solver's config overrides.

    ``repetition`` is the public ``seed`` column; the solver's actual seed is
    ``solver_seed(base_seed, problem, solver, repetition)``.
    """

    solver: str
    problem: str
    repetition: int
    tier: str
    overrides: FrozenMapping = field(default_factory=FrozenMapping)
    base_seed: int = 0

    def build_solver(self, host: Host) -> Solver:
        """The solver configured for the tier plus overrides (raises ConfigError naming the field)."""
        return host.solvers.entry(self.solver).item.for_tier(self.tier, **self.overrides.to_dict())

    def solver_seed(self) -> int:
        """The seed of the solver's generators: ``solver_seed(base_seed, problem, solver, repetition)``."""
        return solver_seed(self.base_seed, self.problem, self.solver, self.repetition)

    def key(self, host: Host | None = None) -> str:
        """The case key: a 64-bit BLAKE2b hex digest of problem name and version, solver name,
        validated config (``model_dump_json``), tier, repetition, base seed and the versions of
        the plugins that provide the solver and the problem. It names the case's parts, drives
        ``--resume`` and changes whenever anything that determines the case's numbers changes."""
        host = host or default_host()
        problem = wgfbench.get_problem(self.problem, host)
        solver = self.build_solver(host)
        solver_plugin = host.solvers.entry(self.solver).plugin
        problem_plugin = host.problems.entry(self.problem).plugin
        return _hex_key(
            "case",
            problem.name,
            problem.version,
            self.solver,
            solver.config.model_dump_json(),
            self.tier,
            self.repetition,
            self.base_seed,
            f"{solver_plugin.name}=={solver_plugin.version}",
            f"{problem_plugin.name}=={problem_plugin.version}",
        )


@dataclass(frozen=True)
class Skip:
    """A (solver, problem) pair left out of the plan, with the reason ``supports`` gave."""

    solver: str
    problem: str
    reason: str


@dataclass
class Plan:
    """A campaign: its cases (problem-major, then solver, then repetition) and skipped pairs.

    ``budget_seconds`` is the per-case wall-time budget (prepare + solve); ``None`` means the
    tier's.
    """

    cases: list[Case]
    skipped: list[Skip]
    tier: str
    base_seed: int
    seeds: int
    device: str
    dtype: str
    budget_seconds: float | None = None

    @property
    def budget(self) -> float:
        """The per-case wall-time budget in seconds (prepare + solve)."""
        return get_tier(self.tier).budget_seconds if self.budget_seconds is None else self.budget_seconds

    @property
    def solvers(self) -> list[str]:
        """Every solver the plan selected (run or skipped), sorted."""
        return sorted({c.solver for c in self.cases} | {s.solver for s in self.skipped})

    @property
    def problems(self) -> list[str]:
        """Every problem the plan selected (run or skipped), sorted."""
        return sorted({c.problem for c in self.cases} | {s.problem for s in self.skipped})


def match_names(patterns: Sequence[str], known: Sequence[str], kind: str) -> list[str]:
    """Names in ``known`` matching any fnmatch ``pattern`` (in ``known``'s sorted order).

    A pattern that matches nothing raises :class:`UnknownNameError` with close matches.
    """
    known = sorted(known)
    selected: set[str] = set()
    for pattern in patterns:
        hits = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise UnknownNameError(kind, pattern, known)
        selected.update(hits)
    return [n for n in known if n in selected]


def _check_device(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch.cuda.is_available() is False")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    return str(dev)


def make_plan(
    solvers: Sequence[str],
    problems: Sequence[str],
    *,
    seeds: int = 1,
    tier: str = "smoke",
    base_seed: int = 0,
    device: str = "cpu",
    dtype: str = "float64",
    host: Host | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    budget_seconds: float | None = None,
) -> Plan:
    """Plan solvers × problems × repetitions ``0..seeds-1`` at ``tier``.

    ``solvers`` and ``problems`` are fnmatch patterns (``"langevin"``, ``"fokker-planck/*"``);
    a pattern matching nothing raises :class:`UnknownNameError` with close matches.
    ``overrides`` maps a solver name (or glob) to config field overrides; every selected
    solver's config is validated here, so a bad field fails before anything runs
    (:class:`ConfigError` naming the field). Pairs with ``supports(problem) is not True`` become
    :class:`Skip` entries with the reason.
    """
    host = host or default_host()
    get_tier(tier)
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if budget_seconds is not None and not budget_seconds > 0:
        raise ConfigError(f"budget_seconds must be positive, got {budget_seconds}")
    device = _check_device(device)
    solver_names = match_names(solvers, list(host.solvers), "solver")
    problem_names = match_names(problems, list(host.problems), "problem")

    per_solver: dict[str, dict[str, Any]] = {name: {} for name in solver_names}
    for pattern, fields in (overrides or {}).items():
        hits = [n for n in solver_names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(
                f"override for solver {pattern!r} matches no solver in the plan ({', '.join(solver_names)})"
            )
        for name in hits:
            per_solver[name].update(fields)

    instances: dict[str, Solver] = {}
    for name in solver_names:
        instances[name] = host.solvers.entry(name).item.for_tier(tier, **per_solver[name])

    cases: list[Case] = []
    skipped: list[Skip] = []
    for pname in problem_names:
        problem = wgfbench.get_problem(pname, host)
        for sname in solver_names:
            try:
                solver = instances[sname]
                with solver_scope(solver.role):
                    reason = support_reason(solver.supports(problem_as_seen_by(solver, problem)))
            except Exception as exc:  # a broken supports() must not sink the whole plan
                reason = f"supports() raised {type(exc).__name__}: {exc}"
            if reason is not None:
                skipped.append(Skip(sname, pname, reason))
                continue
            frozen = FrozenMapping(per_solver[sname])
            cases.extend(Case(sname, pname, rep, tier, frozen, base_seed) for rep in range(seeds))
    return Plan(cases, skipped, tier, base_seed, seeds, device, dtype, budget_seconds)


# ----------------------------------------------------------------------------------------------
# Machine description and measurements


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_revision(path: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path`` (the wgfbench sources by
    default), with ``+dirty`` when the tree has changes; ``None`` when it is not a git checkout."""
    path = path or Path(wgfbench.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        suffix = "+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
        return rev.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """Versions and hardware recorded in the manifest."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cuda_device": None,
    }
    if torch.device(device).type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info


def versions(host: Host) -> dict[str, Any]:
    """Versions of python, torch, POT, numpy, pandas, pyarrow, wgfbench and every plugin."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pot": _dist_version("pot"),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": _dist_version("pyarrow"),
        "wgfbench": wgfbench.__version__,
        "plugins": {name: version for name, version in sorted(host.plugin_versions().items())},
    }


class PeakMemory:
    """Peak memory of one case (prepare + solve).

    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` — the peak of
      tensor memory held by torch's caching allocator on that device.
    * CPU: the process's resident-set-size high-water mark (``VmHWM`` in ``/proc/self/status``),
      reset at the start of the case by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0).
      It is the whole process's peak RSS during the case, so it includes the interpreter, torch
      and whatever the process already held (a constant offset across solvers of one run). Where
      the reset is unavailable it falls back to ``getrusage`` ``ru_maxrss``, the peak since the
      process started (``kind`` says which).
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


def _final_snapshot_arrays(
    snapshot: Snapshot, n_eval: int, generator: torch.Generator
) -> dict[str, np.ndarray]:
    """The final snapshot for ``final.npz`` (plots, quick looks): ``x`` (n_eval, d) float64 points
    resampled by :func:`wgfbench.metrics.resample` (a random subset, with repeats when the output
    has fewer points), ``t``, and for grids ``rho``, ``low``, ``high``. Scores are computed on the
    full output, not on these points."""
    arrays: dict[str, np.ndarray] = {
        "t": np.asarray(float(snapshot.t)),
        "x": resample(snapshot, n_eval, generator).numpy(),
    }
    if isinstance(snapshot, GridSnapshot):
        arrays["rho"] = snapshot.rho.detach().to("cpu", torch.float64).numpy()
        arrays["low"] = np.asarray(snapshot.box.low, dtype=np.float64)
        arrays["high"] = np.asarray(snapshot.box.high, dtype=np.float64)
    return arrays


# ----------------------------------------------------------------------------------------------
# One case


@dataclass
class CaseOutcome:
    """What running one case produced: its record (cases schema plus ``stage``, ``traceback``,
    ``peak_memory_kind``) and its results rows (public schema)."""

    record: dict[str, Any]
    results: pd.DataFrame

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def _score(
    problem: Problem,
    plan: Plan,
    case: Case,
    trajectory: Trajectory,
    cache: ScoreCache | None,
    salt: str,
    host: Host,
    floors: FloorCache | None,
) -> list[MetricRow]:
    scorer = Scorer(
        problem,
        get_tier(plan.tier),
        plan.base_seed,
        case.repetition,
        cache,
        salt=salt,
        metrics=host.metrics,
        floors=floors,
    )
    return scorer.score(trajectory)


def run_case(
    case: Case,
    key: str,
    plan: Plan,
    run_dir: Path,
    run_id: str,
    *,
    host: Host,
    cache: ScoreCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    salt: str = "",
    floors: FloorCache | None = None,
) -> CaseOutcome:
    """Run one case in isolation and return its outcome (nothing is written but artefacts).

    The solver's ``prepare`` and ``solve`` get the problem's :class:`ProblemView` (baseline and
    calibration rows get the problem), and while they run ``wgfbench.get_problem`` hands out views
    only. ``salt`` is the run's secret scoring salt (:func:`wgfbench.seeding.reference_seed`).

    Every ``Exception`` (including :class:`BudgetExceeded` and :class:`NonFiniteOutput`) becomes
    a failed outcome; ``KeyboardInterrupt`` propagates. The budget covers prepare + solve: the
    context's clock starts just before ``prepare``, and a case whose measured prepare + solve
    wall time exceeds it fails even if the solver never called ``ctx.check_budget()``.
    """
    device = torch.device(plan.device)
    tier = get_tier(plan.tier)
    seed = case.solver_seed()
    timings: dict[str, float] = {}
    record: dict[str, Any] = {
        "case_key": key,
        "solver": case.solver,
        "problem": case.problem,
        "problem_version": None,
        "seed": case.repetition,
        "solver_seed": seed,
        "tier": case.tier,
        "device": plan.device,
        "status": "failed",
        "error_type": None,
        "error": None,
        "config": None,
        "config_hash": None,
        "plugin": host.solvers.entry(case.solver).plugin.name,
        "role": getattr(host.solvers.entry(case.solver).item, "role", "solver"),
        "score_salt_sha256": salt_digest(salt),
        "prepare_seconds": math.nan,
        "solve_seconds": math.nan,
        "score_seconds": math.nan,
        "n_steps": None,
        "peak_memory_mb": math.nan,
        "started": _utc_now(),
        "finished": None,
        "stage": "setup",
        "traceback": None,
        "overrides": case.overrides.to_dict(),
        "budget_seconds": plan.budget,
    }
    rows: list[dict[str, Any]] = []
    memory = PeakMemory(device)
    stage = "setup"
    try:
        solver = case.build_solver(host)
        record["config"] = solver.config.model_dump_json()
        record["config_hash"] = hashlib.blake2b(record["config"].encode(), digest_size=8).hexdigest()
        problem = wgfbench.get_problem(case.problem, host)
        record["problem_version"] = problem.version
        artifacts = store.artifacts_dir(run_dir, key)
        artifacts.mkdir(parents=True, exist_ok=True)
        seed_everything(seed)
        ctx = Context.create(
            seed,
            tier,
            device,
            DTYPES[plan.dtype],
            artifacts=artifacts,
            budget_seconds=plan.budget,
            progress=progress or (lambda done, total: None),
        )
        seen = problem_as_seen_by(solver, problem)
        memory.start()
        ctx.restart_clock()
        stage = "prepare"
        with solver_scope(solver.role), _stopwatch(device, timings, "prepare_seconds"):
            solver.prepare(seen, ctx)
        stage = "solve"
        try:
            with solver_scope(solver.role), _stopwatch(device, timings, "solve_seconds"):
                trajectory = solver.solve(seen, ctx)
        finally:
            record["peak_memory_mb"] = memory.peak_mb()
            record["peak_memory_kind"] = memory.kind
        elapsed = timings["prepare_seconds"] + timings["solve_seconds"]
        if elapsed > plan.budget:
            raise BudgetExceeded(
                f"post-hoc: prepare + solve took {elapsed:.3f} s, over the budget of {plan.budget:.3f} s "
                "(the solver did not stop at ctx.check_budget())"
            )
        stage = "validate"
        if not isinstance(trajectory, Trajectory):
            raise TypeError(f"solve() must return a Trajectory, got {type(trajectory).__name__}")
        trajectory.validate(problem.times, problem.dim)
        record["n_steps"] = len(trajectory.steps)

        stage = "score"
        with _stopwatch(device, timings, "score_seconds"):
            metric_rows = _score(problem, plan, case, trajectory, cache, salt, host, floors)
        for r in metric_rows:
            rows.append(
                {"t": float(r.t), "step": int(r.step), "metric": str(r.metric), "value": float(r.value)}
            )

        stage = "store"
        final_gen = torch.Generator().manual_seed(
            seed_from("final-snapshot", plan.base_seed, case.problem, case.solver, case.repetition)
        )
        store.write_npz_atomic(
            store.final_snapshot_path(run_dir, key),
            _final_snapshot_arrays(trajectory.snapshots[-1], tier.n_eval, final_gen),
        )
        costs = {
            "prepare_seconds": timings["prepare_seconds"],
            "solve_seconds": timings["solve_seconds"],
            "peak_memory_mb": record["peak_memory_mb"],
        }
        if trajectory.steps:
            costs["seconds_per_step"] = timings["solve_seconds"] / len(trajectory.steps)
            costs["iterations"] = float(sum(int(s.iterations) for s in trajectory.steps))
        for name in COST_METRICS:
            if name in costs:
                rows.append({"t": math.nan, "step": -1, "metric": name, "value": float(costs[name])})
        record["status"] = "ok"
        stage = "done"
    except Exception as exc:
        record["error_type"] = type(exc).__name__
        record["error"] = str(exc) or type(exc).__name__
        record["traceback"] = traceback.format_exc()
        rows = []
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record["stage"] = stage
    for name in ("prepare_seconds", "solve_seconds", "score_seconds"):
        record[name] = timings.get(name, math.nan)
    record["finished"] = _utc_now()
    results = store.results_frame(
        {
            "run_id": [run_id] * len(rows),
            "solver": [case.solver] * len(rows),
            "problem": [case.problem] * len(rows),
            "seed": [case.repetition] * len(rows),
            "t": [r["t"] for r in rows],
            "step": [r["step"] for r in rows],
            "metric": [r["metric"] for r in rows],
            "value": [r["value"] for r in rows],
        }
    )
    return CaseOutcome(record, results)


# ----------------------------------------------------------------------------------------------
# A campaign


@dataclass
class RunResult:
    """A finished (or interrupted) campaign: every committed case record in plan order, how many
    ran in this call and how many were taken over from an earlier one (``--resume``)."""

    run_dir: Path
    run_id: str
    records: list[dict[str, Any]]
    ran: int
    reused: int
    skipped: list[Skip]
    interrupted: bool = False

    @property
    def n_ok(self) -> int:
        """Committed cases with status ok."""
        return sum(r["status"] == "ok" for r in self.records)

    @property
    def n_failed(self) -> int:
        """Committed cases with status failed."""
        return sum(r["status"] == "failed" for r in self.records)

    def cases(self) -> pd.DataFrame:
        """The run's ``cases.parquet`` (see :func:`wgfbench.store.read_cases`)."""
        return store.read_cases(self.run_dir)

    def results(self) -> pd.DataFrame:
        """The run's long results table (see :func:`wgfbench.store.read_results`)."""
        return store.read_results(self.run_dir)


def default_run_dir(tier: str, root: Path = Path("runs")) -> Path:
    """``runs/<UTC timestamp>-<tier>``."""
    return root / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{tier}"


def _plan_entries(plan: Plan, keys: Mapping[Case, str]) -> dict[str, Any]:
    return {
        "cases": [
            {
                "solver": c.solver,
                "problem": c.problem,
                "repetition": c.repetition,
                "key": keys[c],
                "overrides": c.overrides.to_dict(),
            }
            for c in plan.cases
        ],
        "skipped": [{"solver": s.solver, "problem": s.problem, "reason": s.reason} for s in plan.skipped],
    }


def _merge_plan_entries(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    seen = {c["key"] for c in new["cases"]}
    cases = [c for c in old.get("cases", []) if c["key"] not in seen] + list(new["cases"])
    skip_seen = {(s["solver"], s["problem"]) for s in new["skipped"]}
    skipped = [s for s in old.get("skipped", []) if (s["solver"], s["problem"]) not in skip_seen]
    return {"cases": cases, "skipped": skipped + list(new["skipped"])}


def _scoring_salt(manifest: dict[str, Any], given: str | None = None) -> str:
    """The scoring salt of this session of the run, recorded in ``manifest["scoring"]``.

    Every session (a new run, or each ``--resume``) draws a fresh salt
    (:func:`wgfbench.seeding.new_scoring_salt`) and records only its SHA-256 while cases run; the
    salt enters the manifest when the session stops (completed, interrupted or failed), so no
    solver can read it from the run directory, and every score can be recomputed afterwards.
    Earlier sessions' salts move to ``scoring["sessions"]`` (a salt of a session killed outright,
    never revealed, stays ``None`` there); each case records the digest of the salt that scored it
    (``score_salt_sha256`` in ``cases.parquet``). A ``given`` salt (``--reproduce-salt``, to
    reproduce an earlier run's scores) is used as is and the manifest marks it ``reproduced``.
    """
    scoring = manifest.setdefault("scoring", {})
    if scoring.get("salt_sha256"):
        previous = {"salt_sha256": scoring["salt_sha256"], "salt": scoring.get("salt")}
        scoring.setdefault("sessions", []).append(previous)
    if given is not None:
        if not given or len(given) > 256:
            raise ConfigError("a scoring salt is a non-empty string (the hex of manifest scoring.salt)")
        salt = given
    else:
        salt = new_scoring_salt()
    scoring.update(
        {
            "salt": None,
            "salt_sha256": salt_digest(salt),
            "reproduced": given is not None,
            "rule": "reference draws seeded by hash(role, base_seed, problem, repetition, t, salt)",
        }
    )
    tier = TIERS.get(str(manifest.get("tier")))
    scoring.update(
        {
            "version": SCORING_VERSION,
            "floor_scheme": FLOOR_SCHEME,
            "n_projections": N_PROJECTIONS,
            **(
                {"n_eval": tier.n_eval, "n_output": tier.n_output, "n_reference": tier.n_reference}
                if tier is not None
                else {}
            ),
        }
    )
    return salt


def _status_line(record: Mapping[str, Any]) -> str:
    """One rich-markup line per finished case (user text escaped)."""
    from rich.markup import escape

    head = escape(f"{record['solver']} × {record['problem']} seed {record['seed']}")
    if record["status"] == "ok":
        return (
            f"[green]ok[/green]     {head}  prepare {record['prepare_seconds']:.3f} s, "
            f"solve {record['solve_seconds']:.3f} s, score {record['score_seconds']:.3f} s"
        )
    first = (str(record["error"]).strip().splitlines() or [""])[0]
    return f"[red]failed[/red] {head}  " + escape(f"(in {record['stage']}) {record['error_type']}: {first}")


def run_plan(
    plan: Plan,
    out: Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    host: Host | None = None,
    progress: bool = True,
    console: Any = None,
    command: Sequence[str] | None = None,
    salt: str | None = None,
    floors: FloorCache | None = None,
) -> RunResult:
    """Run every case of ``plan`` into the run directory ``out`` and consolidate it.

    ``out`` must be new or empty unless ``resume``: then committed cases (ok or failed) are kept
    and only the missing ones run (``retry_failed`` reruns failed ones too), so the run ends with
    every case exactly once; tier, base seed, device and dtype must match the earlier run.
    Failures are results, not errors. ``KeyboardInterrupt`` consolidates what finished and is
    re-raised. ``console`` (a :class:`rich.console.Console`) receives per-case status lines;
    ``progress`` shows a progress bar on it. ``salt`` reproduces the scores of an earlier run (its
    ``manifest["scoring"]["salt"]``); by default a new run draws a secret salt
    (:func:`_scoring_salt`). ``floors`` is the on-disk floor cache (the user's cache directory by
    default; ``FloorCache(enabled=False)`` bypasses it). Cases run grouped by problem and
    repetition, so the scorer's large reference draws are built once and shared by every solver.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    host = host or default_host()
    out = Path(out)
    keys = {case: case.key(host) for case in plan.cases}
    entries = _plan_entries(plan, keys)
    now = _utc_now()
    manifest: dict[str, Any]
    if store.manifest_path(out).is_file():
        if not resume:
            raise WgfbenchError(
                f"{out} already holds a run; pass --resume to continue it or choose another --out"
            )
        manifest = store.read_manifest(out)
        for name in ("tier", "base_seed", "device", "dtype"):
            if manifest.get(name) != getattr(plan, name):
                raise ConfigError(
                    f"cannot resume {out}: its {name} is {manifest.get(name)!r}, this plan's is "
                    f"{getattr(plan, name)!r}"
                )
        entries = _merge_plan_entries(manifest.get("plan", {}), entries)
        manifest.setdefault("resumed", []).append(now)
    else:
        if out.exists() and any(out.iterdir()):
            raise WgfbenchError(f"{out} exists and is not an empty directory nor a wgfbench run")
        manifest = {
            "schema_version": store.SCHEMA_VERSION,
            "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{plan.tier}-{os.urandom(3).hex()}",
            "created": now,
        }
    manifest.update(
        {
            "command": shlex.join(command if command is not None else sys.argv),
            "tier": plan.tier,
            "n_eval": get_tier(plan.tier).n_eval,
            "budget_seconds": plan.budget,
            "base_seed": plan.base_seed,
            "seeds": max(plan.seeds, int(manifest.get("seeds", 0))),
            "device": plan.device,
            "dtype": plan.dtype,
            "plan": entries,
            "versions": versions(host),
            "git_revision": git_revision(),
            "machine": machine_info(plan.device),
            "completed": None,
            "interrupted": False,
        }
    )
    salt = _scoring_salt(manifest, salt)
    run_id = manifest["run_id"]
    out.mkdir(parents=True, exist_ok=True)
    store.write_manifest(out, manifest)

    done = store.committed_cases(out)
    todo = [
        c for c in plan.cases if keys[c] not in done or (retry_failed and done[keys[c]]["status"] == "failed")
    ]
    reused = len(plan.cases) - len(todo)
    if console is None and progress:
        console = Console(stderr=True)

    cache = ScoreCache()
    floors = floors if floors is not None else FloorCache()
    order = {name: i for i, name in enumerate(dict.fromkeys(c.problem for c in plan.cases))}
    todo.sort(key=lambda c: (order[c.problem], c.repetition))

    ran = 0
    interrupted = False
    bar = (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        if progress
        else None
    )
    try:
        if bar is not None:
            bar.start()
            overall = bar.add_task("cases", total=len(todo))
            inner = bar.add_task("", total=None, visible=False)
        for case in todo:
            key = keys[case]
            hook = None
            if bar is not None:
                label = f"  {case.solver} × {case.problem} #{case.repetition}"
                bar.update(inner, description=label, completed=0, total=None, visible=True)

                def hook(done_: int, total_: int, _inner=inner) -> None:
                    bar.update(_inner, completed=done_, total=total_)

            outcome = run_case(
                case, key, plan, out, run_id, host=host, cache=cache, progress=hook, salt=salt, floors=floors
            )
            store.write_case(out, outcome.record, outcome.results)
            ran += 1
            if console is not None:
                console.print(_status_line(outcome.record), highlight=False)
            if bar is not None:
                bar.advance(overall)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.stop()
        manifest["scoring"]["salt"] = salt  # revealed once no solver of this session can run any more
        manifest["interrupted"] = interrupted
        store.write_manifest(out, manifest)
        store.consolidate(out)
        manifest["completed"] = None if interrupted else _utc_now()
        store.write_manifest(out, manifest)

    records = store.read_case_records(out)
    return RunResult(out, run_id, records, ran, reused, list(plan.skipped), interrupted)
