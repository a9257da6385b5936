r"""Porous medium equation :math:`\partial_t\rho = \Delta\rho^m` with exact Barenblatt references.

The porous medium equation is the Wasserstein gradient flow of
:math:`\mathcal E(\rho) = \int \rho^m/(m-1)\,dx` (Otto, *Comm. PDE* 26 (2001), §1). Its self-similar
source solution of unit mass (Barenblatt 1952; Vázquez, *The Porous Medium Equation* (2007),
"The Barenblatt solutions") is

.. math::  \rho(x, \tau) = \tau^{-\alpha}\big(C - k|x-c|^2\tau^{-2\beta}\big)_+^{p},
           \quad \alpha=\frac{d}{d(m-1)+2},\ \beta=\frac{\alpha}{d},\ k=\frac{\alpha(m-1)}{2md},\
           p=\frac1{m-1},

with :math:`C = [k^{d/2}\Gamma(p+1+d/2)/(\pi^{d/2}\Gamma(p+1))]^{1/(p+d/2)}` fixing the mass to 1
(``docs/problems.md``, "Porous medium"). Here :math:`\tau` is *absolute* Barenblatt time; a problem that
starts from the Barenblatt profile at :math:`\tau=t_0` evaluates it at :math:`\tau = t + t_0`.

The profile only dilates about its centre, so the radial law is fixed up to the scale
:math:`R(\tau) = \sqrt{C/k}\,\tau^\beta` (the support radius): :math:`|X-c| = R(\tau)\sqrt B` with
:math:`B\sim\mathrm{Beta}(d/2, p+1)`, which gives exact samples, moments and
:math:`W_2(\rho(\tau_1),\rho(\tau_2)) = |\tau_1^\beta-\tau_2^\beta|\sqrt{(C/k)\,d/(d+2p+2)}`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from scipy.special import betaincinv
from torch import Tensor

import wgfbench
from wgfbench.energy import Energy, PowerInternal
from wgfbench.problem import Box, InitialFamily, Mobility, Problem
from wgfbench.references import DTYPE, Distribution, Reference, ReferenceKind, as_tensor
from wgfbench.registry import ProblemRegistry

FAMILY = "porous-medium"


@dataclass(frozen=True)
class BarenblattConstants:
    r"""The exponents and constants of the unit-mass Barenblatt profile in dimension ``d`` for ``m``.

    :math:`\alpha = d/(d(m-1)+2)`, :math:`\beta=\alpha/d`, :math:`k=\alpha(m-1)/(2md)`,
    :math:`p = 1/(m-1)` and :math:`C = [k^{d/2}\Gamma(p+1+d/2)/(\pi^{d/2}\Gamma(p+1))]^{1/(p+d/2)}`
    (Vázquez 2007; ``docs/problems.md``, "Porous medium").
    """

    d: int
    m: float
    alpha: float
    beta: float
    k: float
    p: float
    C: float

    @classmethod
    def of(cls, d: int, m: float) -> BarenblattConstants:
        if d < 1:
            raise ValueError(f"dimension must be >= 1, got {d}")
        if not m > 1:
            raise ValueError(f"the porous medium exponent must satisfy m > 1, got {m}")
        alpha = d / (d * (m - 1) + 2)
        beta = alpha / d
        k = alpha * (m - 1) / (2 * m * d)
        p = 1 / (m - 1)
        log_C = (
            0.5 * d * math.log(k)
            + math.lgamma(p + 1 + 0.5 * d)
            - 0.5 * d * math.log(math.pi)
            - math.lgamma(p + 1)
        ) / (p + 0.5 * d)
        return cls(d=d, m=float(m), alpha=alpha, beta=beta, k=k, p=p, C=math.exp(log_C))

    def support_radius(self, tau: float) -> float:
        r""":math:`R(\tau) = \sqrt{C/k}\,\tau^\beta`, the support radius at absolute time :math:`\tau`."""
        return math.sqrt(self.C / self.k) * tau**self.beta

    def radial_second_moment_factor(self) -> float:
        r""":math:`\mathbb E[B] = d/(d+2p+2)` for :math:`B\sim\mathrm{Beta}(d/2,p+1)`, so that
        :math:`\mathbb E|X-c|^2 = R(\tau)^2\, d/(d+2p+2)`."""
        return self.d / (self.d + 2 * self.p + 2)


class BarenblattProfile(Distribution):
    r"""The unit-mass Barenblatt profile at a fixed absolute time :math:`\tau>0` (module docstring).

    Parameters
    ----------
    d, m:
        Dimension and porous medium exponent (:math:`m>1`).
    tau:
        Absolute Barenblatt time :math:`\tau > 0`.
    centre:
        Centre :math:`c`, shape (d,); defaults to the origin.
    """

    def __init__(self, d: int, m: float, tau: float, centre: Tensor | None = None):
        if not tau > 0:
            raise ValueError(f"Barenblatt time must be positive, got tau={tau}")
        self.constants = BarenblattConstants.of(d, m)
        self.dim, self.tau = d, float(tau)
        self.centre = torch.zeros(d, dtype=DTYPE) if centre is None else as_tensor(centre).reshape(d)

    @property
    def support_radius(self) -> float:
        return self.constants.support_radius(self.tau)

    def log_density(self, x: Tensor) -> Tensor:
        r""":math:`\log\rho = -\alpha\log\tau + p\log(C - k|x-c|^2\tau^{-2\beta})` inside the support,
        :math:`-\infty` outside. ``x``: (n, d) → (n,) float64."""
        c = self.constants
        r2 = ((as_tensor(x) - self.centre) ** 2).sum(-1)
        inner = c.C - c.k * r2 * self.tau ** (-2 * c.beta)
        return -c.alpha * math.log(self.tau) + c.p * torch.log(inner.clamp_min(0.0))

    def density(self, x: Tensor) -> Tensor:
        r""":math:`\rho(x,\tau) = \tau^{-\alpha}(C - k|x-c|^2\tau^{-2\beta})_+^p`. ``x``: (n, d) → (n,)."""
        return torch.exp(self.log_density(x))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        r"""Exact samples :math:`x = c + R(\tau)\sqrt B\,U`, :math:`B\sim\mathrm{Beta}(d/2,p+1)` by
        inverse-CDF sampling (``scipy.special.betaincinv``), :math:`U` uniform on the unit sphere.
        Returns (n, d) float64."""
        c = self.constants
        z = torch.randn(n, self.dim, generator=generator, dtype=DTYPE)
        directions = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        u = torch.rand(n, generator=generator, dtype=DTYPE)
        b = torch.from_numpy(betaincinv(0.5 * self.dim, c.p + 1.0, u.numpy())).to(DTYPE)
        return self.centre + self.support_radius * torch.sqrt(b)[:, None] * directions

    def mean(self) -> Tensor:
        return self.centre.clone()

    def cov(self) -> Tensor:
        r"""Isotropic: :math:`\mathrm{Cov} = R(\tau)^2/(d+2p+2)\,I` (from :math:`\mathbb E|X-c|^2`)."""
        c = self.constants
        var = self.support_radius**2 / (self.dim + 2 * c.p + 2)
        return var * torch.eye(self.dim, dtype=DTYPE)

    def internal_energy(self) -> float:
        r""":math:`\int\rho^m/(m-1) = \tau^{-\alpha(m-1)} C^{pm+d/2} k^{-d/2}\pi^{d/2}
        \frac{\Gamma(pm+1)}{\Gamma(pm+1+d/2)}\frac1{m-1}` (``docs/problems.md``, "Porous medium")."""
        c, d = self.constants, self.dim
        q = c.p * c.m
        log_int = (
            -c.alpha * (c.m - 1) * math.log(self.tau)
            + (q + 0.5 * d) * math.log(c.C)
            - 0.5 * d * math.log(c.k)
            + 0.5 * d * math.log(math.pi)
            + math.lgamma(q + 1)
            - math.lgamma(q + 1 + 0.5 * d)
        )
        return math.exp(log_int) / (c.m - 1)


class Barenblatt(Reference):
    r"""Exact reference: the Barenblatt solution started at absolute time ``t0``.

    Problem time ``t`` (elapsed since :math:`\rho_0`) is evaluated at absolute Barenblatt time
    :math:`\tau = t + t_0`; ``radial_centre`` is the centre :math:`c`.
    """

    kind: ClassVar[ReferenceKind] = "exact"

    def __init__(self, d: int, m: float, t0: float, centre: Tensor | None = None):
        if not t0 > 0:
            raise ValueError(f"the time shift must be positive, got t0={t0}")
        self.constants = BarenblattConstants.of(d, m)
        self.dim, self.m, self.t0 = d, float(m), float(t0)
        self.radial_centre = torch.zeros(d, dtype=DTYPE) if centre is None else as_tensor(centre).reshape(d)
        self.provenance = f"Barenblatt profile, d={d}, m={m}, absolute time t + {t0}"

    def at(self, t: float) -> BarenblattProfile:
        """The profile at problem time ``t`` (absolute time ``t + t0``)."""
        if t < 0:
            raise ValueError(f"problem time must be >= 0, got t={t}")
        return BarenblattProfile(self.dim, self.m, float(t) + self.t0, self.radial_centre)

    def support_radius(self, t: float) -> float:
        r""":math:`R(t+t_0)`."""
        return self.constants.support_radius(float(t) + self.t0)

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        return self.at(t).sample(n, generator)

    def log_density(self, t: float, x: Tensor) -> Tensor:
        return self.at(t).log_density(x)

    def mean(self, t: float) -> Tensor:
        return self.at(t).mean()

    def cov(self, t: float) -> Tensor:
        return self.at(t).cov()

    def energy(self, t: float) -> float:
        return self.at(t).internal_energy()

    def w2_between(self, t1: float, t2: float) -> float:
        r"""Exact :math:`W_2(\rho(t_1),\rho(t_2)) = |\tau_1^\beta-\tau_2^\beta|\sqrt{(C/k)\,d/(d+2p+2)}`,
        :math:`\tau_i = t_i + t_0`: the dilation about :math:`c` is the optimal map."""
        c = self.constants
        return abs((t1 + self.t0) ** c.beta - (t2 + self.t0) ** c.beta) * math.sqrt(
            c.C / c.k * c.radial_second_moment_factor()
        )


def barenblatt_initial_family(d: int, m: float) -> InitialFamily:
    r"""Barenblatt profiles with random centres :math:`c\sim U[-\tfrac12,\tfrac12]^d` and random time
    shifts :math:`t_0\sim U[0.05, 0.2]`; each member's reference is exact (:class:`Barenblatt`)."""

    def draw(generator: torch.Generator) -> tuple[Distribution, Reference]:
        centre = torch.rand(d, generator=generator, dtype=DTYPE) - 0.5
        t0 = 0.05 + 0.15 * float(torch.rand((), generator=generator, dtype=DTYPE))
        reference = Barenblatt(d, m, t0, centre)
        return reference.at(0.0), reference

    return InitialFamily(
        description="Barenblatt profiles, centre ~ U[-1/2, 1/2]^d, time shift t0 ~ U[0.05, 0.2] (exact)",
        draw=draw,
    )


