"""The plan of a campaign: which (solver, problem, repetition) cases run at a tier, with what.

:func:`make_plan` expands solver and problem patterns (fnmatch globs), validates every selected
solver's config with its overrides (``--set solver.field=value``, or a campaign file's
``[set.<solver>]`` tables) before anything runs, and keeps the pairs a solver does not support as
:class:`Skip` entries with the reason. A :class:`Case` is a value: it names what to run, and
:mod:`wgfbench.runner.execution` runs it.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import wgfbench
from wgfbench.context import get_tier
from wgfbench.errors import ConfigError, UnknownNameError
from wgfbench.host import Host, default_host
from wgfbench.problem import solver_scope
from wgfbench.seeding import solver_seed
from wgfbench.solver import Solver, problem_as_seen_by, support_reason

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
        """The case key (:func:`wgfbench.runner.provenance.case_key`): it names the case's parts,
        drives ``--resume`` and changes whenever anything that determines the case's numbers
        changes, the solver's settings resolved for this problem and its plugin's code included."""
        from wgfbench.runner.provenance import case_key

        return case_key(self, host or default_host())


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


def match_names(patterns: Sequence[str], known: Sequence[str], kind: str, note: str = "") -> list[str]:
    """Names in ``known`` matching any fnmatch ``pattern`` (in ``known``'s sorted order).

    A pattern that matches nothing raises :class:`UnknownNameError` with close matches and
    ``note`` (the host's plugins that failed to load, whose names are missing for that reason).
    """
    known = sorted(known)
    selected: set[str] = set()
    for pattern in patterns:
        hits = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise UnknownNameError(kind, pattern, known, note=note)
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
    solver_names = match_names(solvers, list(host.solvers), "solver", note=host.failure_note("solver"))
    problem_names = match_names(problems, list(host.problems), "problem", note=host.failure_note("problem"))

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
        try:
            problem = wgfbench.get_problem(pname, host)
        except Exception as exc:  # one broken problem factory must not sink a `-p '*'` plan
            reason = f"problem could not be built: {type(exc).__name__}: {exc}"
            skipped.extend(Skip(sname, pname, reason) for sname in solver_names)
            continue
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
