r"""The plugin author's conformance kit: check any problem or solver plugin against the wgfbench
contracts.

Two ways to use it from a plugin's own tests. The conformance suite gives one pytest test per
check (:mod:`wgfbench.testing.suite`)::

    from wgfbench.testing import ProblemConformance, SolverConformance

    class TestMySolver(SolverConformance):
        solver = MySolver

    class TestMyProblem(ProblemConformance):
        problems = (make_my_problem,)

and the check functions raise :class:`AssertionError` on the first failure, naming the plugin
and what failed, or return a small report (what was checked, with the statistics behind it)::

    from wgfbench.testing import check_problem, check_solver

    def test_my_solver_on_ou():
        check_solver(MySolver.for_tier("smoke"), wgfbench.get_problem("fokker-planck/ou-2d"))

Statistical checks compare two independent samples (or a sample and closed-form moments) with
deliberately loose, multiplicity-aware thresholds: moment differences in units of their standard
error (:math:`|z|\le` ``law_z``, default 6) and per-coordinate two-sample Kolmogorov–Smirnov tests
at a Bonferroni-corrected level (default :math:`10^{-6}`). All draws use fixed seeds, so a check
passes or fails deterministically; a correct plugin fails only with negligible probability over
the choice of seed.

The pytest plugin (:mod:`wgfbench.testing.pytest_plugin`, loaded through the ``pytest11`` entry
point) adds ``--wgfbench-solver NAME`` / ``--wgfbench-problem NAME`` to run the suites on
registered plugins without a test file. The suite classes import pytest, so they load on first
use: importing this package for the check functions needs no pytest.
"""

from __future__ import annotations

from typing import Any

from wgfbench.testing.checks import (
    PROBLEM_CHECKS,
    NotApplicable,
    ProblemOptions,
    ProblemReport,
    SolverReport,
    SolverRun,
    check_problem,
    check_run_budget,
    check_run_finite,
    check_run_mass,
    check_run_no_reference_access,
    check_run_shapes,
    check_run_steps,
    check_runs_agree_in_law,
    check_runs_identical,
    check_solver,
    check_solver_class,
    check_solver_supports,
    marginal_ks_pvalue,
    moment_z_scores,
    moment_z_scores_exact,
    ornstein_uhlenbeck_problem,
    run_solver,
)

_SUITE_NAMES = ("ProblemConformance", "SolverConformance", "default_problems")


def __getattr__(name: str) -> Any:
    if name in _SUITE_NAMES:  # imports pytest: only when asked for
        from wgfbench.testing import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROBLEM_CHECKS",
    "NotApplicable",
    "ProblemConformance",
    "ProblemOptions",
    "ProblemReport",
    "SolverConformance",
    "SolverReport",
    "SolverRun",
    "check_problem",
    "check_run_budget",
    "check_run_finite",
    "check_run_mass",
    "check_run_no_reference_access",
    "check_run_shapes",
    "check_run_steps",
    "check_runs_agree_in_law",
    "check_runs_identical",
    "check_solver",
    "check_solver_class",
    "check_solver_supports",
    "default_problems",
    "marginal_ks_pvalue",
    "moment_z_scores",
    "moment_z_scores_exact",
    "ornstein_uhlenbeck_problem",
    "run_solver",
]
