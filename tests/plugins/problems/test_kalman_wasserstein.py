"""Kalman–Wasserstein problems: references checked against independent computations.

Linear problems: the posterior precision B and mean m* are recovered from the problem's potential
alone (B from differences of ∇Φ, m* from ∇Φ(m*) = 0); moments are checked against an ODE solve of
dm/dt = −CB(m − m*), dC/dt = 2C − 2CBC, the density against a finite-difference residual of
∂tρ = ∇·(ρC∇log(ρ/π)), the free energy against quadrature and Monte Carlo.
Elliptic problem: the tabulated posterior against the published quadrature (docs/problems.md) and
against an independent, wider quadrature of exp(log_density).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from gaussian_moments import F64, kalman_wasserstein_rhs, moment_ode, quadratic_of, rel
from wgfbench_plugins.problems import kalman_wasserstein as kw

import wgfbench
from wgfbench.energy import Entropy
from wgfbench.references import jko_step_count

LINEAR_NAMES = ["kalman-wasserstein/linear-2d", "kalman-wasserstein/linear-10d"]
ELLIPTIC = "kalman-wasserstein/elliptic-2d"


def grid_points(low, high, n) -> tuple[list[np.ndarray], torch.Tensor, float]:
    axes = [np.linspace(lo, hi, n) for lo, hi in zip(low, high, strict=True)]
    cell = float(np.prod([ax[1] - ax[0] for ax in axes]))
    points = torch.from_numpy(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes)))
    return axes, points, cell


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*LINEAR_NAMES, ELLIPTIC])
def test_problem_contract(name):
    problem = wgfbench.get_problem(name)
    assert problem.name == name and problem.family == "kalman-wasserstein"
    assert problem.mobility.kind == "kalman"
    assert isinstance(problem.energy.internal, Entropy) and len(problem.energy.potentials) == 1
    assert problem.times[0] == 0.0 and 4 <= len(problem.times) <= 8
    for t in problem.times:
        jko_step_count(t, problem.dt)
    assert "jko" not in problem.references
    # every KW problem knows its limit ρ∞ = π (a Stationary with E∞ = −log Z)
    assert problem.references["stationary"].kind == "stationary"
    assert problem.stationary is problem.references["stationary"]
    assert problem.stationary.energy_inf is not None
    if name == ELLIPTIC:
        # version 2: scored against the flow (a stored EKS run), not against π
        assert problem.primary_metric == "sliced_w2" and problem.reference.kind == "numerical"
        assert problem.version == 2 and problem.final_time == 20.0
    else:
        assert problem.primary_metric == "bures_w2" and problem.reference.kind == "exact"
        assert problem.version == 1


@pytest.mark.parametrize("name", LINEAR_NAMES)
def test_potential_is_the_linear_misfit_plus_prior(name):
    """Φ(u) − Φ(m*) = ½(u−m*)ᵀB(u−m*), and ∇Φ agrees with autograd of Φ."""
    problem = wgfbench.get_problem(name)
    B, m_star = quadratic_of(problem)
    assert np.all(np.linalg.eigvalsh(B) > 0)
    u = torch.randn(40, problem.dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    phi = problem.energy.V(u).numpy()
    phi_star = float(problem.energy.V(torch.from_numpy(m_star)[None])[0])
    diff = u.numpy() - m_star
    np.testing.assert_allclose(phi - phi_star, 0.5 * np.einsum("ni,ij,nj->n", diff, B, diff), rtol=1e-10)
    with torch.enable_grad():
        v = u.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(problem.energy.potentials[0].V(v).sum(), v)
    np.testing.assert_allclose(problem.energy.grad_V(u).numpy(), g.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR_NAMES)
def test_linear_moments_match_ode(name):
    problem = wgfbench.get_problem(name)
    B, m_star = quadratic_of(problem)
    m0, C0 = problem.initial.mean().numpy(), problem.initial.cov().numpy()
    times = np.array(problem.times)
    m_ode, C_ode = moment_ode(kalman_wasserstein_rhs(B, m_star), m0, C0, times)
    for k, t in enumerate(times):
        assert rel(problem.reference.mean(t), m_ode[k]) < 1e-6, t
        assert rel(problem.reference.cov(t), C_ode[k]) < 1e-6, t
    # stationary state: the Gaussian posterior N(m*, B⁻¹), reached without overflow at large t
    assert rel(problem.reference.mean(800.0), m_star) < 1e-12
    assert rel(problem.reference.cov(800.0), np.linalg.inv(B)) < 1e-12
    # a good share of the motion happens before the last snapshot
    T = problem.final_time
    moved = np.linalg.norm(problem.reference.mean(T).numpy() - m0)
    assert moved > 5 * np.linalg.norm(problem.reference.mean(T).numpy() - m_star)


def test_linear_pde_residual_by_finite_differences():
    """∂tρ = ∇·(ρC(t)(∇log ρ + ∇Φ)) = Σ_ij C_ij(∂_i∂_jρ + ∂_i(ρ∂_jΦ)) by central differences."""
    problem = wgfbench.get_problem("kalman-wasserstein/linear-2d")
    ref, grad_phi, d = problem.reference, problem.energy.grad_V, 2
    gen = torch.Generator().manual_seed(4)
    delta, h = 1e-5, 1e-3
    basis = torch.eye(d, dtype=F64) * h

    def rho(t, x):
        return torch.exp(ref.log_density(t, x))

    for t in (0.1, 0.5, 1.5):
        x = ref.sample(t, 200, gen)
        C = ref.cov(t).numpy()
        dt_rho = (rho(t + delta, x) - rho(t - delta, x)) / (2 * delta)
        diffusion, drift, wasserstein = (torch.zeros_like(dt_rho) for _ in range(3))
        for i in range(d):
            for j in range(d):
                ei, ej = basis[i], basis[j]
                mixed = (
                    rho(t, x + ei + ej) - rho(t, x + ei - ej) - rho(t, x - ei + ej) + rho(t, x - ei - ej)
                ) / (4 * h**2)
                flux = (rho(t, x + ei) * grad_phi(x + ei)[:, j] - rho(t, x - ei) * grad_phi(x - ei)[:, j]) / (
                    2 * h
                )
                diffusion += C[i, j] * mixed
                drift += C[i, j] * flux
                if i == j:
                    wasserstein += mixed + flux
        scale = max(dt_rho.abs().max(), diffusion.abs().max(), drift.abs().max())
        assert (dt_rho - diffusion - drift).abs().max() / scale < 1e-5, t
        # sharp: the Wasserstein (identity-mobility) flow of the same energy does not fit
        assert (dt_rho - wasserstein).abs().max() / scale > 1e-2


def test_linear_density_and_free_energy_match_quadrature():
    problem = wgfbench.get_problem("kalman-wasserstein/linear-2d")
    _, points, cell = grid_points(problem.box.low, problem.box.high, 801)
    phi = problem.energy.V(points)
    for t in problem.times:
        log_rho = problem.reference.log_density(t, points)
        rho = torch.exp(log_rho)
        assert abs(float(rho.sum() * cell) - 1.0) < 1e-8, t
        quadrature = float((rho * (log_rho + phi)).sum() * cell)
        assert abs(problem.reference.energy(t) - quadrature) < 1e-8 * max(1.0, abs(quadrature)), t


def test_linear_10d_free_energy_matches_monte_carlo():
    problem = wgfbench.get_problem("kalman-wasserstein/linear-10d")
    gen = torch.Generator().manual_seed(6)
    energies = []
    for t in problem.times:
        x = problem.reference.sample(t, 20_000, gen)
        est = problem.energy.on_particles(x, problem.reference.log_density(t, x))
        energies.append(problem.reference.energy(t))
        assert abs(est.value - energies[-1]) < 5 * est.stderr, (t, est, energies[-1])
    assert all(b < a for a, b in itertools.pairwise(energies))


@pytest.mark.parametrize("name", LINEAR_NAMES)
def test_linear_stationary_reference_is_the_gaussian_posterior(name):
    """references["stationary"] = N(m*, B⁻¹) (B, m* recovered from the potential alone), the limit of
    the exact flow, with E∞ = −log Z = E(π) = lim E(ρ(t))."""
    problem = wgfbench.get_problem(name)
    B, m_star = quadratic_of(problem)
    stationary = problem.references["stationary"]
    assert rel(stationary.mean(0.0), m_star) < 1e-10
    assert rel(stationary.cov(0.0), np.linalg.inv(B)) < 1e-10
    assert rel(stationary.mean(0.0), problem.reference.mean(800.0)) < 1e-12
    assert rel(stationary.cov(0.0), problem.reference.cov(800.0)) < 1e-12
    assert stationary.energy(0.0) == pytest.approx(problem.reference.energy(800.0), abs=1e-10)
    # −log Z by quadrature of e^{−Φ} (2-D) or in closed form (Gaussian integral)
    phi_star = float(problem.energy.V(torch.from_numpy(m_star)[None])[0])
    log_z = -phi_star + 0.5 * problem.dim * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(B)[1]
    assert stationary.energy(0.0) == pytest.approx(-log_z, abs=1e-9)
    x = stationary.sample(0.0, 10, torch.Generator().manual_seed(1))
    est = problem.energy.on_particles(x, stationary.log_density(0.0, x))
    assert est.value == pytest.approx(-log_z, abs=1e-9)  # log π + Φ = −log Z pointwise


def test_linear_initial_family_members_are_exact():
    problem = wgfbench.get_problem("kalman-wasserstein/linear-10d")
    B, m_star = quadratic_of(problem)
    initial, reference = problem.initial_family.draw(torch.Generator().manual_seed(3))
    times = np.array(problem.times)
    m_ode, C_ode = moment_ode(
        kalman_wasserstein_rhs(B, m_star), initial.mean().numpy(), initial.cov().numpy(), times
    )
    for k, t in enumerate(times):
        assert rel(reference.mean(t), m_ode[k]) < 1e-6 and rel(reference.cov(t), C_ode[k]) < 1e-6
    other, _ = problem.initial_family.draw(torch.Generator().manual_seed(4))
    assert not torch.allclose(initial.mean(), other.mean())


# ----------------------------------------------------------------------------------------------
# Elliptic inverse problem (Deep JKO §4.4)


def test_elliptic_forward_map_and_potential():
    """G(u) = (u₂/4 + (3/32)e^{−u₁}, 3u₂/4 + (3/32)e^{−u₁}), Φ = ½|G−y|²/0.1² + ½|u|²/10²."""
    problem = wgfbench.get_problem(ELLIPTIC)
    gen = torch.Generator().manual_seed(8)
    u = torch.stack(
        [torch.randn(30, generator=gen, dtype=F64) - 2, 100 + 5 * torch.rand(30, generator=gen, dtype=F64)],
        -1,
    )
    u1, u2 = u[:, 0].numpy(), u[:, 1].numpy()
    G = np.stack([u2 / 4 + 3 / 32 * np.exp(-u1), 3 * u2 / 4 + 3 / 32 * np.exp(-u1)], -1)
    phi = 0.5 * ((G - [27.5, 79.7]) ** 2).sum(-1) / 0.01 + 0.5 * (u.numpy() ** 2).sum(-1) / 100
    np.testing.assert_allclose(problem.energy.V(u).numpy(), phi, rtol=1e-12)
    with torch.enable_grad():
        v = u.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(problem.energy.potentials[0].V(v).sum(), v)
    np.testing.assert_allclose(problem.energy.grad_V(u).numpy(), g.numpy(), rtol=1e-10)
    law = problem.references["stationary"].law
    np.testing.assert_allclose(law.inverse_problem.grad_Phi(law.mode[None]).numpy(), 0.0, atol=1e-5)


def test_elliptic_posterior_matches_published_quadrature():
    """Published quadrature (docs/problems.md): mean (−2.7138, 104.3458), covariance
    [[0.012911, 0.028823], [0.028823, 0.080779]]."""
    ref = wgfbench.get_problem(ELLIPTIC).references["stationary"]
    np.testing.assert_allclose(ref.mean(20.0).numpy(), [-2.7138, 104.3458], rtol=1e-4)
    np.testing.assert_allclose(ref.cov(20.0).numpy(), [[0.012911, 0.028823], [0.028823, 0.080779]], rtol=1e-4)
    assert ref.law.edge_mass < 1e-12


def test_elliptic_log_density_is_normalised_on_a_wider_independent_grid():
    """∫exp(log π) = 1 on a grid 2× wider than the reference's quadrature box (different nodes),
    the mass outside that box is negligible, and the moments agree."""
    ref = wgfbench.get_problem(ELLIPTIC).references["stationary"]
    law = ref.law
    centre, half = (law.low + law.high) / 2, (law.high - law.low) / 2
    low, high = (centre - 2 * half).tolist(), (centre + 2 * half).tolist()
    _, points, cell = grid_points(low, high, 1201)
    density = torch.exp(ref.log_density(20.0, points))
    mass = float(density.sum() * cell)
    assert abs(mass - 1.0) < 1e-8, mass
    inside = ((points >= law.low) & (points <= law.high)).all(-1)
    assert float(density[~inside].sum() * cell) < 1e-10
    mean = (density[:, None] * points).sum(0) * cell
    centred = points - mean
    cov = (density[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0) * cell
    np.testing.assert_allclose(ref.mean(0.0).numpy(), mean.numpy(), rtol=1e-8)
    np.testing.assert_allclose(ref.cov(0.0).numpy(), cov.numpy(), rtol=1e-6)
    assert ref.energy(20.0) == pytest.approx(-law.log_Z)


def test_elliptic_samples_match_posterior_moments():
    ref = wgfbench.get_problem(ELLIPTIC).references["stationary"]
    n = 100_000
    x = ref.sample(20.0, n, torch.Generator().manual_seed(9)).numpy()
    mean, cov = ref.mean(20.0).numpy(), ref.cov(20.0).numpy()
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    assert np.all(np.abs(products.mean(0) - cov) < 5 * products.std(0) / math.sqrt(n))


def test_elliptic_initial_condition():
    """ρ0 = N(0,1) × U(90,110): unit mass, −inf off its support, moments of its samples."""
    problem = wgfbench.get_problem(ELLIPTIC)
    initial = problem.initial
    _, points, cell = grid_points((-9.0, 90.0), (9.0, 110.0), 1001)
    # the uniform factor is a box: the trapezoid weights its two boundary lines by ½
    density = torch.exp(initial.log_density(points)).reshape(1001, 1001)
    mass = float((density.sum() - 0.5 * (density[:, 0].sum() + density[:, -1].sum())) * cell)
    assert abs(mass - 1.0) < 1e-8
    outside = initial.log_density(torch.tensor([[0.0, 89.99], [0.0, 110.01]], dtype=F64))
    assert torch.all(torch.isinf(outside) & (outside < 0))
    n = 100_000
    x = initial.sample(n, torch.Generator().manual_seed(10))
    assert x[:, 1].min() >= 90 and x[:, 1].max() <= 110
    np.testing.assert_allclose(initial.mean().numpy(), [0.0, 100.0])
    np.testing.assert_allclose(initial.cov().numpy(), np.diag([1.0, 400 / 12]))
    assert np.all(np.abs(x.mean(0).numpy() - [0.0, 100.0]) < 5 * np.sqrt(np.array([1.0, 400 / 12]) / n))
    np.testing.assert_allclose(torch.var(x, 0).numpy(), [1.0, 400 / 12], rtol=0.02)
    # the flow has far to go: KL(ρ0 ‖ π) = E(ρ0) − E(π) is large
    est = problem.energy.on_particles(x, initial.log_density(x))
    assert est.value - problem.references["stationary"].energy(20.0) > 100


def test_elliptic_initial_family_shares_the_posterior():
    """Members keep only the stationary posterior as their reference (no run of their own flows)."""
    problem = wgfbench.get_problem(ELLIPTIC)
    gen = torch.Generator().manual_seed(12)
    initial, reference = problem.initial_family.draw(gen)
    assert reference is problem.references["stationary"] and reference.kind == "stationary"
    x = initial.sample(1000, gen)
    assert torch.isfinite(initial.log_density(x)).all()


def test_elliptic_builds_lazily_and_fast():
    entry = wgfbench.default_host().problems.entry(ELLIPTIC)
    assert callable(entry.item) and not isinstance(entry.item, wgfbench.Problem)
    start = time.perf_counter()
    kw.make_elliptic_2d()
    assert time.perf_counter() - start < 5.0
