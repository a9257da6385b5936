"""Tests of the conformance kit: check_problem and check_solver pass on correct plugins and
catch real faults (wrong shapes, NaN, global-RNG draws, wrong laws, wrong closed forms, budget
overruns) with messages that name the plugin and the failure."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import numpy as np
import pytest
import torch
from gaussian_moments import fokker_planck_rhs, moment_ode
from pydantic import PositiveInt

import wgfbench
from wgfbench.context import make_generator
from wgfbench.problem import Box, Problem
from wgfbench.references import DistributionPath, Gaussian, Reference, Stationary
from wgfbench.solver import Solver, SolverConfig
from wgfbench.testing import (
    ProblemReport,
    SolverReport,
    check_problem,
    check_solver,
    marginal_ks_pvalue,
    moment_z_scores,
    moment_z_scores_exact,
    ornstein_uhlenbeck_problem,
)
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, StepRecord, Trajectory

F64 = torch.float64


def ou_2d(**changes) -> Problem:
    problem = ornstein_uhlenbeck_problem(
        [1.0, 3.0], [0.5, -0.5], [2.0, 1.0], [[0.3, 0.1], [0.1, 0.2]], times=(0.0, 0.25, 0.5, 1.0), dt=0.05
    )
    return dataclasses.replace(problem, **changes) if changes else problem


# ----------------------------------------------------------------------------------------------
# Statistics


def test_moment_statistics_separate_same_and_shifted_laws():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2000, 3, generator=g, dtype=F64), torch.randn(2000, 3, generator=g, dtype=F64)
    z_mean, z_cov = moment_z_scores(x, y)
    assert z_mean < 4 and z_cov < 4
    assert marginal_ks_pvalue(x, y) > 1e-3
    shifted = y + torch.tensor([0.0, 0.3, 0.0], dtype=F64)
    assert moment_z_scores(x, shifted)[0] > 6
    assert marginal_ks_pvalue(x, shifted) < 1e-6
    scaled = y * torch.tensor([1.0, 1.0, 1.3], dtype=F64)
    assert moment_z_scores(x, scaled)[1] > 6
    eye = torch.eye(3, dtype=F64)
    assert max(moment_z_scores_exact(x, torch.zeros(3, dtype=F64), eye)) < 5
    assert moment_z_scores_exact(x, torch.zeros(3, dtype=F64), 1.3 * eye)[1] > 6


# ----------------------------------------------------------------------------------------------
# check_problem


def test_check_problem_passes_on_a_correct_problem():
    report = check_problem(ou_2d())
    assert isinstance(report, ProblemReport)
    assert report.problem == "testing/ou-2d"
    assert {"identity", "initial", "reference", "initial_matches_reference", "primary_metric"} <= set(
        report.checks
    )
    assert report.stats["reference.max_mean_z"] < 6


def test_check_problem_passes_on_every_registered_problem():
    host = wgfbench.default_host()
    if not len(host.problems):
        pytest.skip("no problem plugins installed")
    for name in host.problems:
        report = check_problem(wgfbench.get_problem(name), n=500)
        assert "reference" in report.checks


class Tampered(Reference):
    """An exact reference that delegates to ``base`` and lets a test break one method."""

    kind = "exact"

    def __init__(self, base: Reference, **overrides):
        self.base, self.dim, self.overrides = base, base.dim, overrides

    def sample(self, t, n, generator):
        if "sample" in self.overrides:
            return self.overrides["sample"](t, n, generator)
        return self.base.sample(t, n, generator)

    def log_density(self, t, x):
        if "log_density" in self.overrides:
            return self.overrides["log_density"](t, x)
        return self.base.log_density(t, x)

    def mean(self, t):
        return self.overrides["mean"](t) if "mean" in self.overrides else self.base.mean(t)

    def cov(self, t):
        return self.overrides["cov"](t) if "cov" in self.overrides else self.base.cov(t)

    def energy(self, t):
        return self.overrides["energy"](t) if "energy" in self.overrides else self.base.energy(t)


def broken(**overrides) -> Problem:
    problem = ou_2d()
    return dataclasses.replace(problem, references={"pde": Tampered(problem.reference, **overrides)})


BASE = ou_2d().reference


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        (broken(sample=lambda t, n, g: BASE.sample(t, n, g).float()), "dtype torch.float32"),
        (broken(sample=lambda t, n, g: BASE.sample(t, n, g)[:, :1]), r"shape \(1000, 1\)"),
        (broken(sample=lambda t, n, g: BASE.sample(t, n + 1, g)), r"shape \(1001, 2\)"),
        (
            broken(sample=lambda t, n, g: BASE.sample(t, n, g).index_fill(0, torch.tensor([3]), math.nan)),
            "non-finite",
        ),
        (broken(sample=lambda t, n, g: BASE.sample(t, n, torch.default_generator)), "not reproducible"),
        (
            broken(sample=lambda t, n, g: BASE.sample(t, n, make_generator(1))),
            "different seeds are identical",
        ),
        (
            broken(log_density=lambda t, x: BASE.log_density(t, x) / (x[:, 0] > 0.9)),
            "log_density is non-finite",
        ),
        (broken(mean=lambda t: BASE.mean(t) + 0.3), r"sample mean disagrees with mean\(\)"),
        (broken(cov=lambda t: 1.5 * BASE.cov(t)), r"sample covariance disagrees with cov\(\)"),
        (broken(cov=lambda t: BASE.cov(t)[:, :1]), r"cov\(\) has shape"),
        (broken(energy=lambda t: BASE.energy(t) + 0.2), "energy"),
        (
            # ρ0 is not the reference at t = 0: the reference starts shifted.
            broken(
                sample=lambda t, n, g: BASE.sample(t, n, g) + 0.3 * math.exp(-20 * t),
                mean=lambda t: None,
                energy=lambda t: None,
            ),
            "initial and reference at t=0 differ in law",
        ),
        (ou_2d(dt=0.3), "smallest snapshot gap"),
        (ou_2d(box=Box((-1.0, -1.0), (1.0, 1.0))), "outside problem.box"),
        (ou_2d(primary_metric="radial_w2"), "radial_centre"),
        (
            ou_2d(references={"pde": Stationary(ou_2d().reference.at(10.0))}, initial=BASE.at(10.0)),
            None,  # a correct stationary problem passes
        ),
    ],
)
def test_check_problem_catches_broken_problems(problem, message):
    if message is None:
        check_problem(problem)
        return
    with pytest.raises(AssertionError, match=message) as info:
        check_problem(problem)
    assert str(info.value).startswith("check_problem[testing/ou-2d]")


def test_check_problem_catches_bures_without_moments():
    class NoMoments(Tampered):
        def mean(self, t):
            return None

        def cov(self, t):
            return None

    problem = dataclasses.replace(ou_2d(), references={"pde": NoMoments(BASE)})
    with pytest.raises(AssertionError, match=r"bures_w2 needs reference\.mean"):
        check_problem(problem)


def test_check_problem_rejects_bad_names_and_non_problems():
    with pytest.raises(AssertionError, match="lower case"):
        check_problem(ou_2d(name="testing/OU-2D"))
    with pytest.raises(AssertionError, match=r"expected a wgfbench\.Problem"):
        check_problem("fokker-planck/ou-2d")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# check_solver: a correct toy solver and broken variants


class ToyConfig(SolverConfig):
    n_particles: PositiveInt = 200


class ExactOU(Solver):
    """A correct toy: exact OU samples through the closed-form Gaussian map (deterministic given
    the context's generator)."""

    name = "toy-exact-ou"
    role = "calibration"  # reads the exact reference, so it is handed the problem, not its view
    citation = "@misc{toy, title={toy}}"
    Config = ToyConfig
    presets: ClassVar = {"smoke": {"n_particles": 100}}

    def trajectory(self, problem: Problem, ctx) -> Trajectory:
        snapshots = []
        z = ctx.randn(self.config.n_particles, problem.dim)
        for t in problem.times:
            mean, cov = ctx.to(problem.reference.mean(t)), ctx.to(problem.reference.cov(t))
            snapshots.append(ParticleSnapshot(t, mean + z @ torch.linalg.cholesky(cov).T))
        steps = [StepRecord(t=t, tau=t - s) for s, t in zip(problem.times, problem.times[1:], strict=False)]
        return Trajectory(snapshots, steps)

    def solve(self, problem, ctx):
        return self.trajectory(problem, ctx)


class WrongShape(ExactOU):
    name = "toy-wrong-shape"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        traj.snapshots[2].x = traj.snapshots[2].x[:, :1]
        return traj


class ProducesNaN(ExactOU):
    name = "toy-nan"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        traj.snapshots[-1].x[0, 0] = math.nan
        return traj


class GlobalRNG(ExactOU):
    name = "toy-global-rng"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        traj.snapshots[-1].x = traj.snapshots[-1].x + 1e-3 * torch.randn(
            traj.snapshots[-1].x.shape, dtype=F64
        )
        return traj


class MissingSnapshot(ExactOU):
    name = "toy-missing-snapshot"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        return Trajectory(list(traj.snapshots[:-1]), traj.steps)


class BadWeights(ExactOU):
    name = "toy-bad-weights"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        snap = traj.snapshots[1]
        snap.weights = torch.full((snap.x.shape[0],), 2.0 / snap.x.shape[0], dtype=F64)
        return traj


class NegativeWeights(ExactOU):
    name = "toy-negative-weights"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        snap = traj.snapshots[1]
        w = torch.full((snap.x.shape[0],), 1.0 / (snap.x.shape[0] - 2), dtype=F64)
        w[0] = w[1] = -0.5 * float(w[2])
        w = w / w.sum()
        snap.weights = w
        return traj


class GridSolver(ExactOU):
    """Grid output: the exact density on a box, optionally broken (mass or sign)."""

    name = "toy-grid"
    fault: ClassVar[str] = ""

    def solve(self, problem, ctx):
        box = Box((-4.0, -4.0), (5.0, 4.0))
        n = 60
        centres = [
            torch.linspace(lo + (hi - lo) / (2 * n), hi - (hi - lo) / (2 * n), n, dtype=F64)
            for lo, hi in zip(box.low, box.high, strict=True)
        ]
        grid = torch.stack(torch.meshgrid(*centres, indexing="ij"), dim=-1).reshape(-1, 2)
        snapshots = []
        for t in problem.times:
            rho = problem.reference.log_density(t, grid).exp().reshape(n, n)
            snap = GridSnapshot(t, box, rho / (rho.sum() * (9 * 8 / n**2)))
            snapshots.append(snap)
        if self.fault == "mass":
            snapshots[1].rho = snapshots[1].rho * 1.1
        if self.fault == "negative":
            snapshots[1].rho[0, 0] = -1e-3
        return Trajectory(snapshots)


class GridWrongMass(GridSolver):
    name = "toy-grid-mass"
    fault = "mass"


class GridNegative(GridSolver):
    name = "toy-grid-negative"
    fault = "negative"


class Slow(ExactOU):
    name = "toy-slow"

    def solve(self, problem, ctx):
        time.sleep(0.3)  # never calls ctx.check_budget()
        return self.trajectory(problem, ctx)


class Cooperative(ExactOU):
    name = "toy-cooperative"

    def solve(self, problem, ctx):
        for _ in range(100):
            time.sleep(0.01)
            ctx.check_budget()
        return self.trajectory(problem, ctx)


class Raises(ExactOU):
    name = "toy-raises"

    def solve(self, problem, ctx):
        raise RuntimeError("singular matrix in step 3")


class UnorderedSteps(ExactOU):
    name = "toy-unordered-steps"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        traj.steps.reverse()
        return traj


class BadJkoTau(ExactOU):
    name = "toy-bad-jko-tau"

    def solve(self, problem, ctx):
        traj = self.trajectory(problem, ctx)
        traj.jko_tau = 0.3
        return traj


class Unsupported(ExactOU):
    name = "toy-unsupported"

    def supports(self, problem):
        return "only for one-dimensional problems"


class NoCitation(ExactOU):
    name = "toy-no-citation"
    citation = ""


class BadPreset(ExactOU):
    name = "toy-bad-preset"
    presets: ClassVar = {"quick": {"n_particles": -3}}


def test_check_solver_passes_on_a_correct_solver_and_reports():
    report = check_solver(ExactOU.for_tier("smoke"), ou_2d())
    assert isinstance(report, SolverReport)
    assert report.supported and report.n_snapshots == 4 and report.n_steps == 3
    assert {"class", "supports", "budget", "validate", "snapshots", "steps", "deterministic"} <= set(
        report.checks
    )
    assert report.solve_seconds < 1.0
    grid = check_solver(GridSolver(), ou_2d())
    assert "snapshots" in grid.checks


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        (WrongShape(), r"invalid trajectory: t=0.5: particles must have shape \(n, 2\)"),
        (ProducesNaN(), "non-finite output: non-finite values in x at t=1.0"),
        (GlobalRNG(), "not reproducible: the same seed gave different 'x' at t=1"),
        (MissingSnapshot(), "snapshot times .* do not match"),
        (BadWeights(), "weights sum to 2"),
        (NegativeWeights(), "negative particle weights"),
        (GridWrongMass(), "grid mass is 1.1"),
        (GridNegative(), "grid density has negative values"),
        (Raises(), "prepare/solve raised RuntimeError: singular matrix in step 3"),
        (UnorderedSteps(), "out of order"),
        (BadJkoTau(), "does not divide snapshot time"),
        (Unsupported(), "does not support this problem: only for one-dimensional problems"),
        (NoCitation(), "BibTeX"),
        (BadPreset(), "'quick' preset does not build a valid config"),
    ],
)
def test_check_solver_catches_broken_solvers(solver, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_solver(solver, ou_2d())
    assert str(info.value).startswith(f"check_solver[{solver.name} on testing/ou-2d, tier smoke, cpu]")


def test_check_solver_enforces_the_budget():
    with pytest.raises(AssertionError, match=r"took 0\.\d+ s, over the budget of 0.1 s"):
        check_solver(Slow(), ou_2d(), budget_seconds=0.1, check_determinism=False)
    with pytest.raises(AssertionError, match="ran over the tier budget"):
        check_solver(Cooperative(), ou_2d(), budget_seconds=0.1, check_determinism=False)


def test_unsupported_pairs_can_be_reported_instead_of_failing():
    report = check_solver(Unsupported(), ou_2d(), require_support=False)
    assert not report.supported and report.reason == "only for one-dimensional problems"


def test_check_solver_rejects_non_solvers():
    with pytest.raises(AssertionError, match=r"expected a wgfbench\.Solver"):
        check_solver(object(), ou_2d())  # type: ignore[arg-type]


def test_kit_is_usable_with_registered_builtins():
    """The built-in solvers on a built-in problem, as a third-party plugin's tests would do."""
    try:
        problem = wgfbench.get_problem("fokker-planck/ou-2d")
    except wgfbench.UnknownNameError:
        pytest.skip("the fokker-planck plugin is not installed")
    check_problem(problem)
    for name in ("reference", "langevin"):
        report = check_solver(wgfbench.get_solver(name, "smoke"), problem)
        assert report.supported and "deterministic" in report.checks


def test_gaussian_toy_problem_matches_its_moment_odes():
    """The toy OU problem's closed forms solve ṁ = −A(m − μ), Σ̇ = −AΣ − ΣA + 2I (DOP853)."""
    problem = ou_2d()
    rhs = fokker_planck_rhs(np.diag([1.0, 3.0]), np.array([0.5, -0.5]))
    (m,), (S,) = moment_ode(rhs, problem.initial.mean().numpy(), problem.initial.cov().numpy(), [1.0])
    assert torch.allclose(torch.from_numpy(m), problem.reference.mean(1.0), atol=1e-10)
    assert torch.allclose(torch.from_numpy(S), problem.reference.cov(1.0), atol=1e-10)
    # Free energy of N(m, Σ): ½tr(AΣ) + ½(m−μ)ᵀA(m−μ) − ½log((2πe)^d det Σ), vs Monte Carlo.
    x = problem.reference.sample(1.0, 200_000, torch.Generator().manual_seed(0))
    estimate = problem.energy.on_particles(x, problem.reference.log_density(1.0, x))
    assert abs(estimate.value - problem.reference.energy(1.0)) < 5 * estimate.stderr
    assert isinstance(problem.reference.at(0.0), Gaussian)
    assert isinstance(problem.reference, DistributionPath)
