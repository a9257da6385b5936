r"""Nonlocal transport with a saturating (nonlinear) mobility, Deep JKO §4.3.

The PDE of Lee, Wang & Li (*Deep JKO*, eqs. (32)–(33); after Carrillo, Lisini, Savaré & Slepčev,
*J. Funct. Anal.* 258 (2010)) is

.. math:: \partial_t\rho = \nabla\cdot\big(\rho(1-\rho)\,\nabla W*\rho\big),\qquad W(x) = |x|^2,
          \qquad \rho_0(x) = \tfrac34(1-|x|^2)_+ .

Its mass :math:`\mu=\int\rho_0` is 1 in 1-D but :math:`3\pi/8` in 2-D, while wgfbench laws are
probability laws. **Rescaling (derived).** With :math:`\rho=\mu p`, :math:`p` a probability density,
:math:`W*\rho = \mu\,W*p` and

.. math:: \partial_t p = \nabla\cdot\big(p(1-\mu p)\,\nabla (W_\mu * p)\big),\qquad W_\mu = \mu|x|^2,

the flow of :math:`\mathcal E(p) = \tfrac12\iint W_\mu(x-y)p(x)p(y) = \mu\,\mathrm{tr\,Cov}(p)` under
the mobility :math:`M(p)=p(1-\mu p)` (``Mobility(kind="nonlinear", M=SaturationMobility(1/μ))``,
energy ``Interaction(Quadratic(2μ))``). :math:`0\le p\le 1/\mu` is preserved: the cap
:math:`1/\mu` is the attribute ``problem.mobility.M.cap`` (also :data:`DENSITY_CAPS` and
:func:`density_cap`). The velocity is :math:`-2\mu(1-\mu p)(x-\bar x)`, so the mean is conserved.

**Stationary reference (derived).** Among :math:`0\le p\le1/\mu` with fixed mean, the variance is
minimal for :math:`p_\infty = (1/\mu)\,\mathbb 1_{B(\bar x, r)}` with :math:`\omega_d r^d = \mu` (bathtub
principle: move mass as close to the mean as the cap allows), i.e. :math:`\rho_\infty` is the
indicator of the ball of volume :math:`\mu`. Its energy is

.. math:: \mathcal E_\infty = \mu\,\mathrm{tr\,Cov}(p_\infty) = \mu\,\frac{d\,r^2}{d+2}:
          \quad d=1:\ \mu=1,\ r=\tfrac12,\ \mathcal E_\infty=\tfrac1{12};\qquad
          d=2:\ \mu=\tfrac{3\pi}8,\ r^2=\tfrac38,\ \mathcal E_\infty=\tfrac{9\pi}{128}.

(In the :math:`\rho` formulation :math:`\tfrac12\iint|x-y|^2\rho\rho = \mu\,\mathcal E(p)`,
``PROBLEMS.md``'s :math:`\mu^2\,\mathrm{Var}`.) Every :math:`\{0, 1/\mu\}`-valued density is
stationary too (the mobility vanishes), so the flow starts from :math:`0<\mu p_0\le\tfrac34<1` and is
scored by the energy gap.

**Initial law.** :math:`p_0 = \frac{d+2}{2\omega_d}(1-|x|^2)_+` (:class:`ParabolicBall`), sampled
exactly: :math:`|X|^2\sim\mathrm{Beta}(d/2, 2)`, direction uniform.

**Horizon.** Deep JKO Fig. 7 shows :math:`t\le0.2`. An explicit upwind finite-volume run
(:math:`\rho_\sigma` upwind times :math:`1-\rho` downwind; 1000 cells in 1-D, 200² in 2-D) gives the
energy gaps (p-formulation) 1-D: 0.117, 0.079, 0.055, 0.024, 0.0078, 0.0010 at
t = 0, 0.1, 0.2, 0.5, 1, 2; 2-D: 0.172, 0.123, 0.087, 0.043, 0.0077, 0.0007 at
t = 0, 0.05, 0.1, 0.2, 0.5, 1. The schedules below keep the paper's t = 0.2 and end where the
gap has closed to about 1 % of its initial value, still above the estimators' noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from scipy.special import betaincinv
from torch import Tensor
from wgfbench_plugins.problems.aggregation import UniformBall

import wgfbench
from wgfbench.energy import Energy, Interaction, Quadratic
from wgfbench.estimators import log_unit_ball_volume
from wgfbench.problem import Box, Mobility, Problem
from wgfbench.references import DTYPE, Distribution, Stationary, as_tensor

FAMILY = "nonlinear-mobility"
DIMS = (1, 2)
TIMES = {1: (0.0, 0.1, 0.2, 0.5, 1.0, 2.0), 2: (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)}
"""Snapshot schedules (module docstring, "Horizon")."""
DT = 0.01
BOX_HALF_WIDTH = 1.25
"""The support only contracts from the unit ball; a margin of 0.25 for grid solvers."""


def unit_ball_volume(d: int) -> float:
    r""":math:`\omega_d = \pi^{d/2}/\Gamma(d/2+1)`, exact literals for d ≤ 2 (so that the 1-D cap is 1.0)."""
    return {1: 2.0, 2: math.pi}.get(d) or math.exp(log_unit_ball_volume(d))


def initial_mass(d: int) -> float:
    r""":math:`\mu = \int\tfrac34(1-|x|^2)_+\,dx = \tfrac34\cdot\tfrac{2\omega_d}{d+2}` (1 in 1-D,
    :math:`3\pi/8` in 2-D)."""
    return 1.5 * unit_ball_volume(d) / (d + 2)


def density_cap(d: int) -> float:
    r"""The cap :math:`1/\mu` on the probability density :math:`p` (module docstring)."""
    return 1.0 / initial_mass(d)


DENSITY_CAPS = {f"{FAMILY}/saturation-{d}d": density_cap(d) for d in DIMS}
"""Problem name → density cap :math:`1/\\mu` (read-only table; also ``problem.mobility.M.cap``)."""


def stationary_radius(d: int) -> float:
    r""":math:`r` with :math:`\omega_d r^d = \mu`: the support radius of :math:`p_\infty`."""
    return (initial_mass(d) / unit_ball_volume(d)) ** (1.0 / d)


def stationary_energy(d: int) -> float:
    r""":math:`\mathcal E_\infty = \mu\,d\,r^2/(d+2)` (module docstring)."""
    return initial_mass(d) * d * stationary_radius(d) ** 2 / (d + 2)


@dataclass(frozen=True)
class SaturationMobility:
    r"""The mobility :math:`M(p) = p(1-p/\text{cap})`, :math:`\text{cap}=1/\mu` (module docstring);
    ``M(p)`` for a tensor of any shape, device and dtype. Solvers read ``cap`` to keep
    :math:`0\le p\le\text{cap}`."""

    cap: float

    def __call__(self, p: Tensor) -> Tensor:
        return p * (1.0 - p / self.cap)


class ParabolicBall(Distribution):
    r"""The probability density :math:`c_d(1-|x|^2)_+`, :math:`c_d = (d+2)/(2\omega_d)` (so that
    :math:`\int c_d(1-|x|^2)_+ = 1`): the normalised Deep JKO §4.3 initial condition
    :math:`\tfrac34(1-|x|^2)_+/\mu`.

    Exact samples :math:`X = \sqrt B\,U`, :math:`B\sim\mathrm{Beta}(d/2,2)` (the radial law: the
    density of :math:`b=|x|^2` is :math:`\propto b^{d/2-1}(1-b)`) by inverse CDF
    (``scipy.special.betaincinv``), :math:`U` uniform on the sphere. Mean 0, covariance
    :math:`\mathbb E[B]/d\;I = I/(d+4)`.
    """

    def __init__(self, d: int):
        self.dim = d
        self.log_c = math.log((d + 2) / 2.0) - math.log(unit_ball_volume(d))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=DTYPE)
        directions = z / torch.linalg.vector_norm(z, dim=1, keepdim=True)
        u = torch.rand(n, generator=generator, dtype=DTYPE)
        b = torch.from_numpy(betaincinv(0.5 * self.dim, 2.0, u.numpy())).to(DTYPE)
        return torch.sqrt(b)[:, None] * directions

    def log_density(self, x: Tensor) -> Tensor:
        r""":math:`\log c_d + \log(1-|x|^2)`, :math:`-\infty` outside the unit ball; (n, d) -> (n,)."""
        r2 = (as_tensor(x) ** 2).sum(-1)
        return self.log_c + torch.log((1.0 - r2).clamp_min(0.0))

    def mean(self) -> Tensor:
        return torch.zeros(self.dim, dtype=DTYPE)

    def cov(self) -> Tensor:
        return torch.eye(self.dim, dtype=DTYPE) / (self.dim + 4)


def make_saturation(d: int) -> Problem:
    r"""``nonlinear-mobility/saturation-{d}d``: :math:`\partial_t p=\nabla\cdot(p(1-\mu p)\nabla(\mu|x|^2*p))`
    from :class:`ParabolicBall`; stationary reference :math:`p_\infty` uniform on the ball of radius
    :func:`stationary_radius` with :math:`\mathcal E_\infty` = :func:`stationary_energy`; primary
    metric ``energy_gap`` (module docstring)."""
    mu = initial_mass(d)
    radius = stationary_radius(d)
    reference = Stationary(
        UniformBall(d, radius),
        energy_inf=stationary_energy(d),
        provenance=f"energy minimiser: (1/mu) 1_B(0, r), mu = {mu:.12g}, r = {radius:.12g} (derived)",
    )
    return Problem(
        name=f"{FAMILY}/saturation-{d}d",
        family=FAMILY,
        dim=d,
        energy=Energy([Interaction(Quadratic(2.0 * mu))]),
        initial=ParabolicBall(d),
        times=TIMES[d],
        dt=DT,
        references={"pde": reference},
        primary_metric="energy_gap",
        mobility=Mobility(kind="nonlinear", M=SaturationMobility(density_cap(d))),
        box=Box.cube(BOX_HALF_WIDTH, d),
        version=1,
        description=(
            f"Nonlocal transport with saturating mobility (Deep JKO §4.3) in {d}-D, rescaled to a "
            f"probability density p = rho/mu, mu = {mu:.6g}: d_t p = div(p(1 - mu p) grad(mu|x|^2 * p)) "
            f"from p0 ∝ (1-|x|^2)_+; stationary reference: uniform on the ball of volume mu, "
            f"E_inf = {stationary_energy(d):.6g}."
        ),
    )


@wgfbench.hookimpl
def wgfbench_register_problems(registry) -> None:
    """Register ``nonlinear-mobility/saturation-{1,2}d`` as factories."""
    for d in DIMS:
        registry.add(functools.partial(make_saturation, d), name=f"{FAMILY}/saturation-{d}d")
