"""Tests of the ``fv-jko`` solver (Cancès–Gallouët–Todeschi upwind finite-volume JKO): residuals
against a loop implementation, the Schur-complement Newton direction against a dense Jacobian,
mass / positivity / energy decay, torch vs scipy backends, adaptive steps, the plugin contract and
long-time energies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from fv_jko_errors import exact_cell_averages, l1_error, observed_order, w2_1d_grid
from wgfbench_plugins.solvers.fv_jko import FVJKO, FVJKOScheme, initial_density

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Energy, Entropy, PowerInternal
from wgfbench.grid import Grid, GridEnergy
from wgfbench.problem import Box, Problem
from wgfbench.trajectory import GridSnapshot

F64 = torch.float64


def scheme_for(name: str, n: int, backend: str = "scipy", **kw) -> tuple[Problem, FVJKOScheme, torch.Tensor]:
    problem = wgfbench.get_problem(name)
    solver = FVJKO({"cells_1d": n, "cells_2d": n, "cells_3d": n, "backend": backend, **kw})
    scheme = solver.scheme(problem)
    return problem, scheme, initial_density(problem, scheme.grid, 1e-10)


def loop_residuals(grid: Grid, ge: GridEnergy, rho, phi, rho_old, tau, M=None):
    """R_φ, R_ρ by explicit loops over cells and neighbours (the formulas of the module docstring,
    with M_σ = ρ_up g(ρ_down), g = M/ρ, derivative by central differences)."""
    shape, m = grid.shape, grid.cell_volume
    rho, phi, rho_old = (np.asarray(v, dtype=float).reshape(shape) for v in (rho, phi, rho_old))
    g = (lambda r: 1.0) if M is None else (lambda r: float(M(torch.tensor(r, dtype=F64))) / r)
    dg = lambda r: (g(r + 1e-6) - g(r - 1e-6)) / 2e-6  # noqa: E731
    variation = ge.first_variation(torch.tensor(rho)).numpy()
    R_phi, R_rho = np.zeros(shape), np.zeros(shape)
    for K in np.ndindex(*shape):
        R_phi[K] = m * (rho[K] - rho_old[K]) / tau
        kinetic = 0.0
        for axis in range(grid.dim):
            for step in (-1, 1):
                L = list(K)
                L[axis] += step
                if not 0 <= L[axis] < shape[axis]:
                    continue
                L = tuple(L)
                a = m / grid.h[axis] ** 2
                if phi[K] >= phi[L]:  # K up, L down
                    M_s, dM_K = rho[K] * g(rho[L]), g(rho[L])
                else:
                    M_s, dM_K = rho[L] * g(rho[K]), rho[L] * dg(rho[K])
                R_phi[K] += a * M_s * (phi[K] - phi[L])
                kinetic += a * dM_K * (phi[K] - phi[L]) ** 2
        R_rho[K] = phi[K] + tau / (2 * m) * kinetic - variation[K]
    return R_phi.reshape(-1), R_rho.reshape(-1)


def _random_state(shape, seed, upper=None):
    gen = torch.Generator().manual_seed(seed)
    rho = 0.2 + torch.rand(shape, generator=gen, dtype=F64)
    if upper is not None:
        rho = rho * upper / 1.5
    return (
        rho,
        torch.randn(shape, generator=gen, dtype=F64),
        rho + 0.1 * torch.rand(shape, generator=gen, dtype=F64),
    )


@pytest.mark.parametrize(
    "name,M",
    [
        ("fokker-planck/ou-2d", None),
        ("aggregation/newtonian-2d", None),
        ("porous-medium/barenblatt-2d-m2", "sat"),
    ],
)
def test_residuals_match_loop_implementation(name, M):
    problem = wgfbench.get_problem(name)
    grid = Grid(problem.box, (4, 5))
    ge = GridEnergy(problem.energy, grid)
    mob = (lambda r: r * (1 - r)) if M == "sat" else None
    scheme = FVJKOScheme(grid, ge, mob)
    rho, phi, rho_old = _random_state(grid.shape, 3, upper=1.0 if M else None)
    r_phi, r_rho, _ = scheme.residuals(rho.reshape(-1), phi.reshape(-1), rho_old.reshape(-1), 0.07)
    e_phi, e_rho = loop_residuals(grid, ge, rho, phi, rho_old, 0.07, mob)
    np.testing.assert_allclose(r_phi.numpy(), e_phi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r_rho.numpy(), e_rho, rtol=1e-8, atol=1e-8)
    # The flux divergence sums to zero: Σ R_φ = m Σ(ρ − ρⁿ)/τ.
    assert float(r_phi.sum()) == pytest.approx(
        grid.cell_volume * float((rho - rho_old).sum()) / 0.07, rel=1e-12
    )


@pytest.mark.parametrize("backend", ["scipy", "torch"])
@pytest.mark.parametrize(
    "name", ["fokker-planck/ou-2d", "porous-medium/barenblatt-2d-m3", "aggregation/quadratic-2d"]
)
def test_newton_direction_solves_the_dense_jacobian_system(name, backend):
    """The Schur complement (or triangular) solve equals the Newton step of the full 2N×2N Jacobian
    (by central differences of the residuals; local energies, where the Jacobian is exact)."""
    problem = wgfbench.get_problem(name)
    grid = Grid(problem.box, (5, 4))
    ge = GridEnergy(problem.energy, grid)
    if ge.has_interaction:  # the interaction block is lagged: compare on its local part only
        ge = GridEnergy(Energy([t for t in problem.energy.terms if not hasattr(t, "kernel")]), grid)
    scheme = FVJKOScheme(grid, ge, backend=backend)
    rho, phi, rho_old = (v.reshape(-1) for v in _random_state(grid.shape, 5))
    tau, n = 0.05, grid.n_cells

    def F(z):
        rp, rr, _ = scheme.residuals(z[:n], z[n:], rho_old, tau)
        return torch.cat([rp, rr])

    z = torch.cat([rho, phi])
    J = torch.stack([(F(z + 1e-6 * e) - F(z - 1e-6 * e)) / 2e-6 for e in torch.eye(2 * n, dtype=F64)], dim=1)
    rp, rr, state = scheme.residuals(rho, phi, rho_old, tau)
    H = scheme._hessian_diag(rho, state, tau)
    solve = scheme._solve_scipy if backend == "scipy" else scheme._solve_torch
    drho, dphi = solve(state, H, rp, rr, tau)[:2]
    expected = torch.linalg.solve(J, -torch.cat([rp, rr]))
    np.testing.assert_allclose(torch.cat([drho, dphi]).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name,n,steps",
    [
        ("porous-medium/barenblatt-2d-m2", 32, 6),
        ("fokker-planck/ou-2d", 32, 6),
        ("aggregation/newtonian-2d", 24, 6),
    ],
)
def test_mass_positivity_and_energy_decay(name, n, steps):
    problem, scheme, rho = scheme_for(name, n)
    energies = [float(scheme.energy.value(rho))]
    for _ in range(steps):
        rho, stats = scheme.step(rho, problem.dt)
        assert stats.newton_iterations >= 1 and stats.residual <= 1e-10
        assert float(scheme.grid.mass(rho)) == pytest.approx(1.0, abs=1e-12)
        assert bool((rho > 0).all())
        energies.append(float(scheme.energy.value(rho)))
    dE = np.diff(energies)
    print(name, "energy decrements", dE)
    assert (dE < 0).all(), energies


@pytest.mark.parametrize(
    "name", ["porous-medium/barenblatt-2d-m2", "fokker-planck/ou-2d", "aggregation/newtonian-2d"]
)
def test_torch_backend_agrees_with_scipy(name):
    _, cpu, rho0 = scheme_for(name, 16)
    problem, gpu_path, _ = scheme_for(name, 16, backend="torch")
    a, b = rho0, rho0
    for _ in range(2):
        a, _sa = cpu.step(a, problem.dt)
        b, sb = gpu_path.step(b, problem.dt)
        assert sb.krylov_iterations > 0
    assert float((a - b).abs().max() / a.abs().max()) < 1e-8
    assert float(gpu_path.grid.mass(b)) == pytest.approx(1.0, abs=1e-10)


def test_three_dimensional_step():
    _problem, scheme, rho = scheme_for("porous-medium/barenblatt-2d-m2", 8)
    box3 = Box.cube(2.0, 3)
    grid = Grid.with_cells(box3, 10)
    ge = GridEnergy(Energy([PowerInternal(2.0)]), grid)
    scheme = FVJKOScheme(grid, ge)
    x = grid.centres()
    rho = torch.exp(-4 * (x**2).sum(-1)) + 1e-3
    rho = rho / grid.mass(rho)
    e0 = float(ge.value(rho))
    rho1, _stats = scheme.step(rho, 0.02)
    assert float(grid.mass(rho1)) == pytest.approx(1.0, abs=1e-12)
    assert float(ge.value(rho1)) < e0 and bool((rho1 > 0).all())
    # Symmetric initial data stays symmetric under the axis permutations.
    assert torch.allclose(rho1, rho1.permute(1, 2, 0), atol=1e-12)


def truncated(problem: Problem, times: tuple[float, ...]) -> Problem:
    """The same problem with fewer snapshot times (shorter tests)."""
    return Problem(**{**{f: getattr(problem, f) for f in problem.__dataclass_fields__}, "times": times})


def test_adaptive_tau_lands_on_snapshot_times():
    problem = truncated(wgfbench.get_problem("fokker-planck/ou-2d"), (0.0, 0.1, 0.25, 0.33))
    solver = FVJKO({"cells_2d": 24, "max_newton": 5})  # the first steps need more: forces rejections
    traj = solver.solve(problem, Context.create(seed=0, budget_seconds=300))
    traj.validate(problem.times, problem.dim)
    assert traj.times == problem.times
    assert traj.info["rejected_steps"] > 0 and traj.jko_tau is None
    taus = [s.tau for s in traj.steps]
    # Halved on rejection, grown back to the base step: the last interval (0.08) takes two equal steps.
    assert min(taus) < problem.dt and max(taus) <= problem.dt * (1 + 1e-12)
    assert taus[-1] == pytest.approx(0.04) and taus[-2] == pytest.approx(0.04)
    assert sum(taus) == pytest.approx(problem.final_time, rel=1e-12)
    assert traj.info["newton_iterations"] == sum(s.iterations for s in traj.steps)


def test_solver_contract_and_fixed_tau():
    problem = truncated(wgfbench.get_problem("porous-medium/barenblatt-2d-m2"), (0.0, 0.1, 0.3))
    solver = FVJKO.for_tier("smoke")
    traj = solver.solve(problem, Context.create(seed=0, budget_seconds=300))
    traj.validate(problem.times, problem.dim)
    assert all(isinstance(s, GridSnapshot) and s.rho.shape == (32, 32) for s in traj.snapshots)
    tau = solver.base_tau(problem)
    assert traj.jko_tau == pytest.approx(tau) and len(traj.steps) == round(problem.final_time / tau)
    assert all(s.energy_stderr == 0.0 and s.iterations >= 1 for s in traj.steps)
    energies = [s.energy for s in traj.steps]
    assert all(b <= a for a, b in itertools.pairwise(energies))
    assert traj.info["linear_solves"] >= traj.info["newton_iterations"] > 0
    assert wgfbench.get_solver("fv-jko", "quick").config.cells_2d == 96


def test_supports_reasons():
    solver = FVJKO()
    assert solver.supports(wgfbench.get_problem("porous-medium/barenblatt-2d-m2")) is True
    assert "Kalman" in solver.supports(wgfbench.get_problem("kalman-wasserstein/linear-2d"))
    assert "1-3 D" in solver.supports(wgfbench.get_problem("porous-medium/barenblatt-6d-m2"))
    ou = wgfbench.get_problem("fokker-planck/ou-2d")
    no_box = Problem(**{**{f: getattr(ou, f) for f in ou.__dataclass_fields__}, "box": None})
    assert "box" in solver.supports(no_box)


def test_nonlinear_mobility_keeps_density_below_one():
    """ρ(1−ρ) mobility, entropy + confining potential: stays in (0, 1), mass and energy as required."""
    box = Box.cube(1.0, 2)
    grid = Grid.with_cells(box, 20)
    from wgfbench.energy import Potential

    energy = Energy([Entropy(), Potential(lambda x: 8.0 * (x**2).sum(-1))])
    ge = GridEnergy(energy, grid)
    scheme = FVJKOScheme(grid, ge, lambda r: r * (1 - r))
    rho = torch.full(grid.shape, 0.25, dtype=F64)  # mass 1 on [-1,1]²
    e = [float(ge.value(rho))]
    for _ in range(15):
        rho, _ = scheme.step(rho, 0.05)
        assert 0 < float(rho.min()) and float(rho.max()) < 1
        assert float(grid.mass(rho)) == pytest.approx(1.0, abs=1e-12)
        e.append(float(ge.value(rho)))
    assert (np.diff(e) < 0).all()
    assert float(rho.max()) > 0.9  # saturates at the well's centre


def test_barenblatt_1d_converges_at_first_order():
    """porous-medium/barenblatt-1d-m2, τ ∝ h: L1 and W2 errors at t = 0.25, order ≥ 0.8."""
    problem = wgfbench.get_problem("porous-medium/barenblatt-1d-m2")
    t_end, hs, l1s, w2s = 0.25, [], [], []
    for n in (128, 256, 512):
        grid = Grid.with_cells(problem.box, n)
        scheme = FVJKOScheme(grid, GridEnergy(problem.energy, grid))
        rho = initial_density(problem, grid, 1e-10)
        k = round(t_end / (0.25 * grid.h[0]))  # τ ≈ h/4, landing exactly on t_end
        tau = t_end / k
        for _ in range(k):
            rho, _ = scheme.step(rho, tau)
        exact = exact_cell_averages(problem.reference, t_end, grid)
        exact = exact / grid.mass(exact)
        hs.append(grid.h[0])
        l1s.append(l1_error(rho, exact, grid))
        w2s.append(w2_1d_grid(rho, exact, grid))
    print("\n n    h       L1        W2")
    for n, h, a, b in zip((128, 256, 512), hs, l1s, w2s, strict=True):
        print(f"{n:4d} {h:.4f} {a:.3e} {b:.3e}")
    print("orders: L1", observed_order(hs, l1s), "W2", observed_order(hs, w2s))
    assert observed_order(hs, l1s) >= 0.8 and observed_order(hs, w2s) >= 0.8


def _registered(name: str) -> Problem | None:
    try:
        return wgfbench.get_problem(name)
    except Exception:
        return None


def test_box_1d_matches_exact_solution():
    problem = _registered("fokker-planck/box-1d")
    if problem is None:
        pytest.skip("fokker-planck/box-1d is not registered yet (problems helper)")
    t_end = problem.times[min(2, len(problem.times) - 1)]
    errors, hs = [], []
    for n in (64, 128, 256):
        solver = FVJKO({"cells_1d": n, "tau": problem.dt * 64 / n})
        traj = solver.solve(truncated(problem, (0.0, t_end)), Context.create(seed=0, budget_seconds=300))
        grid = solver.grid(problem)
        exact = exact_cell_averages(problem.reference, t_end, grid)
        errors.append(l1_error(traj.snapshots[-1].rho, exact / grid.mass(exact), grid))
        hs.append(grid.h[0])
    print("box-1d L1", errors, "order", observed_order(hs, errors))
    assert observed_order(hs, errors) >= 0.8


def _long_run_energy(problem: Problem, n: int) -> tuple[list[float], FVJKO]:
    solver = FVJKO({"cells_2d": n})
    traj = solver.solve(problem, Context.create(seed=0, budget_seconds=600))
    return [s.energy for s in traj.steps], solver


def test_saturation_2d_bounds_and_energy():
    problem = _registered("nonlinear-mobility/saturation-2d")
    if problem is None:
        pytest.skip("nonlinear-mobility/saturation-2d is not registered yet (problems helper)")
    solver = FVJKO({"cells_2d": 24})
    traj = solver.solve(problem, Context.create(seed=0, budget_seconds=600))
    print("saturation-2d: Newton iterations", traj.info["newton_iterations"], "steps", traj.info["steps"])
    for snap in traj.snapshots:
        assert float(snap.rho.min()) >= 0 and float(snap.rho.max()) <= 1 + 1e-12
    energies = [s.energy for s in traj.steps]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(energies))
    # E∞ of the stationary role (the "pde" role is the stored numerical run, with no closed-form energy)
    e_inf = float(problem.references["stationary"].energy(math.inf))
    gap0, gap1 = energies[0] - e_inf, energies[-1] - e_inf
    print("saturation-2d E gaps", gap0, gap1)
    assert gap1 < 0.2 * gap0


@pytest.mark.slow
def test_newtonian_2d_energy_approaches_uniform_ball():
    problem = wgfbench.get_problem("aggregation/newtonian-2d")
    energies, solver = _long_run_energy(problem, 48)
    grid = solver.grid(problem)
    ge = GridEnergy(problem.energy, grid)
    ball = ((grid.centres() ** 2).sum(-1) <= 1.0).to(F64)
    e_inf = float(ge.value(ball / grid.mass(ball)))
    print("newtonian-2d E(t_end) - E_inf:", energies[-1] - e_inf, "E0 - E_inf:", energies[0] - e_inf)
    assert all(b <= a for a, b in itertools.pairwise(energies))
    assert abs(energies[-1] - e_inf) < 0.02 * abs(energies[0] - e_inf) + 5e-3


@pytest.mark.slow
def test_ring_2d_energy_approaches_minus_one_twelfth():
    problem = _registered("aggregation/ring-2d")
    if problem is None:
        pytest.skip("aggregation/ring-2d is not registered yet (problems helper)")
    energies, _ = _long_run_energy(problem, 64)
    print("ring-2d energies", energies[0], energies[-1], "E_inf = -1/12")
    assert all(b <= a for a, b in itertools.pairwise(energies))
    assert abs(energies[-1] + 1 / 12) < 0.1 * abs(energies[0] + 1 / 12) + 5e-3
