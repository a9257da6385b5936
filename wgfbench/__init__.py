"""wgfbench: a benchmark for Wasserstein gradient flow solvers.

Public entry points::

    import wgfbench
    problem = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    x = problem.reference.sample(t=0.5, n=1000, generator=torch.Generator().manual_seed(0))
    solver = wgfbench.get_solver("langevin", tier="quick")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from wgfbench.context import TIERS, Context, Tier
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
    NonFiniteOutput,
    UnknownNameError,
    WgfbenchError,
)
from wgfbench.hookspecs import hookimpl
from wgfbench.host import Host, default_host
from wgfbench.problem import Box, InitialFamily, Mobility, Problem, ProblemView, solver_is_running
from wgfbench.references import Distribution, Gaussian, GaussianMixture, JKOIterates, Reference
from wgfbench.solver import Solver, SolverConfig
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, StepRecord, Trajectory

try:
    __version__ = version("wgfbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

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
    "ConfigError",
    "Context",
    "Distribution",
    "DuplicateNameError",
    "Energy",
    "Entropy",
    "Gaussian",
    "GaussianMixture",
    "GridSnapshot",
    "Host",
    "InitialFamily",
    "Interaction",
    "JKOIterates",
    "Mobility",
    "Newtonian",
    "NonFiniteOutput",
    "ParticleSnapshot",
    "Potential",
    "PowerInternal",
    "PowerLaw",
    "Problem",
    "ProblemView",
    "Quadratic",
    "Reference",
    "Solver",
    "SolverConfig",
    "StepRecord",
    "Tier",
    "Trajectory",
    "UnknownNameError",
    "WgfbenchError",
    "__version__",
    "get_problem",
    "get_solver",
    "hookimpl",
]
