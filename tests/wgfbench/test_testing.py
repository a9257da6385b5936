"""Tests of the conformance kit: check_problem and check_solver pass on correct plugins and
catch real faults (wrong shapes, NaN, global-RNG draws, wrong laws, wrong closed forms, budget
overruns) with messages that name the plugin and the failure."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from typing import ClassVar

import numpy as np
import pytest
import torch
from gaussian_moments import fokker_planck_rhs, moment_ode
from pydantic import PositiveInt

import wgfbench
from wgfbench.context import cpu_clock, make_generator
from wgfbench.problem import Box, Problem
from wgfbench.references import DistributionPath, Gaussian, Reference, Stationary
from wgfbench.solver import Solver, SolverConfig
from wgfbench.testing import (
    ProblemReport,
    SolverReport,
    SolverRun,
    check_problem,
    check_runs_agree_in_law,
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


def altered(**changes) -> Problem:
    """The toy problem with fields changed after construction, past the contract rules that
    ``Problem.__post_init__`` enforces: the kit must catch what construction would have refused
    (a problem object altered in place, a subclass that skips the checks)."""
    problem = ou_2d()
    for key, value in changes.items():
        object.__setattr__(problem, key, value)
    return problem


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
        (altered(dt=0.3), "rule 'dt within snapshot gaps'.*larger than the gap 0.25"),
        (ou_2d(box=Box((-1.0, -1.0), (1.0, 1.0))), "outside problem.box"),
        (altered(primary_metric="radial_w2"), "radial_centre"),
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
        check_problem(altered(name="testing/OU-2D"))
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


def _burn(cpu_seconds: float) -> None:
    """Busy-wait for ``cpu_seconds`` of CPU time (the budget's clock; sleeping would not count)."""
    start = cpu_clock()
    while cpu_clock() - start < cpu_seconds:
        sum(range(1000))


class Slow(ExactOU):
    name = "toy-slow"

    def solve(self, problem, ctx):
        _burn(0.3)  # never calls ctx.check_budget()
        return self.trajectory(problem, ctx)


class Cooperative(ExactOU):
    name = "toy-cooperative"

    def solve(self, problem, ctx):
        for _ in range(100):
            _burn(0.01)
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
        (BadPreset(), "rule 'valid presets': the 'quick' preset is not a valid config"),
    ],
)
def test_check_solver_catches_broken_solvers(solver, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_solver(solver, ou_2d())
    assert str(info.value).startswith(f"check_solver[{solver.name} on testing/ou-2d, tier smoke, cpu]")


def test_check_solver_keeps_particles_inside_no_flux_walls():
    walled = ou_2d(box=Box((-1.0, -2.0), (4.0, 2.0), wall=True))
    with pytest.raises(AssertionError, match=r"particles lie outside the no-flux walls of problem\.box"):
        check_solver(ExactOU(), walled, check_determinism=False)
    check_solver(ExactOU(), ou_2d(box=Box((-1.0, -2.0), (4.0, 2.0))), check_determinism=False)  # a window


def test_check_solver_enforces_the_budget():
    with pytest.raises(AssertionError, match=r"used 0\.\d+ CPU s per thread .*over the budget of 0.1 s"):
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


# ----------------------------------------------------------------------------------------------
# Reference access, device parity


PEEKED = ou_2d()


class Peeks(ExactOU):
    """A ranked solver (role "solver") that reaches the exact answer through a module global."""

    name = "toy-peeks"
    role = "solver"

    def solve(self, problem, ctx):
        return self.trajectory(PEEKED, ctx)


def test_check_solver_catches_a_solver_that_reads_the_references():
    with pytest.raises(
        AssertionError, match=r"read the problem's references while it ran \(references\['pde'\]"
    ):
        check_solver(Peeks(), PEEKED, check_determinism=False)
    # The watch is gone afterwards: the reference's own methods are back.
    assert not {"sample", "mean", "cov"} & set(vars(PEEKED.reference))
    assert isinstance(PEEKED.reference.mean(0.5), torch.Tensor)


def _particle_run(x: torch.Tensor, device: str = "cpu") -> SolverRun:
    run = SolverRun("toy", "testing/ou-2d", "smoke", device, 0, 10.0)
    run.trajectory = Trajectory([ParticleSnapshot(0.0, x), ParticleSnapshot(1.0, x + 1.0)])
    return run


def test_device_parity_compares_laws_not_samples():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3000, 2, generator=g, dtype=F64), torch.randn(3000, 2, generator=g, dtype=F64)
    worst = check_runs_agree_in_law(_particle_run(a), _particle_run(b, "cuda"))
    assert 0 < worst["mean_z"] < 6 and worst["ks_p"] > 1e-6
    with pytest.raises(AssertionError, match="the cuda output differs in law from the cpu output"):
        check_runs_agree_in_law(_particle_run(a), _particle_run(b + 0.2, "cuda"))
    with pytest.raises(AssertionError, match="2 snapshots on cuda, 1 on cpu"):
        one = _particle_run(a)
        one.trajectory = Trajectory([ParticleSnapshot(0.0, a)])
        check_runs_agree_in_law(one, _particle_run(b, "cuda"))


