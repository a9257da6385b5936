"""``learn-to-evolve``: its building blocks against independent computations, one trained step
against the classical JKO step, rollout stability, the arms and the artefact."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from wgfbench_plugins.solvers.fv_jko import FVJKOScheme, floor_density
from wgfbench_plugins.solvers.learn_to_evolve import LearnToEvolve
from wgfbench_plugins.solvers.learn_to_evolve.artefact import load_operator, save_operator
from wgfbench_plugins.solvers.learn_to_evolve.cloud import Cloud, Stencil, lattice_cloud
from wgfbench_plugins.solvers.learn_to_evolve.objective import cloud_energy
from wgfbench_plugins.solvers.learn_to_evolve.operator import JKOOperator, TransportOperator, log_det
from wgfbench_plugins.solvers.learn_to_evolve.training import Schedule, train_operator

import wgfbench
from wgfbench.context import Context
from wgfbench.grid import Grid, GridEnergy
from wgfbench.problem import Box

F64 = torch.float64


def _w2_1d(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> float:
    """Exact W2 between two weighted 1-D point sets (POT)."""
    return math.sqrt(
        float(ot.emd2_1d(x.numpy().ravel(), y.numpy().ravel(), (w / w.sum()).numpy(), (v / v.sum()).numpy()))
    )


# -- building blocks ---------------------------------------------------------------------------


def test_stencil_is_exact_for_linear_fields_and_deposits_all_mass():
    grid = Grid.with_cells(Box((-2.0, -1.0), (2.0, 3.0)), (16, 12))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 300, 2, generator=gen, dtype=F64) * torch.tensor([3.5, 3.4]) + torch.tensor(
        [-1.75, -0.7]
    )
    c = grid.centres()
    field = torch.stack([2.0 * c[..., 0] - 3.0 * c[..., 1] + 1.0, 0.5 * c[..., 0]], dim=0)[None].expand(
        2, -1, -1, -1
    )
    stencil = Stencil(x, grid)
    value, grad = stencil.interpolate(field)
    assert torch.allclose(value[..., 0], 2.0 * x[..., 0] - 3.0 * x[..., 1] + 1.0, atol=1e-12)
    assert torch.allclose(
        grad[..., 0, :], torch.tensor([2.0, -3.0], dtype=F64).expand_as(grad[..., 0, :]), atol=1e-12
    )
    assert torch.allclose(
        grad[..., 1, :], torch.tensor([0.5, 0.0], dtype=F64).expand_as(grad[..., 1, :]), atol=1e-12
    )
    mass = torch.rand(2, 300, generator=gen, dtype=F64)
    rho = stencil.deposit(mass)
    assert torch.allclose(rho.sum(dim=(1, 2)) * grid.cell_volume, mass.sum(dim=1), atol=1e-12)


def test_log_det_matches_torch():
    gen = torch.Generator().manual_seed(1)
    for d in (1, 2):
        j = 0.15 * torch.randn(50, d, d, generator=gen, dtype=F64)  # det(I + j) > 0 for these
        assert torch.allclose(log_det(j), torch.logdet(torch.eye(d, dtype=F64) + j), atol=1e-12)


def test_lattice_cloud_energy_matches_the_closed_form_of_a_gaussian():
    """Entropy plus potential of N(m, s²) on a lattice cloud against the closed form."""
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 512)
    assert math.isclose(float(cloud.mass.sum()), 1.0, rel_tol=1e-12)
    energy = GridEnergy(problem.energy, Grid.with_cells(problem.box, 64))
    exact = problem.reference.energy(0.0)
    assert float(cloud_energy(cloud, energy)[0]) == pytest.approx(exact, abs=1e-4)


def test_interaction_energy_through_the_grid_matches_pair_sums():
    problem = wgfbench.get_problem("aggregation/quadratic-2d")
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 48)
    grid = Grid.with_cells(problem.box, 40)
    energy = GridEnergy(problem.energy, grid)
    x, m = cloud.x[0], cloud.mass[0]
    pairs = 0.25 * (m[:, None] * m[None, :] * ((x[:, None] - x[None, :]) ** 2).sum(-1)).sum()
    assert float(cloud_energy(cloud, energy)[0]) == pytest.approx(float(pairs), rel=0.02)


def test_transport_cost_bounds_w2_from_above():
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    grid = Grid.with_cells(problem.box, 64)
    torch.manual_seed(0)
    network = JKOOperator(1, width=8, depth=1)
    torch.nn.init.normal_(network.project.weight, std=0.5)
    operator = TransportOperator(network, GridEnergy(problem.energy, grid), problem.dt)
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 256)
    with torch.no_grad():
        moved, cost = operator(cloud)
    w2 = _w2_1d(cloud.x[0], cloud.mass[0], moved.x[0], moved.mass[0])
    assert w2**2 <= float(cost[0]) + 1e-12
    assert float(moved.mass.sum()) == pytest.approx(1.0, abs=1e-12)


# -- a trained operator ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ou_1d_operator():
    """An operator trained on six ou-1d family members (about 15 s)."""
    problem = wgfbench.get_problem("fokker-planck/ou-1d").view()
    solver = LearnToEvolve.for_tier(
        "quick", members=6, rounds=6, steps_per_round_1d=300, cells_1d=96, lattice_1d=384, cache=False
    )
    ctx = Context.create(0, "quick", budget_seconds=1e9)
    operator, description = solver.train(problem, ctx)
    return problem, solver, operator, description


def _fv_step(operator: TransportOperator, rho: torch.Tensor) -> torch.Tensor:
    scheme = FVJKOScheme(operator.grid, operator.energy, None, backend="scipy", tol=1e-10, max_newton=60)
    out = floor_density(rho, operator.grid, 1e-12)
    for _ in range(4):  # four quarter steps: fv-jko's own time error well below the operator's
        out, _ = scheme.step(out, operator.tau / 4)
    return out


def _moments(x: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    w = w / w.sum()
    mean = float((w * x).sum())
    return mean, math.sqrt(float((w * (x - mean) ** 2).sum()))


def test_one_trained_step_matches_the_classical_jko_step_on_a_held_out_density(ou_1d_operator):
    """Family members from a seed stream training never uses: the operator's step against
    ``fv-jko``'s step of the same energy and τ on the same grid. Both are Gaussian to a good
    approximation, so they are compared by their means and standard deviations (the W2 distance of
    Gaussians), which a one-cell quantisation does not blur: the operator must get most of the
    step's motion right."""
    problem, _solver, operator, _ = ou_1d_operator
    full = wgfbench.get_problem("fokker-planck/ou-1d")
    gen = torch.Generator().manual_seed(12345)
    grid = operator.grid
    x = grid.centres().reshape(-1)
    for _ in range(5):
        law, _ref = full.initial_family.draw(gen)
        cloud = lattice_cloud(law.log_density, problem.box, grid.shape[0])
        rho0 = grid.discretise(law.log_density)
        with torch.no_grad():
            moved, _ = operator(cloud)
        rho1 = _fv_step(operator, rho0)
        (m0, s0), (m1, s1) = _moments(x, rho0), _moments(x, rho1)
        mo, so = _moments(moved.x[0, :, 0], moved.mass[0])
        motion = math.hypot(m1 - m0, s1 - s0)
        error = math.hypot(mo - m1, so - s1)
        assert error < 0.15 * motion, (error, motion)


