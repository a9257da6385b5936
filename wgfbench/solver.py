"""The :class:`Solver` contract and its typed, validated configuration."""

from __future__ import annotations

import copy
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pydantic

from wgfbench.context import TIERS, Context
from wgfbench.contract import check_known_tiers
from wgfbench.errors import ConfigError
from wgfbench.problem import Problem, ProblemLike
from wgfbench.trajectory import Trajectory


class SolverConfig(pydantic.BaseModel):
    """Base of every solver's config: typed fields, unknown keys rejected, immutable.

    Subclass it with typed fields and defaults, e.g. ``dt: PositiveFloat = 1e-3``.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


Support = bool | str
"""What ``Solver.supports(problem)`` returns: ``True`` when the solver runs the problem, else a
string saying why not (the plan lists the pair as skipped with it), e.g. ``"the problem is posed
on its box with no-flux walls (problem.box.wall): …"``. :func:`support_reason` reads it."""

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


def _config_from(solver_cls: type[Solver], values: Mapping[str, Any]) -> SolverConfig:
    """``solver_cls.Config(**values)``, a pydantic failure turned into a :class:`ConfigError`
    naming the solver and each bad field."""
    try:
        return solver_cls.Config(**values)
    except pydantic.ValidationError as exc:
        raise ConfigError(_format_validation_error(solver_cls.name, exc)) from None


class Solver(ABC):
    """A WGF solver plugin.

    Class attributes: ``name`` (registry name), ``citation`` (BibTeX), ``Config`` (a
    :class:`SolverConfig` subclass), ``presets`` (tier name → field overrides) and ``role``
    (:data:`Role`; leave it ``"solver"``). Instances hold a validated ``config``; build them with
    ``Solver.for_tier(tier, **overrides)``. ``registry.add`` checks the class against the rules of
    :func:`wgfbench.contract.check_solver_class`: a lower-case ``name`` without glob characters,
    a known role, a :class:`SolverConfig`, presets only for tiers of ``TIERS`` and each a valid
    config.

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
            config = _config_from(type(self), config)
        elif not isinstance(config, self.Config):
            raise ConfigError(
                f"solver {self.name!r} expects a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config

    @classmethod
    def for_tier(cls, tier: str, **overrides: Any) -> Solver:
        """The solver configured with ``presets[tier]`` updated by ``overrides``.

        Raises :class:`ConfigError` for an unknown ``tier`` and
        :class:`~wgfbench.contract.ContractError` (rule ``known tiers``) when ``presets`` has a key
        that is no tier, which would otherwise be silently ignored."""
        if tier not in TIERS:
            raise ConfigError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}")
        check_known_tiers(cls)
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
    r"""``(k, interval / k)`` with :math:`k = \max(1, \lceil \mathrm{interval}/\mathrm{dt\_bound}
    \rceil)` the fewest equal steps no longer than ``dt_bound`` (1e-9 relative slack): solvers
    cut each interval between snapshot times this way, so every snapshot is reached exactly and no
    tiny final step is left over. ``equal_steps(0.25, 0.1) == (3, 0.08333…)``."""
    k = max(1, math.ceil(interval / dt_bound - 1e-9))
    return k, interval / k


def step_ends(times: tuple[float, ...], dt_bound: float) -> list[float]:
    r"""End times of a solver's steps from ``times[0]`` to ``times[-1]``: each interval
    :math:`[t_i, t_{i+1}]` between snapshot times cut by :func:`equal_steps` into :math:`k_i`
    equal steps no longer than ``dt_bound``, ending at :math:`t_i + (t_{i+1}-t_i)\,j/k_i`,
    :math:`j = 1..k_i`; every snapshot time is an end time and is hit exactly (no accumulated
    round-off). ``step_ends((0, 0.1, 0.25), 0.1) == [0.1, 0.175, 0.25]``; with
    ``dt_bound = problem.dt`` this is a solver's default schedule."""
    ends: list[float] = []
    for a, b in itertools.pairwise(times):
        k, _ = equal_steps(b - a, dt_bound)
        ends.extend(a + (b - a) * (i + 1) / k for i in range(k - 1))
        ends.append(b)
    return ends


def support_reason(result: Support) -> str | None:
    """The reason in a :data:`Support` answer: ``None`` when it is ``True`` (supported), else the
    reason string (a bare ``False`` or empty string gets ``"not supported"``)."""
    if result is True:
        return None
    return result if isinstance(result, str) and result else "not supported"
