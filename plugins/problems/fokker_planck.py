r"""Fokker–Planck problems with a quadratic potential: Ornstein–Uhlenbeck flows with exact references.

The PDE is the Wasserstein gradient flow of the free energy

.. math:: \mathcal E(\rho) = \int\rho\log\rho\,dx + \int V\rho\,dx,\qquad
          V(x) = \tfrac12(x-\mu)^\top A(x-\mu),

.. math:: \partial_t\rho = \nabla\cdot(\rho\nabla V) + \Delta\rho

(Jordan, Kinderlehrer & Otto 1998; Lee, Wang & Li, *Deep JKO*, eq. (29)). Gaussian data stay
Gaussian: with :math:`\rho_0=\mathcal N(m_0,\Sigma_0)` and :math:`A` symmetric positive definite,

.. math:: m(t) = \mu + e^{-At}(m_0-\mu),\qquad
          \Sigma(t) = A^{-1} + e^{-At}(\Sigma_0 - A^{-1})e^{-At},

the solution of :math:`\dot m = -A(m-\mu)`, :math:`\dot\Sigma = -A\Sigma - \Sigma A + 2I`
(e.g. Risken, *The Fokker–Planck Equation*, §3.2). By linearity a Gaussian mixture evolves
component by component with fixed weights. For diagonal :math:`A` and :math:`\Sigma_0` the JKO
iterates are exact too (:class:`OUJKOIterates`).

Problems registered here (all lazily, through factories):

* ``fokker-planck/ou-{1,2,10,32}d``: diagonal :math:`A` with distinct entries; references ``"pde"``
  (exact Gaussian path) and ``"jko"`` (exact JKO iterates); primary metric ``bures_w2``;
* ``fokker-planck/ou-rotated-2d``: a rotated, non-diagonal :math:`A`; ``"pde"`` only;
* ``fokker-planck/mixture-2d``: a three-component Gaussian mixture; primary metric ``sliced_w2``;
* ``fokker-planck/box-1d``: linear potential :math:`V=-gx` on :math:`[0,1]` with no-flux walls
  (``box.wall = True``: every other problem's box is only a window) and the exact
  Cancès–Gallouët–Todeschi solution (:class:`BoxProfile`); primary metric ``w2``;
* ``fokker-planck/four-wells-2d``: KL to a four-Gaussian mixture (Deep JKO §4.1,
  :class:`MixtureWells`); stored fv-jko reference; primary metric ``sliced_w2``.

Every law is computed in float64 on the CPU; the potential itself follows the device and dtype of
its argument, so solvers can evaluate it on their own device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from torch import Tensor

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.numerical import GridData, GridPath, grid_data_from_snapshots, provenance
from wgfbench.problem import Box, InitialFamily, Problem
from wgfbench.references import (
    DTYPE,
    Distribution,
    DistributionPath,
    Gaussian,
    GaussianMixture,
    JKOIterates,
    Reference,
    Stationary,
    as_tensor,
    jko_step_count,
)

FAMILY = "fokker-planck"
OU_DIMS = (1, 2, 10, 32)
TIMES = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Snapshot times shared by every problem of the family: by t = 2 the slowest mean mode has
relaxed by e^{-1} and the slowest covariance mode by e^{-2}."""
DT = 0.05
BOX_SIGMAS = 7.0
QUADRATURE_SIGMAS = 10.0


def _symmetrise(S: Tensor) -> Tensor:
    return 0.5 * (S + S.T)


# ----------------------------------------------------------------------------------------------
# The potential and its Ornstein–Uhlenbeck flow


@dataclass(frozen=True, eq=False)
class QuadraticWell:
    r"""The potential :math:`V(x) = \tfrac12(x-\mu)^\top A(x-\mu)`, :math:`\nabla V(x) = A(x-\mu)`.

    ``A`` is a symmetric positive definite (d, d) float64 tensor, ``mu`` a (d,) float64 tensor.
    ``V`` and ``grad`` accept ``x`` of shape (n, d) on any device and dtype and return (n,) and
    (n, d) in that device and dtype.
    """

    A: Tensor
    mu: Tensor

    def __post_init__(self) -> None:
        A, mu = as_tensor(self.A), as_tensor(self.mu).reshape(-1)
        if A.shape != (mu.numel(), mu.numel()) or not torch.allclose(A, A.T):
            raise ValueError("A must be a symmetric (d, d) matrix matching mu of shape (d,)")
        if torch.linalg.eigvalsh(A).min() <= 0:
            raise ValueError("A must be positive definite")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "mu", mu)

    @property
    def dim(self) -> int:
        return self.mu.numel()

    def stationary(self) -> Stationary:
        r""":math:`\rho_\infty = e^{-V}/Z = \mathcal N(\mu, A^{-1})` with
        :math:`\mathcal E(\rho_\infty) = -\log Z = -\tfrac d2\log 2\pi + \tfrac12\log\det A`
        (the flow of :math:`\int\rho\log\rho + \int V\rho` with unit diffusion)."""
        energy_inf = -0.5 * self.dim * math.log(2 * math.pi) + 0.5 * float(torch.logdet(self.A))
        law = Gaussian(self.mu, _symmetrise(torch.linalg.inv(self.A)))
        return Stationary(law, energy_inf=energy_inf, provenance="exp(-V)/Z = N(mu, A^-1) (closed form)")

    def V(self, x: Tensor) -> Tensor:
        r""":math:`V(x)=\tfrac12(x-\mu)^\top A(x-\mu)` for ``x`` (n, d) -> (n,)."""
        diff = x - self.mu.to(x)
        return 0.5 * ((diff @ self.A.to(x)) * diff).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        r""":math:`\nabla V(x) = A(x-\mu)` for ``x`` (n, d) -> (n, d) (``A`` is symmetric)."""
        return (x - self.mu.to(x)) @ self.A.to(x)

    def potential(self) -> Potential:
        return Potential(self.V, grad=self.grad)

    def expected_V(self, mean: Tensor, cov: Tensor) -> float:
        r""":math:`\mathbb E_{\mathcal N(m,\Sigma)}[V] = \tfrac12\operatorname{tr}(A\Sigma) + V(m)`."""
        diff = mean - self.mu
        return float(0.5 * torch.trace(self.A @ cov) + 0.5 * diff @ self.A @ diff)


