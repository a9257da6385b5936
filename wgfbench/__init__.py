"""wgfbench: a benchmark for Wasserstein gradient flow solvers.

Public entry points::

    import wgfbench
    problem = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    x = problem.reference.sample(t=0.5, n=1000, generator=torch.Generator().manual_seed(0))
    solver = wgfbench.get_solver("langevin", tier="quick")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from wgfbench.context import TIERS, Checkpoint, Context, Tier, get_tier, make_generator
from wgfbench.contract import ContractError
from wgfbench.energy import (
    Energy,
    Entropy,
    Interaction,
    Newtonian,
    Potential,
    PowerInternal,
    PowerLaw,
    Quadratic,
)
from wgfbench.errors import (
    BudgetExceeded,
    ConfigError,
    DuplicateNameError,
    InvalidInput,
    NonFiniteOutput,
    PluginError,
    UnknownNameError,
    WgfbenchError,
)
from wgfbench.hookspecs import hookimpl as _hookimpl
from wgfbench.host import Host, default_host
from wgfbench.problem import (
    Box,
    InitialFamily,
    InitialFamilyView,
    Mobility,
    Problem,
    ProblemLike,
    ProblemView,
    solver_is_running,
)
from wgfbench.references import (
    Distribution,
    DistributionPath,
    Gaussian,
    GaussianMixture,
    JKOIterates,
    Reference,
    Stationary,
    jko_step_count,
)
from wgfbench.seeding import seed_from
from wgfbench.solver import Solver, SolverConfig, Support, equal_steps, step_ends, support_reason
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, StepRecord, Trajectory

hookimpl = _hookimpl
"""The decorator that marks a plugin's hook functions (pluggy's ``HookimplMarker`` of the
``wgfbench`` project): ``@wgfbench.hookimpl def wgfbench_register_solvers(registry): ...``;
the hooks are the ``wgfbench_register_*`` specs of :mod:`wgfbench.hookspecs`."""


def _installed_version() -> str:
    try:
        return version("wgfbench")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


__version__: str = _installed_version()
"""The installed wgfbench version (``"0+unknown"`` in a source tree that is not installed)."""

_problem_cache: dict[tuple[int, str], Problem] = {}


def get_problem(name: str, host: Host | None = None) -> Problem:
    """The registered problem ``name`` (factories are built once and cached).

    While a solver's ``supports``, ``prepare`` or ``solve`` runs (:func:`wgfbench.problem.solver_scope`)
    this returns the problem's :class:`~wgfbench.problem.ProblemView` instead, so the public
    registry is no route to the references (``docs/scoring.md`` says what in-process code can still
    reach)."""
    problem = _get_problem(name, host)
    return problem.view() if solver_is_running() else problem  # type: ignore[return-value]


def _get_problem(name: str, host: Host | None = None) -> Problem:
    host = host or default_host()
    entry = host.problems.entry(name)
    key = (id(host), name)
    if key not in _problem_cache:
        item = entry.item
        problem = item if isinstance(item, Problem) else item()
        if problem.name != name:
            raise ValueError(f"factory registered as {name!r} built a problem named {problem.name!r}")
        _problem_cache[key] = problem
    return _problem_cache[key]


def get_solver(name: str, tier: str = "quick", host: Host | None = None, **overrides) -> Solver:
    """The registered solver ``name`` configured for ``tier`` (plus field ``overrides``)."""
    host = host or default_host()
    return host.solvers.entry(name).item.for_tier(tier, **overrides)


__all__ = [
    "TIERS",
    "Box",
    "BudgetExceeded",
    "Checkpoint",
    "ConfigError",
    "Context",
    "ContractError",
    "Distribution",
    "DistributionPath",
    "DuplicateNameError",
    "Energy",
    "Entropy",
    "Gaussian",
    "GaussianMixture",
    "GridSnapshot",
    "Host",
    "InitialFamily",
    "InitialFamilyView",
    "Interaction",
    "InvalidInput",
    "JKOIterates",
    "Mobility",
    "Newtonian",
    "NonFiniteOutput",
    "ParticleSnapshot",
    "PluginError",
    "Potential",
    "PowerInternal",
    "PowerLaw",
    "Problem",
    "ProblemLike",
    "ProblemView",
    "Quadratic",
    "Reference",
    "Solver",
    "SolverConfig",
    "Stationary",
    "StepRecord",
    "Support",
    "Tier",
    "Trajectory",
    "UnknownNameError",
    "WgfbenchError",
    "__version__",
    "equal_steps",
    "get_problem",
    "get_solver",
    "get_tier",
    "hookimpl",
    "jko_step_count",
    "make_generator",
    "seed_from",
    "step_ends",
    "support_reason",
]
