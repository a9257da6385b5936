"""Tests of the ``reference`` solver (the calibration row): fresh exact draws of the reference,
with log-densities, whose W2 to an independent reference draw sits at the same-law floor."""

from __future__ import annotations

import dataclasses

import ot
import pytest
import torch
from wgfbench_plugins.solvers.reference import ReferenceSampler

import wgfbench
from wgfbench.context import TIERS, Context
from wgfbench.references import Distribution, Gaussian, Stationary
from wgfbench.testing import check_solver, moment_z_scores_exact, ornstein_uhlenbeck_problem

F64 = torch.float64


def ou_2d():
    return ornstein_uhlenbeck_problem(
        [1.0, 3.0], [0.5, -0.5], [2.0, 1.0], [[0.3, 0.1], [0.1, 0.2]], times=(0.0, 0.25, 0.5, 1.0), dt=0.05
    )


def w2_squared(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact W2² between two uniform empirical measures (POT emd2 on squared Euclidean costs)."""
    x, y = x.double().numpy(), y.double().numpy()
    a, b = ot.unif(x.shape[0]), ot.unif(y.shape[0])
    cost, log = ot.emd2(a, b, ot.dist(x, y), numItermax=10_000_000, log=True)
    assert log["warning"] is None, log["warning"]
    return float(cost)


def test_registered_with_n_output_per_tier():
    for name, tier in TIERS.items():
        solver = wgfbench.get_solver("reference", name)
        assert isinstance(solver, ReferenceSampler)
        assert solver.config.n_particles == tier.n_output  # as many samples as the scorer uses
    assert ReferenceSampler().supports(ou_2d()) is True


def test_snapshots_are_exact_draws_with_log_density():
    """Every snapshot: moments agree with the closed form (|z| < 5), log_rho is the reference's
    log-density at the returned points, and the draw is new (not the scorer's seed)."""
    problem = ou_2d()
    trajectory = ReferenceSampler({"n_particles": 4000}).solve(problem, Context.create(seed=0, tier="quick"))
    trajectory.validate(problem.times, problem.dim)
    assert trajectory.steps == [] and trajectory.info["reference_kind"] == "exact"
    for snap in trajectory.snapshots:
        assert snap.x.shape == (4000, 2)
        z_mean, z_cov = moment_z_scores_exact(
            snap.x, problem.reference.mean(snap.t), problem.reference.cov(snap.t)
        )
        assert z_mean < 5 and z_cov < 5, (snap.t, z_mean, z_cov)
        assert torch.allclose(snap.log_rho, problem.reference.log_density(snap.t, snap.x), atol=1e-12)
    first, last = trajectory.snapshots[0].x, trajectory.snapshots[-1].x
    assert not torch.equal(first, last)


def test_w2_to_an_independent_reference_draw_is_at_the_floor():
    """W2 (not squared) between the solver's snapshot and an independent reference draw, over the
    same-law floor W2 between two further independent draws: within a factor 2 at every
    snapshot (n = 500, exact emd)."""
    problem = ou_2d()
    trajectory = ReferenceSampler.for_tier("smoke").solve(problem, Context.create(seed=11, tier="smoke"))
    for k, snap in enumerate(trajectory.snapshots):
        g = torch.Generator().manual_seed(1000 + k)
        ref_a = problem.reference.sample(snap.t, 500, g)
        ref_b = problem.reference.sample(snap.t, 500, g)
        ratio = (w2_squared(snap.x, ref_a) / w2_squared(ref_a, ref_b)) ** 0.5
        assert 0.5 < ratio < 2.0, (snap.t, ratio)


def test_stationary_reference_starts_from_the_initial_law():
    """For a stationary reference: t = 0 from problem.initial, later snapshots from ρ∞."""
    ou = ou_2d()
    rho_inf = Gaussian(
        torch.tensor([0.5, -0.5], dtype=F64), torch.diag(torch.tensor([1.0, 1 / 3], dtype=F64))
    )
    problem = dataclasses.replace(ou, references={"pde": Stationary(rho_inf)})
    trajectory = ReferenceSampler({"n_particles": 4000}).solve(problem, Context.create(seed=2))
    assert trajectory.info["reference_kind"] == "stationary"
    start = trajectory.snapshots[0]
    z = moment_z_scores_exact(start.x, problem.initial.mean(), problem.initial.cov())
    assert max(z) < 5
    assert torch.allclose(start.log_rho, problem.initial.log_density(start.x))
    for snap in trajectory.snapshots[1:]:
        assert max(moment_z_scores_exact(snap.x, rho_inf.mean(), rho_inf.cov())) < 5
        assert torch.allclose(snap.log_rho, rho_inf.log_density(snap.x))


class Uniform01(Distribution):
    """U[0, 1]^d with no declared density (samples only)."""

    def __init__(self, dim: int):
        self.dim = dim

    def sample(self, n, generator):
        return torch.rand(n, self.dim, generator=generator, dtype=F64)


def test_no_log_rho_without_a_density_or_when_disabled():
    ou = ou_2d()
    problem = dataclasses.replace(ou, references={"pde": Stationary(Uniform01(2))})
    trajectory = ReferenceSampler({"n_particles": 100}).solve(problem, Context.create(seed=0))
    assert trajectory.snapshots[0].log_rho is not None  # ρ0 is the Gaussian initial law
    assert all(s.log_rho is None for s in trajectory.snapshots[1:])
    plain = ReferenceSampler({"n_particles": 100, "with_log_rho": False}).solve(ou, Context.create(seed=0))
    assert all(s.log_rho is None for s in plain.snapshots)


def test_uses_the_context_device_dtype_and_tier():
    problem = ou_2d()
    ctx = Context.create(seed=0, tier="smoke", dtype=torch.float32)
    trajectory = ReferenceSampler().solve(problem, ctx)
    assert all(
        s.x.dtype == torch.float32 and s.x.shape[0] == TIERS["smoke"].n_output for s in trajectory.snapshots
    )
    same = ReferenceSampler().solve(problem, Context.create(seed=0, tier="smoke", dtype=torch.float32))
    assert all(torch.equal(a.x, b.x) for a, b in zip(trajectory.snapshots, same.snapshots, strict=True))


def test_conformance_on_toy_and_registered_problems():
    check_solver(ReferenceSampler.for_tier("smoke"), ou_2d())
    host = wgfbench.default_host()
    if not len(host.problems):
        pytest.skip("no problem plugins installed")
    for name in host.problems:
        report = check_solver(ReferenceSampler.for_tier("smoke"), wgfbench.get_problem(name))
        assert report.n_snapshots == len(wgfbench.get_problem(name).times)


def test_w2_at_the_floor_on_registered_low_dimensional_problems():
    """The calibration property on the built-in problems of dimension ≤ 2: at the final snapshot
    (the one scored for stationary references) W2 to an independent draw is within 2× the floor."""
    host = wgfbench.default_host()
    problems = [wgfbench.get_problem(n) for n in host.problems]
    problems = [p for p in problems if p.dim <= 2]
    if not problems:
        pytest.skip("no low-dimensional problem plugins installed")
    for problem in problems:
        snap = ReferenceSampler({"n_particles": 500}).solve(problem, Context.create(seed=4)).snapshots[-1]
        g = torch.Generator().manual_seed(77)
        ref_a = problem.reference.sample(snap.t, 500, g)
        # the floor averages four independent pairs, as the scorer's does: for a 1-D uniform law one
        # pair alone puts the ratio of two exact-vs-exact W2s outside [0.5, 2] about 21 % of the time
        floor = sum(w2_squared(problem.reference.sample(snap.t, 500, g), ref_a) for _ in range(4)) / 4
        ratio = (w2_squared(snap.x, ref_a) / floor) ** 0.5
        assert 0.5 < ratio < 2.0, (problem.name, ratio)
