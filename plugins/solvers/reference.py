r"""The calibration row: fresh exact samples of the problem's own reference.

``reference`` is not a solver of the PDE. At every snapshot time it returns ``n_particles`` new
draws of :math:`\rho(t)` from ``problem.reference`` (with :math:`\log\rho(t)` at the samples where
the reference has a density), using the case's own generator, so its draws are independent of the
scorer's reference draw (whose seed never involves the solver). Every metric it gets is therefore
the metric's own noise level: its scores sit at their floors, its ``rel_error`` is the smallest
error the benchmark resolves on that problem and tier (the resolution table), and its energy error
is the estimator's spread. (Where the reference is a stored particle ensemble, elliptic-2d, its
draws and the scorer's resample the same stored particles, so this row measures resampling noise
only and the resolution there is bounded by the ensemble itself.) It hands over as many samples
as the scorer uses (the tier's ``n_output``, 10⁵ at the quick tier), as a push-forward solver can.
A leaderboard without this row cannot tell a good solver from a noisy metric.

For a ``"stationary"`` reference only :math:`\rho_\infty` is known: the snapshot at ``t = 0`` is
drawn from ``problem.initial`` and every later one from :math:`\rho_\infty`. Only the final one is
scored (stationary references are scored at the final snapshot, or by the energy gap), so the
intermediate snapshots carry no information about the transient.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import PositiveInt

import wgfbench
from wgfbench.context import TIERS, Context
from wgfbench.problem import Problem
from wgfbench.solver import Solver, SolverConfig, Support
from wgfbench.trajectory import ParticleSnapshot, Trajectory


class ReferenceSamplerConfig(SolverConfig):
    """``n_particles``: samples per snapshot; ``None`` means the tier's ``n_output``.
    ``with_log_rho``: attach :math:`\\log\\rho(t)` at the samples where the law has a density."""

    n_particles: PositiveInt | None = None
    with_log_rho: bool = True


class ReferenceSampler(Solver):
    """Exact samples of ``problem.reference`` at each snapshot time (see the module docstring).

    Supports every problem. Draws use ``ctx.cpu_generator`` (the problems' laws are CPU float64)
    and are moved to ``ctx.device``/``ctx.dtype``.
    """

    name = "reference"
    role = "calibration"
    Config = ReferenceSamplerConfig
    citation = r"""@misc{wgfbench_reference,
  title  = {wgfbench calibration row: exact samples of the reference solution},
  author = {{wgfbench developers}},
  note   = {Scores of independent exact draws give the noise floor of every metric},
  year   = {2025}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        tier: {"n_particles": spec.n_output} for tier, spec in TIERS.items()
    }

    config: ReferenceSamplerConfig

    def supports(self, problem: Problem) -> Support:
        return True

    def snapshot(self, problem: Problem, t: float, n: int, ctx: Context) -> ParticleSnapshot:
        """``n`` draws of the law scored at ``t``, with :math:`\\log\\rho` where it is known:
        :math:`\\rho(t)` for exact and numerical references; ``problem.initial`` at ``t = 0`` and
        :math:`\\rho_\\infty` afterwards for stationary ones."""
        reference = problem.reference
        if reference.kind == "stationary" and t == 0.0:
            law = problem.initial
            x = law.sample(n, ctx.cpu_generator)
            log_rho = law.log_density(x) if self.config.with_log_rho and law.has_density else None
        else:
            x = reference.sample(t, n, ctx.cpu_generator)
            log_rho = (
                reference.log_density(t, x) if self.config.with_log_rho and reference.has_density else None
            )
        return ParticleSnapshot(t=t, x=ctx.to(x), log_rho=None if log_rho is None else ctx.to(log_rho))

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """One snapshot of fresh reference samples per ``problem.times``; no time steps."""
        n = self.config.n_particles or ctx.tier.n_output
        snapshots = []
        for k, t in enumerate(problem.times):
            ctx.check_budget()
            snapshots.append(self.snapshot(problem, t, n, ctx))
            ctx.progress(k + 1, len(problem.times))
        info: dict[str, float | int | str] = {"reference_kind": problem.reference.kind, "n_particles": n}
        return Trajectory(snapshots=snapshots, steps=[], jko_tau=None, info=info)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`ReferenceSampler` as ``reference``."""
    registry.add(ReferenceSampler)
