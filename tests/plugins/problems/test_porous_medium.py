"""Barenblatt references of the porous medium equation against independent computations.

Every closed form in ``plugins/problems/porous_medium.py`` is checked here against numbers computed
another way: the docs/problems.md constants, an independently coded density, radial quadrature (mass,
second moment, energy, quantile W2), finite-difference PDE residuals, KS tests of exact samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from wgfbench_plugins.problems.porous_medium import Barenblatt, BarenblattConstants, BarenblattProfile

import wgfbench

DTYPE = torch.float64
CASES = [(1, 2.0), (2, 2.0), (3, 2.0), (6, 2.0), (10, 2.0), (1, 3.0), (2, 3.0), (2, 1.5)]
PROBLEMS = [(1, 2), (2, 2), (6, 2), (10, 2), (1, 3), (2, 3)]


def independent_barenblatt(d: int, m: float):
    """The Barenblatt density, coded from scratch from docs/problems.md (no shared code with the plugin).

    Returns ``rho(r, tau)`` (numpy, radial distance ``r`` from the centre) and the support radius.
    """
    alpha = d / (d * (m - 1) + 2)
    beta = alpha / d
    k = alpha * (m - 1) / (2 * m * d)
    p = 1 / (m - 1)
    C = (k ** (d / 2) * math.gamma(p + 1 + d / 2) / (math.pi ** (d / 2) * math.gamma(p + 1))) ** (
        1 / (p + d / 2)
    )

    def rho(r, tau):
        r = np.asarray(r, dtype=np.float64)
        return tau ** (-alpha) * np.maximum(C - k * r**2 * tau ** (-2 * beta), 0.0) ** p

    def radius(tau):
        return math.sqrt(C / k) * tau**beta

    return rho, radius


def sphere_area(d: int) -> float:
    """|S^{d-1}| = 2 pi^{d/2} / Gamma(d/2)."""
    return 2 * math.pi ** (d / 2) / math.gamma(d / 2)


def radial_integral(f, d: int, R: float) -> float:
    """int_{|x|<R} f(|x|) dx = |S^{d-1}| int_0^R f(r) r^{d-1} dr by adaptive quadrature."""
    value, _ = integrate.quad(lambda r: f(r) * r ** (d - 1), 0.0, R, epsabs=0, epsrel=1e-12, limit=200)
    return sphere_area(d) * value


def on_ray(r: np.ndarray, d: int, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Points at distance ``r`` from ``centre`` along the diagonal direction."""
    direction = torch.ones(d, dtype=DTYPE) / math.sqrt(d)
    x = torch.as_tensor(r, dtype=DTYPE)[:, None] * direction
    return x if centre is None else x + centre


def test_constants_match_problems_md():
    assert BarenblattConstants.of(1, 2).C == pytest.approx(0.360562, abs=1e-6)
    assert BarenblattConstants.of(2, 2).C == pytest.approx(1 / math.sqrt(8 * math.pi), rel=1e-12)
    assert BarenblattConstants.of(3, 2).C == pytest.approx(0.134810, abs=1e-6)
    c = BarenblattConstants.of(2, 2)
    assert (c.alpha, c.beta, c.k, c.p) == pytest.approx((0.5, 0.25, 1 / 16, 1.0), rel=1e-14)


@pytest.mark.parametrize(("d", "m"), CASES)
def test_density_matches_independent_formula(d, m):
    rho, radius = independent_barenblatt(d, m)
    centre = torch.linspace(-0.3, 0.4, d, dtype=DTYPE)
    ref = Barenblatt(d, m, t0=0.1, centre=centre)
    for t in (0.0, 0.4, 1.7):
        tau = t + 0.1
        R = radius(tau)
        assert ref.support_radius(t) == pytest.approx(R, rel=1e-12)
        r = np.linspace(0.0, 0.999 * R, 57)
        got = torch.exp(ref.log_density(t, on_ray(r, d, centre))).numpy()
        np.testing.assert_allclose(got, rho(r, tau), rtol=1e-10)
        outside = ref.log_density(t, on_ray(np.array([1.001 * R, 2 * R]), d, centre))
        assert torch.isneginf(outside).all()


@pytest.mark.parametrize(("d", "m"), CASES)
def test_unit_mass_by_radial_quadrature(d, m):
    ref = Barenblatt(d, m, t0=0.1)
    for t in (0.0, 0.9):
        R = ref.support_radius(t)

        def rho(r, t=t):
            return float(torch.exp(ref.log_density(t, on_ray(np.array([r]), d)))[0])

        assert radial_integral(rho, d, R) == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize(("d", "m"), CASES)
def test_second_moment_and_energy_against_quadrature(d, m):
    rho, radius = independent_barenblatt(d, m)
    ref = Barenblatt(d, m, t0=0.1)
    for t in (0.0, 0.9):
        tau, R = t + 0.1, radius(t + 0.1)
        second = radial_integral(lambda r, tau=tau: r**2 * rho(r, tau), d, R)
        assert float(torch.trace(ref.cov(t))) == pytest.approx(second, rel=1e-8)
        energy = radial_integral(lambda r, tau=tau: rho(r, tau) ** m / (m - 1), d, R)
        assert ref.energy(t) == pytest.approx(energy, rel=1e-8)
        cov = ref.cov(t)
        assert torch.allclose(cov, cov[0, 0] * torch.eye(d, dtype=DTYPE), rtol=0, atol=1e-15)


