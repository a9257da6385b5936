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
:math:`\mu^2\,\mathrm{tr\,Cov}(p)`.) Every :math:`\{0, 1/\mu\}`-valued density is
stationary too (the mobility vanishes), so the flow starts from :math:`0<\mu p_0\le\tfrac34<1`.
:math:`p_\infty` is ``references["stationary"]``.

**Numerical reference.** There is no closed form in time. ``references["pde"]`` is a stored,
hash-pinned fixed-τ run of the finite-volume JKO scheme ``fv-jko`` (Cancès, Gallouët & Todeschi,
*Numer. Math.* 146 (2020); upwind face mobility :math:`p_\uparrow(1-\mu p_\downarrow)`, which keeps
:math:`0\le p\le1/\mu`) at every snapshot time: 4000 cells and τ = dt/4 in 1-D, 128² cells and
τ = dt/2 in 2-D (:data:`REFERENCE_SOLVER`, :func:`build_saturation_reference`; ``wgfbench reference
build nonlinear-mobility/saturation-{d}d`` recomputes it). It is scored at every snapshot time,
by ``w2`` in 1-D and by ``radial_w2`` (the W2 of the law of :math:`|X|`; the flow is radial about
the origin) in 2-D (:data:`PRIMARY_METRICS`). Accuracy (measured at every snapshot time): against
the same scheme on half the cells, relative L1 ≤ 1.3e-3 and W2 ≤ 2.0e-4 in 1-D (2000 cells),
L1 ≤ 0.038 and W2 ≤ 0.011 in 2-D (64², W2 of both averaged on 64²); against an independent explicit
upwind scheme (500 cells, 64²), L1 ≤ 0.0037, W2 ≤ 5.2e-4 (1-D) and L1 ≤ 0.025, radial W2 ≤ 0.0042
(2-D). The ``w2`` noise floor at n = 1000 is 0.013–0.019 in 1-D, 0.040–0.056 in 2-D, and the
radial one in 2-D 0.008–0.012. In 1-D, τ = dt/4 because at 4000 cells and τ = dt/2 Newton stalls
(scaled residual about 1e-8 at t ≈ 0.25).

**Initial law.** :math:`p_0 = \frac{d+2}{2\omega_d}(1-|x|^2)_+` (:class:`ParabolicBall`), sampled
exactly: :math:`|X|^2\sim\mathrm{Beta}(d/2, 2)`, direction uniform.

**Horizon.** Deep JKO Fig. 7 shows :math:`t\le0.2`. An explicit upwind finite-volume run
(:math:`\rho_\sigma` upwind times :math:`1-\rho` downwind; 1000 cells in 1-D, 200² in 2-D) gives the
energy gaps (p-formulation) 1-D: 0.117, 0.079, 0.055, 0.024, 0.0078, 0.0010 at
t = 0, 0.1, 0.2, 0.5, 1, 2; 2-D: 0.172, 0.123, 0.087, 0.043, 0.0077, 0.0007 at
t = 0, 0.05, 0.1, 0.2, 0.5, 1. The schedules below keep the paper's t = 0.2 and end where the
gap has closed to about 1 % of its initial value: the flow, not only its limit, is scored.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from scipy.special import betaincinv
from torch import Tensor
from wgfbench_plugins.problems.aggregation import UniformBall, fv_jko_reference_run, stored_reference

import wgfbench
from wgfbench.energy import Energy, Interaction, Quadratic
from wgfbench.estimators import log_unit_ball_volume
from wgfbench.numerical import GridData, GridPath
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


#: The numerical references of saturation-{1,2}d: fv-jko at high resolution (``wgfbench reference
#: build nonlinear-mobility/saturation-{d}d`` recomputes one; the content hashes pin the stored data).
REFERENCE_FILES = {1: "saturation-1d.npz", 2: "saturation-2d.npz"}
REFERENCE_SHA256 = {
    1: "8e0bdae84fd07fe24e6bf5de3821d68f3720b87e652d836042643f868cc98116",
    2: "6a5b91d6d54af71721fde9d323544e72bde23afaccd5ca255603014077e26f1b",
}
REFERENCE_SOLVER = {
    1: {"cells_1d": 4000, "tau": 0.0025, "backend": "scipy", "tol": 1e-11},
    2: {"cells_2d": 128, "tau": 0.005, "backend": "scipy", "tol": 1e-11},
}
PRIMARY_METRICS = {1: "w2", 2: "radial_w2"}
"""Primary metric against the numerical reference. In 2-D the whole motion is small against the
2-D ``w2`` noise: W2(p0, p(t)) = 0.047, 0.068, 0.11, 0.14, 0.15 at the snapshot times while the
``w2`` floor at n = 1000 is 0.043–0.062, so the exact sampler's ``rel_error`` is 0.71 at t = 0.05
and 0.62 at t = 0.1 (a solver that does not move scores 1). The flow is radial and the law of
:math:`|X|` moves by 0.036–0.15 against a floor of 0.008–0.012, well above the reference's own
radial error (≤ 0.0042 against an independent scheme): the exact sampler's ``rel_error`` is then
0.44, 0.18, 0.13, 0.06, 0.05 (n = 1000). ``w2`` is still reported."""