def test_rollouts_stay_stable_for_four_times_the_steps_seen(ou_1d_operator):
    problem, _solver, operator, description = ou_1d_operator
    steps = 4 * description["training"]["steps_seen"]
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 256)
    energies = [float(cloud_energy(cloud, operator.energy)[0])]
    with torch.no_grad():
        for _ in range(steps):
            cloud, _ = operator(cloud)
            energies.append(float(cloud_energy(cloud, operator.energy)[0]))
    assert torch.isfinite(cloud.x).all() and torch.isfinite(cloud.log_rho).all()
    assert float(cloud.mass.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(cloud.mass.min()) >= 0.0
    assert float(cloud.x.abs().max()) < 2 * max(abs(b) for b in problem.box.low + problem.box.high)
    # The free energy decays to the stationary one and never blows up.
    stationary = wgfbench.get_problem("fokker-planck/ou-1d").reference.energy(50.0)
    assert energies[-1] == pytest.approx(stationary, abs=0.15)  # the quadrature of log ρ drifts a little
    assert max(energies) <= energies[0] + 1e-6


@pytest.mark.parametrize("name", ["porous-medium/barenblatt-2d-m2", "aggregation/quadratic-2d"])
def test_2d_rollouts_of_a_smoke_operator_stay_finite_with_their_mass(name):
    """Even the barely trained smoke-tier operator rolls out four times its training horizon in 2-D
    without blowing up: finite particles, unit mass, finite log-densities."""
    problem = wgfbench.get_problem(name).view()
    solver = LearnToEvolve.for_tier("smoke", cache=False)
    operator, description = solver.train(problem, Context.create(0, "smoke", budget_seconds=1e9))
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 32)
    with torch.no_grad():
        for _ in range(4 * description["training"]["steps_seen"]):
            cloud, _ = operator(cloud)
    assert torch.isfinite(cloud.x).all() and torch.isfinite(cloud.log_rho).all()
    assert float(cloud.mass.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(cloud.log_rho[cloud.mass > 0].max()) < 10.0


def test_learn_to_evolve_beats_training_on_initial_densities_only():
    """The paper's claim, in miniature, on the porous medium: at equal Adam steps, the ablation
    that never sees generated states is worse on the problem's own (held-out) initial density
    than Learn-to-Evolve (radial W2 of the final snapshot against the exact Barenblatt profile).
    ``benchmarks/learn_to_evolve.py`` measures the full-size arms on held-out members of three
    families."""
    full = wgfbench.get_problem("porous-medium/barenblatt-1d-m2")
    problem = full.view()
    errors = {}
    for arm in ("learn-to-evolve", "initial-only"):
        solver = LearnToEvolve.for_tier(
            "quick",
            arm=arm,
            members=6,
            rounds=6,
            steps_per_round_1d=150,
            cells_1d=64,
            lattice_1d=256,
            cache=False,
        )
        operator, _ = solver.train(problem, Context.create(0, "quick", budget_seconds=1e9))
        solver._operator, solver._info = operator, {}
        trajectory = solver.solve(problem, Context.create(0, "quick", budget_seconds=1e9))
        final = trajectory.snapshots[-1]
        exact = full.reference.sample(full.final_time, 20_000, torch.Generator().manual_seed(0))
        index = torch.multinomial(
            final.weights, 20_000, replacement=True, generator=torch.Generator().manual_seed(1)
        )
        errors[arm] = _w2_1d(final.x[index, 0], torch.ones(20_000), exact[:, 0], torch.ones(20_000))
    assert errors["learn-to-evolve"] < errors["initial-only"], errors


def test_supervised_arm_trains_on_fv_jko_trajectories():
    problem = wgfbench.get_problem("fokker-planck/ou-1d").view()
    grid = Grid.with_cells(problem.box, 48)
    operator = TransportOperator(
        JKOOperator(1, width=8, depth=1), GridEnergy(problem.energy, grid), problem.dt
    )
    gen = torch.Generator().manual_seed(0)
    members = Cloud.cat(
        [lattice_cloud(problem.initial_family.draw(gen).log_density, problem.box, 48) for _ in range(2)]
    )
    log = train_operator(operator, members, Schedule(2, 5, 2, 4, 1e-3), "supervised", gen)
    assert log.classical_seconds > 0 and log.rounds[-1]["pool"] == 2 * 3
    with pytest.raises(ValueError, match="unknown arm"):
        train_operator(operator, members, Schedule(1, 1, 1, 1, 1e-3), "nope", gen)


# -- the artefact and the solver ---------------------------------------------------------------


def test_artefact_round_trip_gives_the_same_operator(ou_1d_operator, tmp_path):
    problem, _solver, operator, description = ou_1d_operator
    save_operator(tmp_path / "op", operator.network, description)
    assert not list(tmp_path.glob("op/*.pkl"))
    network, loaded = load_operator(tmp_path / "op", description["key"])
    again = TransportOperator(network, operator.energy, operator.tau)
    cloud = lattice_cloud(problem.initial.log_density, problem.box, 64)
    with torch.no_grad():
        assert torch.equal(operator(cloud)[0].x, again(cloud)[0].x)
    assert loaded["training"] == description["training"]
    with pytest.raises(ValueError, match="trained for another"):
        load_operator(tmp_path / "op", "0" * 24)


def test_operator_is_reused_across_seeds_and_loaded_from_a_copied_directory(tmp_path):
    problem = wgfbench.get_problem("porous-medium/barenblatt-1d-m2").view()
    solver = LearnToEvolve.for_tier("smoke")
    first = Context.create(1, "smoke", artifacts=tmp_path / "a", budget_seconds=1e9)
    solver.prepare(problem, first)
    trajectory = solver.solve(problem, first)
    assert trajectory.info["operator_source"] == "trained"
    assert (tmp_path / "a" / "operator" / "operator.safetensors").exists()
    again = LearnToEvolve.for_tier("smoke")
    second = Context.create(2, "smoke", artifacts=tmp_path / "b", budget_seconds=1e9)
    again.prepare(problem, second)
    assert again.solve(problem, second).info["operator_source"] == "cache"
    copied = LearnToEvolve.for_tier("smoke", operator_dir=str(tmp_path / "a" / "operator"), cache=False)
    ctx = Context.create(3, "smoke", artifacts=tmp_path / "c", budget_seconds=1e9)
    copied.prepare(problem, ctx)
    out = copied.solve(problem, ctx)
    assert out.info["operator_source"] == "operator_dir"
    assert torch.equal(out.snapshots[-1].x, trajectory.snapshots[-1].x)
    other = LearnToEvolve.for_tier("smoke", operator_dir=str(tmp_path / "a" / "operator"), cache=False)
    with pytest.raises(ValueError, match="trained for another"):
        other.prepare(wgfbench.get_problem("porous-medium/barenblatt-1d-m3").view(), ctx)


def test_solver_output_is_a_valid_trajectory_with_mass_and_positive_densities():
    problem = wgfbench.get_problem("aggregation/quantile-1d")
    solver = LearnToEvolve.for_tier("smoke")
    ctx = Context.create(0, "smoke", budget_seconds=1e9)
    solver.prepare(problem.view(), ctx)
    trajectory = solver.solve(problem.view(), ctx)
    trajectory.validate(problem.times, problem.dim)
    assert trajectory.jko_tau == problem.dt
    assert len(trajectory.steps) == round(problem.final_time / problem.dt)
    for snap in trajectory.snapshots:
        assert float(snap.weights.sum()) == pytest.approx(1.0, abs=1e-12)
        assert torch.isfinite(snap.log_rho).all()


def test_supports_says_why_not():
    solver = LearnToEvolve.for_tier("smoke")
    assert solver.supports(wgfbench.get_problem("fokker-planck/ou-2d")) is True
    assert "10-D" in solver.supports(wgfbench.get_problem("fokker-planck/ou-10d"))
    assert "initial family" in solver.supports(wgfbench.get_problem("fokker-planck/four-wells-2d"))
    assert "mobility" in solver.supports(wgfbench.get_problem("kalman-wasserstein/linear-2d"))
    assert "whole number" in LearnToEvolve.for_tier("smoke", tau_factor=0.7).supports(
        wgfbench.get_problem("fokker-planck/ou-2d")
    )


def test_training_ignores_the_case_seed():
    problem = wgfbench.get_problem("fokker-planck/ou-1d").view()
    solver = LearnToEvolve.for_tier("smoke", cache=False)
    a, _ = solver.train(problem, Context.create(1, "smoke", budget_seconds=1e9))
    b, _ = solver.train(problem, Context.create(2, "smoke", budget_seconds=1e9))
    for p, q in zip(a.network.parameters(), b.network.parameters(), strict=True):
        assert torch.equal(p, q)
    assert np.isfinite(float(next(a.network.parameters()).sum()))
