r"""An example wgfbench plugin: a stochastic Heun solver and a shifted 1-D OU problem.

Heun's predictor–corrector for :math:`dX = -\nabla V(X)\,dt + \sqrt 2\,dW` (additive noise):

.. math:: \tilde X = X - \nabla V(X)\,\Delta t + \sqrt{2\Delta t}\,\xi,\qquad
          X' = X - \tfrac12(\nabla V(X) + \nabla V(\tilde X))\,\Delta t + \sqrt{2\Delta t}\,\xi,

weak order 2 for additive noise (Kloeden & Platen, *Numerical Solution of SDEs*, §15.1).
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import PositiveFloat, PositiveInt

import wgfbench
from wgfbench.references import DistributionPath, Gaussian
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory


class HeunConfig(wgfbench.SolverConfig):
    n_particles: PositiveInt = 2000
    dt_factor: PositiveFloat = 1.0


class HeunLangevin(wgfbench.Solver):
    """Stochastic Heun particles for Fokker–Planck problems (entropy + potential energies)."""

    name = "heun-langevin"
    citation = (
        "@book{kloeden1992, title={Numerical Solution of Stochastic Differential Equations},"
        " author={Kloeden, Peter E. and Platen, Eckhard}, publisher={Springer}, year={1992}}"
    )
    Config = HeunConfig
    presets: ClassVar = {"smoke": {"n_particles": 2000}, "quick": {"n_particles": 20000, "dt_factor": 0.5}}

    def supports(self, problem):
        energy = problem.energy
        if problem.mobility.kind != "wasserstein" or not isinstance(energy.internal, wgfbench.Entropy):
            return "needs a Fokker-Planck problem (Wasserstein mobility, entropy)"
        if energy.interactions:
            return "interaction energies are not supported"
        return True

    def solve(self, problem, ctx):
        x = ctx.to(problem.initial.sample(self.config.n_particles, ctx.cpu_generator))
        snapshots, steps, t = [ParticleSnapshot(0.0, x.clone())], [], 0.0
        for target in problem.times[1:]:
            n = max(1, math.ceil((target - t) / (problem.dt * self.config.dt_factor) - 1e-9))
            dt = (target - t) / n
            for _ in range(n):
                noise = math.sqrt(2 * dt) * ctx.randn(*x.shape)
                drift = problem.energy.grad_V(x)
                predictor = x - drift * dt + noise
                x = x - 0.5 * (drift + problem.energy.grad_V(predictor)) * dt + noise
                t += dt
                steps.append(StepRecord(t=t, tau=dt, iterations=1))
                ctx.check_budget()
            t = target
            snapshots.append(ParticleSnapshot(target, x.clone()))
        return Trajectory(snapshots, steps)


def make_ou_shifted_1d() -> wgfbench.Problem:
    r"""1-D OU with :math:`V = (x-2)^2/2` from :math:`\mathcal N(-1, 0.25)`: :math:`m(t)=2-3e^{-t}`,
    :math:`\sigma^2(t) = 0.25e^{-2t} + 1 - e^{-2t}`."""

    def at(t: float) -> Gaussian:
        return Gaussian([2.0 - 3.0 * math.exp(-t)], [[0.25 * math.exp(-2 * t) + 1 - math.exp(-2 * t)]])

    def well(x):
        return 0.5 * ((x - 2.0) ** 2).sum(-1)

    return wgfbench.Problem(
        name="example/ou-shifted-1d",
        family="example",
        dim=1,
        energy=wgfbench.Energy([wgfbench.Entropy(), wgfbench.Potential(V=well, grad=lambda x: x - 2.0)]),
        initial=at(0.0),
        times=(0.0, 0.5, 1.0, 2.0),
        dt=0.02,
        references={"pde": DistributionPath(at, dim=1)},
        primary_metric="bures_w2",
        box=wgfbench.Box((-6.0,), (8.0,)),
    )


@wgfbench.hookimpl
def wgfbench_register_solvers(registry):
    registry.add(HeunLangevin)


@wgfbench.hookimpl
def wgfbench_register_problems(registry):
    registry.add(make_ou_shifted_1d, name="example/ou-shifted-1d")


__all__ = ["HeunLangevin", "make_ou_shifted_1d"]