def test_device_parity_compares_grid_densities_in_l1():
    box = Box((0.0,), (1.0,))
    rho = torch.full((50,), 1.0, dtype=F64)

    def grid_run(density, device):
        run = SolverRun("toy", "testing/ou-1d", "smoke", device, 0, 10.0)
        run.trajectory = Trajectory([GridSnapshot(0.0, box, density)])
        return run

    check_runs_agree_in_law(grid_run(rho, "cpu"), grid_run(rho.clone(), "cuda"))
    bumped = rho.clone()
    bumped[:25] += 0.01
    bumped[25:] -= 0.01
    with pytest.raises(AssertionError, match=r"density differs from cpu by 0\.01 in L1"):
        check_runs_agree_in_law(grid_run(rho, "cpu"), grid_run(bumped, "cuda"))


# ----------------------------------------------------------------------------------------------
# The conformance suite (wgfbench.testing.suite) and its pytest plugin, in a pytest subprocess

SUITE_TESTS = '''
import dataclasses
import math
from typing import ClassVar

import torch

import wgfbench
from wgfbench.references import DistributionPath, Gaussian
from wgfbench.testing import ProblemConformance, SolverConformance, ornstein_uhlenbeck_problem
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

PROBLEM = ornstein_uhlenbeck_problem([1.0], [0.5], [-1.0], [[0.25]], name="testing/ou-1d")


class Walker(wgfbench.Solver):
    """Euler-Maruyama particles; `fault` breaks one contract check."""

    name = "walker"
    citation = "@book{kloeden1992, title={Numerical Solution of SDEs}}"
    presets: ClassVar = {"smoke": {}}
    fault: ClassVar[str] = ""

    def solve(self, problem, ctx):
        x = ctx.to(problem.initial.sample(500, ctx.cpu_generator))
        snapshots, steps = [ParticleSnapshot(0.0, x.clone())], []
        for s, t in zip(problem.times, problem.times[1:]):
            dt = t - s
            if self.fault == "global_rng":
                noise = torch.randn(x.shape, dtype=x.dtype)
            else:
                noise = ctx.randn(*x.shape)
            x = x - problem.energy.grad_V(x) * dt + math.sqrt(2 * dt) * noise
            if self.fault == "peek":
                x = x - x.mean(0) + PROBLEM.reference.mean(t)
            steps.append(StepRecord(t=t, tau=dt))
            snapshots.append(ParticleSnapshot(t, x.clone()))
        if self.fault == "nan":
            snapshots[-1].x[0, 0] = math.nan
        if self.fault == "weights":
            snapshots[1].weights = torch.full((500,), 2.0 / 500, dtype=x.dtype)
        return Trajectory(snapshots, steps)


def make_walker(fault):
    return type(f"Walker_{fault}", (Walker,), {"fault": fault, "name": f"walker-{fault}"})


RUNS = []


class Counted(Walker):
    name = "walker-counted"

    def solve(self, problem, ctx):
        RUNS.append(problem.name)
        return super().solve(problem, ctx)


class TestRunsShared(SolverConformance):
    solver = Counted


def test_zz_one_run_per_problem_and_repeat():
    # After TestRunsShared (pytest runs a module in order): 2 default problems x (run + repeat).
    assert sorted(RUNS) == ["testing/ou-1d", "testing/ou-1d", "testing/ou-2d", "testing/ou-2d"]


class TestGood(SolverConformance):
    solver = Walker
    problems = [PROBLEM]


class TestDefaultProblems(SolverConformance):
    solver = Walker


class TestGlobalRng(SolverConformance):
    solver = make_walker("global_rng")
    problems = [PROBLEM]


class TestPeek(SolverConformance):
    solver = make_walker("peek")
    problems = [PROBLEM]


class TestNan(SolverConformance):
    solver = make_walker("nan")
    problems = [PROBLEM]


class TestWeights(SolverConformance):
    solver = make_walker("weights")
    problems = [PROBLEM]


class TestProblem(ProblemConformance):
    problems = [PROBLEM]


def shifted():
    path = DistributionPath(lambda t: Gaussian(PROBLEM.reference.mean(t) + 0.5, PROBLEM.reference.cov(t)), 1)
    return dataclasses.replace(PROBLEM, name="testing/shifted-1d", references={"pde": path})


class TestShifted(ProblemConformance):
    problems = [shifted]
'''

SOLVER_CHECKS = {
    "test_supports",
    "test_runs",
    "test_budget",
    "test_shapes",
    "test_finite",
    "test_mass",
    "test_step_log",
    "test_no_reference_access",
    "test_seed_reproducible",
    "test_cpu_gpu_parity",
}
PROBLEM_TESTS = {
    "test_contract",
    "test_initial",
    "test_reference",
    "test_initial_matches_reference",
    "test_primary_metric",
    "test_jko",
    "test_initial_family",
    "test_view_hides_references",
}


