"""The :class:`Solver` contract and its typed, validated configuration."""

from __future__ import annotations

import copy
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pydantic
import torch

from wgfbench.context import TIERS, Context
from wgfbench.errors import ConfigError
from wgfbench.problem import Problem, ProblemLike
from wgfbench.trajectory import Trajectory


class SolverConfig(pydantic.BaseModel):
    """Base of every solver's config: typed fields, unknown keys rejected, immutable.

    Subclass it with typed fields and defaults, e.g. ``dt: PositiveFloat = 1e-3``.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


Support = bool | str
"""``supports`` returns ``True``, or a string saying why the problem is not supported."""

Role = Literal["solver", "baseline", "calibration"]
"""What a row of the leaderboard is: a ``solver`` of the PDE (ranked; sees only the problem's
:class:`~wgfbench.problem.ProblemView`), a trivial ``baseline`` (``frozen``, ``equilibrium``: the
floor of usefulness every solver must beat) or the ``calibration`` row (``reference``: exact
samples, the noise level). Baselines and calibration get the whole :class:`Problem` (they are
built from its references) and are never ranked as solvers."""
ROLES: tuple[str, ...] = ("solver", "baseline", "calibration")


def _format_validation_error(solver: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<config>"
        parts.append(f"field {field!r}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid config for solver {solver!r}: " + "; ".join(parts)


class Solver(ABC):
    """A WGF solver plugin.

    Class attributes: ``name`` (registry name), ``citation`` (BibTeX), ``Config`` (a
    :class:`SolverConfig` subclass), ``presets`` (tier name → field overrides) and ``role``
    (:data:`Role`; leave it ``"solver"``). Instances hold a validated ``config``; build them with
    ``Solver.for_tier(tier, **overrides)``.

    ``prepare`` does the offline work (training, fitting; charged as prepare time) and ``solve``
    integrates the flow from ``problem.initial`` to ``problem.times[-1]``, returning a
    :class:`Trajectory` with one snapshot per ``problem.times``. In a run both receive the
    problem's :class:`~wgfbench.problem.ProblemView`: energy, mobility, initial law, times,
    ``dt``, box and the initial family's initial laws, never its references.
    """

    name: ClassVar[str]
    role: ClassVar[Role] = "solver"
    citation: ClassVar[str] = ""
    Config: ClassVar[type[SolverConfig]] = SolverConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, config: SolverConfig | Mapping[str, Any] | None = None):
        if config is None:
            config = {}
        if isinstance(config, Mapping):
            try:
                config = self.Config(**config)
            except pydantic.ValidationError as exc:
                raise ConfigError(_format_validation_error(self.name, exc)) from None
        elif not isinstance(config, self.Config):
            raise ConfigError(
                f"solver {self.name!r} expects a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config

    @classmethod
    def for_tier(cls, tier: str, **overrides: Any) -> Solver:
        """The solver configured with ``presets[tier]`` updated by ``overrides``."""
        if tier not in TIERS:
            raise ConfigError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
        return cls({**cls.presets.get(tier, {}), **overrides})

    def supports(self, problem: ProblemLike) -> Support:
        return True

    def resolved_settings(self, problem: ProblemLike) -> Mapping[str, Any]:
        """The settings this solver will use on ``problem`` at its tier, as plain JSON-able values.

        The default is the config itself. A solver that resolves settings per problem (a family
        table, a step size from the problem's time scale) overrides it to return the resolved
        values: the runner records them with each case and hashes them into the case key, so
        editing such a table reruns exactly the cases it affects. It must be cheap and must not
        draw random numbers."""
        return self.config.model_dump(mode="json")

    def prepare(self, problem: ProblemLike, ctx: Context) -> None:  # noqa: B027 - optional hook
        """Offline work before ``solve`` (default: none)."""

    @abstractmethod
    def solve(self, problem: ProblemLike, ctx: Context) -> Trajectory: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def problem_as_seen_by(solver: Solver, problem: Problem) -> ProblemLike:
    """The problem as ``solver`` may see it: a private copy of its :class:`ProblemView` for solvers
    (a solver that changes its initial law or energy in place cannot change the scorer's), the
    problem itself for the baseline and calibration rows, which are built from its references."""
    if solver.role != "solver":
        return problem
    return copy.deepcopy(problem.view())


def equal_steps(interval: float, dt_bound: float) -> tuple[int, float]:
    """``(k, interval / k)`` with ``k`` the fewest equal steps no longer than ``dt_bound``
    (1e-9 relative slack): solvers cut each interval between snapshot times this way, so every
    snapshot is reached exactly and no tiny final step is left over."""
    k = max(1, math.ceil(interval / dt_bound - 1e-9))
    return k, interval / k


def step_ends(times: tuple[float, ...], dt_bound: float) -> list[float]:
    """End times of a solver's steps: each interval between snapshot times cut by
    :func:`equal_steps` into the fewest equal steps no longer than ``dt_bound``, so every
    snapshot time is an end time and is hit exactly."""
    ends: list[float] = []
    for a, b in itertools.pairwise(times):
        k, _ = equal_steps(b - a, dt_bound)
        ends.extend(a + (b - a) * (i + 1) / k for i in range(k - 1))
        ends.append(b)
    return ends


def confined_to_box(problem: ProblemLike, n: int = 2000, margin: float = 0.05, share: float = 0.01) -> bool:
    """True when more than ``share`` of ``n`` samples of ρ0 (fixed CPU generator) lie within
    ``margin`` × the box width of one of its walls: the box is then a physical domain with no-flux
    walls (e.g. ``fokker-planck/box-1d``), not just a computational window around the mass."""
    if problem.box is None:
        return False
    x = problem.initial.sample(n, torch.Generator().manual_seed(0))
    low = torch.tensor(problem.box.low, dtype=x.dtype)
    high = torch.tensor(problem.box.high, dtype=x.dtype)
    gap = margin * (high - low)
    near = ((x - low) < gap) | ((high - x) < gap)
    return bool(near.any(dim=1).double().mean() > share)


def support_reason(result: Support) -> str | None:
    """``None`` when supported, else the reason (a bare ``False`` gets a generic one)."""
    if result is True:
        return None
    return result if isinstance(result, str) and result else "not supported"
