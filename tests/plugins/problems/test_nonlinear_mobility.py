"""Nonlinear-mobility (saturation) problems against independent computations.

The rescaling ρ = μp is checked on fluxes (the problem's own kernel and mobility against the
original ρ(1−ρ)∇(|x|²*ρ) by quadrature), the initial law against the paper's formula and its
sampler by KS, E∞ by quadrature and Monte Carlo, and the approach to E∞ by a small explicit
upwind finite-volume run of the flow written independently of the plugin.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from wgfbench_plugins.problems.nonlinear_mobility import DENSITY_CAPS, make_saturation

import wgfbench
from wgfbench.testing import check_problem

F64 = torch.float64
NAMES = {1: "nonlinear-mobility/saturation-1d", 2: "nonlinear-mobility/saturation-2d"}
MU = {1: 1.0, 2: 3 * math.pi / 8}


def paper_rho0(x: np.ndarray) -> np.ndarray:
    """Deep JKO §4.3: ρ0 = ¾(1 − |x|²)₊ (not normalised)."""
    return 0.75 * np.clip(1.0 - (x**2).sum(-1), 0.0, None)


def kernel_c(problem) -> float:
    """c of W = c|x|²/2 recovered from the problem's energy: W(e1) = c/2."""
    (inter,) = problem.energy.interactions
    return 2.0 * float(inter.kernel(torch.tensor([[1.0] + [0.0] * (problem.dim - 1)], dtype=F64))[0])


@pytest.mark.parametrize("d", [1, 2])
def test_initial_law_is_the_normalised_paper_profile(d):
    problem = wgfbench.get_problem(NAMES[d])
    x = problem.initial.sample(500, torch.Generator().manual_seed(0))
    x = torch.cat([x, 1.05 * x / x.norm(dim=1, keepdim=True)])  # also points outside the support
    p = torch.exp(problem.initial.log_density(x)).numpy()
    np.testing.assert_allclose(p, paper_rho0(x.numpy()) / MU[d], rtol=1e-12, atol=1e-15)
    # μ by quadrature of the paper's ρ0
    if d == 1:
        mu = scipy.integrate.quad(lambda y: paper_rho0(np.array([[y]]))[0], -1, 1)[0]
    else:
        mu = scipy.integrate.quad(lambda r: 2 * math.pi * r * paper_rho0(np.array([[r, 0.0]]))[0], 0, 1)[0]
    assert abs(mu - MU[d]) < 1e-12
    cap = problem.mobility.M.cap
    assert cap == pytest.approx(1 / MU[d], rel=1e-14) and DENSITY_CAPS[NAMES[d]] == cap
    assert float(torch.exp(problem.initial.log_density(torch.zeros(1, d, dtype=F64)))) < 0.76 * cap


@pytest.mark.parametrize("d", [1, 2])
def test_initial_sampler_matches_density(d):
    problem = wgfbench.get_problem(NAMES[d])
    x = problem.initial.sample(40_000, torch.Generator().manual_seed(d)).numpy()
    if d == 1:
        p = scipy.stats.kstest(x[:, 0], lambda y: 0.5 + 0.75 * y - 0.25 * y**3).pvalue
    else:  # P(|X| ≤ r) = ∫0^r (2/π)(1 − s²) 2πs ds = 2r² − r⁴; angles uniform
        r = np.linalg.norm(x, axis=1)
        p = scipy.stats.kstest(r, lambda s: 2 * s**2 - s**4).pvalue
        angle = np.arctan2(x[:, 1], x[:, 0])
        assert scipy.stats.kstest(angle, scipy.stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-4
    assert p > 1e-4
    np.testing.assert_allclose(np.cov(x.T).reshape(d, d), np.eye(d) / (d + 4), atol=0.01)


@pytest.mark.parametrize("d", [1, 2])
def test_rescaled_flux_equals_the_paper_flux(d):
    """μ · M(p)∇(W_μ * p) = ρ(1 − ρ)∇(|x|² * ρ) for ρ = μp, with the convolution by quadrature."""
    problem = wgfbench.get_problem(NAMES[d])
    c = kernel_c(problem)
    n = 400 if d == 1 else 120
    axis = np.linspace(-1, 1, n + 1)[:-1] + 1.0 / n
    cell = (2.0 / n) ** d
    grid = np.stack(np.meshgrid(*[axis] * d, indexing="ij"), -1).reshape(-1, d)
    rho = paper_rho0(grid)
    p = rho / MU[d]
    first_moment = (grid * rho[:, None]).sum(0) * cell
    mass = rho.sum() * cell
    # ∇(|x|² * ρ)(x) = 2(x·mass − ∫yρ)
    grad_paper = 2 * (grid * mass - first_moment)
    flux_paper = (rho * (1 - rho))[:, None] * grad_paper
    # problem side: W_μ = c|x|²/2 with the problem's c, mobility from the problem
    grad_problem = c * (grid * p.sum() * cell - (grid * p[:, None]).sum(0) * cell)
    M = problem.mobility.M(torch.as_tensor(p)).numpy()
    flux_problem = MU[d] * M[:, None] * grad_problem
    np.testing.assert_allclose(flux_problem, flux_paper, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2])