def test_conformance_suite_gives_one_test_per_check_and_names_the_failing_one(tmp_path):
    """Subclasses of the suites in a plugin author's test file, plus the command-line suites of a
    registered solver and problem, in one pytest subprocess; every check is its own test and only
    the broken check fails, with a message that says what broke."""
    (tmp_path / "test_my_plugin.py").write_text(SUITE_TESTS)
    junit = tmp_path / "report.xml"
    args = ["-p", "no:cacheprovider", "-q", f"--junitxml={junit}", "test_my_plugin.py"]
    args += ["--wgfbench-solver", "langev*", "--wgfbench-problem", "fokker-planck/ou-1d"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert junit.exists(), done.stdout + done.stderr
    outcome: dict[tuple[str, str], tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        verdict, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                verdict, message = child.tag, child.get("message", "")
        outcome[(case.get("classname").rsplit(".", 1)[-1], case.get("name"))] = (verdict, message)

    def of(cls: str) -> dict[str, tuple[str, str]]:
        return {name: v for (c, name), v in outcome.items() if c == cls}

    def failed(cls: str) -> set[str]:
        return {name.split("[")[0] for name, (v, _) in of(cls).items() if v in ("failure", "error")}

    gpu = torch.cuda.is_available()
    good = of("TestGood")
    assert {name.split("[")[0] for name in good} == SOLVER_CHECKS | {"test_contract"}
    assert "test_runs[walker-testing/ou-1d]" in good
    for name, (verdict, message) in good.items():
        if name.startswith("test_cpu_gpu_parity") and not gpu:
            assert verdict == "skipped" and "CUDA is not available" in message
        else:
            assert verdict == "passed", (name, message)
    assert len(of("TestDefaultProblems")) == 1 + 2 * len(SOLVER_CHECKS)  # the kit's OU 1-D and 2-D
    assert not failed("TestDefaultProblems")
    # The checks of a class share one run per problem (and one repeat for reproducibility).
    assert outcome[("test_my_plugin", "test_zz_one_run_per_problem_and_repeat")][0] == "passed"
    assert not failed("TestRunsShared")
    assert failed("TestGlobalRng") == {"test_seed_reproducible"}
    message = of("TestGlobalRng")["test_seed_reproducible[walker-global_rng-testing/ou-1d]"][1]
    assert "draw only from ctx.generator" in message
    assert failed("TestPeek") == {"test_no_reference_access"}
    message = of("TestPeek")["test_no_reference_access[walker-peek-testing/ou-1d]"][1]
    assert "references['pde'].mean" in message
    assert failed("TestNan") == {"test_finite"}
    assert failed("TestWeights") == {"test_mass"}

    problem = of("TestProblem")
    assert {name.split("[")[0] for name in problem} == PROBLEM_TESTS
    skipped = {name.split("[")[0] for name, (v, _) in problem.items() if v == "skipped"}
    assert skipped == {"test_jko", "test_initial_family"}
    assert not failed("TestProblem")
    assert failed("TestShifted") == {"test_initial_matches_reference"}
    assert (
        "initial and reference at t=0 differ in law"
        in of("TestShifted")["test_initial_matches_reference[shifted]"][1]
    )

    # --wgfbench-solver / --wgfbench-problem: the suites of registered plugins, no test file.
    selected = of("TestSelectedSolver")
    assert "test_contract[langevin]" in selected and "test_runs[langevin-fokker-planck/ou-1d]" in selected
    assert not failed("TestSelectedSolver")
    assert {name.split("[")[0] for name in of("TestSelectedProblem")} == PROBLEM_TESTS
    assert not failed("TestSelectedProblem")
    assert done.returncode == 1  # the broken plugins above fail, as they should


def test_selected_plugin_patterns_must_match_a_registered_name():
    from wgfbench.testing.pytest_plugin import _expand

    assert _expand(["lang*", "reference"], ["langevin", "reference", "pwgf"], "solver", "--x") == [
        "langevin",
        "reference",
    ]
    with pytest.raises(pytest.UsageError, match="--wgfbench-solver 'nope\\*': no registered solver matches"):
        _expand(["nope*"], ["langevin"], "solver", "--wgfbench-solver")


def test_the_pytest11_plugin_is_cheap_and_adds_nothing_unasked(request):
    entry = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "wgfbench"]
    assert [ep.value for ep in entry] == ["_wgfbench_pytestplugin"]
    probe = (
        "import _wgfbench_pytestplugin, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'wgfbench')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # This session passes no --wgfbench-* option: the plugin is loaded, its suites are not.
    manager = request.config.pluginmanager
    assert manager.has_plugin("wgfbench") and not manager.has_plugin("wgfbench-selected-suites")
    assert request.config.getoption("wgfbench_solver") == []
