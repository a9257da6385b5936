"""The conformance suites of the plugins named on the pytest command line
(``--wgfbench-solver NAME`` / ``--wgfbench-problem NAME``): collected by
:mod:`wgfbench.testing.pytest_plugin`, never by file name (it matches no ``test_*.py`` pattern)."""

from __future__ import annotations

import pytest

from wgfbench.testing.suite import (
    ProblemConformance,
    ProblemSpec,
    SolverConformance,
    SolverSpec,
    default_problems,
)

SOLVERS_KEY = pytest.StashKey[list[str]]()
PROBLEMS_KEY = pytest.StashKey[list[str]]()
"""Where :mod:`wgfbench.testing.pytest_plugin` leaves the names selected on the command line (glob
patterns already expanded against the registry)."""


class TestSelectedSolver(SolverConformance):
    """Every ``--wgfbench-solver`` on every ``--wgfbench-problem`` (default: the kit's OU problems,
    where the solver supports them)."""

    @classmethod
    def solver_specs(cls, config: pytest.Config) -> list[SolverSpec]:
        return list(config.stash.get(SOLVERS_KEY, []))

    @classmethod
    def problem_specs(cls, config: pytest.Config) -> tuple[list[ProblemSpec], bool]:
        names = config.stash.get(PROBLEMS_KEY, [])
        if names:
            return list(names), True
        return list(default_problems()), False


class TestSelectedProblem(ProblemConformance):
    """Every ``--wgfbench-problem``."""

    @classmethod
    def problem_specs(cls, config: pytest.Config) -> list[ProblemSpec]:
        return list(config.stash.get(PROBLEMS_KEY, []))
