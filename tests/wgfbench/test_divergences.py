"""KL divergences: closed forms against written-out formulas, Monte Carlo estimators against the
closed forms, the KDE against scipy's ``gaussian_kde``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from wgfbench.metrics.divergences import (
    fitted_gaussian_symmetric_kl,
    gaussian_kde_log_density,
    gaussian_kl,
    gaussian_symmetric_kl,
    importance_kl,
    kde_log_normaliser,
    kde_symmetric_kl,
    kl_on_samples,
    monte_carlo_kl,
    particle_symmetric_kl,
    symmetric_kl,
)
from wgfbench.references import Gaussian

F64 = torch.float64


def random_gaussian(d: int, seed: int) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=g, dtype=F64)
    return Gaussian(torch.randn(d, generator=g, dtype=F64), M @ M.T / d + 0.5 * torch.eye(d, dtype=F64))


def kl_1d(m1, s1, m2, s2) -> float:
    """KL(N(m1, s1²) ‖ N(m2, s2²)) = log(s2/s1) + (s1² + (m1 − m2)²)/(2 s2²) − ½, written out."""
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


# ----------------------------------------------------------------------------------------------
# Closed forms


@pytest.mark.parametrize(
    ("m1", "s1", "m2", "s2"), [(0.0, 1.0, 1.0, 2.0), (-0.3, 0.4, 0.2, 0.25), (2.0, 3.0, 2.0, 3.0)]
)
def test_gaussian_kl_known_1d_values(m1, s1, m2, s2):
    assert gaussian_kl([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(kl_1d(m1, s1, m2, s2), abs=1e-14)
    assert gaussian_symmetric_kl([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(
        kl_1d(m1, s1, m2, s2) + kl_1d(m2, s2, m1, s1), abs=1e-14
    )
    # KL(N(0,1) ‖ N(1,4)) = ½(¼ + ¼ − 1 + log 4)
    assert gaussian_kl([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(
        0.5 * (0.5 - 1 + math.log(4)), abs=1e-15
    )


def test_gaussian_kl_matches_the_formula_in_d_dimensions_and_is_asymmetric():
    p, q = random_gaussian(4, 0), random_gaussian(4, 1)
    m1, S1, m2, S2 = (a.numpy() for a in (p.mean(), p.cov(), q.mean(), q.cov()))
    inv2, delta = np.linalg.inv(S2), m2 - m1
    expected = 0.5 * (
        np.trace(inv2 @ S1) + delta @ inv2 @ delta - 4 + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1]
    )
    assert gaussian_kl(m1, S1, m2, S2) == pytest.approx(expected, rel=1e-12)
    assert abs(gaussian_kl(m1, S1, m2, S2) - gaussian_kl(m2, S2, m1, S1)) > 1e-3
    sym = gaussian_symmetric_kl(p.mean(), p.cov(), q.mean(), q.cov())  # tensors accepted too
    assert sym == pytest.approx(gaussian_symmetric_kl(m2, S2, m1, S1), rel=1e-13)
    inv1 = np.linalg.inv(S1)
    closed = 0.5 * (np.trace(inv2 @ S1) + np.trace(inv1 @ S2) - 8 + delta @ (inv1 + inv2) @ delta)
    assert sym == pytest.approx(closed, rel=1e-12)


def test_zero_for_equal_laws():
    p = random_gaussian(3, 2)
    assert gaussian_kl(p.mean(), p.cov(), p.mean(), p.cov()) == pytest.approx(0.0, abs=1e-13)
    assert gaussian_symmetric_kl(p.mean(), p.cov(), p.mean(), p.cov()) == pytest.approx(0.0, abs=1e-13)
    g = torch.Generator().manual_seed(0)
    x, y = p.sample(500, g), p.sample(500, g)
    assert symmetric_kl(x, p.log_density, y, p.log_density) == 0.0


def test_rejects_non_positive_definite_covariances():
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], [0.0, 0.0], np.eye(2))


# ----------------------------------------------------------------------------------------------
# Monte Carlo against the closed form


def test_monte_carlo_symmetric_kl_agrees_with_the_closed_form():
    p, q = random_gaussian(3, 3), random_gaussian(3, 4)
    exact = gaussian_symmetric_kl(p.mean(), p.cov(), q.mean(), q.cov())
    g = torch.Generator().manual_seed(5)
    n = 20_000
    x, y = p.sample(n, g), q.sample(n, g)
    fwd = (p.log_density(x) - q.log_density(x)).numpy()
    rev = (q.log_density(y) - p.log_density(y)).numpy()
    stderr = math.sqrt(fwd.var() / n + rev.var() / n)
    estimate = symmetric_kl(x, p.log_density, y, q.log_density)
    assert abs(estimate - exact) < 5 * stderr
    assert stderr < 0.05 * exact  # the check has teeth
    # swapping the laws (with their samples) gives the same number
    assert symmetric_kl(y, q.log_density, x, p.log_density) == pytest.approx(estimate, rel=1e-12)
    assert kl_on_samples(x, p.log_density, q.log_density) == pytest.approx(
        monte_carlo_kl(p.log_density(x), q.log_density(x)), rel=1e-14
    )


def test_importance_and_particle_estimators_agree_with_the_closed_form():
    # p wider than q, so that q/p is bounded and the importance estimate has finite variance
    p = Gaussian(torch.zeros(2, dtype=F64), torch.diag(torch.tensor([2.0, 1.5], dtype=F64)))
    q = Gaussian(torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, 0.8]], dtype=F64))
    x = p.sample(40_000, torch.Generator().manual_seed(6))
    reverse = gaussian_kl(q.mean(), q.cov(), p.mean(), p.cov())
    assert importance_kl(p.log_density(x), q.log_density(x)) == pytest.approx(reverse, rel=0.05)
    exact = gaussian_symmetric_kl(p.mean(), p.cov(), q.mean(), q.cov())
    assert particle_symmetric_kl(x, p.log_density(x), q.log_density) == pytest.approx(exact, rel=0.05)


def test_infinite_and_zero_density_cases():
    log_p = torch.tensor([-1.0, -2.0])
    assert monte_carlo_kl(log_p, torch.tensor([-1.0, -math.inf])) == math.inf
    assert monte_carlo_kl(log_p, torch.tensor([-1.0, -math.inf]), weights=[1.0, 0.0]) == 0.0
    # where q vanishes r log r -> 0
    assert importance_kl(log_p, torch.tensor([-1.0, -math.inf])) == 0.0


def test_fitted_gaussian_symmetric_kl_of_exact_samples_is_about_k_over_n():
    d, n = 4, 2000
    k = d + d * (d + 1) // 2
    p = random_gaussian(d, 7)
    g = torch.Generator().manual_seed(8)
    values = [fitted_gaussian_symmetric_kl(p.sample(n, g), p.mean(), p.cov()) for _ in range(40)]
    assert 0.7 * k / n < np.mean(values) < 1.4 * k / n
    far = fitted_gaussian_symmetric_kl(p.sample(n, g) + 0.5, p.mean(), p.cov())
    assert far > 20 * k / n


# ----------------------------------------------------------------------------------------------
# Kernel density estimate (the paper's protocol for particles alone)


@pytest.mark.parametrize("weighted", [False, True])
def test_kde_matches_scipy(weighted):
    rng = np.random.default_rng(9)
    data, x = rng.standard_normal((400, 3)), rng.standard_normal((300, 3)) + 0.5
    w = rng.uniform(size=400) if weighted else None
    kde = scipy.stats.gaussian_kde(data.T, weights=w)
    np.testing.assert_allclose(gaussian_kde_log_density(data, x, w), np.log(kde(x.T)), rtol=0, atol=1e-12)


def test_kde_symmetric_kl_is_small_in_1d_and_dominated_by_its_bias_in_higher_dimension():
    g = torch.Generator().manual_seed(10)
    one = Gaussian([0.5], [[2.0]])
    small = kde_symmetric_kl(one.sample(2000, g), one.sample(2000, g), one.log_density)
    assert 0.0 < small < 0.02
    six = random_gaussian(6, 11)
    big = kde_symmetric_kl(six.sample(1000, g), six.sample(1000, g), six.log_density, n_eval=500)
    assert big > 0.5  # exact samples, yet far from 0: the KDE's smoothing, not the samples


def test_kde_log_normaliser_recovers_a_constant():
    p = random_gaussian(2, 12)
    x = p.sample(4000, torch.Generator().manual_seed(13))
    assert kde_log_normaliser(x, p.log_density(x) + math.log(7.0)) == pytest.approx(math.log(7.0), abs=0.05)
