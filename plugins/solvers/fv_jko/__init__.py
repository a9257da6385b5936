r"""``fv-jko``: the Cancès–Gallouët–Todeschi upwind finite-volume JKO scheme on Cartesian grids.

C. Cancès, T. O. Gallouët, G. Todeschi, *A variational finite volume scheme for Wasserstein
gradient flows*, Numer. Math. 146 (2020) 437–480. The step (unknowns :math:`\rho_K,\varphi_K`,
transmissivities :math:`a_\sigma = |\sigma|/d_\sigma`, upwind face mobility, no-flux boundary),
the Newton solver with its Schur complement, the treatment of interactions (fully implicit
residual, dense block lagged in the Jacobian) and of nonlinear mobilities
(:math:`M_\sigma = \rho_\uparrow g(\rho_\downarrow)`, :math:`M = \rho g`) are documented in
:mod:`wgfbench_plugins.solvers.fv_jko.scheme`.

**Grid and data.** The grid is ``problem.box`` cut into ``cells_{1,2,3}d`` cells per axis (config,
per tier). :math:`\rho_0` is ``problem.initial.log_density`` at the cell centres, renormalised to
unit mass (:meth:`Grid.discretise`). The scheme needs :math:`\rho>0` (it then stays positive:
the upwind flux makes :math:`\rho_K \ge \rho^n_K/(1+\tau\,\text{outflow rate})`), so cells below
``floor`` × :math:`\max\rho_0` (the outside of a compactly supported Barenblatt profile, far
Gaussian tails) are raised to that floor and the density is renormalised; with the default
``floor = 1e-10`` the mass moved is at most :math:`10^{-10}\max\rho_0|\text{box}|`.

**Time stepping.** The base step is ``tau`` or ``problem.dt * tau_factor``; each interval between
snapshot times is cut into equal steps of at most the current step, so snapshots land exactly on
``problem.times``. When Newton fails the step is halved and retried (at most ``max_tau_halvings``
times below the base step); after a success with a reduced step the step doubles again, up to the
base. ``Trajectory.jko_tau`` is the base step when every step used it (no rejection, snapshot
intervals multiples of it), else ``None``.

**Backends.** ``scipy`` (CPU): sparse LU (SuperLU) of the Schur complement, float64. ``torch``:
matrix-free Jacobi-preconditioned CG (BiCGStab without internal energy) in float64 on
``ctx.device``. ``auto``: torch on CUDA; on the CPU scipy in 1-2 D and torch in 3-D, where the LU
fill of the 3-D Schur complement makes SuperLU slow (measured, one core: 16³ LU 0.56 s CPU per
porous-medium step; 32³ CG 0.5 s with about 25 CG iterations per Newton iteration).

**Output.** One :class:`GridSnapshot` per ``problem.times``; one :class:`StepRecord` per JKO step
with the grid energy :meth:`GridEnergy.value` (``energy_stderr = 0``), the Newton iterations and the
final scaled residual as ``loss``; ``Trajectory.info`` holds the totals.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, confloat
from wgfbench_plugins.solvers.fv_jko.scheme import FVJKOScheme, NewtonFailure, StepStats

import wgfbench
from wgfbench.context import Context
from wgfbench.grid import Grid, GridEnergy
from wgfbench.problem import Problem
from wgfbench.solver import Solver, SolverConfig, Support, equal_steps
from wgfbench.trajectory import GridSnapshot, StepRecord, Trajectory

__all__ = [
    "FVJKO",
    "FVJKOConfig",
    "FVJKOScheme",
    "NewtonFailure",
    "StepStats",
    "floor_density",
    "fv_jko_support",
    "initial_density",
]

# A snapshot time is reached when less than this (relative) time remains: float round-off only.
_TIME_TOL = 1e-12


class FVJKOConfig(SolverConfig):
    """Configuration of :class:`FVJKO`.

    ``cells_1d``/``cells_2d``/``cells_3d``: cells per axis in 1, 2, 3 D. ``tau``: base JKO step
    (``None``: ``problem.dt * tau_factor``). ``backend``: ``auto`` (scipy on CPU, torch
    otherwise), ``scipy`` or ``torch``. ``tol``: Newton tolerance on the scaled residuals;
    ``max_newton``: iterations per step; ``max_tau_halvings``: how far below the base step the
    adaptive step may go. ``floor``: relative density floor of :math:`\\rho_0`.
    """

    cells_1d: PositiveInt = 256
    cells_2d: PositiveInt = 64
    cells_3d: PositiveInt = 24
    tau: PositiveFloat | None = None
    tau_factor: PositiveFloat = 1.0
    backend: Literal["auto", "scipy", "torch"] = "auto"
    tol: PositiveFloat = 1e-10
    max_newton: PositiveInt = 60
    max_tau_halvings: NonNegativeInt = 12
    floor: confloat(gt=0, lt=1e-3) = 1e-10  # type: ignore[valid-type]


def fv_jko_support(problem: Problem) -> Support:
    """``True`` for problems on a box in 1–3 D with Wasserstein or nonlinear mobility."""
    if problem.box is None:
        return "fv-jko is a grid scheme and needs problem.box (the computational domain, no-flux boundary)"
    if not 1 <= problem.dim <= 3:
        return f"fv-jko runs on Cartesian grids in 1-3 D; this problem is {problem.dim}-D"
    if problem.mobility.kind == "kalman":
        return "fv-jko has no Kalman-Wasserstein (covariance-preconditioned) mobility"
    return True


def floor_density(rho: torch.Tensor, grid: Grid, floor: float) -> torch.Tensor:
    """``rho`` with cells below ``floor`` × max raised to it, renormalised to unit mass: the
    positive start the scheme needs (module docstring)."""
    rho = rho.clamp_min(floor * float(rho.max()))
    return rho / grid.mass(rho)


def initial_density(problem: Problem, grid: Grid, floor: float) -> torch.Tensor:
    r""":math:`\rho_0` at the cell centres (float64 CPU, shape ``grid.shape``), unit mass, floored by
    :func:`floor_density`."""
    return floor_density(grid.discretise(problem.initial.log_density), grid, floor)


class FVJKO(Solver):
    """The upwind finite-volume JKO scheme of Cancès, Gallouët & Todeschi (2020); see the module
    docstrings of this package and of :mod:`.scheme`."""

    name = "fv-jko"
    Config = FVJKOConfig
    citation = r"""@article{cances2020variational,
  title   = {A variational finite volume scheme for {W}asserstein gradient flows},
  author  = {Canc{\`e}s, Cl{\'e}ment and Gallou{\"e}t, Thomas O. and Todeschi, Gabriele},
  journal = {Numerische Mathematik},
  volume  = {146}, number = {3}, pages = {437--480}, year = {2020}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"cells_1d": 128, "cells_2d": 32, "cells_3d": 16, "tau_factor": 2.0},
        "quick": {"cells_1d": 512, "cells_2d": 96, "cells_3d": 32, "tau_factor": 1.0},
        "large": {"cells_1d": 2048, "cells_2d": 256, "cells_3d": 64, "tau_factor": 0.25},
    }

    config: FVJKOConfig

    def supports(self, problem: Problem) -> Support:
        return fv_jko_support(problem)

    def base_tau(self, problem: Problem) -> float:
        """``config.tau`` or ``problem.dt * config.tau_factor``."""
        return self.config.tau if self.config.tau is not None else problem.dt * self.config.tau_factor

    def grid(self, problem: Problem) -> Grid:
        """The problem's box with ``cells_{d}d`` cells per axis."""
        cells = {1: self.config.cells_1d, 2: self.config.cells_2d, 3: self.config.cells_3d}[problem.dim]
        return Grid.with_cells(problem.box, cells)  # type: ignore[arg-type]

    def scheme(self, problem: Problem, device: torch.device | str = "cpu") -> FVJKOScheme:
        """The step-level scheme for ``problem`` on :meth:`grid` (float64 on ``device``)."""
        device = torch.device(device)
        backend = self.config.backend
        if backend == "auto":
            # 3-D LU fill makes SuperLU far slower than CG there (32³: CG ≈ 25 iterations per solve).
            backend = "scipy" if device.type == "cpu" and problem.dim <= 2 else "torch"
        grid = self.grid(problem)
        energy = GridEnergy(problem.energy, grid, dtype=torch.float64, device=device)
        M = problem.mobility.M if problem.mobility.kind == "nonlinear" else None
        return FVJKOScheme(
            grid, energy, M, backend=backend, tol=self.config.tol, max_newton=self.config.max_newton
        )

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """Run the scheme from :math:`\\rho_0` to ``problem.times[-1]`` (package docstring)."""
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"fv-jko does not support {problem.name}: {reason}")
        scheme = self.scheme(problem, ctx.device)
        grid, energy = scheme.grid, scheme.energy
        rho = initial_density(problem, grid, self.config.floor).to(device=scheme.device)
        tau_base = self.base_tau(problem)
        tau_min = tau_base * 0.5**self.config.max_tau_halvings
        snapshots = [GridSnapshot(t=0.0, box=problem.box, rho=rho.clone())]  # type: ignore[arg-type]
        steps: list[StepRecord] = []
        totals = {"newton_iterations": 0, "linear_solves": 0, "krylov_iterations": 0, "rejected_steps": 0}
        tau_cur, t, fixed = tau_base, 0.0, True
        t_final = problem.final_time
        for t_next in problem.times[1:]:
            while t_next - t > _TIME_TOL * max(1.0, t_next):
                ctx.check_budget()
                _, tau = equal_steps(t_next - t, tau_cur)
                try:
                    rho_new, stats = scheme.step(rho, tau)
                except NewtonFailure as exc:
                    totals["rejected_steps"] += 1
                    fixed = False
                    tau_cur = tau / 2
                    if tau_cur < tau_min:
                        raise NewtonFailure(
                            f"fv-jko: step fell below {tau_min:.3g} at t={t:.6g}: {exc}"
                        ) from exc
                    continue
                rho = rho_new
                t = t_next if t_next - (t + tau) <= _TIME_TOL * max(1.0, t_next) else t + tau
                if abs(tau - tau_base) > 1e-12 * tau_base:
                    fixed = False
                if tau_cur < tau_base:
                    tau_cur = min(tau_base, 2 * tau_cur)
                totals["newton_iterations"] += stats.newton_iterations
                totals["linear_solves"] += stats.linear_solves
                totals["krylov_iterations"] += stats.krylov_iterations
                steps.append(
                    StepRecord(
                        t=t,
                        tau=tau,
                        energy=float(energy.value(rho)),
                        energy_stderr=0.0,
                        iterations=stats.newton_iterations,
                        loss=stats.residual,
                    )
                )
                ctx.progress(min(1000, int(1000 * t / t_final)), 1000)
            snapshots.append(GridSnapshot(t=t_next, box=problem.box, rho=rho.clone()))  # type: ignore[arg-type]
        info: dict[str, float | int | str] = {
            "scheme": f"cances-gallouet-todeschi/{scheme.backend}",
            "grid": "x".join(str(n) for n in grid.shape),
            "steps": len(steps),
            "tau_base": tau_base,
            "tau_min": min((s.tau for s in steps), default=tau_base),
            **totals,
        }
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=tau_base if fixed else None, info=info)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`FVJKO` as ``fv-jko``."""
    registry.add(FVJKO)