def gaussian_neg_entropy(cov: Tensor) -> float:
    r""":math:`\int\rho\log\rho = -\tfrac12\log\big((2\pi e)^d\det\Sigma\big)` for
    :math:`\rho=\mathcal N(m,\Sigma)`; ``cov`` (d, d) float64."""
    d = cov.shape[0]
    return float(-0.5 * (d * math.log(2 * math.pi * math.e) + torch.linalg.slogdet(cov)[1]))


class OrnsteinUhlenbeck:
    r"""The flow :math:`\partial_t\rho = \nabla\cdot(\rho\nabla V) + \Delta\rho` for a :class:`QuadraticWell`.

    Moments of Gaussian data (e.g. Risken, *The Fokker–Planck Equation*, §3.2), for any symmetric
    positive definite :math:`A`:
    :math:`m(t) = \mu + e^{-At}(m_0-\mu)`,
    :math:`\Sigma(t) = A^{-1} + e^{-At}(\Sigma_0-A^{-1})e^{-At}`.
    The matrix exponential is taken through the eigendecomposition :math:`A = Q\,\mathrm{diag}(a)Q^\top`
    computed once, :math:`e^{-At} = Q\,\mathrm{diag}(e^{-at})Q^\top`, so that each time costs two
    small matrix products (no LAPACK call per time).
    """

    def __init__(self, well: QuadraticWell):
        self.well = well
        self.rates, self.basis = torch.linalg.eigh(well.A)
        self.A_inv = _symmetrise((self.basis / self.rates) @ self.basis.T)

    @property
    def dim(self) -> int:
        return self.well.dim

    def propagator(self, t: float) -> Tensor:
        r""":math:`e^{-At}`, (d, d) float64."""
        return (self.basis * torch.exp(-float(t) * self.rates)) @ self.basis.T

    def mean(self, t: float, m0: Tensor) -> Tensor:
        r""":math:`m(t) = \mu + e^{-At}(m_0-\mu)`; ``m0`` (d,) -> (d,) float64."""
        return self.well.mu + self.propagator(t) @ (as_tensor(m0) - self.well.mu)

    def cov(self, t: float, cov0: Tensor) -> Tensor:
        r""":math:`\Sigma(t) = A^{-1} + e^{-At}(\Sigma_0-A^{-1})e^{-At}`; ``cov0`` (d, d) -> (d, d)."""
        E = self.propagator(t)
        return _symmetrise(self.A_inv + E @ (as_tensor(cov0) - self.A_inv) @ E)

    def moments(self, times: Sequence[float], m0: Tensor, cov0: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`mean` and :meth:`cov` at many ``times`` in batched products: (T, d) and (T, d, d)."""
        decay = torch.exp(-as_tensor(times)[:, None] * self.rates)  # (T, d) in the eigenbasis
        Q = self.basis
        drift = (Q.T @ (as_tensor(m0) - self.well.mu))[None, :] * decay
        excess = Q.T @ (as_tensor(cov0) - self.A_inv) @ Q
        means = self.well.mu + drift @ Q.T
        covs = self.A_inv + Q @ (excess * decay[:, :, None] * decay[:, None, :]) @ Q.T
        return means, 0.5 * (covs + covs.transpose(1, 2))

    def free_energy(self, mean: Tensor, cov: Tensor) -> float:
        r""":math:`\mathcal E(\mathcal N(m,\Sigma)) = \tfrac12\operatorname{tr}(A\Sigma)
        + \tfrac12(m-\mu)^\top A(m-\mu) - \tfrac12\log((2\pi e)^d\det\Sigma)`:
        the expected potential plus the negative entropy of the Gaussian."""
        return self.well.expected_V(mean, cov) + gaussian_neg_entropy(cov)

    def gaussian_path(self, m0: Tensor, cov0: Tensor) -> DistributionPath:
        """The exact reference :math:`t\\mapsto\\mathcal N(m(t),\\Sigma(t))` with its closed-form energy."""
        m0, cov0 = as_tensor(m0).reshape(-1), as_tensor(cov0)

        def at(t: float) -> Gaussian:
            return Gaussian(self.mean(t, m0), self.cov(t, cov0))

        def energy(t: float) -> float:
            return self.free_energy(self.mean(t, m0), self.cov(t, cov0))

        return DistributionPath(at, self.dim, energy=energy)

    def mixture_at(self, t: float, initial: GaussianMixture) -> GaussianMixture:
        r""":math:`\sum_k w_k\mathcal N(m_k(t),\Sigma_k(t))`: the flow is linear in :math:`\rho`, so
        each component evolves as an OU Gaussian and the weights stay fixed."""
        means = torch.stack([self.mean(t, c.mean()) for c in initial.components])
        covs = torch.stack([self.cov(t, c.cov()) for c in initial.components])
        return GaussianMixture(initial.weights, means, covs)

    def mixture_free_energy(self, mixture: GaussianMixture) -> float:
        r""":math:`\mathcal E(\rho) = \sum_k w_k\mathbb E_k[V] + \int\rho\log\rho` for a mixture
        :math:`\rho` in d ≤ 2: the potential part in closed form, the entropy by the midpoint rule
        on a uniform grid covering every component to ±10σ with spacing ≤ σ_min/5 (spectrally
        accurate for Gaussian integrands; truncation below e^{-50})."""
        if mixture.dim > 2:
            raise ValueError("mixture free energy by quadrature is implemented for d <= 2")
        potential = sum(
            float(w) * self.well.expected_V(c.mean(), c.cov())
            for w, c in zip(mixture.weights, mixture.components, strict=True)
        )
        axes, cell = _quadrature_axes([(c.mean(), c.cov()) for c in mixture.components], mixture.dim)
        points = torch.cartesian_prod(*axes) if mixture.dim > 1 else axes[0][:, None]
        log_rho = mixture.log_density(points)
        neg_entropy = float((torch.exp(log_rho) * log_rho).sum() * cell)
        return potential + neg_entropy

    def mixture_path(self, initial: GaussianMixture) -> DistributionPath:
        """The exact mixture reference, energy by quadrature (d ≤ 2) or ``None`` beyond."""
        energy = (lambda t: self.mixture_free_energy(self.mixture_at(t, initial))) if self.dim <= 2 else None
        return DistributionPath(lambda t: self.mixture_at(t, initial), self.dim, energy=energy)


def _quadrature_axes(
    moments: Sequence[tuple[Tensor, Tensor]], dim: int, max_points: int = 2001
) -> tuple[list[Tensor], float]:
    """Uniform axes covering every Gaussian to ±QUADRATURE_SIGMAS marginal σ, spacing ≤ σ_min/5."""
    low = (
        torch.stack([m - QUADRATURE_SIGMAS * torch.sqrt(torch.diagonal(S)) for m, S in moments]).min(0).values
    )
    high = (
        torch.stack([m + QUADRATURE_SIGMAS * torch.sqrt(torch.diagonal(S)) for m, S in moments]).max(0).values
    )
    sigma_min = min(float(torch.linalg.eigvalsh(S).min().sqrt()) for _, S in moments)
    axes, cell = [], 1.0
    for i in range(dim):
        n = min(max_points, math.ceil(float(high[i] - low[i]) / (sigma_min / 5)) + 1)
        axis = torch.linspace(float(low[i]), float(high[i]), n, dtype=DTYPE)
        axes.append(axis)
        cell *= float(axis[1] - axis[0])
    return axes, cell


# ----------------------------------------------------------------------------------------------
# Exact JKO iterates


class OUJKOIterates(JKOIterates):
    r"""Exact JKO iterates :math:`\rho^{k+1}=\arg\min_\rho W_2^2(\rho,\rho^k)+2\tau\mathcal E(\rho)` for
    diagonal :math:`A=\mathrm{diag}(a)` and :math:`\rho^0=\mathcal N(m_0,\mathrm{diag}(\sigma_0^2))`.

    The minimiser stays Gaussian and the problem separates per axis (derived): minimising
    :math:`(m-m_k)^2+(\sigma-\sigma_k)^2+2\tau[\tfrac a2((m-\mu)^2+\sigma^2)-\log\sigma]`
    gives :math:`m_{k+1}-\mu = (m_k-\mu)/(1+\tau a)` and :math:`\sigma_{k+1}^2 = c^2\sigma_k^2` with
    :math:`c = \big(1+\sqrt{1+4(1+\tau a)\tau/\sigma_k^2}\big)/(2(1+\tau a))`.
    """

    def __init__(self, flow: OrnsteinUhlenbeck, m0: Tensor, var0: Tensor):
        A = flow.well.A
        if not torch.equal(A, torch.diag(torch.diagonal(A))):
            raise ValueError("exact per-axis JKO iterates need a diagonal A")
        self.flow = flow
        self.a = torch.diagonal(A).clone()
        self.m0, self.var0 = as_tensor(m0).reshape(-1), as_tensor(var0).reshape(-1)
        self.dim = flow.dim

    def iterate(self, k: int, tau: float) -> tuple[Tensor, Tensor]:
        """Mean (d,) and per-axis variance (d,) of :math:`\\rho^k` for step ``tau``."""
        mu, growth = self.flow.well.mu, 1.0 + tau * self.a
        mean = mu + (self.m0 - mu) * growth ** (-k)
        var = self.var0.clone()
        for _ in range(k):
            c = (1.0 + torch.sqrt(1.0 + 4.0 * growth * tau / var)) / (2.0 * growth)
            var = c**2 * var
        return mean, var

    def for_step(self, tau: float) -> Reference:
        """The iterates as a reference in time: ``t = k * tau`` maps to :math:`\\rho^k`."""

        def moments(k: int, tau: float) -> tuple[Tensor, Tensor]:
            mean, var = self.iterate(k, tau)
            return mean, torch.diag(var)

        return gaussian_jko_path(self.flow, self.dim, tau, moments)


def gaussian_jko_path(
    flow: OrnsteinUhlenbeck, dim: int, tau: float, moments: Callable[[int, float], tuple[Tensor, Tensor]]
) -> Reference:
    """Gaussian JKO iterates as a reference in time: ``t = k * tau`` maps to
    :math:`\\mathcal N(m_k, \\Sigma_k)`, ``moments(k, tau)`` = (mean (d,), covariance (d, d)),
    cached per k, with the energy ``flow.free_energy`` of that law."""
    tau = float(tau)
    if not tau > 0:
        raise ValueError("the JKO step tau must be positive")

    @functools.lru_cache(maxsize=64)
    def cached(k: int) -> tuple[Tensor, Tensor]:
        return moments(k, tau)

    def at(t: float) -> Gaussian:
        return Gaussian(*cached(jko_step_count(t, tau)))

    def energy(t: float) -> float:
        return flow.free_energy(*cached(jko_step_count(t, tau)))

    return DistributionPath(at, dim, energy=energy)


# ----------------------------------------------------------------------------------------------
# Boxes and initial families


def gaussian_box(moments: Iterable[tuple[Tensor, Tensor]], sigmas: float = BOX_SIGMAS) -> Box:
    """The smallest box (rounded outwards to 0.01) holding every Gaussian's mean ± ``sigmas``
    marginal standard deviations: a computational window (``wall=False``) outside which a Gaussian
    truncated at ±7σ has negligible mass."""
    low, high = None, None
    for mean, cov in moments:
        half = sigmas * torch.sqrt(torch.diagonal(cov))
        lo, hi = mean - half, mean + half
        low = lo if low is None else torch.minimum(low, lo)
        high = hi if high is None else torch.maximum(high, hi)
    return Box(
        tuple(math.floor(100 * float(v)) / 100 for v in low),
        tuple(math.ceil(100 * float(v)) / 100 for v in high),
    )


def _box_times(times: Sequence[float]) -> list[float]:
    """The snapshot times plus a fine grid on [0, T], so the box covers the whole path."""
    return sorted({*times, *torch.linspace(0, times[-1], 201, dtype=DTYPE).tolist()})


def random_gaussian_member(
    flow: OrnsteinUhlenbeck, generator: torch.Generator
) -> tuple[Distribution, Reference]:
    r"""A member of the OU initial family: :math:`\mathcal N(m_0,\mathrm{diag}(s))` with
    :math:`m_0\sim\mathcal U[-3,3]^d`, :math:`s\sim\mathcal U[0.1,2]^d` (from ``generator``),
    and its exact OU reference."""
    d = flow.dim
    m0 = -3.0 + 6.0 * torch.rand(d, generator=generator, dtype=DTYPE)
    cov0 = torch.diag(0.1 + 1.9 * torch.rand(d, generator=generator, dtype=DTYPE))
    return Gaussian(m0, cov0), flow.gaussian_path(m0, cov0)


def random_mixture_member(
    flow: OrnsteinUhlenbeck, generator: torch.Generator
) -> tuple[Distribution, Reference]:
    r"""A member of the mixture initial family: 2 or 3 components, weights
    :math:`\propto 0.25+\mathcal U[0,1]`, means :math:`\mathcal U[-3,3]^d`, diagonal covariances
    :math:`\mathcal U[0.1,0.6]^d`; with its exact reference."""
    d = flow.dim
    k = int(torch.randint(2, 4, (1,), generator=generator))
    weights = 0.25 + torch.rand(k, generator=generator, dtype=DTYPE)
    means = -3.0 + 6.0 * torch.rand(k, d, generator=generator, dtype=DTYPE)
    covs = torch.diag_embed(0.1 + 0.5 * torch.rand(k, d, generator=generator, dtype=DTYPE))
    initial = GaussianMixture(weights / weights.sum(), means, covs)
    return initial, flow.mixture_path(initial)


# ----------------------------------------------------------------------------------------------
# Problems


def ou_parameters(d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Parameters of ``ou-{d}d``: ``(a, mu, m0, var0)``, each (d,) float64.

    :math:`a_i` evenly spaced in [0.5, 2] (:math:`a=1` in 1-D), :math:`\mu_i=1`,
    :math:`m_{0,i} = -2 + 2i/(d-1)`, :math:`\sigma^2_{0,i} = r_i/a_i` with :math:`r_i = 0.25`
    (even i) or 2.5 (odd i): every variance moves (contracts or spreads) and
    :math:`\Sigma_0\ne A^{-1}` on every axis; the entries are distinct since
    :math:`\max a/\min a = 4 < 10`.
    """
    if d == 1:
        a = torch.ones(1, dtype=DTYPE)
        s = torch.zeros(1, dtype=DTYPE)
    else:
        s = torch.linspace(0.0, 1.0, d, dtype=DTYPE)
        a = 0.5 + 1.5 * s
    mu = torch.ones(d, dtype=DTYPE)
    m0 = -2.0 + 2.0 * s
    ratio = torch.where(torch.arange(d) % 2 == 0, 0.25, 2.5).to(DTYPE)
    return a, mu, m0, ratio / a


def _energy(well: QuadraticWell) -> Energy:
    return Energy([Entropy(), well.potential()])


def make_ou(d: int) -> Problem:
    r"""``fokker-planck/ou-{d}d``: :math:`V=\tfrac12(x-\mu)^\top\mathrm{diag}(a)(x-\mu)`,
    :math:`\rho_0=\mathcal N(m_0,\mathrm{diag}(\sigma_0^2))` (:func:`ou_parameters`)."""
    a, mu, m0, var0 = ou_parameters(d)
    well = QuadraticWell(torch.diag(a), mu)
    flow = OrnsteinUhlenbeck(well)
    cov0 = torch.diag(var0)
    pde = flow.gaussian_path(m0, cov0)
    box = gaussian_box(zip(*flow.moments(_box_times(TIMES), m0, cov0), strict=True))
    return Problem(
        name=f"{FAMILY}/ou-{d}d",
        family=FAMILY,
        dim=d,
        energy=_energy(well),
        initial=Gaussian(m0, cov0),
        times=TIMES,
        dt=DT,
        references={"pde": pde, "jko": OUJKOIterates(flow, m0, var0), "stationary": well.stationary()},
        primary_metric="bures_w2",
        box=box,
        initial_family=InitialFamily(
            "random Gaussians N(m0, diag(s)), m0 ~ U[-3,3]^d, s ~ U[0.1,2]^d, exact OU references",
            functools.partial(random_gaussian_member, flow),
        ),
        version=1,
        description=(
            f"Ornstein–Uhlenbeck Fokker–Planck in {d}-D: ∂tρ = ∇·(ρ∇V) + Δρ, V = ½(x−μ)ᵀA(x−μ), "
            "A diagonal with distinct entries in [0.5, 2]; Gaussian initial condition; exact "
            "Gaussian solution and exact JKO iterates."
        ),
    )


ROTATED_A_EIGENVALUES = (0.5, 2.0)
ROTATED_ANGLE = math.pi / 6


def rotated_matrix(eigenvalues: Sequence[float], angle: float) -> Tensor:
    r""":math:`A = R(\theta)\,\mathrm{diag}(a)\,R(\theta)^\top` in 2-D, (2, 2) float64."""
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s], [s, c]], dtype=DTYPE)
    return _symmetrise(R @ torch.diag(as_tensor(eigenvalues)) @ R.T)


