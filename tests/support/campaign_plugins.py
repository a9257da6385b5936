"""Solvers for campaign tests that must be importable by other processes (Dask workers and the
children a forkserver starts): a plain exact sampler, a CPU-bound one, one that kills its own
process, one that never checks its budget. ``host()`` is the host factory the workers call."""

from __future__ import annotations

import os
import time

import wgfbench
from wgfbench.trajectory import ParticleSnapshot, Trajectory


def burn(seconds: float) -> None:
    """Busy-wait ``seconds`` of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class Sampler(wgfbench.Solver):
    """Samples of the initial law at every snapshot time (what the ``frozen`` baseline outputs)."""

    name = "campaign-frozen"
    work_seconds = 0.0

    def solve(self, problem, ctx):
        burn(self.work_seconds)
        x = ctx.to(problem.initial.sample(400, ctx.cpu_generator))
        return Trajectory([ParticleSnapshot(t, x.clone()) for t in problem.times])


class SlowSampler(Sampler):
    """The exact sampler after 1.5 s of CPU work: long enough to kill a worker under it."""

    name = "campaign-slow"
    work_seconds = 1.5


class KillsItself(Sampler):
    """Ends its own process, as a segfault or the out-of-memory killer would."""

    name = "campaign-oskill"

    def solve(self, problem, ctx):
        os._exit(7)


class NeverChecksBudget(Sampler):
    """Computes forever and never calls ``ctx.check_budget()``."""

    name = "campaign-hang"

    def solve(self, problem, ctx):
        while True:
            burn(0.1)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry):
    for cls in (Sampler, SlowSampler, KillsItself, NeverChecksBudget):
        registry.add(cls)


def host() -> wgfbench.Host:
    """The built-in plugins plus this module's solvers."""
    import campaign_plugins

    return wgfbench.Host(distributions={"wgfbench"}, plugins=[campaign_plugins])
