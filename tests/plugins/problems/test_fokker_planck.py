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
    assert problem.primary_metric == ("sliced_w2" if "mixture" in name else "bures_w2")
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


# ----------------------------------------------------------------------------------------------
# box-1d (Cancès–Gallouët–Todeschi): ∂tρ = ∂x(∂xρ − gρ) on [0, 1], no flux


def box_density(problem, t: float, x: np.ndarray) -> np.ndarray:
    return np.exp(problem.reference.log_density(t, torch.as_tensor(x, dtype=F64)[:, None]).numpy())


def box_g(problem) -> float:
    """g recovered from the energy: ∇V = −g everywhere."""
    grad = problem.energy.grad_V(torch.tensor([[0.1], [0.7]], dtype=F64))
    assert float(grad[0, 0]) == float(grad[1, 0])
    return -float(grad[0, 0])


def test_box_1d_unit_mass_positivity_and_box():
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    assert problem.box.low == (0.0,) and problem.box.high == (1.0,)
    assert box_g(problem) == 1.0
    x = np.linspace(0.0, 1.0, 20001)
    for t in problem.times:
        mass = scipy.integrate.quad(
            lambda y, t=t: box_density(problem, t, np.array([y]))[0], 0, 1, epsabs=1e-13
        )
        assert abs(mass[0] - 1.0) < 1e-10, (t, mass)
        assert box_density(problem, t, x).min() > 0.01
    outside = problem.reference.log_density(0.1, torch.tensor([[-0.01], [1.01]], dtype=F64))
    assert torch.isinf(outside).all()


def test_box_1d_pde_residual_by_finite_differences():
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    g = box_g(problem)
    x = np.linspace(0.02, 0.98, 97)
    h, ht = 1e-4, 1e-6
    for t in (0.0, 0.01, 0.05, 0.2):
        if t == 0.0:  # the reference answers no t < 0: second-order one-sided in time
            f_t = [box_density(problem, k * ht, x) for k in (0, 1, 2)]
            dt_rho = (-3 * f_t[0] + 4 * f_t[1] - f_t[2]) / (2 * ht)
        else:
            dt_rho = (box_density(problem, t + ht, x) - box_density(problem, t - ht, x)) / (2 * ht)
        f = [box_density(problem, t, x + k * h) for k in (-1, 0, 1)]
        d2 = (f[2] - 2 * f[1] + f[0]) / h**2
        d1 = (f[2] - f[0]) / (2 * h)
        residual = dt_rho - (d2 - g * d1)
        scale = np.abs(dt_rho).max()
        assert scale > 0.1  # the transient is still moving
        assert np.abs(residual).max() < 1e-6 * scale, (t, np.abs(residual).max(), scale)


def test_box_1d_no_flux_at_the_walls():
    """∂xρ − gρ = 0 at x = 0 and 1 (fourth-order one-sided differences)."""
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    g = box_g(problem)
    h = 1e-3
    coeffs = np.array([-25.0, 48.0, -36.0, 16.0, -3.0]) / (12 * h)
    for t in problem.times:
        left = box_density(problem, t, h * np.arange(5))
        right = box_density(problem, t, 1.0 - h * np.arange(5))
        flux_left = coeffs @ left - g * left[0]
        flux_right = -(coeffs @ right) - g * right[0]
        assert abs(flux_left) < 1e-7 and abs(flux_right) < 1e-7, (t, flux_left, flux_right)
    # ... while the flux inside the box is far from zero before equilibrium
    inner = box_density(problem, 0.0, np.array([0.5 - h, 0.5, 0.5 + h]))
    assert abs((inner[2] - inner[0]) / (2 * h) - g * inner[1]) > 0.1


def test_box_1d_cdf_closed_form_and_sampler():
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    x = np.linspace(0.0, 1.0, 40001)
    gen = torch.Generator().manual_seed(3)
    for t in problem.times:
        rho = box_density(problem, t, x)
        cdf_quad = scipy.integrate.cumulative_simpson(rho, x=x, initial=0.0)
        law = problem.reference.at(t)
        cdf_closed = law.cdf(torch.as_tensor(x)).numpy()
        assert np.abs(cdf_closed - cdf_quad).max() < 1e-10
        samples = problem.reference.sample(t, 20_000, gen)[:, 0].numpy()
        p = scipy.stats.kstest(samples, lambda y, c=cdf_quad: np.interp(y, x, c)).pvalue
        assert p > 1e-4, (t, p)
        u = np.array([0.01, 0.25, 0.5, 0.75, 0.99])
        q = law.quantile(torch.as_tensor(u)).numpy()
        np.testing.assert_allclose(np.interp(q, x, cdf_quad), u, atol=1e-9)


def test_box_1d_moments_and_free_energy_against_quad():
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    g = box_g(problem)
    energies = []
    for t in problem.times:

        def rho(y, t=t):
            return box_density(problem, t, np.array([y]))[0]

        mean = scipy.integrate.quad(lambda y: y * rho(y), 0, 1, epsabs=1e-13)[0]
        var = scipy.integrate.quad(lambda y, m=mean: (y - m) ** 2 * rho(y), 0, 1, epsabs=1e-13)[0]
        energy = scipy.integrate.quad(lambda y: rho(y) * (math.log(rho(y)) - g * y), 0, 1, epsabs=1e-13)[0]
        assert abs(float(problem.reference.mean(t)[0]) - mean) < 1e-11
        assert abs(float(problem.reference.cov(t)[0, 0]) - var) < 1e-11
        assert abs(problem.reference.energy(t) - energy) < 1e-10
        energies.append(energy)
    assert all(b < a for a, b in itertools.pairwise(energies))
    # the stationary state ∝ e^{gx} has energy −log((e^g − 1)/g) below every snapshot's
    assert energies[-1] > -math.log(math.expm1(g) / g)