def make_ou_rotated_2d() -> Problem:
    r"""``fokker-planck/ou-rotated-2d``: :math:`A=R(\pi/6)\mathrm{diag}(0.5,2)R(\pi/6)^\top`
    (non-diagonal), :math:`\mu=(1,0.5)`, :math:`\rho_0=\mathcal N((-2,-1),\mathrm{diag}(0.25,1.5))`.
    No ``"jko"`` reference: the per-axis iterates need :math:`A` and :math:`\Sigma` to be diagonal
    in the same basis."""
    well = QuadraticWell(
        rotated_matrix(ROTATED_A_EIGENVALUES, ROTATED_ANGLE), torch.tensor([1.0, 0.5], dtype=DTYPE)
    )
    flow = OrnsteinUhlenbeck(well)
    m0, cov0 = torch.tensor([-2.0, -1.0], dtype=DTYPE), torch.diag(torch.tensor([0.25, 1.5], dtype=DTYPE))
    pde = flow.gaussian_path(m0, cov0)
    return Problem(
        name=f"{FAMILY}/ou-rotated-2d",
        family=FAMILY,
        dim=2,
        energy=_energy(well),
        initial=Gaussian(m0, cov0),
        times=TIMES,
        dt=DT,
        references={"pde": pde, "stationary": well.stationary()},
        primary_metric="bures_w2",
        box=gaussian_box(zip(*flow.moments(_box_times(TIMES), m0, cov0), strict=True)),
        initial_family=InitialFamily(
            "random Gaussians N(m0, diag(s)), m0 ~ U[-3,3]^2, s ~ U[0.1,2]^2, exact OU references",
            functools.partial(random_gaussian_member, flow),
        ),
        version=1,
        description=(
            "Ornstein–Uhlenbeck Fokker–Planck in 2-D with a rotated (non-diagonal) A = R diag(0.5, 2) Rᵀ, "
            "R a rotation by π/6; exact Gaussian solution through the matrix exponential."
        ),
    )


