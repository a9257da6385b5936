"""Fokker–Planck problems: every reference checked against an independent computation.

The potential is recovered from the problem's energy alone (A from differences of ∇V, μ from
∇V(μ) = 0), so these checks hold for the PDE the problem actually defines: moments against an ODE
solve, the density against a finite-difference PDE residual, the JKO iterates against a numerical
minimisation of the JKO functional, mixtures against scipy's Gaussian densities.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch
from gaussian_moments import F64, fokker_planck_rhs, moment_ode, quadratic_of, rel

import wgfbench
from wgfbench.energy import Entropy
from wgfbench.references import GaussianMixture, jko_step_count

OU_NAMES = [f"fokker-planck/ou-{d}d" for d in (1, 2, 10, 32)]
GAUSSIAN_NAMES = [*OU_NAMES, "fokker-planck/ou-rotated-2d"]
ALL_NAMES = [*GAUSSIAN_NAMES, "fokker-planck/mixture-2d"]


def gaussian_free_energy_1d(m, s, a, mu) -> float:
    """F(N(m, s²)) = ½a((m−μ)² + s²) − log s − ½log(2πe), written out independently."""
    return 0.5 * a * ((m - mu) ** 2 + s**2) - math.log(s) - 0.5 * math.log(2 * math.pi * math.e)


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
def test_problem_contract(name):
    problem = wgfbench.get_problem(name)
    assert problem.name == name and problem.family == "fokker-planck"
    assert problem.mobility.kind == "wasserstein"
    assert isinstance(problem.energy.internal, Entropy) and len(problem.energy.potentials) == 1
    assert problem.reference.kind == "exact" and problem.times[0] == 0.0 and 4 <= len(problem.times) <= 8
    for t in problem.times:  # every snapshot lies on the recommended JKO grid
        jko_step_count(t, problem.dt)
    assert problem.primary_metric == ("w2" if "mixture" in name else "bures_w2")
    assert ("jko" in problem.references) == (name in OU_NAMES)
    A, mu = quadratic_of(problem)
    x = torch.randn(50, problem.dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    diff = x.numpy() - mu
    np.testing.assert_allclose(
        problem.energy.V(x).numpy(), 0.5 * np.einsum("ni,ij,nj->n", diff, A, diff), rtol=1e-12
    )
    if name in OU_NAMES:
        a = np.diag(A)
        assert np.allclose(A, np.diag(a)) and len(set(np.round(a, 12))) == problem.dim
        S0 = problem.initial.cov().numpy()
        assert np.allclose(S0, np.diag(np.diag(S0)))
        assert np.min(np.abs(np.diag(S0) - 1 / a)) > 0.1  # Σ0 ≠ A⁻¹ on every axis
        assert np.min(np.abs(problem.initial.mean().numpy() - mu)) > 0.5  # m0 ≠ μ
    if name.endswith("rotated-2d"):
        assert abs(A[0, 1]) > 0.1


@pytest.mark.parametrize("name", GAUSSIAN_NAMES)
def test_gaussian_moments_match_ode(name):
    problem = wgfbench.get_problem(name)
    A, mu = quadratic_of(problem)
    m0, S0 = problem.initial.mean().numpy(), problem.initial.cov().numpy()
    times = np.array(problem.times)
    m_ode, S_ode = moment_ode(fokker_planck_rhs(A, mu), m0, S0, times)
    for k, t in enumerate(times):
        assert rel(problem.reference.mean(t), m_ode[k]) < 1e-6
        assert rel(problem.reference.cov(t), S_ode[k]) < 1e-6
    # and the flow relaxes to N(μ, A⁻¹)
    assert rel(problem.reference.mean(60.0), mu) < 1e-10
    assert rel(problem.reference.cov(60.0), np.linalg.inv(A)) < 1e-10


def test_motion_is_substantial():
    """A good share of the motion happens before the last snapshot (for scoring rel_error)."""
    for name in ("fokker-planck/ou-2d", "fokker-planck/ou-rotated-2d"):
        ref = wgfbench.get_problem(name).reference
        T = wgfbench.get_problem(name).final_time
        moved = float(torch.linalg.norm(ref.mean(T) - ref.mean(0.0)))
        remaining = float(torch.linalg.norm(ref.mean(100.0) - ref.mean(T)))
        assert moved > 1.5 * remaining  # at least 60% of the way to equilibrium


@pytest.mark.parametrize(
    "name",
    ["fokker-planck/ou-1d", "fokker-planck/ou-2d", "fokker-planck/ou-rotated-2d", "fokker-planck/mixture-2d"],
)
def test_density_has_unit_mass_on_the_box(name):
    problem = wgfbench.get_problem(name)
    box, n = problem.box, (20001 if problem.dim == 1 else 401)
    axes = [np.linspace(lo, hi, n) for lo, hi in zip(box.low, box.high, strict=True)]
    grid = torch.from_numpy(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, problem.dim))
    for t in problem.times:
        rho = torch.exp(problem.reference.log_density(t, grid)).numpy().reshape((n,) * problem.dim)
        mass = rho
        for ax in reversed(axes):
            mass = scipy.integrate.trapezoid(mass, ax, axis=-1)
        assert abs(mass - 1.0) < 1e-8, (t, mass)


@pytest.mark.parametrize(
    "name",
    ["fokker-planck/ou-1d", "fokker-planck/ou-2d", "fokker-planck/ou-rotated-2d", "fokker-planck/mixture-2d"],
)
def test_pde_residual_by_finite_differences(name):
    """∂tρ = ∇·(ρ∇V) + Δρ pointwise, with central differences in t (δ = 1e-4) and x (h = 1e-3)."""
    problem = wgfbench.get_problem(name)
    ref, grad_V, d = problem.reference, problem.energy.grad_V, problem.dim
    gen = torch.Generator().manual_seed(3)
    delta, h = 1e-4, 1e-3

    def rho(t, x):
        return torch.exp(ref.log_density(t, x))

    for t in (0.1, 0.5, 1.0):
        x = ref.sample(t, 200, gen)
        dt_rho = (rho(t + delta, x) - rho(t - delta, x)) / (2 * delta)
        drift = torch.zeros_like(dt_rho)
        laplacian = -2 * d * rho(t, x)
        for i in range(d):
            e = torch.zeros(d, dtype=F64)
            e[i] = h
            up, down = rho(t, x + e), rho(t, x - e)
            drift += (up * grad_V(x + e)[:, i] - down * grad_V(x - e)[:, i]) / (2 * h)
            laplacian += up + down
        laplacian /= h**2
        scale = max(dt_rho.abs().max(), drift.abs().max(), laplacian.abs().max())
        residual = (dt_rho - drift - laplacian).abs().max() / scale
        assert residual < 1e-5, (t, float(residual))
        # the check is sharp: dropping the drift (the heat equation) leaves a large residual
        assert (dt_rho - laplacian).abs().max() / scale > 1e-2


@pytest.mark.parametrize("name", ["fokker-planck/ou-1d", "fokker-planck/ou-rotated-2d"])
def test_gaussian_free_energy_matches_quadrature(name):
    """E(t) = ∫ρ log ρ + ∫ρV against the midpoint rule on a fine grid."""
    problem = wgfbench.get_problem(name)
    n = 20001 if problem.dim == 1 else 601
    axes = [np.linspace(lo, hi, n) for lo, hi in zip(problem.box.low, problem.box.high, strict=True)]
    cell = np.prod([ax[1] - ax[0] for ax in axes])
    grid = torch.from_numpy(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, problem.dim))
    V = problem.energy.V(grid)
    for t in problem.times:
        log_rho = problem.reference.log_density(t, grid)
        quadrature = float((torch.exp(log_rho) * (log_rho + V)).sum() * cell)
        assert abs(problem.reference.energy(t) - quadrature) < 1e-8 * max(1.0, abs(quadrature))


@pytest.mark.parametrize("name", ["fokker-planck/ou-10d", "fokker-planck/ou-32d", "fokker-planck/mixture-2d"])
def test_free_energy_matches_monte_carlo(name):
    problem = wgfbench.get_problem(name)
    gen = torch.Generator().manual_seed(5)
    energies = []
    for t in problem.times:
        x = problem.reference.sample(t, 10_000, gen)
        est = problem.energy.on_particles(x, problem.reference.log_density(t, x))
        exact = problem.reference.energy(t)
        assert abs(est.value - exact) < 5 * est.stderr, (t, est, exact)
        energies.append(exact)
    assert all(b < a for a, b in itertools.pairwise(energies))  # dissipation


def test_box_covers_seven_sigma_at_every_snapshot():
    for name in ALL_NAMES:
        problem = wgfbench.get_problem(name)
        low, high = np.array(problem.box.low), np.array(problem.box.high)
        for t in problem.times:
            law = problem.reference.at(t)
            parts = law.components if isinstance(law, GaussianMixture) else [law]
            for part in parts:
                m, s = part.mean().numpy(), np.sqrt(np.diag(part.cov().numpy()))
                assert np.all(low <= m - 6.99 * s) and np.all(m + 6.99 * s <= high), (name, t)


# ----------------------------------------------------------------------------------------------
# JKO iterates


@pytest.mark.parametrize("name", ["fokker-planck/ou-1d", "fokker-planck/ou-2d"])
def test_jko_iterates_match_numerical_jko_minimisation(name):
    """Per axis, ρ^{k+1} = argmin_{N(m,s²)} (m−m_k)² + (s−s_k)² + 2τF(N(m,s²)), minimised by BFGS."""
    problem = wgfbench.get_problem(name)
    A, mu = quadratic_of(problem)
    a = np.diag(A)
    tau, steps = 0.1, 8
    ref = problem.jko.for_step(tau)
    m0, var0 = problem.initial.mean().numpy(), np.diag(problem.initial.cov().numpy())
    for i in range(problem.dim):
        m, s = m0[i], math.sqrt(var0[i])
        for k in range(1, steps + 1):
            mk, sk = m, s

            def objective(z, mk=mk, sk=sk, a_i=a[i], mu_i=mu[i]):
                return (
                    (z[0] - mk) ** 2
                    + (z[1] - sk) ** 2
                    + 2 * tau * gaussian_free_energy_1d(z[0], z[1], a_i, mu_i)
                )

            res = scipy.optimize.minimize(
                objective,
                np.array([mk, sk]),
                method="L-BFGS-B",
                bounds=[(None, None), (1e-6, None)],
                options={"ftol": 1e-15, "gtol": 1e-12},
            )
            m, s = res.x
            assert abs(ref.mean(k * tau)[i] - m) < 1e-6 * max(1.0, abs(m))
            assert abs(ref.cov(k * tau)[i, i] - s**2) < 1e-6 * s**2


def test_jko_energy_decreases_and_rejects_off_grid_times():
    problem = wgfbench.get_problem("fokker-planck/ou-10d")
    ref = problem.jko.for_step(0.05)
    energies = [ref.energy(0.05 * k) for k in range(0, 41, 4)]
    assert all(b < a for a, b in itertools.pairwise(energies))
    assert ref.energy(0.0) == pytest.approx(problem.reference.energy(0.0), rel=1e-12)
    with pytest.raises(ValueError):
        ref.mean(0.123)


def test_jko_converges_to_pde_at_first_order():
    problem = wgfbench.get_problem("fokker-planck/ou-2d")
    t = 1.0
    m_exact, S_exact = problem.reference.mean(t).numpy(), problem.reference.cov(t).numpy()
    taus = [0.1, 0.05, 0.025, 0.0125]
    errors = []
    for tau in taus:
        ref = problem.jko.for_step(tau)
        errors.append(
            np.linalg.norm(ref.mean(t).numpy() - m_exact) + np.linalg.norm(ref.cov(t).numpy() - S_exact)
        )
    orders = [math.log2(e1 / e2) for e1, e2 in itertools.pairwise(errors)]
    print("JKO vs PDE at t=1: errors", errors, "observed orders", orders)
    assert all(0.9 < p < 1.1 for p in orders)


# ----------------------------------------------------------------------------------------------
# Mixture


def test_mixture_density_matches_independent_evaluation():
    problem = wgfbench.get_problem("fokker-planck/mixture-2d")
    A, mu = quadratic_of(problem)
    initial = problem.initial
    gen = torch.Generator().manual_seed(7)
    for t in problem.times:
        x = problem.reference.sample(t, 500, gen)
        E = scipy.linalg.expm(-A * t)
        A_inv = np.linalg.inv(A)
        density = np.zeros(500)
        for w, comp in zip(initial.weights.numpy(), initial.components, strict=True):
            m = mu + E @ (comp.mean().numpy() - mu)
            S = E @ comp.cov().numpy() @ E.T + A_inv @ (np.eye(2) - E @ E)
            density += w * scipy.stats.multivariate_normal(m, S).pdf(x.numpy())
        np.testing.assert_allclose(torch.exp(problem.reference.log_density(t, x)).numpy(), density, rtol=1e-9)


def test_mixture_samples_match_moments():
    problem = wgfbench.get_problem("fokker-planck/mixture-2d")
    gen = torch.Generator().manual_seed(11)
    n = 100_000
    for t in (0.0, 0.5, 2.0):
        x = problem.reference.sample(t, n, gen).numpy()
        mean, cov = problem.reference.mean(t).numpy(), problem.reference.cov(t).numpy()
        se_mean = np.sqrt(np.diag(cov) / n)
        assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean)
        centred = x - mean
        products = centred[:, :, None] * centred[:, None, :]
        se_cov = products.std(0) / math.sqrt(n)
        assert np.all(np.abs(products.mean(0) - cov) < 5 * se_cov)
    weights = problem.initial.weights.numpy()
    assert len(set(weights.round(12))) == len(weights) >= 2


# ----------------------------------------------------------------------------------------------
# Initial families


@pytest.mark.parametrize("name", ["fokker-planck/ou-10d", "fokker-planck/ou-rotated-2d"])
def test_gaussian_initial_family_members_are_exact(name):
    problem = wgfbench.get_problem(name)
    A, mu = quadratic_of(problem)
    first = problem.initial_family.draw(torch.Generator().manual_seed(0))
    again = problem.initial_family.draw(torch.Generator().manual_seed(0))
    other = problem.initial_family.draw(torch.Generator().manual_seed(1))
    assert torch.equal(first[0].mean(), again[0].mean())
    assert not torch.allclose(first[0].mean(), other[0].mean())
    initial, reference = first
    times = np.array(problem.times)
    m_ode, S_ode = moment_ode(fokker_planck_rhs(A, mu), initial.mean().numpy(), initial.cov().numpy(), times)
    for k, t in enumerate(times):
        assert rel(reference.mean(t), m_ode[k]) < 1e-6 and rel(reference.cov(t), S_ode[k]) < 1e-6


def test_mixture_initial_family_members_are_exact():
    problem = wgfbench.get_problem("fokker-planck/mixture-2d")
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        initial, reference = problem.initial_family.draw(gen)
        assert isinstance(initial, GaussianMixture) and len(initial.components) in (2, 3)
        x = initial.sample(300, gen)
        np.testing.assert_allclose(reference.log_density(0.0, x), initial.log_density(x), atol=1e-10)
        # the mixture mean follows the OU mean ODE by linearity
        A, mu = quadratic_of(problem)
        m_t = mu + scipy.linalg.expm(-A * 1.0) @ (initial.mean().numpy() - mu)
        assert rel(reference.mean(1.0), m_t) < 1e-10
