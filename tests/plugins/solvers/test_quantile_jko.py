"""Tests of the ``quantile-jko`` solver (1-D Lagrangian JKO): exact OU JKO iterates (spatial error),
first order in τ against the OU and Barenblatt closed forms, the no-flux box, the aggregation
quantile ODE, the general-kernel (PCG) path, monotone energy, order, the quantile inversion, the
plugin contract and the real runner/scorer.

Mass is exact by construction (N particles of mass 1/N); the tests check order and energy decay.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.special import betaincinv, ndtri
from wgfbench_plugins.solvers.quantile_jko import (
    QuantileJKO,
    has_walls,
    initial_quantiles,
    law_quantiles,
    log_density_from_spacings,
)

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Energy, Entropy, Interaction, Kernel, Newtonian, Potential, Quadratic
from wgfbench.errors import UnknownNameError
from wgfbench.problem import Box, Mobility, Problem
from wgfbench.references import Distribution, DistributionPath, Gaussian, GaussianMixture
from wgfbench.testing import check_solver

F64 = torch.float64


def run(problem: Problem, **config) -> tuple:
    solver = QuantileJKO(config)
    trajectory = solver.solve(problem, Context.create(seed=0, tier="quick", budget_seconds=600))
    check_invariants(trajectory)
    return trajectory


def check_invariants(trajectory) -> None:
    """Particles strictly ordered at every snapshot; discrete energy never increases."""
    for snap in trajectory.snapshots:
        assert torch.all(torch.diff(snap.x[:, 0]) > 0), f"order lost at t={snap.t}"
    energies = np.array([s.energy for s in trajectory.steps])
    assert np.all(np.isfinite(energies))
    assert np.all(np.diff(energies) <= 1e-12 * np.maximum(1.0, np.abs(energies[1:])))
    assert trajectory.info["newton_unconverged_steps"] == 0


def midpoints(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


def orders(errors: list[float]) -> np.ndarray:
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


# ----------------------------------------------------------------------------------------------
# Ornstein–Uhlenbeck (fokker-planck/ou-1d)


def test_ou_particles_match_exact_jko_iterates_spatial_error():
    """At fixed τ the exact JKO iterates are N(m_k, σ_k²); the particles must be their quantiles.

    The mean is exact: the scheme is linear in the mean for a quadratic V (error at round-off).
    The spread (std of the particles over std of the exact quantiles at the same q_i) and the
    interior quantiles converge at first order in 1/N, not second: the Gaussian quantile function
    is singular at q = 0, 1 and the outer cells cannot resolve it (measured constant N·err ≈ 0.15,
    order 0.97–1.0 from N = 250 to 4000).
    """
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    tau = 0.05
    ref = problem.jko.for_step(tau)
    spread, interior = [], []
    for n in (250, 500, 1000, 2000):
        trajectory = run(problem, n_particles=n, tau=tau)
        assert trajectory.jko_tau == tau
        z = ndtri(midpoints(n))
        worst_spread, worst_interior = 0.0, 0.0
        for snap in trajectory.snapshots[1:]:
            x = snap.x[:, 0].numpy()
            m, var = float(ref.mean(snap.t)[0]), float(ref.cov(snap.t)[0, 0])
            assert abs(x.mean() - m) < 1e-12
            exact = m + math.sqrt(var) * z
            worst_spread = max(worst_spread, abs(x.std() / exact.std() - 1.0))
            mid = slice(n // 10, n - n // 10)
            worst_interior = max(worst_interior, float(np.abs(x - exact)[mid].max()))
        spread.append(worst_spread)
        interior.append(worst_interior)
    print("\nN: 250 500 1000 2000  spread err", spread, "interior err", interior)
    assert spread[-1] * 2000 < 0.3 and interior[-1] * 2000 < 0.3
    assert np.all(orders(spread) > 0.85) and np.all(orders(interior) > 0.85)


def test_ou_first_order_in_tau_to_the_closed_form():
    """RMS distance of the particles to the exact quantiles X(t, q_i) = m(t) + σ(t)Φ⁻¹(q_i) at the
    final time (the 1-D W2 between the particle law and the exact law at the same levels): order
    ≈ 1 in τ (N = 4000, spatial error ≈ 3e-5 far below)."""
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    n, t_final = 4000, problem.final_time
    exact = float(problem.reference.mean(t_final)[0]) + math.sqrt(
        float(problem.reference.cov(t_final)[0, 0])
    ) * ndtri(midpoints(n))
    taus, errors = (0.1, 0.05, 0.025, 0.0125), []
    for tau in taus:
        x = run(problem, n_particles=n, tau=tau).snapshots[-1].x[:, 0].numpy()
        errors.append(math.sqrt(np.mean((x - exact) ** 2)))
    print("\nou-1d, t=2:  tau  W2-to-exact  order")
    for i, (tau, e) in enumerate(zip(taus, errors, strict=True)):
        print(f"  {tau:<7} {e:.3e}  {'' if i == 0 else f'{orders(errors)[i - 1]:.2f}'}")
    assert np.all(np.abs(orders(errors) - 1.0) < 0.2)


def test_log_rho_from_spacings_matches_the_gaussian_density():
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    snap = run(problem, n_particles=2000, tau=0.05).snapshots[-1]
    exact = problem.jko.for_step(0.05).log_density(snap.t, snap.x)
    mid = slice(200, 1800)
    assert float((snap.log_rho - exact)[mid].abs().max()) < 2e-3
    # the ends are one-sided but finite
    assert torch.isfinite(snap.log_rho).all()


# ----------------------------------------------------------------------------------------------
# Porous medium (Barenblatt)


def barenblatt_quantiles(reference, t: float, q: np.ndarray) -> np.ndarray:
    """Exact quantiles of the 1-D Barenblatt profile: |X| = R√B, B ~ Beta(1/2, p+1), symmetric."""
    profile = reference.at(t)
    b = betaincinv(0.5, profile.constants.p + 1.0, np.abs(2.0 * q - 1.0))
    return np.sign(q - 0.5) * profile.support_radius * np.sqrt(b)


@pytest.mark.parametrize("m", [2, 3])
def test_barenblatt_w2_small_and_first_order_in_tau(m):
    """1-D W2 between the particles and the exact Barenblatt quantiles at the same q_i (exact in
    1-D), at every snapshot: small and halving with τ (measured ≈ 6e-4 at τ = 0.0025, m = 2)."""
    problem = wgfbench.get_problem(f"porous-medium/barenblatt-1d-m{m}")
    n = 1000
    q = midpoints(n)
    x0 = initial_quantiles(problem.initial, n, problem.box)
    assert np.abs(x0 - barenblatt_quantiles(problem.reference, 0.0, q)).max() < 1e-5
    taus, errors = (0.02, 0.01, 0.005, 0.0025), []
    for tau in taus:
        trajectory = run(problem, n_particles=n, tau=tau)
        w2 = [
            math.sqrt(np.mean((s.x[:, 0].numpy() - barenblatt_quantiles(problem.reference, s.t, q)) ** 2))
            for s in trajectory.snapshots[1:]
        ]
        errors.append(max(w2))
        # energy of the discrete profile approaches the exact one
        assert abs(trajectory.steps[-1].energy - problem.reference.energy(problem.final_time)) < 0.01
    print(
        f"\nbarenblatt-1d-m{m}: tau {taus}  max_t W2 {[f'{e:.2e}' for e in errors]}  orders {orders(errors)}"
    )
    assert errors[-1] < 1e-3
    assert np.all(np.abs(orders(errors) - 1.0) < 0.15)


def test_quantile_inversion_is_exact_for_gaussians_and_mixtures():
    q = midpoints(1000)
    law = Gaussian([0.3], [[2.0]])
    x = law_quantiles(law, q, (-20.0, 20.0))
    assert np.abs(x - (0.3 + math.sqrt(2.0) * ndtri(q))).max() < 1e-11
    mix = GaussianMixture([0.3, 0.7], [[-2.0], [1.0]], [[[0.2]], [[0.5]]])
    x = law_quantiles(mix, q, (-10.0, 10.0))
    from scipy.special import ndtr

    cdf = 0.3 * ndtr((x + 2.0) / math.sqrt(0.2)) + 0.7 * ndtr((x - 1.0) / math.sqrt(0.5))
    assert np.abs(cdf - q).max() < 1e-12


def test_log_density_from_spacings_of_uniform_particles():
    x = np.linspace(0.0, 2.0, 101)  # spacing 0.02, mass 1/101 each: density 1/(101·0.02)
    assert np.allclose(log_density_from_spacings(x), -math.log(101 * 0.02), atol=1e-12)


# ----------------------------------------------------------------------------------------------
# The no-flux box (docs/problems.md, Fokker–Planck, "Box"): built here from the contracts

G = 1.0
ALPHA = math.pi**2 + G**2 / 4
T0 = 1e-3
BOX_MASS = math.pi / G * (math.exp(G / 2) - math.exp(-G / 2))


def box_unnormalised(x: np.ndarray, t: float) -> np.ndarray:
    """ρ = e^{−αt+gx/2}(π cos πx + (g/2) sin πx) + π e^{g(x−½)} on [0, 1]."""
    return np.exp(-ALPHA * t + G * x / 2) * (
        math.pi * np.cos(math.pi * x) + G / 2 * np.sin(math.pi * x)
    ) + math.pi * np.exp(G * (x - 0.5))


def box_cdf(x: np.ndarray, t: float) -> np.ndarray:
    """∫₀ˣρ: the first term is d/dx[e^{−αt+gx/2} sin πx], the second integrates directly."""
    first = np.exp(-ALPHA * t + G * x / 2) * np.sin(math.pi * x)
    return (first + math.pi / G * (np.exp(G * (x - 0.5)) - math.exp(-G / 2))) / BOX_MASS


def box_quantiles(t: float, q: np.ndarray) -> np.ndarray:
    lo, hi = np.zeros_like(q), np.ones_like(q)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = box_cdf(mid, t) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


class BoxLaw(Distribution):
    dim = 1

    def __init__(self, t: float):
        self.t = t

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(-1).numpy()
        rho = np.where((y >= 0) & (y <= 1), box_unnormalised(y, self.t) / BOX_MASS, 0.0)
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(rho))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, generator=generator, dtype=F64).numpy()
        return torch.from_numpy(box_quantiles(self.t, u)).reshape(-1, 1)


def box_problem() -> Problem:
    energy = Energy([Entropy(), Potential(lambda x: -G * x[:, 0], grad=lambda x: -G * torch.ones_like(x))])
    return Problem(
        name="test/box-1d",
        family="test",
        dim=1,
        energy=energy,
        initial=BoxLaw(T0),
        times=(0.0, 0.05, 0.1, 0.2),
        dt=0.01,
        references={"pde": DistributionPath(lambda t: BoxLaw(t + T0), 1)},
        primary_metric="w2",
        box=Box((0.0,), (1.0,), wall=True),
    )


def test_box_walls_match_the_exact_solution_first_order_in_tau():
    """With half-cell walls the particles follow the exact quantiles of the normalised closed form:
    first order in τ (measured 1.5e-3, 7.8e-4, 4.0e-4 at τ = 4, 2, 1 e-3) and a spatial error
    below 3e-5 (N = 100 vs 800 at fixed τ)."""
    problem = box_problem()
    assert has_walls(problem)
    assert not has_walls(wgfbench.get_problem("fokker-planck/ou-1d"))
    assert not has_walls(wgfbench.get_problem("porous-medium/barenblatt-1d-m2"))

    def error(n: int, tau: float) -> float:
        trajectory = run(problem, n_particles=n, tau=tau)
        assert trajectory.info["walls"] == "[0, 1]"
        q = midpoints(n)
        worst = 0.0
        for snap in trajectory.snapshots[1:]:
            x = snap.x[:, 0].numpy()
            assert x[0] > 0.0 and x[-1] < 1.0
            worst = max(worst, math.sqrt(np.mean((x - box_quantiles(snap.t + T0, q)) ** 2)))
        return worst

    taus = (0.004, 0.002, 0.001)
    errors = [error(200, tau) for tau in taus]
    print(f"\nbox-1d: tau {taus}  W2 {[f'{e:.2e}' for e in errors]}  orders {orders(errors)}")
    assert errors[-1] < 6e-4
    assert np.all(np.abs(orders(errors) - 1.0) < 0.15)
    assert abs(error(100, 0.004) - error(400, 0.004)) < 3e-5
    # without walls the density leaks out of the box
    x = run(problem, n_particles=200, tau=0.004, walls="none").snapshots[-1].x[:, 0]
    assert float(x.max()) > 1.0


@pytest.mark.parametrize("name", ["fokker-planck/box-1d"])
def test_registered_box_problem(name):
    try:
        problem = wgfbench.get_problem(name)
    except UnknownNameError:
        pytest.skip(f"{name} is not registered yet")
    assert has_walls(problem)
    trajectory = run(problem, n_particles=400, tau=problem.dt / 2)
    ref, q = problem.reference, torch.from_numpy(midpoints(400))
    for snap in trajectory.snapshots[1:]:
        x = snap.x[:, 0].numpy()
        # empirical quantiles of 10^5 exact samples: noise ≈ 5e-4 in this W2; scheme error ≈ 8e-4
        y = ref.sample(snap.t, 100_000, torch.Generator().manual_seed(1))[:, 0].numpy()
        exact = np.quantile(y, q.numpy())
        assert math.sqrt(np.mean((x - exact) ** 2)) < 3e-3


# ----------------------------------------------------------------------------------------------
# Aggregation W = x²/2 − |x|


class ShiftedQuadratic(Kernel):
    """w(r) = r²/2 − r written as an opaque kernel, so the solver takes the general (autograd,
    O(N²), PCG) path."""

    def of_distance(self, r: torch.Tensor) -> torch.Tensor:
        return 0.5 * r**2 - r


def aggregation_problem(kernel: Kernel) -> Problem:
    initial = GaussianMixture([0.4, 0.6], [[-1.5], [1.0]], [[[0.15]], [[0.3]]])
    return Problem(
        name="test/aggregation-1d",
        family="test",
        dim=1,
        energy=Energy([Interaction(kernel)]),
        initial=initial,
        times=(0.0, 0.2, 0.5, 1.0),
        dt=0.05,
        references={"pde": DistributionPath(lambda t: initial, 1)},  # unused here
        primary_metric="w2",
    )


def test_aggregation_is_implicit_euler_of_the_quantile_ode_and_first_order():
    r"""For W = x²/2 − |x| and sorted particles the JKO step is exactly the implicit Euler step of
    :math:`\dot X = -(X-\bar x) + (2q_i-1)` (docs/problems.md, aggregation, "Quantile"), so the particles
    equal :math:`\bar x + (1+\tau)^{-k}(X_0(q_i)-\bar x) + (1-(1+\tau)^{-k})(2q_i-1)` to round-off,
    and converge at first order in τ to :math:`X(t,q_i)`."""
    problem = aggregation_problem(Quadratic(1.0) + Newtonian(1))
    n = 1000
    q = midpoints(n)
    x0 = initial_quantiles(problem.initial, n, None)
    xbar = x0.mean()
    errors = []
    taus = (0.1, 0.05, 0.025)
    for tau in taus:
        trajectory = run(problem, n_particles=n, tau=tau)
        for snap in trajectory.snapshots[1:]:
            k = round(snap.t / tau)
            euler = xbar + (1 + tau) ** -k * (x0 - xbar) + (1 - (1 + tau) ** -k) * (2 * q - 1)
            assert np.abs(snap.x[:, 0].numpy() - euler).max() < 1e-10
        t = problem.final_time
        exact = xbar + math.exp(-t) * (x0 - xbar) + (1 - math.exp(-t)) * (2 * q - 1)
        errors.append(float(np.abs(trajectory.snapshots[-1].x[:, 0].numpy() - exact).max()))
    assert np.all(np.abs(orders(errors) - 1.0) < 0.1)


def test_general_kernel_path_agrees_with_the_closed_form_path():
    n = 400
    fast = run(aggregation_problem(Quadratic(1.0) + Newtonian(1)), n_particles=n, tau=0.05)
    general = run(aggregation_problem(ShiftedQuadratic()), n_particles=n, tau=0.05)
    for a, b in zip(fast.snapshots, general.snapshots, strict=True):
        assert torch.allclose(a.x, b.x, atol=1e-9, rtol=0)
    for a, b in zip(fast.steps, general.steps, strict=True):
        assert abs(a.energy - b.energy) < 1e-10


@pytest.mark.parametrize("name", ["aggregation/quantile-1d"])
def test_registered_aggregation_problem(name):
    try:
        problem = wgfbench.get_problem(name)
    except UnknownNameError:
        pytest.skip(f"{name} is not registered yet")
    n = 1000
    q = midpoints(n)
    x0 = initial_quantiles(problem.initial, n, problem.box)
    xbar = x0.mean()
    errors = []
    for tau in (problem.dt / 2, problem.dt / 4):  # the implicit Euler error of the quantile ODE
        trajectory = run(problem, n_particles=n, tau=tau)
        error = 0.0
        for snap in trajectory.snapshots[1:]:
            exact = xbar + math.exp(-snap.t) * (x0 - xbar) + (1 - math.exp(-snap.t)) * (2 * q - 1)
            error = max(error, float(np.abs(snap.x[:, 0].numpy() - exact).max()))
        assert error < 0.5 * tau, (tau, error)
        errors.append(error)
    assert 0.85 < math.log2(errors[0] / errors[1]) < 1.15, errors  # first order in tau


# ----------------------------------------------------------------------------------------------
# Plugin contract and the real runner


def test_plugin_contract_and_supports():
    solver = wgfbench.get_solver("quantile-jko", "smoke")
    assert isinstance(solver, QuantileJKO) and solver.config.n_particles == 500
    report = check_solver(solver, wgfbench.get_problem("porous-medium/barenblatt-1d-m2"), tier="smoke")
    assert report.supported
    assert isinstance(solver.supports(wgfbench.get_problem("fokker-planck/ou-2d")), str)
    p = box_problem()
    kalman = dataclasses.replace(p, mobility=Mobility("kalman"))
    assert "Wasserstein" in solver.supports(kalman)
    for tier in ("smoke", "quick", "large"):
        assert QuantileJKO.for_tier(tier).config.n_particles >= wgfbench.context.TIERS[tier].n_eval


@pytest.mark.slow
def test_runner_quick_tier_rel_error(tmp_path):
    """The real runner and scorer at the quick tier; the scorer subsamples 1000 of the 2000
    particles and draws 1000 reference samples, so rel_error is bounded below by sampling noise
    (the particles themselves are within 1e-3 in W2 of the exact law)."""
    from wgfbench.runner import make_plan, run_plan
    from wgfbench.store import read_cases, read_results

    host = wgfbench.default_host()
    names = ["fokker-planck/ou-1d", "porous-medium/barenblatt-1d-m2"]
    plan = make_plan(["quantile-jko"], names, seeds=1, tier="quick", host=host)
    run_plan(plan, tmp_path, host=host)
    assert (read_cases(tmp_path).status == "ok").all()
    results = read_results(tmp_path)
    rel = results[results.metric == "rel_error"]
    final = rel[rel.t == rel.groupby("problem").t.transform("max")].set_index("problem").value
    print("\nquick tier, final rel_error:\n", final.to_string())
    assert final["fokker-planck/ou-1d"] < 0.05
    assert final["porous-medium/barenblatt-1d-m2"] < 0.1
