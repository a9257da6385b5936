"""wgfbench's pytest plugin, loaded into every pytest session through the ``pytest11`` entry point.

It lives outside the ``wgfbench`` package (as hypothesis keeps ``_hypothesis_pytestplugin``) so
that loading it imports nothing of wgfbench, and so no torch: a session that does not ask for the
conformance suite pays nothing. It adds the ``--wgfbench-solver`` / ``--wgfbench-problem`` options
and the ``wgfbench_conformance`` marker; only a session that passes an option loads
:mod:`wgfbench.testing.pytest_plugin`, which adds the named plugins' suites. Plugin authors
subclass :class:`wgfbench.testing.SolverConformance` / ``ProblemConformance`` in their own tests
instead, which needs no option.
"""

from __future__ import annotations

MARKER = "wgfbench_conformance: a check of the wgfbench conformance suite (wgfbench.testing)"


def pytest_addoption(parser):
    group = parser.getgroup("wgfbench", "wgfbench conformance suite")
    group.addoption(
        "--wgfbench-solver",
        action="append",
        default=[],
        metavar="NAME",
        help="run the conformance suite of the registered solver NAME (repeatable; fnmatch patterns)",
    )
    group.addoption(
        "--wgfbench-problem",
        action="append",
        default=[],
        metavar="NAME",
        help="run the conformance suite of the registered problem NAME, and the --wgfbench-solver "
        "suites on it (repeatable; fnmatch patterns)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER)
    if config.getoption("wgfbench_solver", None) or config.getoption("wgfbench_problem", None):
        from wgfbench.testing.pytest_plugin import SelectedSuites

        config.pluginmanager.register(SelectedSuites(config), "wgfbench-selected-suites")