MIXTURE_A = (0.75, 1.5)
MIXTURE_MU = (0.5, -0.5)
MIXTURE_WEIGHTS = (0.5, 0.3, 0.2)
MIXTURE_MEANS = ((-2.0, 1.5), (2.0, 1.0), (0.5, -2.5))
MIXTURE_COVS = (((0.3, 0.0), (0.0, 0.15)), ((0.2, 0.0), (0.0, 0.4)), ((0.25, 0.1), (0.1, 0.2)))


def make_mixture_2d() -> Problem:
    r"""``fokker-planck/mixture-2d``: :math:`A=\mathrm{diag}(0.75,1.5)`, :math:`\mu=(0.5,-0.5)`,
    :math:`\rho_0` a three-component Gaussian mixture with weights (0.5, 0.3, 0.2); each component
    evolves as an OU Gaussian, the weights stay fixed. The free energy of the reference is computed
    by quadrature (:meth:`OrnsteinUhlenbeck.mixture_free_energy`)."""
    well = QuadraticWell(torch.diag(as_tensor(MIXTURE_A)), as_tensor(MIXTURE_MU))
    flow = OrnsteinUhlenbeck(well)
    initial = GaussianMixture(MIXTURE_WEIGHTS, MIXTURE_MEANS, MIXTURE_COVS)
    moments = [
        moment
        for c in initial.components
        for moment in zip(*flow.moments(_box_times(TIMES), c.mean(), c.cov()), strict=True)
    ]
    return Problem(
        name=f"{FAMILY}/mixture-2d",
        family=FAMILY,
        dim=2,
        energy=_energy(well),
        initial=initial,
        times=TIMES,
        dt=DT,
        references={"pde": flow.mixture_path(initial), "stationary": well.stationary()},
        primary_metric="sliced_w2",
        box=gaussian_box(moments),
        initial_family=InitialFamily(
            "random Gaussian mixtures (2-3 components, random weights, means U[-3,3]^2, diagonal "
            "covariances U[0.1,0.6]^2), exact mixture references",
            functools.partial(random_mixture_member, flow),
        ),
        version=1,
        description=(
            "Fokker–Planck in 2-D, V = ½(x−μ)ᵀdiag(0.75, 1.5)(x−μ), from a three-component Gaussian "
            "mixture: exact mixture solution (components evolve as OU, weights fixed)."
        ),
    )


