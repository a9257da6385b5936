"""Hook specifications of the wgfbench plugin host.

A plugin is a module (or any object) with functions marked ``@wgfbench.hookimpl`` whose names match
the specs below. It is found through the ``wgfbench`` entry-point group::

    # pyproject.toml of a third-party plugin
    [project.entry-points.wgfbench]
    my-solver = "my_package.wgfbench_plugin"

Each hook receives a *registry*: one call may register several items (tox 4 style). Built-in
problems and solvers are registered through these same hooks and the same entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from wgfbench.metrics.registry import MetricRegistry
    from wgfbench.registry import ProblemRegistry, SolverRegistry

PROJECT_NAME = "wgfbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def wgfbench_register_problems(registry: ProblemRegistry) -> None:
    """Register problems with ``registry.add(problem)``.

    ``problem`` is a :class:`wgfbench.Problem`, or a zero-argument callable returning one (a
    factory, so that expensive references are only built when the problem is used); a factory
    must then be passed with its name: ``registry.add(factory, name="family/id")``.

    Example::

        @wgfbench.hookimpl
        def wgfbench_register_problems(registry):
            registry.add(make_my_problem, name="my-family/my-problem-2d")
    """


@hookspec
def wgfbench_register_solvers(registry: SolverRegistry) -> None:
    """Register solver classes with ``registry.add(SolverClass)``.

    ``SolverClass`` subclasses :class:`wgfbench.Solver` and sets the class attributes ``name``,
    ``citation`` and ``Config``. wgfbench instantiates it with a validated config per tier.

    Example::

        @wgfbench.hookimpl
        def wgfbench_register_solvers(registry):
            registry.add(MySolver)
    """


@hookspec
def wgfbench_register_metrics(registry: MetricRegistry) -> None:
    """Register snapshot metrics with ``registry.add(metric)``.

    ``metric`` is a :class:`wgfbench.metrics.Metric`: name, unit, description, ``compute(ctx)``
    returning a float (or ``None`` where it does not apply) from a
    :class:`wgfbench.metrics.SnapshotContext` (the output's scored points and log-density, the
    reference law and its large draw), and optionally ``applies(problem)``, ``floor=True`` for a
    distance whose noise floor should be reported, ``lower_is_better``. The scorer computes it at
    every scored snapshot of every case; it lands in ``results.parquet`` and the leaderboard.

    Example::

        @wgfbench.hookimpl
        def wgfbench_register_metrics(registry):
            registry.add(Metric("mean_norm", "length", "|mean of the output|",
                                compute=lambda ctx: float(ctx.points.mean(0).norm())))
    """
