"""Tests of the energy terms (wgfbench.energy) and k-NN estimators (wgfbench.estimators) against
closed forms for Gaussians and uniform balls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wgfbench.context import make_generator
from wgfbench.energy import (
    Energy,
    Entropy,
    Interaction,
    Newtonian,
    Potential,
    PowerInternal,
    PowerLaw,
    Quadratic,
)
from wgfbench.estimators import kozachenko_leonenko_terms, leonenko_pronzato_savani_terms
from wgfbench.references import Gaussian

F64 = torch.float64


def gaussian(d: int, seed: int = 0) -> Gaussian:
    """A correlated Gaussian N(m, Σ) in dimension d."""
    g = make_generator(seed)
    B = torch.randn(d, d, generator=g, dtype=F64) / math.sqrt(d)
    return Gaussian(torch.randn(d, generator=g, dtype=F64), 0.5 * torch.eye(d, dtype=F64) + B @ B.T)


def gaussian_entropy(law: Gaussian) -> float:
    """H = ½ log((2πe)^d det Σ)."""
    return 0.5 * float(torch.logdet(2 * math.pi * math.e * law.cov()))


def gaussian_power_integral(law: Gaussian, q: float) -> float:
    """∫N(m,Σ)^q = (2π)^(−d(q−1)/2) det Σ^(−(q−1)/2) q^(−d/2)."""
    d = law.dim
    return math.exp(
        -0.5 * d * (q - 1) * math.log(2 * math.pi)
        - 0.5 * (q - 1) * float(torch.logdet(law.cov()))
        - 0.5 * d * math.log(q)
    )


def uniform_ball(n: int, d: int, seed: int) -> torch.Tensor:
    g = make_generator(seed)
    z = torch.randn(n, d, generator=g, dtype=F64)
    r = torch.rand(n, 1, generator=g, dtype=F64) ** (1.0 / d)
    return r * z / torch.linalg.vector_norm(z, dim=1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# k-NN estimators


@pytest.mark.parametrize(("d", "tol"), [(1, 0.04), (2, 0.04), (3, 0.06)])
def test_kozachenko_leonenko_matches_gaussian_entropy(d, tol):
    law = gaussian(d, seed=d)
    x = law.sample(4000, make_generator(10 + d))
    h = kozachenko_leonenko_terms(x)
    assert h.shape == (4000,) and h.dtype == F64
    assert float(h.mean()) == pytest.approx(gaussian_entropy(law), abs=tol)


def test_kozachenko_leonenko_shifts_by_d_log_a_under_scaling():
    x = gaussian(3).sample(1000, make_generator(1))
    shift = float(kozachenko_leonenko_terms(2.5 * x).mean() - kozachenko_leonenko_terms(x).mean())
    assert shift == pytest.approx(3 * math.log(2.5), abs=1e-10)


@pytest.mark.parametrize(("d", "q", "rel"), [(1, 2.0, 0.04), (2, 2.0, 0.04), (1, 3.0, 0.08), (2, 3.0, 0.1)])
def test_leonenko_pronzato_savani_matches_gaussian_power_integral(d, q, rel):
    law = gaussian(d, seed=20 + d)
    x = law.sample(4000, make_generator(30 + d))
    estimate = float(leonenko_pronzato_savani_terms(x, q=q).mean())
    assert estimate == pytest.approx(gaussian_power_integral(law, q), rel=rel)


def test_leonenko_pronzato_savani_scales_like_a_power_integral():
    # ∫ρ_a^q = a^(d(1−q)) ∫ρ^q for ρ_a the law of aX; the estimator shares this exactly
    x = gaussian(2).sample(1000, make_generator(2))
    ratio = float(
        leonenko_pronzato_savani_terms(3.0 * x, q=2.0).mean()
        / leonenko_pronzato_savani_terms(x, q=2.0).mean()
    )
    assert ratio == pytest.approx(3.0 ** (2 * (1 - 2.0)), rel=1e-10)


def test_estimators_need_more_than_k_samples():
    with pytest.raises(ValueError, match="more than k"):
        kozachenko_leonenko_terms(torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="k > q - 1"):
        leonenko_pronzato_savani_terms(torch.randn(50, 1, dtype=F64), q=5.0, k=3)


# ----------------------------------------------------------------------------------------------
# Energy terms


def quadratic_potential(A: torch.Tensor, mu: torch.Tensor) -> Potential:
    return Potential(lambda x: 0.5 * (((x - mu) @ A) * (x - mu)).sum(-1), lambda x: (x - mu) @ A)


def fokker_planck_free_energy(law: Gaussian, A: torch.Tensor, mu: torch.Tensor) -> float:
    """½tr(AΣ) + ½(m−μ)ᵀA(m−μ) − H (docs/problems.md, Fokker–Planck)."""
    dm = law.mean() - mu
    return float(0.5 * torch.trace(A @ law.cov()) + 0.5 * dm @ A @ dm) - gaussian_entropy(law)


def test_fokker_planck_energy_on_particles_and_on_samples_match_closed_form():
    d = 2
    law = gaussian(d, seed=5)
    A, mu = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64), torch.tensor([0.5, -1.0], dtype=F64)
    energy = Energy([Entropy(), quadratic_potential(A, mu)])
    exact = fokker_planck_free_energy(law, A, mu)
    x = law.sample(20000, make_generator(6))
    on_particles = energy.on_particles(x, law.log_density(x))
    assert on_particles.stderr < 0.02
    assert abs(on_particles.value - exact) < 4 * on_particles.stderr
    on_samples = energy.on_samples(x[:4000])
    assert on_samples.value == pytest.approx(exact, abs=0.06)


def test_power_internal_on_particles_and_on_samples_match_closed_form():
    law = gaussian(2, seed=7)
    for m in (2.0, 3.0):
        energy = Energy([PowerInternal(m)])
        exact = gaussian_power_integral(law, m) / (m - 1)
        x = law.sample(20000, make_generator(8))
        estimate = energy.on_particles(x, law.log_density(x))
        assert abs(estimate.value - exact) < 4 * estimate.stderr and estimate.stderr < 0.02 * exact
        assert energy.on_samples(x[:4000]).value == pytest.approx(exact, rel=0.1)


def test_internal_energies_are_consistent():
    rho = torch.tensor([0.1, 0.5, 1.0, 2.0], dtype=F64)
    for term in (Entropy(), PowerInternal(2.0), PowerInternal(1.5)):
        assert torch.allclose(rho * term.per_mass(torch.log(rho)), term.U(rho))
    # porous medium pressure P(ρ) = ρU′(ρ) − U(ρ) = ρ^m; linear diffusion P = ρ
    assert torch.allclose(PowerInternal(3.0).pressure(rho), rho**3)
    assert torch.allclose(Entropy().pressure(rho), rho)
    with pytest.raises(ValueError):
        PowerInternal(1.0)
    with pytest.raises(ValueError, match="at most one internal"):
        Energy([Entropy(), PowerInternal(2.0)])


def test_quadratic_interaction_u_statistic_and_its_stderr():
    # ½E[c|X−X′|²/2] = c tr Σ / 2 for independent X, X′ ~ N(m, Σ)
    law, c = gaussian(2, seed=9), 1.5
    exact = c * float(torch.trace(law.cov())) / 2
    energy = Energy([Interaction(Quadratic(c))])
    g = make_generator(10)
    estimates = [energy.on_samples(law.sample(200, g)) for _ in range(100)]
    values = np.array([e.value for e in estimates])
    assert values.mean() == pytest.approx(exact, rel=0.02)
    # the reported stderr matches the spread of independent estimates (U-statistic variance)
    assert np.mean([e.stderr for e in estimates]) == pytest.approx(values.std(), rel=0.2)
    # W = c|x|^a/a with a = 2 is the same kernel
    x = law.sample(500, g)
    same = Energy([Interaction(PowerLaw(2.0, c))]).on_samples(x).value
    assert same == pytest.approx(energy.on_samples(x).value, rel=1e-12)


@pytest.mark.parametrize(("d", "exact"), [(3, 0.6), (2, 0.125)])
def test_newtonian_interaction_on_the_uniform_ball(d, exact):
    # uniform unit ball: E[1/|X−Y|] = 6/5 in 3-D, E[ln|X−Y|] = −1/4 in 2-D; energy = ½E[N_d(X−Y)]
    x = uniform_ball(3000, d, seed=11 + d)
    estimate = Energy([Interaction(Newtonian(d))]).on_samples(x)
    assert math.isfinite(estimate.value)
    assert abs(estimate.value - exact) < 4 * estimate.stderr and estimate.stderr < 0.02


def test_potential_gradient_defaults_to_autograd():
    A, mu = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64), torch.tensor([0.5, -1.0], dtype=F64)
    explicit = quadratic_potential(A, mu)
    auto = Potential(explicit.V)
    x = torch.randn(7, 2, generator=make_generator(12), dtype=F64)
    assert torch.allclose(auto.grad_V(x), explicit.grad_V(x))
    energy = Energy([Entropy(), explicit, Potential(lambda x: (x**2).sum(-1))])
    assert torch.allclose(energy.grad_V(x), explicit.grad_V(x) + 2 * x)
    assert torch.allclose(energy.V(x), explicit.V(x) + (x**2).sum(-1))