# ----------------------------------------------------------------------------------------------
# box-1d: linear potential on [0, 1] with no-flux walls (Cancès, Gallouët & Todeschi 2020)

BOX_G = 1.0
BOX_T0 = 1e-3
"""Absolute time of the initial condition: at absolute time 0 the profile vanishes at x = 1."""
BOX_TIMES = (0.0, 0.025, 0.05, 0.1, 0.2)
"""The transient decays as e^{-αt}, α = π² + g²/4 ≈ 10.1: by t = 0.2 it has lost a factor 7.6."""
BOX_DT = 0.005


def _gauss_legendre(a: float, b: float, n_panels: int = 64, order: int = 16) -> tuple[Tensor, Tensor]:
    """Nodes and weights of composite Gauss–Legendre quadrature on ``[a, b]`` (float64)."""
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(a, b, n_panels + 1)
    half = 0.5 * np.diff(edges)
    nodes = (edges[:-1, None] + half[:, None] * (x[None, :] + 1.0)).ravel()
    return torch.from_numpy(nodes), torch.from_numpy((half[:, None] * w[None, :]).ravel())


class BoxProfile(Distribution):
    r"""The Cancès–Gallouët–Todeschi solution of :math:`\partial_t\rho=\partial_x(\partial_x\rho-g\rho)`
    on :math:`[0,1]` with no flux, at absolute time :math:`s>0` (Cancès, Gallouët & Todeschi,
    *Numer. Math.* 146 (2020), §5):

    .. math:: \tilde\rho(x,s) = e^{-\alpha s+gx/2}\big(\pi\cos\pi x+\tfrac g2\sin\pi x\big)
              + \pi e^{g(x-1/2)},\qquad \alpha=\pi^2+g^2/4.

    (derived) Since :math:`\tfrac{d}{dx}[e^{gx/2}\sin\pi x] = e^{gx/2}(\pi\cos\pi x+\tfrac g2\sin\pi x)`,
    the transient has zero mass, the mass is :math:`M = (2\pi/g)\sinh(g/2)` at every :math:`s`, and
    the CDF is elementary:

    .. math:: F(x,s) = \big[e^{-\alpha s}e^{gx/2}\sin\pi x + (\pi/g)(e^{g(x-1/2)}-e^{-g/2})\big]/M.

    Samples by inverse CDF (vectorised bisection to float64 resolution); moments and the free
    energy :math:`\int\rho\log\rho-g\int x\rho` by composite Gauss–Legendre quadrature (smooth
    integrand). The profile vanishes at :math:`x=1` when :math:`s=0`, so :math:`s` must be positive.
    """

    dim = 1

    def __init__(self, s: float, g: float = BOX_G):
        if not s > 0:
            raise ValueError(f"the box profile needs absolute time s > 0, got {s}")
        self.s, self.g = float(s), float(g)
        self.alpha = math.pi**2 + 0.25 * self.g**2
        self.decay = math.exp(-self.alpha * self.s)
        self.mass = 2 * math.pi / self.g * math.sinh(0.5 * self.g)

    def unnormalised(self, x: Tensor) -> Tensor:
        r""":math:`\tilde\rho(x,s)` for ``x`` of any shape (float64), no support cut."""
        g, px = self.g, math.pi * x
        return torch.exp(0.5 * g * x) * self.decay * (
            math.pi * torch.cos(px) + 0.5 * g * torch.sin(px)
        ) + math.pi * torch.exp(g * (x - 0.5))

    def cdf(self, x: Tensor) -> Tensor:
        r""":math:`F(x,s)` (class docstring) for ``x`` of any shape, clamped to :math:`[0,1]`."""
        x = as_tensor(x).clamp(0.0, 1.0)
        g = self.g
        primitive = self.decay * torch.exp(0.5 * g * x) * torch.sin(math.pi * x) + math.pi / g * (
            torch.exp(g * (x - 0.5)) - math.exp(-0.5 * g)
        )
        return primitive / self.mass

    def quantile(self, u: Tensor, iterations: int = 64) -> Tensor:
        """:math:`F^{-1}(u)` by bisection on :math:`[0,1]` (``F`` is increasing); any shape."""
        u = as_tensor(u)
        lo, hi = torch.zeros_like(u), torch.ones_like(u)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < u
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact samples by inverse CDF, (n, 1) float64."""
        return self.quantile(torch.rand(n, generator=generator, dtype=DTYPE))[:, None]

    def log_density(self, x: Tensor) -> Tensor:
        r""":math:`\log(\tilde\rho/M)` on :math:`[0,1]`, :math:`-\infty` outside; ``x`` (n, 1) -> (n,)."""
        y = as_tensor(x)[:, 0]
        inside = (y >= 0) & (y <= 1)
        value = torch.log(self.unnormalised(y.clamp(0.0, 1.0))) - math.log(self.mass)
        return torch.where(inside, value, torch.full_like(value, -math.inf))

    def _quadrature(self) -> tuple[Tensor, Tensor, Tensor]:
        nodes, weights = _gauss_legendre(0.0, 1.0)
        return nodes, weights, self.unnormalised(nodes) / self.mass

    def mean(self) -> Tensor:
        nodes, weights, rho = self._quadrature()
        return (weights * rho * nodes).sum().reshape(1)

    def cov(self) -> Tensor:
        nodes, weights, rho = self._quadrature()
        m = (weights * rho * nodes).sum()
        return (weights * rho * (nodes - m) ** 2).sum().reshape(1, 1)

    def free_energy(self) -> float:
        r""":math:`\int_0^1\rho\log\rho\,dx - g\int_0^1 x\rho\,dx` by quadrature."""
        nodes, weights, rho = self._quadrature()
        return float((weights * rho * (torch.log(rho) - self.g * nodes)).sum())


def box_reference(g: float = BOX_G, t0: float = BOX_T0) -> DistributionPath:
    """The exact ``box-1d`` reference: problem time ``t`` is absolute time ``t + t0``."""
    return DistributionPath(
        lambda t: BoxProfile(t + t0, g), dim=1, energy=lambda t: BoxProfile(t + t0, g).free_energy()
    )


def box_stationary(g: float = BOX_G) -> Stationary:
    r"""The stationary law of ``box-1d``, :math:`\rho_\infty = g e^{gx}/(e^g-1)` on :math:`[0,1]`:
    the :class:`BoxProfile` at an absolute time where its transient :math:`e^{-\alpha s}` has
    underflowed to 0 (s = 10³, α > 10), so sampling, density and energy are the closed form's."""
    law = BoxProfile(1e3, g)
    return Stationary(law, energy_inf=law.free_energy(), provenance="g e^{gx} / (e^g - 1) on [0, 1]")