# Snapshot times per (d, m), chosen so that W2(rho_0, rho(t_final)) in the radial metric is many
# times its sampling floor at n = 1000 (the profile dilates like (t + t0)^beta, beta = 1/(d(m-1)+2),
# so the slower high-dimensional profiles get a longer horizon).
SNAPSHOT_TIMES: dict[tuple[int, int], tuple[float, ...]] = {
    (1, 2): (0.0, 0.1, 0.25, 0.5, 1.0),
    (2, 2): (0.0, 0.1, 0.25, 0.5, 1.0),
    (6, 2): (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    (10, 2): (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    (1, 3): (0.0, 0.1, 0.25, 0.5, 1.0),
    (2, 3): (0.0, 0.1, 0.25, 0.5, 1.0),
}
T0 = 0.1
DT = 0.01


def make_barenblatt_problem(d: int, m: int, t0: float = T0) -> Problem:
    r"""``porous-medium/barenblatt-{d}d-m{m}``: :math:`\partial_t\rho=\Delta\rho^m` from the unit-mass
    Barenblatt profile at absolute time ``t0`` (centre 0), with its exact reference."""
    reference = Barenblatt(d, m, t0)
    times = SNAPSHOT_TIMES[(d, m)]
    half_width = 1.25 * reference.support_radius(times[-1])
    return Problem(
        name=f"{FAMILY}/barenblatt-{d}d-m{m}",
        family=FAMILY,
        dim=d,
        energy=Energy([PowerInternal(float(m))]),
        initial=reference.at(0.0),
        times=times,
        dt=DT,
        references={"pde": reference},
        primary_metric="radial_w2",
        mobility=Mobility("wasserstein"),
        box=Box.cube(half_width, d),
        initial_family=barenblatt_initial_family(d, m),
        version=1,
        description=(
            f"Porous medium equation d_t rho = Laplacian rho^{m} in {d}-D (energy int rho^{m}/{m - 1}), "
            f"from the Barenblatt profile at absolute time t0 = {t0}; exact reference (self-similar "
            f"dilation, support radius {reference.support_radius(0.0):.3f} -> "
            f"{reference.support_radius(times[-1]):.3f})."
        ),
    )


@wgfbench.hookimpl
def wgfbench_register_problems(registry: ProblemRegistry) -> None:
    """Register ``porous-medium/barenblatt-{1,2,6,10}d-m2`` and ``barenblatt-{1,2}d-m3``."""
    for d, m in SNAPSHOT_TIMES:
        registry.add(functools.partial(make_barenblatt_problem, d, m), name=f"{FAMILY}/barenblatt-{d}d-m{m}")
