r"""The trivial baselines: the floor of usefulness every solver must beat.

* ``frozen`` returns :math:`\rho_0` at every snapshot time: a solver that does not move.
* ``equilibrium`` returns :math:`\rho_0` at :math:`t = 0` and :math:`\rho_\infty` at every
  :math:`t > 0`: an output that ignores the dynamics and jumps to the end state, computed from the
  energy alone (the problem's ``references["stationary"]``, or its stationary ``"pde"``
  reference). Problems whose flow has no known stationary law (the porous medium spreads forever)
  are skipped with that reason.

Both draw ``n_particles`` fresh samples per snapshot (the tier's ``n_output`` by default) with
:math:`\log\rho` where the law has a density, from the case's own generator, so they are scored
exactly like the calibration row ``reference``. A solver that ranks below either one on a problem
has not learnt the flow there; the leaderboard says so. They are rows with ``role = "baseline"``:
they see the whole problem (``equilibrium`` needs :math:`\rho_\infty`) and are never ranked as
solvers.

Hyperparameters: none besides the sample size, the scorer's ``n_output`` like ``reference``, so
that their scores carry the same (small) sampling noise.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import PositiveInt

import wgfbench
from wgfbench.context import TIERS, Context
from wgfbench.problem import Problem
from wgfbench.references import Distribution
from wgfbench.solver import Solver, SolverConfig, Support
from wgfbench.trajectory import ParticleSnapshot, Trajectory


class BaselineConfig(SolverConfig):
    """``n_particles``: samples per snapshot (``None``: the tier's ``n_output``)."""

    n_particles: PositiveInt | None = None


class _SamplingBaseline(Solver):
    """Fresh draws of a fixed law per snapshot: :meth:`law` says which law at time ``t``."""

    role = "baseline"
    Config = BaselineConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        tier: {"n_particles": spec.n_output} for tier, spec in TIERS.items()
    }
    config: BaselineConfig

    def law(self, problem: Problem, t: float) -> Distribution:
        raise NotImplementedError

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """One snapshot of ``n_particles`` draws of :meth:`law` per ``problem.times``; no steps."""
        n = self.config.n_particles or ctx.tier.n_output
        snapshots = []
        for k, t in enumerate(problem.times):
            ctx.check_budget()
            law = self.law(problem, t)
            x = law.sample(n, ctx.cpu_generator)
            log_rho = law.log_density(x) if law.has_density else None
            snapshots.append(
                ParticleSnapshot(t=t, x=ctx.to(x), log_rho=None if log_rho is None else ctx.to(log_rho))
            )
            ctx.progress(k + 1, len(problem.times))
        return Trajectory(snapshots=snapshots, steps=[], jko_tau=None, info={"n_particles": n})


class Frozen(_SamplingBaseline):
    r"""``frozen``: :math:`\rho(t) = \rho_0` for every ``t`` (module docstring)."""

    name = "frozen"
    citation = r"""@misc{wgfbench_frozen,
  title  = {wgfbench trivial baseline: the initial law at every time},
  author = {{wgfbench developers}},
  year   = {2026}
}"""

    def law(self, problem: Problem, t: float) -> Distribution:
        return problem.initial


class _StationaryLaw(Distribution):
    r""":math:`\rho_\infty` of a stationary reference, as a fixed law."""

    def __init__(self, problem: Problem):
        self.reference = problem.stationary
        self.dim = problem.dim
        self.t = problem.final_time

    def sample(self, n, generator):
        return self.reference.sample(self.t, n, generator)

    def log_density(self, x):
        return self.reference.log_density(self.t, x)

    @property
    def has_density(self) -> bool:
        return self.reference.has_density


class Equilibrium(_SamplingBaseline):
    r"""``equilibrium``: :math:`\rho_0` at :math:`t = 0`, :math:`\rho_\infty` for :math:`t > 0`
    (module docstring)."""

    name = "equilibrium"
    citation = r"""@misc{wgfbench_equilibrium,
  title  = {wgfbench trivial baseline: the stationary law at every positive time},
  author = {{wgfbench developers}},
  year   = {2026}
}"""

    def supports(self, problem: Problem) -> Support:
        if getattr(problem, "stationary", None) is None:
            return "the flow has no known stationary law rho_inf"
        return True

    def law(self, problem: Problem, t: float) -> Distribution:
        return problem.initial if t == 0.0 else _StationaryLaw(problem)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`Frozen` and :class:`Equilibrium`."""
    registry.add(Frozen)
    registry.add(Equilibrium)