def linear_potential(g: float) -> Potential:
    r""":math:`V(x) = -g x_1` with :math:`\nabla V = (-g)`; follows the device and dtype of ``x`` (n, 1)."""
    return Potential(lambda x: -g * x[:, 0], grad=lambda x: torch.full_like(x, -g))


def make_box_1d() -> Problem:
    r"""``fokker-planck/box-1d``: :math:`\mathcal E = \int\rho\log\rho - g\int x\rho` on :math:`[0,1]`,
    :math:`g=1`, no flux, i.e. :math:`\partial_t\rho = \partial_x(\partial_x\rho - g\rho)` with
    :math:`\partial_x\rho - g\rho = 0` at :math:`x=0,1`; exact reference :class:`BoxProfile` at
    absolute time :math:`t+10^{-3}`. The stationary state is :math:`\propto e^{gx}`."""
    reference = box_reference()
    return Problem(
        name=f"{FAMILY}/box-1d",
        family=FAMILY,
        dim=1,
        energy=Energy([Entropy(), linear_potential(BOX_G)]),
        initial=reference.at(0.0),
        times=BOX_TIMES,
        dt=BOX_DT,
        references={"pde": reference, "stationary": box_stationary()},
        primary_metric="w2",
        box=Box((0.0,), (1.0,), wall=True),  # posed on [0, 1]: no-flux walls solvers must respect
        version=1,
        description=(
            "Fokker–Planck on [0, 1] with V = −x and no-flux walls (Cancès–Gallouët–Todeschi 2020): "
            "exact solution e^{−αs+x/2}(π cos πx + ½ sin πx) + π e^{x−½}, α = π² + ¼, at absolute "
            "time s = t + 1e−3; sampled by inverse of its closed-form CDF."
        ),
    )