def test_closed_form_second_moment():
    # E|X - c|^2 = (C/k) tau^{2 beta} d / (d + 2p + 2), from the docs/problems.md constants directly.
    for d, m in CASES:
        alpha = d / (d * (m - 1) + 2)
        k, p = alpha * (m - 1) / (2 * m * d), 1 / (m - 1)
        C = BarenblattConstants.of(d, m).C
        tau = 0.7
        expected = C / k * tau ** (2 * alpha / d) * d / (d + 2 * p + 2)
        assert float(torch.trace(BarenblattProfile(d, m, tau).cov())) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("d", "m", "seed"), [(1, 2.0, 0), (2, 2.0, 1), (6, 2.0, 2), (1, 3.0, 3), (2, 3.0, 4)]
)
def test_samples_radial_law_ks(d, m, seed):
    """Scaled radii |X - c|/R of exact samples follow the CDF obtained by quadrature of the density."""
    rho, radius = independent_barenblatt(d, m)
    centre = torch.full((d,), 0.25, dtype=DTYPE)
    ref = Barenblatt(d, m, t0=0.1, centre=centre)
    generator = torch.Generator().manual_seed(seed)
    t = 0.5
    R = radius(t + 0.1)
    x = ref.sample(t, 4000, generator)
    u = (torch.linalg.vector_norm(x - centre, dim=1) / R).numpy()
    assert u.max() <= 1.0
    grid = np.linspace(0.0, 1.0, 200_001)
    radial_density = rho(grid * R, t + 0.1) * grid ** (d - 1)
    cdf_table = integrate.cumulative_trapezoid(radial_density, grid, initial=0.0)
    cdf_table /= cdf_table[-1]
    result = stats.kstest(u, lambda v: np.interp(v, grid, cdf_table))
    assert result.pvalue > 1e-3
    # sample second moment against the closed form (4 standard errors)
    r2 = (u * R) ** 2
    assert abs(r2.mean() - float(torch.trace(ref.cov(t)))) < 4 * r2.std() / math.sqrt(r2.size)
    # the directions are uniform: the sample mean is the centre
    mean_err = (x.mean(0) - centre).abs().max()
    assert float(mean_err) < 4 * R / math.sqrt(4000)


def _finite_difference_residual_1d(m: float) -> tuple[float, float]:
    ref = Barenblatt(1, m, t0=0.1)
    t, ht, h = 0.3, 1e-5, 1e-3
    R = ref.support_radius(t)
    x = torch.linspace(-0.8 * R, 0.8 * R, 41, dtype=DTYPE)[:, None]

    def rho(t, x):
        return torch.exp(ref.log_density(t, x))

    dt_rho = (rho(t + ht, x) - rho(t - ht, x)) / (2 * ht)
    lap = (rho(t, x + h) ** m - 2 * rho(t, x) ** m + rho(t, x - h) ** m) / h**2
    return float((dt_rho - lap).abs().max()), float(dt_rho.abs().max())


def _finite_difference_residual_2d(m: float) -> tuple[float, float]:
    centre = torch.tensor([0.2, -0.1], dtype=DTYPE)
    ref = Barenblatt(2, m, t0=0.1, centre=centre)
    t, ht, h = 0.3, 1e-5, 1e-3
    R = ref.support_radius(t)
    g = torch.linspace(-0.55 * R, 0.55 * R, 15, dtype=DTYPE)
    x = torch.cartesian_prod(g, g) + centre
    e0, e1 = torch.tensor([h, 0.0], dtype=DTYPE), torch.tensor([0.0, h], dtype=DTYPE)

    def p(x):
        return torch.exp(m * ref.log_density(t, x))

    dt_rho = (torch.exp(ref.log_density(t + ht, x)) - torch.exp(ref.log_density(t - ht, x))) / (2 * ht)
    lap = (p(x + e0) + p(x - e0) + p(x + e1) + p(x - e1) - 4 * p(x)) / h**2
    return float((dt_rho - lap).abs().max()), float(dt_rho.abs().max())


@pytest.mark.parametrize("m", [2.0, 3.0])
def test_pde_residual_finite_differences(m):
    """d_t rho = Laplacian rho^m inside the support (central differences, O(h^2) error)."""
    for residual, scale in (_finite_difference_residual_1d(m), _finite_difference_residual_2d(m)):
        assert scale > 0.05
        assert residual < 1e-5 * scale + 1e-8