def build_saturation_reference(d: int) -> GridData:
    r"""Recompute the numerical reference of ``saturation-{d}d``: the fixed-τ fv-jko run
    :func:`~wgfbench_plugins.problems.aggregation.fv_jko_reference_run` with
    :data:`REFERENCE_SOLVER` (1-D: 4000 cells on [−1.25, 1.25], τ = dt/4; 2-D: 128² cells on
    [−1.25, 1.25]², τ = dt/2) from the problem's :math:`p_0` to every snapshot time."""
    return fv_jko_reference_run(
        make_saturation(d, numerical=False),
        REFERENCE_SOLVER[d],
        f"wgfbench reference build {FAMILY}/saturation-{d}d",
    )


def saturation_reference(d: int) -> GridPath:
    """The stored fv-jko run (loaded lazily, hash-checked on first use), radial about the origin."""
    return GridPath(
        d,
        stored_reference(REFERENCE_FILES[d]),
        REFERENCE_SHA256[d],
        functools.partial(build_saturation_reference, d),
        radial_centre=torch.zeros(d, dtype=DTYPE),
    )


def make_saturation(d: int, numerical: bool = True) -> Problem:
    r"""``nonlinear-mobility/saturation-{d}d`` (Deep JKO §4.3):
    :math:`\partial_t p=\nabla\cdot(p(1-\mu p)\nabla(\mu|x|^2*p))` from :class:`ParabolicBall`
    (module docstring).

    The ``"pde"`` reference is numerical (:func:`saturation_reference`: fv-jko with the upwind
    nonlinear face mobility, 4000 cells and τ = dt/4 in 1-D, 128² cells and τ = dt/2 in 2-D, radial
    about the origin), scored at every snapshot time by :data:`PRIMARY_METRICS`;
    ``references["stationary"]`` is
    :math:`p_\infty`, uniform on the ball of radius :func:`stationary_radius`, with
    :math:`\mathcal E_\infty` = :func:`stationary_energy`. The last snapshot is not stationary (the
    gap is still about 1 % of its initial value): the flow is scored, not its limit.
    ``numerical=False`` keeps only :math:`p_\infty` (``energy_gap``): the problem the numerical
    reference itself is computed from.
    """
    mu = initial_mass(d)
    radius = stationary_radius(d)
    stationary = Stationary(
        UniformBall(d, radius),
        energy_inf=stationary_energy(d),
        provenance=f"energy minimiser: (1/mu) 1_B(0, r), mu = {mu:.12g}, r = {radius:.12g} (derived)",
    )
    pde = saturation_reference(d) if numerical else stationary
    solver = REFERENCE_SOLVER[d]
    resolution = f"{solver['cells_1d']} cells" if d == 1 else f"{solver['cells_2d']}^2 cells"
    return Problem(
        name=f"{FAMILY}/saturation-{d}d",
        family=FAMILY,
        dim=d,
        energy=Energy([Interaction(Quadratic(2.0 * mu))]),
        initial=ParabolicBall(d),
        times=TIMES[d],
        dt=DT,
        references={"pde": pde, "stationary": stationary},
        primary_metric=PRIMARY_METRICS[d] if numerical else "energy_gap",
        mobility=Mobility(kind="nonlinear", M=SaturationMobility(density_cap(d))),
        box=Box.cube(BOX_HALF_WIDTH, d),
        version=2,
        description=(
            f"Nonlocal transport with saturating mobility (Deep JKO §4.3) in {d}-D, rescaled to a "
            f"probability density p = rho/mu, mu = {mu:.6g}: d_t p = div(p(1 - mu p) grad(mu|x|^2 * p)) "
            f"from p0 ∝ (1-|x|^2)_+; numerical reference (fv-jko, {resolution}, tau = {solver['tau']:g}, "
            f"stored with its provenance) scored by {PRIMARY_METRICS[d]} at every snapshot, and stationary "
            f"reference: "
            f"uniform on the ball of volume mu, E_inf = {stationary_energy(d):.6g}."
        ),
    )


@wgfbench.hookimpl
def wgfbench_register_problems(registry) -> None:
    """Register ``nonlinear-mobility/saturation-{1,2}d`` as factories."""
    for d in DIMS:
        registry.add(functools.partial(make_saturation, d), name=f"{FAMILY}/saturation-{d}d")
