"""The smallest problem and solver a plugin host can register, and a plugin module registering
given items: shared by the host and contract tests and the bad-input table."""

from __future__ import annotations

import types

import wgfbench
from wgfbench.references import DistributionPath, Gaussian
from wgfbench.trajectory import ParticleSnapshot, Trajectory


def tiny_problem(name: str = "toy/gauss-1d") -> wgfbench.Problem:
    """A 1-D standard Gaussian that does not move (pure entropy at equilibrium), named ``name``."""
    law = Gaussian([0.0], [[1.0]])
    return wgfbench.Problem(
        name=name,
        family=name.split("/")[0],
        dim=1,
        energy=wgfbench.Energy([wgfbench.Entropy()]),
        initial=law,
        times=(0.0, 1.0),
        dt=0.1,
        references={"pde": DistributionPath(lambda t: law, dim=1)},
        primary_metric="w2",
    )


class FrozenSolver(wgfbench.Solver):
    """Ten samples of the initial law at every time."""

    name = "toy-frozen"

    def solve(self, problem, ctx):
        x = ctx.to(problem.initial.sample(10, ctx.cpu_generator))
        return Trajectory([ParticleSnapshot(t, x) for t in problem.times])


def plugin_module(name: str, problems=(), solvers=()) -> types.ModuleType:
    """A plugin module registering ``problems`` (problems or ``(name, factory)`` pairs) and
    ``solvers``."""
    module = types.ModuleType(name)

    @wgfbench.hookimpl
    def wgfbench_register_problems(registry):
        for p in problems:
            if isinstance(p, tuple):
                registry.add(p[1], name=p[0])
            else:
                registry.add(p)

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        for s in solvers:
            registry.add(s)

    module.wgfbench_register_problems = wgfbench_register_problems
    module.wgfbench_register_solvers = wgfbench_register_solvers
    return module