def _radial_quantile_w2(d: int, m: float, t1: float, t2: float, t0: float) -> float:
    """W2 between the radial laws by quadrature of the quantile functions, from the density alone."""
    rho, radius = independent_barenblatt(d, m)

    def quantile_function(tau):
        R = radius(tau)
        grid = np.linspace(0.0, R, 400_001)
        cdf = integrate.cumulative_trapezoid(rho(grid, tau) * grid ** (d - 1), grid, initial=0.0)
        cdf /= cdf[-1]
        return lambda u: np.interp(u, cdf, grid)

    q1, q2 = quantile_function(t1 + t0), quantile_function(t2 + t0)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    u, w = 0.5 * (nodes + 1.0), 0.5 * weights
    return math.sqrt(float(np.sum(w * (q1(u) - q2(u)) ** 2)))


@pytest.mark.parametrize(("d", "m"), [(1, 2.0), (2, 2.0), (6, 2.0), (2, 3.0)])
def test_w2_between_times(d, m):
    ref = Barenblatt(d, m, t0=0.1)
    exact = ref.w2_between(0.0, 0.8)
    assert exact == pytest.approx(_radial_quantile_w2(d, m, 0.0, 0.8, 0.1), rel=1e-4)
    assert ref.w2_between(0.8, 0.0) == exact
    assert ref.w2_between(0.3, 0.3) == 0.0


def test_w2_between_times_empirical_1d():
    """In 1-D the empirical W2 of two large independent samples is the sorted-sample distance."""
    ref = Barenblatt(1, 2.0, t0=0.1, centre=torch.tensor([0.3], dtype=DTYPE))
    a = ref.sample(0.0, 40_000, torch.Generator().manual_seed(10)).squeeze(1).sort().values
    b = ref.sample(1.0, 40_000, torch.Generator().manual_seed(11)).squeeze(1).sort().values
    empirical = float(((a - b) ** 2).mean().sqrt())
    assert empirical == pytest.approx(ref.w2_between(0.0, 1.0), rel=0.02)


def test_energy_estimator_on_exact_particles():
    """The problem's energy estimator on exact particles with log-densities reproduces energy(t)."""
    problem = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    generator = torch.Generator().manual_seed(5)
    for t in problem.times:
        x = problem.reference.sample(t, 20_000, generator)
        estimate = problem.energy.on_particles(x, problem.reference.log_density(t, x))
        assert abs(estimate.value - problem.reference.energy(t)) < 4 * estimate.stderr


@pytest.mark.parametrize(("d", "m"), PROBLEMS)
def test_registered_problems(d, m):
    problem = wgfbench.get_problem(f"porous-medium/barenblatt-{d}d-m{m}")
    ref = problem.reference
    assert (
        problem.dim == d and problem.primary_metric == "radial_w2" and problem.mobility.kind == "wasserstein"
    )
    assert isinstance(ref, Barenblatt) and ref.kind == "exact" and ref.t0 == 0.1
    assert torch.equal(ref.radial_centre, torch.zeros(d, dtype=DTYPE))
    assert problem.energy.internal.m == m
    assert 4 <= len(problem.times) <= 8 and problem.times[0] == 0.0
    # the initial condition is the reference at t = 0, i.e. Barenblatt at absolute time 0.1
    rho, radius = independent_barenblatt(d, float(m))
    x = problem.initial.sample(200, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(
        torch.exp(problem.initial.log_density(x)).numpy(),
        rho(torch.linalg.vector_norm(x, dim=1).numpy(), 0.1),
        rtol=1e-10,
    )
    # the box holds the final support with a margin
    R_final = radius(problem.final_time + 0.1)
    assert min(-lo for lo in problem.box.low) > 1.1 * R_final and min(problem.box.high) > 1.1 * R_final


@pytest.mark.parametrize(("d", "m"), PROBLEMS)
def test_motion_is_well_above_the_radial_floor(d, m):
    """W2(rho_0, rho(t_final)) >= 8 x the radial-W2 sampling floor at n = 1000."""
    problem = wgfbench.get_problem(f"porous-medium/barenblatt-{d}d-m{m}")
    ref, t = problem.reference, problem.final_time
    floors = []
    for seed in range(5):
        a = ref.sample(t, 1000, torch.Generator().manual_seed(2 * seed))
        b = ref.sample(t, 1000, torch.Generator().manual_seed(2 * seed + 1))
        ra, rb = (torch.linalg.vector_norm(z, dim=1).sort().values for z in (a, b))
        floors.append(float(((ra - rb) ** 2).mean().sqrt()))
    assert ref.w2_between(0.0, t) > 8 * float(np.mean(floors))


def test_initial_family_members_are_exact_barenblatt():
    problem = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    generator = torch.Generator().manual_seed(3)
    members = [problem.initial_family.draw(generator) for _ in range(4)]
    t0s = {ref.t0 for _, ref in members}
    assert len(t0s) == 4 and all(0.05 <= t0 <= 0.2 for t0 in t0s)
    for initial, ref in members:
        assert ref.radial_centre.abs().max() <= 0.5 and bool((ref.radial_centre != 0).all())
        rho, _ = independent_barenblatt(2, 2.0)
        x = initial.sample(100, generator)
        r = torch.linalg.vector_norm(x - ref.radial_centre, dim=1).numpy()
        np.testing.assert_allclose(torch.exp(initial.log_density(x)).numpy(), rho(r, ref.t0), rtol=1e-10)
        assert torch.equal(ref.mean(0.5), ref.radial_centre)
