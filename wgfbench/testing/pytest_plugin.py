"""The pytest side of the conformance kit: run the suites of registered plugins by name.

``pytest --wgfbench-solver NAME [--wgfbench-problem NAME]`` (repeatable; fnmatch patterns such as
``'heun-*'`` select every match) runs :class:`~wgfbench.testing.SolverConformance` for each named
solver on each named problem (default: the kit's OU problems) and
:class:`~wgfbench.testing.ProblemConformance` for each named problem, one test per check, with no
test file. Names are looked up in :func:`wgfbench.default_host` (every installed plugin).

The options themselves come from ``_wgfbench_pytestplugin``, the module the ``pytest11`` entry
point loads into every pytest session: it imports nothing of wgfbench (which imports torch), and
registers :class:`SelectedSuites` from this module only in sessions that pass one of the options.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from wgfbench.testing import selected

SOLVER_OPTION = "--wgfbench-solver"
PROBLEM_OPTION = "--wgfbench-problem"


def _expand(patterns: list[str], names: list[str], kind: str, option: str) -> list[str]:
    """``patterns`` with each glob replaced by the matching registered names (sorted); a pattern
    that matches nothing is a usage error naming the option."""
    out: list[str] = []
    for pattern in patterns:
        matches = sorted(fnmatch.filter(names, pattern))
        if not matches:
            raise pytest.UsageError(
                f"{option} {pattern!r}: no registered {kind} matches; registered: {', '.join(sorted(names))}"
            )
        out.extend(m for m in matches if m not in out)
    return out


class SelectedSuites:
    """Adds the suites of the plugins named by the command-line options to the collected tests."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        import wgfbench

        host = wgfbench.default_host()
        config = self.config
        config.stash[selected.SOLVERS_KEY] = _expand(
            config.getoption("wgfbench_solver"), list(host.solvers), "solver", SOLVER_OPTION
        )
        config.stash[selected.PROBLEMS_KEY] = _expand(
            config.getoption("wgfbench_problem"), list(host.problems), "problem", PROBLEM_OPTION
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Collect :mod:`wgfbench.testing.selected` (before ``-k``/``-m`` deselect) and keep the
        classes that were asked for."""
        wanted = set()
        if config.stash[selected.SOLVERS_KEY]:
            wanted.add(selected.TestSelectedSolver)
        if config.stash[selected.PROBLEMS_KEY]:
            wanted.add(selected.TestSelectedProblem)
        module = pytest.Module.from_parent(
            session, path=Path(selected.__file__), nodeid="wgfbench-conformance"
        )
        for node in module.collect():
            if getattr(node, "obj", None) in wanted:
                items.extend(session.genitems(node))


__all__ = ["PROBLEM_OPTION", "SOLVER_OPTION", "SelectedSuites"]