# ----------------------------------------------------------------------------------------------
# four-wells-2d: KL to a Gaussian mixture (Deep JKO §4.1)

FOUR_WELLS_CENTRES = ((2.0, 2.0), (2.0, -2.0), (-2.0, 2.0), (-2.0, -2.0))
FOUR_WELLS_INITIAL_CENTRES = ((1.2, 0.0), (-1.2, 0.0))
FOUR_WELLS_SIGMA = 0.5
FOUR_WELLS_TIMES = (0.0, 0.1, 0.2, 0.4, 0.8, 2.0)
"""Deep JKO Fig. 1 shows t ≤ 0.4; a finite-volume run (160², explicit) gives KL(ρ(t)|q) = 6.70,
2.88, 1.28, 0.257, 0.0104 at t = 0, 0.1, 0.2, 0.4, 0.8 and 7e-7 at t = 2, so the last snapshot
is stationary to well below the energy estimators' noise."""
FOUR_WELLS_DT = 0.025
"""The paper's JKO step Δt = 0.025."""
FOUR_WELLS_HALF_WIDTH = 5.0
"""Every well and initial component is 6σ from the box edge: mass outside below 1e-8."""


@dataclass(frozen=True, eq=False)
class MixtureWells:
    r"""The potential :math:`V = -\log q` of an isotropic Gaussian mixture
    :math:`q = \sum_k w_k\mathcal N(c_k,\sigma^2 I)`:

    .. math:: V(x) = -\operatorname{logsumexp}_k\big(\log w_k - |x-c_k|^2/(2\sigma^2)\big)
              + \tfrac d2\log(2\pi\sigma^2),\qquad
              \nabla V(x) = \sum_k r_k(x)\,(x-c_k)/\sigma^2,

    :math:`r_k` the responsibilities (softmax of the same logits). Then
    :math:`\int\rho\log\rho + \int\rho V = \mathrm{KL}(\rho\|q)` (Deep JKO eq. (29)), whose minimum
    :math:`\mathcal E(q) = 0`. ``centres`` (K, d), ``weights`` (K,), float64; ``V``/``grad`` follow
    the device and dtype of ``x`` (n, d) and return (n,) / (n, d).
    """

    centres: Tensor
    weights: Tensor
    sigma: float

    @property
    def dim(self) -> int:
        return self.centres.shape[1]

    def _logits(self, x: Tensor) -> Tensor:
        c = self.centres.to(x)
        sq = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        return torch.log(self.weights.to(x))[None, :] - 0.5 * sq / self.sigma**2

    def V(self, x: Tensor) -> Tensor:
        log_norm = 0.5 * self.dim * math.log(2 * math.pi * self.sigma**2)
        return -torch.logsumexp(self._logits(x), dim=1) + log_norm

    def grad(self, x: Tensor) -> Tensor:
        r = torch.softmax(self._logits(x), dim=1)
        return (x - r @ self.centres.to(x)) / self.sigma**2

    def target(self) -> GaussianMixture:
        """The law :math:`q` itself."""
        k, d = self.centres.shape
        covs = self.sigma**2 * torch.eye(d, dtype=DTYPE).expand(k, d, d)
        return GaussianMixture(self.weights, self.centres, covs)

    def potential(self) -> Potential:
        return Potential(self.V, grad=self.grad)