def test_box_1d_motion_is_well_above_the_1d_floor():
    problem = wgfbench.get_problem("fokker-planck/box-1d")
    u = (np.arange(4000) + 0.5) / 4000
    q0 = problem.reference.at(0.0).quantile(torch.as_tensor(u)).numpy()
    for t in problem.times[1:]:
        qt = problem.reference.at(t).quantile(torch.as_tensor(u)).numpy()
        assert math.sqrt(np.mean((qt - q0) ** 2)) > 0.04  # 1-D W2 by quantiles; floor at n=500 ≈ 0.01


def test_box_1d_contract():
    from wgfbench.testing import check_problem

    report = check_problem(wgfbench.get_problem("fokker-planck/box-1d"))
    assert "initial_matches_reference" in report.checks


# ----------------------------------------------------------------------------------------------
# four-wells-2d (Deep JKO §4.1): KL to four Gaussians


def four_wells_q(x: np.ndarray) -> np.ndarray:
    return sum(
        0.25 * scipy.stats.multivariate_normal([a, b], 0.25 * np.eye(2)).pdf(x)
        for a in (-2.0, 2.0)
        for b in (-2.0, 2.0)
    )


def test_four_wells_potential_is_minus_log_q():
    problem = wgfbench.get_problem("fokker-planck/four-wells-2d")
    x = torch.empty(400, 2, dtype=F64).uniform_(-4.5, 4.5, generator=torch.Generator().manual_seed(0))
    V = problem.energy.V(x).numpy()
    np.testing.assert_allclose(V, -np.log(four_wells_q(x.numpy())), rtol=1e-12, atol=1e-12)
    h = 1e-6
    fd = torch.stack(
        [
            (problem.energy.V(x + h * e) - problem.energy.V(x - h * e)) / (2 * h)
            for e in torch.eye(2, dtype=F64)
        ],
        1,
    )
    torch.testing.assert_close(problem.energy.grad_V(x), fd, rtol=1e-6, atol=1e-6)
    # the potential also works in float32 (solvers' dtype)
    assert problem.energy.grad_V(x.float()).dtype == torch.float32


def test_four_wells_stationary_law_and_energy():
    from wgfbench_plugins.problems.fokker_planck import make_four_wells_2d

    problem = make_four_wells_2d(numerical=False)  # q alone: the stationary problem
    assert problem.primary_metric == "energy_gap"
    assert problem.reference is problem.references["stationary"]
    assert problem.reference.kind == "stationary" and problem.reference.energy(1.0) == 0.0
    # E(q) = ∫q log q + ∫qV = 0: q = e^{−V} is normalised (midpoint rule on [−8, 8]²) ...
    axis = np.linspace(-8, 8, 801)
    cell = (axis[1] - axis[0]) ** 2
    grid = torch.as_tensor(np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2))
    assert abs(float(torch.exp(-problem.energy.V(grid)).sum()) * cell - 1.0) < 1e-10
    # ... and the reference samples are q (moments against scipy's mixture, KS per coordinate)
    x = problem.reference.sample(2.0, 50_000, torch.Generator().manual_seed(1)).numpy()
    assert np.abs(x.mean(0)).max() < 0.03
    np.testing.assert_allclose(np.cov(x.T), np.diag([4.25, 4.25]), atol=0.1)
    # the energy at ρ0 is KL(ρ0|q) > 0 (quadrature)
    rho0 = np.exp(problem.initial.log_density(grid).numpy())
    kl0 = float(np.sum(rho0 * (np.log(np.maximum(rho0, 1e-300)) - np.log(four_wells_q(grid.numpy())))) * cell)
    assert 6.0 < kl0 < 7.5
    x0 = problem.initial.sample(20_000, torch.Generator().manual_seed(2))
    est = problem.energy.on_particles(x0, problem.initial.log_density(x0))
    assert abs(est.value - kl0) < 5 * est.stderr


def test_four_wells_box_holds_all_but_1e8_of_the_mass():
    problem = wgfbench.get_problem("fokker-planck/four-wells-2d")
    half = problem.box.high[0]
    assert problem.box.low == (-half, -half) and problem.box.high == (half, half)
    for centres in (((2, 2), (2, -2), (-2, 2), (-2, -2)), ((1.2, 0.0), (-1.2, 0.0))):
        outside = 0.0
        for c in centres:
            inside = 1.0
            for ci in c:
                inside *= scipy.stats.norm(ci, 0.5).cdf(half) - scipy.stats.norm(ci, 0.5).cdf(-half)
            outside += (1.0 - inside) / len(centres)
        assert outside < 1e-8


def test_four_wells_registered_problem_uses_the_numerical_reference():
    problem = wgfbench.get_problem("fokker-planck/four-wells-2d")
    assert problem.reference.kind == "numerical" and problem.primary_metric == "sliced_w2"
    assert problem.references["stationary"].kind == "stationary"


def test_four_wells_contract():
    from wgfbench.testing import check_problem

    report = check_problem(wgfbench.get_problem("fokker-planck/four-wells-2d"))
    assert report.stats["reference.max_energy_z"] < 1.0