def test_stationary_energy_by_quadrature_and_monte_carlo(d):
    problem = wgfbench.get_problem(NAMES[d])
    ref = problem.references["stationary"]
    e_inf = ref.energy(1.0)
    assert e_inf == pytest.approx({1: 1 / 12, 2: 9 * math.pi / 128}[d], rel=1e-13)
    c = kernel_c(problem)
    # quadrature: ½∬ c|x−y|²/2 p p = (c/2) tr Cov(p) for the uniform law on the ball of volume μ
    r = {1: 0.5, 2: math.sqrt(3 / 8)}[d]
    if d == 1:
        var = scipy.integrate.quad(lambda y: y**2 / (2 * r), -r, r)[0]
    else:
        var = scipy.integrate.quad(lambda s: s**2 * 2 * math.pi * s / (math.pi * r**2), 0, r)[0]
    assert 0.5 * c * var == pytest.approx(e_inf, rel=1e-12)
    # the reference density is the cap on the ball of volume μ
    x = ref.sample(1.0, 3000, torch.Generator().manual_seed(4))
    np.testing.assert_allclose(torch.exp(ref.log_density(1.0, x)).numpy(), problem.mobility.M.cap, rtol=1e-12)
    assert float(x.norm(dim=1).max()) <= r * (1 + 1e-12)
    est = problem.energy.on_samples(x)
    assert abs(est.value - e_inf) < 5 * est.stderr
    # ρ0 has the larger energy μ d/(d+4)
    x0 = problem.initial.sample(3000, torch.Generator().manual_seed(5))
    est0 = problem.energy.on_samples(x0)
    assert abs(est0.value - MU[d] * d / (d + 4)) < 5 * est0.stderr and est0.value > e_inf + 0.1


def upwind_saturation_run(d: int, n: int, T: float, c: float, cap: float) -> tuple[list[float], float]:
    """Explicit upwind finite volumes for ∂t p = ∇·(p(1 − p/cap) c(x − x̄)) on [−1.25, 1.25]^d:
    face flux v p_upwind (1 − p_downwind/cap) keeps 0 ≤ p ≤ cap under the CFL condition.
    Returns the energies (c/2) tr Cov(p) at t = 0, ..., T (every 0.25) and max p."""
    L = 1.25
    h = 2 * L / n
    x = -L + h * (np.arange(n) + 0.5)
    X = np.meshgrid(*[x] * d, indexing="ij")
    p = np.clip(1 - sum(Xi**2 for Xi in X), 0, None)
    p /= p.sum() * h**d
    faces = (-L + h * np.arange(1, n)).reshape((-1,) + (1,) * (d - 1))
    dt = 0.2 * h / (c * L)
    steps_per_mark = math.ceil(0.25 / dt)
    dt = 0.25 / steps_per_mark
    energies, p_max = [], 0.0

    def energy(p):
        mean = [(Xi * p).sum() * h**d for Xi in X]
        return 0.5 * c * sum(((Xi - m) ** 2 * p).sum() * h**d for Xi, m in zip(X, mean, strict=True))

    energies.append(energy(p))
    for _ in range(round(T / 0.25)):
        for _ in range(steps_per_mark):
            div = np.zeros_like(p)
            for ax in range(d):
                q = np.moveaxis(p, ax, 0)
                v = -c * faces  # the mean stays 0 by symmetry
                left, right = q[:-1], q[1:]
                flux = np.where(v > 0, v * left * (1 - right / cap), v * right * (1 - left / cap))
                dq = np.zeros_like(q)
                dq[:-1] += flux
                dq[1:] -= flux
                div += np.moveaxis(dq, 0, ax)
            p = p - dt * div / h
            p_max = max(p_max, float(p.max()))
        energies.append(energy(p))
    return energies, p_max


@pytest.mark.parametrize("d", [1, 2])
def test_the_flow_approaches_the_stationary_energy(d):
    problem = wgfbench.get_problem(NAMES[d])
    cap = problem.mobility.M.cap
    e_inf = problem.references["stationary"].energy(1.0)
    energies, p_max = upwind_saturation_run(
        d, 400 if d == 1 else 80, problem.final_time, kernel_c(problem), cap
    )
    assert p_max <= cap * (1 + 1e-12)
    assert all(b < a for a, b in itertools.pairwise(energies))
    gaps = [e - e_inf for e in energies]
    print(f"{d}-D upwind energy gaps every 0.25 up to t = {problem.final_time}:", np.round(gaps, 5))
    assert gaps[-1] > -2e-3  # E∞ is the minimum (up to the grid's first-order error)
    assert gaps[-1] < 0.03 * gaps[0]  # the schedule ends with the gap closed to a few %


@pytest.mark.parametrize("d", [1, 2])
def test_problem_contract(d):
    problem = wgfbench.get_problem(NAMES[d])
    check_problem(problem)
    # the flow is scored against the stored fv-jko run (test_numerical_references.py) ...
    assert problem.reference.kind == "numerical" and problem.primary_metric == {1: "w2", 2: "radial_w2"}[d]
    assert problem.mobility.kind == "nonlinear" and problem.version == 2
    assert 0.2 in problem.times  # the Deep JKO Fig. 7 horizon
    # ... and p∞ is kept as the "stationary" role: the contract's energy check of E∞ runs on the
    # problem without the numerical reference, whose "pde" role is p∞
    assert problem.references["stationary"].kind == "stationary"
    report = check_problem(make_saturation(d, numerical=False))
    assert report.stats["reference.max_energy_z"] < 6
    M = problem.mobility.M
    assert float(M(torch.tensor(M.cap))) == 0.0 and float(M(torch.tensor(0.0))) == 0.0