def four_wells() -> MixtureWells:
    """The Deep JKO §4.1 target: equal weights at (±2, ±2), σ = 0.5."""
    return MixtureWells(as_tensor(FOUR_WELLS_CENTRES), torch.full((4,), 0.25, dtype=DTYPE), FOUR_WELLS_SIGMA)


def four_wells_initial() -> GaussianMixture:
    """Equal mixture of N((±1.2, 0), 0.5² I) (Deep JKO §4.1)."""
    covs = FOUR_WELLS_SIGMA**2 * torch.eye(2, dtype=DTYPE).expand(2, 2, 2)
    return GaussianMixture([0.5, 0.5], FOUR_WELLS_INITIAL_CENTRES, covs)


#: The numerical reference of four-wells-2d: fv-jko at high resolution (``wgfbench reference build
#: fokker-planck/four-wells-2d`` recomputes it; the content hash below pins the stored data).
FOUR_WELLS_REFERENCE_FILE = "four-wells-2d.npz"
FOUR_WELLS_REFERENCE_SHA256 = "cddfbea6aa195355a9b0dd46a988554310ae27851276507e6591e8c54145d5d4"
FOUR_WELLS_REFERENCE_SOLVER = {"cells_2d": 192, "tau": 0.0125, "backend": "scipy", "tol": 1e-11}


def build_four_wells_reference() -> GridData:
    r"""Recompute the numerical reference of ``four-wells-2d``: ``fv-jko`` with
    :data:`FOUR_WELLS_REFERENCE_SOLVER` (192² cells on [−5, 5]², τ = dt/2) from the problem's
    :math:`\rho_0` to every snapshot time, on the CPU in float64."""
    problem = make_four_wells_2d(numerical=False)
    solver = wgfbench.get_solver("fv-jko", "large", **FOUR_WELLS_REFERENCE_SOLVER)
    trajectory = solver.solve(problem, Context.create(seed=0, tier="large", budget_seconds=math.inf))
    if trajectory.jko_tau is None:
        raise RuntimeError("the reference run changed its step (Newton failure): not a fixed-tau run")
    record = provenance(
        "fv-jko",
        solver.config.model_dump(mode="json"),
        "wgfbench reference build fokker-planck/four-wells-2d",
        problem=problem.name,
        problem_version=problem.version,
        newton_iterations=trajectory.info.get("newton_iterations", -1),
    )
    return grid_data_from_snapshots(trajectory.snapshots, record)


def four_wells_reference() -> GridPath:
    """The stored fv-jko run (loaded lazily, hash-checked on first use)."""
    return GridPath(
        2,
        resources.files("wgfbench_plugins.problems") / "data" / FOUR_WELLS_REFERENCE_FILE,
        FOUR_WELLS_REFERENCE_SHA256,
        build_four_wells_reference,
    )


def make_four_wells_2d(numerical: bool = True) -> Problem:
    r"""``fokker-planck/four-wells-2d`` (Deep JKO §4.1): the Wasserstein gradient flow of
    :math:`\mathrm{KL}(\rho\|q)`, :math:`q` four Gaussians at :math:`(\pm2,\pm2)`, :math:`\sigma=0.5`,
    from two Gaussians at :math:`(\pm1.2, 0)`, :math:`\sigma=0.5`.

    The ``"pde"`` reference is numerical (:func:`four_wells_reference`: fv-jko, 192² cells, τ = dt/2,
    scored by ``w2``); ``references["stationary"]`` is :math:`q` with :math:`\mathcal E_\infty = 0`
    (reached to KL ≈ 1e-6 by ``t = 2``). ``numerical=False`` keeps only :math:`q` (``energy_gap``): the
    problem the reference itself is computed from.
    """
    wells = four_wells()
    stationary = Stationary(wells.target(), energy_inf=0.0, provenance="q itself: KL(q|q) = 0")
    pde = four_wells_reference() if numerical else stationary
    return Problem(
        name=f"{FAMILY}/four-wells-2d",
        family=FAMILY,
        dim=2,
        energy=Energy([Entropy(), wells.potential()]),
        initial=four_wells_initial(),
        times=FOUR_WELLS_TIMES,
        dt=FOUR_WELLS_DT,
        references={"pde": pde, "stationary": stationary},
        primary_metric="sliced_w2" if numerical else "energy_gap",
        box=Box.cube(FOUR_WELLS_HALF_WIDTH, 2),
        version=1,
        description=(
            "Fokker–Planck flow of KL(ρ|q), q = equal mixture of N((±2, ±2), 0.5² I), from the equal "
            "mixture of N((±1.2, 0), 0.5² I) (Deep JKO §4.1); numerical reference (fv-jko, 192², "
            "τ = dt/2) and stationary q, E∞ = 0."
        ),
    )


@wgfbench.hookimpl
def wgfbench_register_problems(registry) -> None:
    """Register the Fokker–Planck problems as factories (built on first use)."""
    for d in OU_DIMS:
        registry.add(functools.partial(make_ou, d), name=f"{FAMILY}/ou-{d}d")
    registry.add(make_ou_rotated_2d, name=f"{FAMILY}/ou-rotated-2d")
    registry.add(make_mixture_2d, name=f"{FAMILY}/mixture-2d")
    registry.add(make_box_1d, name=f"{FAMILY}/box-1d")
    registry.add(make_four_wells_2d, name=f"{FAMILY}/four-wells-2d")
