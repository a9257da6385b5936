r"""Interacting-particle Langevin baselines: Euler–Maruyama and the ensemble Kalman sampler.

**Fokker–Planck** (mobility ``wasserstein``, energy :math:`\int\rho\log\rho + \int V\rho`). The
flow :math:`\partial_t\rho = \nabla\cdot(\rho\nabla V) + \Delta\rho` is the law of the overdamped
Langevin diffusion :math:`dX = -\nabla V(X)\,dt + \sqrt2\,dW` (Jordan, Kinderlehrer & Otto 1998,
§1); the solver moves ``n_particles`` independent copies with the Euler–Maruyama step

.. math:: X \leftarrow X - \nabla V(X)\,\Delta t + \sqrt{2\Delta t}\,\xi, \qquad \xi\sim\mathcal N(0, I_d),

at the fixed step :math:`\Delta t` (cut at the snapshot times). Its law converges weakly at order
one in :math:`\Delta t` (Kloeden & Platen 1992, Thm 14.5.2; checked by the tests). On a problem
posed on its box with no-flux walls (``problem.box.wall``, e.g. ``fokker-planck/box-1d``) particles
that leave the box are reflected back into it: reflecting walls are the no-flux boundary (near a
wall the weak order drops to ½). Any other box is only a computational window and is ignored.

**Kalman–Wasserstein** (mobility ``kalman``, same energy with :math:`V=\Phi` the negative
log-posterior). The flow :math:`\partial_t\rho = \nabla\cdot(\rho\,C(\rho)\nabla(V + \log\rho))`
(Garbuno-Inigo, Hoffmann, Li & Stuart, SIAM J. Appl. Dyn. Syst. 19 (2020), eq. (3.4); Deep JKO
eq. (34)) is the mean-field limit of the ensemble Kalman sampler (EKS) in gradient form. With the
finite-ensemble correction of Nüsken & Reich (2019) (ALDI, Garbuno-Inigo, Nüsken & Reich, SIAM J.
Appl. Dyn. Syst. 19 (2020)) each particle :math:`X_j`, :math:`j=1..J`, follows

.. math:: dX_j = -C(X)\nabla V(X_j)\,dt + \frac{d+1}{J}(X_j - \bar X)\,dt + \sqrt2\,C(X)^{1/2}dW_j,

:math:`C(X) = \frac1J\sum_k (X_k-\bar X)(X_k-\bar X)^\top` the ensemble covariance and
:math:`C^{1/2}` its symmetric square root. The correction is the divergence
:math:`\nabla_{X_j}\cdot C(X)`, which makes :math:`\pi^{\otimes J}` exactly invariant for the
finite ensemble; it vanishes as :math:`J\to\infty`.

*Why not plain Euler–Maruyama for KW.* The drift of particle :math:`j` has Jacobian
:math:`-C\nabla^2V(X_j)`. On the elliptic inverse problem of Deep JKO §4.4 its spectral radius is
:math:`\approx2\cdot10^3` at the start, and it stays there up to :math:`t=20`: a few per cent of
the particles drift onto the plateau :math:`u_1\gg0` (where :math:`e^{-u_1}` makes
:math:`\Phi` flat), keep :math:`C_{11}\approx5` wide, while the bulk sits in the narrow posterior
(:math:`\mathrm{var}\,u_1 \approx 0.013`). Explicit Euler then needs
:math:`\Delta t \lesssim 2.5\cdot10^{-4}` throughout, :math:`\sim10^5` steps (measured). So the
KW step is **exponential Euler on the local linearisation** (Ozaki 1992; Jimenez, Shoji & Ozaki,
J. Stat. Phys. 94 (1999)) for the stiff particles and Euler–Maruyama for the others:

In the coordinates :math:`w = C^{-1/2}(x - X_j)`, with :math:`C` frozen over the step and
:math:`\nabla V(x)\approx g_j + \nabla^2V(X_j)(x-X_j)`, the SDE is the Ornstein–Uhlenbeck process
:math:`dw = -(b_j + S_jw)\,dt + \sqrt2\,dW`, :math:`b_j = C^{1/2}g_j`,
:math:`S_j = C^{1/2}\nabla^2V(X_j)C^{1/2} = Q\Lambda Q^\top`, solved exactly:

.. math:: w = Q\Big[-\frac{1-e^{-\Lambda\Delta t}}{\Lambda}Q^\top b_j
          + \Big(\frac{1-e^{-2\Lambda\Delta t}}{\Lambda}\Big)^{1/2}Q^\top\xi_j\Big],\qquad
          X_j \leftarrow X_j + C^{1/2}w + \frac{d+1}{J}(X_j-\bar X)\Delta t.

As :math:`\Lambda\Delta t\to0` this is the Euler–Maruyama step
:math:`X_j - C\nabla V(X_j)\Delta t + \sqrt{2\Delta t}\,C^{1/2}\xi_j` (used when
:math:`\Delta t\,\lambda_j\le\theta`, :math:`\lambda_j=\varrho(S_j)`); it is exact for Gaussian
targets with frozen :math:`C` and unconditionally stable. :math:`\lambda_j` comes from one power
iteration per step warm-started from the previous direction, :math:`S_j` (stiff particles only)
from forward differences of :math:`\nabla V` along the columns of :math:`C^{1/2}`: no second
derivatives are needed.

*Adaptive step (KW).* What remains explicit is the covariance, frozen over a step. Its rate is
known from the ensemble: :math:`\dot C = -KC - CK^\top + 2(1+d/J)C` with
:math:`K = \frac1J\sum_j(X_j-\bar X)(\nabla V(X_j)-\overline{\nabla V})^\top`, and the step is

.. math:: \Delta t_n = \min\big(\Delta t,\ \eta / \|C^{-1/2}\dot C\,C^{-1/2}\|_2\big),

so that :math:`C` changes by at most a fraction :math:`\eta` per step: the "step bounded by the
local drift scale", at the level of the ensemble (cf. the EKS rule
:math:`\Delta t_n=\Delta t_0/(\|U^n\|_F+\delta)`, Garbuno-Inigo et al. 2020, §4.3). Tiny steps are
taken during the initial collapse of the ensemble only; near equilibrium :math:`\dot C\approx0`
and the base step rules. Every step is cut so that the snapshot times are hit exactly. The
scheme ``"euler"`` (config) keeps plain Euler–Maruyama with the stability bound
:math:`\Delta t_n\le\theta/\max_j\lambda_j` instead, for comparison.

*Known limits (measured on the elliptic problem).* (i) For a non-Gaussian target the local
linearisation step with :math:`\lambda_j\Delta t\gg1` behaves like a Laplace (stochastic Newton)
move and its invariant law is not exactly :math:`\pi`: with :math:`C` frozen, started from the
posterior and 20 000 particles, the mean of :math:`u_2` settles 0.06 (0.2 posterior standard
deviations) below the posterior mean for :math:`\lambda\Delta t` between 10 and 100, 0.02 at
:math:`\lambda\Delta t\approx1`; the ``"euler"`` scheme has no such floor but needs
:math:`\sim10^5` steps to reach t = 20. (ii) From Deep JKO's :math:`\rho_0` the KW flow itself
is far from the posterior at t = 20, whatever the scheme: about 2 % of the particles sit on the
plateau :math:`u_1>-2` (mean :math:`u_1\approx-2.5` instead of :math:`-2.71`,
:math:`C_{11}\approx3` instead of 0.013; the same for J = 2000 and 20 000 and for 4× smaller
steps), 0.7 % at t = 50 and 0.2 % at t = 200.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, conint
from torch import Tensor

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Entropy
from wgfbench.errors import NonFiniteOutput
from wgfbench.problem import Problem
from wgfbench.solver import Solver, SolverConfig, Support, equal_steps
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

GradV = Callable[[Tensor], Tensor]

# A snapshot time is reached when less than this (relative) time remains: float round-off only.
_TIME_TOL = 1e-12
# Power iterations for the first stiffness estimate; later steps warm-start with one.
_FIRST_POWER_ITERATIONS = 10
# Exponents Λ Δt below this bound are clipped: a strongly concave direction (negative curvature)
# grows by at most e^{1} per step instead of overflowing; never active for log-concave targets.
_MIN_EXPONENT = -1.0


class LangevinConfig(SolverConfig):
    """Configuration of :class:`Langevin`.

    ``n_particles``: ensemble size J. ``dt``: base time step; ``None`` means ``problem.dt *
    dt_factor``. ``log_energy_every``: estimate the free energy with
    ``problem.energy.on_samples`` on the first ``energy_samples`` particles every that many steps
    (0: never); the estimate goes to the step log and its cost is the solver's.
    Kalman–Wasserstein only: ``kalman_scheme`` (``"exponential"``: local linearisation for stiff
    particles; ``"euler"``: Euler–Maruyama with a stability-bounded step), ``step_safety`` θ (a
    particle is stiff when Δt λ_j > θ), ``covariance_change`` η (largest relative change of C per
    step) and ``ensemble_correction`` (the (d+1)/J drift of Nüsken & Reich 2019).
    """

    n_particles: PositiveInt = 2000
    dt: PositiveFloat | None = None
    dt_factor: PositiveFloat = 1.0
    log_energy_every: NonNegativeInt = 10
    energy_samples: conint(ge=10) = 1000  # type: ignore[valid-type]
    kalman_scheme: Literal["exponential", "euler"] = "exponential"
    step_safety: PositiveFloat = 0.5
    covariance_change: PositiveFloat = 0.2
    ensemble_correction: bool = True


def langevin_support(problem: Problem) -> Support:
    """``True`` for the diffusions this solver simulates (entropy plus potentials, Wasserstein or
    Kalman mobility; no-flux walls, ``problem.box.wall``, for the Wasserstein mobility only);
    otherwise the reason."""
    energy = problem.energy
    if problem.mobility.kind not in ("wasserstein", "kalman"):
        return f"Langevin particles need the Wasserstein or Kalman mobility, not {problem.mobility.kind!r}"
    if energy.interactions:
        return "Langevin particles are independent; interaction energies (W*rho) are not supported"
    if not isinstance(energy.internal, Entropy):
        internal = type(energy.internal).__name__ if energy.internal is not None else "none"
        return (
            "Langevin noise realises linear diffusion (internal energy Entropy) only; this problem's "
            f"internal energy is {internal}"
        )
    if problem.mobility.kind == "kalman" and problem.box is not None and problem.box.wall:
        return (
            "the ensemble Kalman sampler moves particles by the ensemble covariance and has no "
            "reflection at the no-flux walls of this problem's box"
        )
    return True


def euler_maruyama_step(x: Tensor, grad_V: Tensor, dt: float, xi: Tensor) -> Tensor:
    r"""One Euler–Maruyama step of :math:`dX = -\nabla V(X)dt + \sqrt2\,dW`:
    :math:`X - \nabla V(X)\Delta t + \sqrt{2\Delta t}\,\xi`. ``x``, ``grad_V``, ``xi``: (n, d)."""
    return x - dt * grad_V + math.sqrt(2.0 * dt) * xi


def reflect_into_box(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    r"""Specular reflection of the points ``x`` (n, d) at the walls of the box ``[low, high]``
    (``(d,)`` tensors): :math:`x \mapsto 2\,\mathrm{low} - x` below, :math:`2\,\mathrm{high} - x` above
    (once; steps are far shorter than the box). Reflecting walls are the no-flux boundary
    :math:`(\nabla\rho + \rho\nabla V)\cdot n = 0` of the Fokker–Planck equation."""
    x = torch.where(x < low, 2 * low - x, x)
    return torch.where(x > high, 2 * high - x, x)


def ensemble_covariance(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Ensemble mean :math:`\bar X` (d,) and covariance
    :math:`C=\frac1J\sum_j (X_j-\bar X)(X_j-\bar X)^\top` (d, d) of ``x`` (J, d); the 1/J
    normalisation is the one whose divergence is :math:`\frac{d+1}J(X_j-\bar X)`."""
    mean = x.mean(dim=0)
    centred = x - mean
    # A contiguous transpose: the strided (d, J) @ (J, d) product is far slower on CPU.
    return mean, centred.T.contiguous() @ centred / x.shape[0]


def spd_sqrt_and_inverse_sqrt(cov: Tensor) -> tuple[Tensor, Tensor]:
    """:math:`C^{1/2}` and :math:`C^{-1/2}` (d, d) of a symmetric positive semi-definite ``cov``
    by eigendecomposition; eigenvalues below ``1e-12`` × the largest are clipped there."""
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    evals = evals.clamp_min(1e-12 * float(evals.max().clamp_min(torch.finfo(cov.dtype).tiny)))
    root = (evecs * evals.sqrt()) @ evecs.T
    inverse_root = (evecs / evals.sqrt()) @ evecs.T
    return root, inverse_root


def covariance_rate(x: Tensor, grad_at_x: Tensor, root: Tensor, inverse_root: Tensor) -> float:
    r""":math:`\|C^{-1/2}\dot C C^{-1/2}\|_2` with :math:`\dot C = -KC - CK^\top + 2(1+d/J)C`, the
    expected rate of change of the ensemble covariance under the corrected EKS dynamics,
    :math:`K=\frac1J\sum_j(X_j-\bar X)(\nabla V(X_j)-\overline{\nabla V})^\top`. In whitened form
    :math:`C^{-1/2}\dot CC^{-1/2} = -M - M^\top + 2(1+d/J)I`, :math:`M=C^{-1/2}KC^{1/2}`. ``x``,
    ``grad_at_x``: (J, d); ``root``, ``inverse_root``: :math:`C^{\pm1/2}` (d, d)."""
    J, d = x.shape
    centred_x = x - x.mean(dim=0)
    centred_g = grad_at_x - grad_at_x.mean(dim=0)
    K = centred_x.T.contiguous() @ centred_g / J
    M = inverse_root @ K @ root
    rate = -M - M.T + 2.0 * (1.0 + d / J) * torch.eye(d, dtype=x.dtype, device=x.device)
    return float(torch.linalg.matrix_norm(rate, ord=2))


def particle_stiffness(
    grad_V: GradV, x: Tensor, grad_at_x: Tensor, root: Tensor, directions: Tensor, iterations: int
) -> tuple[Tensor, Tensor]:
    r"""Power iteration for :math:`\lambda_j = \varrho(S_j)`, :math:`S_j=C^{1/2}\nabla^2V(X_j)C^{1/2}`.

    Each iteration maps the unit rows :math:`u_j` of ``directions`` to
    :math:`s_j = C^{1/2}(\nabla V(X_j+\varepsilon C^{1/2}u_j) - \nabla V(X_j))/\varepsilon` (a
    forward-difference Hessian–vector product, :math:`\varepsilon=\sqrt{\epsilon_{\rm mach}}` of
    ``x.dtype``) and sets :math:`\lambda_j=|s_j|`, :math:`u_j\leftarrow s_j/|s_j|`. ``x``,
    ``grad_at_x``, ``directions``: (J, d); ``root``: :math:`C^{1/2}` (d, d). Returns
    ``(lambda (J,), unit directions (J, d))``.
    """
    eps = math.sqrt(torch.finfo(x.dtype).eps)
    tiny = torch.finfo(x.dtype).tiny
    lam = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        s = (grad_V(x + eps * directions @ root) - grad_at_x) @ root / eps
        lam = torch.linalg.vector_norm(s, dim=1)
        # A zero Hessian along u_j (flat potential) keeps the old direction.
        directions = torch.where(lam[:, None] > 0, s / lam.clamp_min(tiny)[:, None], directions)
    return lam, directions


def whitened_hessians(grad_V: GradV, x: Tensor, grad_at_x: Tensor, root: Tensor) -> Tensor:
    r""":math:`S_j = C^{1/2}\nabla^2V(X_j)C^{1/2}` (n, d, d), symmetrised, by forward differences
    of :math:`\nabla V` along the columns :math:`c_k` of :math:`C^{1/2}`:
    :math:`S_j e_k \approx C^{1/2}(\nabla V(X_j+hc_k)-\nabla V(X_j))/h`,
    :math:`h=\sqrt{\epsilon_{\rm mach}}` (d gradient evaluations; relative error
    :math:`O(\sqrt{\epsilon_{\rm mach}})`, far below what the step needs). ``x``,
    ``grad_at_x`` (:math:`\nabla V(x)`): (n, d); ``root``: :math:`C^{1/2}` (d, d)."""
    n, d = x.shape
    h = math.sqrt(torch.finfo(x.dtype).eps)
    S = torch.empty(n, d, d, dtype=x.dtype, device=x.device)
    for k in range(d):
        # Row k of the symmetric root is its column k.
        S[:, :, k] = (grad_V(x + h * root[k]) - grad_at_x) @ root / h
    return 0.5 * (S + S.transpose(1, 2))


def symmetric_eigh(S: Tensor) -> tuple[Tensor, Tensor]:
    r"""Eigenvalues (ascending) and orthonormal eigenvectors (columns) of a batch of symmetric
    matrices ``S`` (n, d, d), like :func:`torch.linalg.eigh`. For d = 2 the closed form
    :math:`\lambda_\pm = \tfrac{a+c}2 \pm \sqrt{(\tfrac{a-c}2)^2+b^2}`, eigenvector of
    :math:`\lambda_+` at angle :math:`\tfrac12\operatorname{atan2}(2b, a-c)`, is used: several
    times faster than LAPACK's batched call on CPU, which dominated the 2-D Kalman–Wasserstein
    step."""
    if S.shape[-1] != 2:
        return torch.linalg.eigh(S)
    a, b, c = S[:, 0, 0], 0.5 * (S[:, 0, 1] + S[:, 1, 0]), S[:, 1, 1]
    centre, radius = 0.5 * (a + c), torch.hypot(0.5 * (a - c), b)
    angle = 0.5 * torch.atan2(2.0 * b, a - c)
    cos, sin = torch.cos(angle), torch.sin(angle)
    evals = torch.stack([centre - radius, centre + radius], dim=-1)
    evecs = torch.stack([torch.stack([-sin, cos], dim=-1), torch.stack([cos, sin], dim=-1)], dim=-1)
    return evals, evecs


def local_linearisation_increment(b: Tensor, S: Tensor, dt: float, xi: Tensor) -> Tensor:
    r"""The exact increment over ``dt`` of the whitened OU process :math:`dw=-(b+Sw)dt+\sqrt2dW`,
    :math:`w(0)=0`: :math:`Q[-\varphi_1(\Lambda)Q^\top b + \varphi_2(\Lambda)^{1/2}Q^\top\xi]` with
    :math:`\varphi_1=(1-e^{-\Lambda\Delta t})/\Lambda`, :math:`\varphi_2=(1-e^{-2\Lambda\Delta t})/\Lambda`
    (limits :math:`\Delta t` and :math:`2\Delta t` at :math:`\Lambda=0`; Jimenez, Shoji & Ozaki 1999).
    ``b``, ``xi``: (n, d); ``S``: (n, d, d) symmetric. Returns (n, d)."""
    lam, Q = symmetric_eigh(S)
    a = (lam * dt).clamp_min(_MIN_EXPONENT)
    small = a.abs() < 1e-8
    safe = torch.where(small, torch.ones_like(a), a)
    phi1 = dt * torch.where(small, 1.0 - 0.5 * a, -torch.expm1(-safe) / safe)
    phi2 = dt * torch.where(small, 2.0 - 2.0 * a, -torch.expm1(-2.0 * safe) / safe)
    # Noise through Qᵀξ (same law as ξ): the increment then tends to the Euler–Maruyama step
    # -b dt + sqrt(2dt) ξ path by path, not only in law, as Λ dt → 0.
    Qt = Q.transpose(1, 2)
    coeff = -phi1 * (Qt @ b[:, :, None])[:, :, 0] + phi2.sqrt() * (Qt @ xi[:, :, None])[:, :, 0]
    return (Q @ coeff[:, :, None])[:, :, 0]


class Langevin(Solver):
    """Euler–Maruyama Langevin particles (Fokker–Planck) and the ensemble Kalman sampler
    (Kalman–Wasserstein); the schemes and the adaptive KW step are in the module docstring.

    Output: one :class:`ParticleSnapshot` (no ``log_rho``) per ``problem.times`` and one
    :class:`StepRecord` per time step, with an energy estimate every ``log_energy_every`` steps.
    """

    name = "langevin"
    Config = LangevinConfig
    citation = r"""@article{jordan1998variational,
  title   = {The Variational Formulation of the {F}okker--{P}lanck Equation},
  author  = {Jordan, Richard and Kinderlehrer, David and Otto, Felix},
  journal = {SIAM Journal on Mathematical Analysis},
  volume  = {29}, number = {1}, pages = {1--17}, year = {1998}
}
@article{garbuno2020interacting,
  title   = {Interacting {L}angevin Diffusions: Gradient Structure and Ensemble {K}alman Sampler},
  author  = {Garbuno-Inigo, Alfredo and Hoffmann, Franca and Li, Wuchen and Stuart, Andrew M.},
  journal = {SIAM Journal on Applied Dynamical Systems},
  volume  = {19}, number = {1}, pages = {412--441}, year = {2020}
}
@article{garbuno2020affine,
  title   = {Affine Invariant Interacting {L}angevin Dynamics for {B}ayesian Inference},
  author  = {Garbuno-Inigo, Alfredo and N{\"u}sken, Nikolas and Reich, Sebastian},
  journal = {SIAM Journal on Applied Dynamical Systems},
  volume  = {19}, number = {3}, pages = {1633--1658}, year = {2020}
}
@article{nusken2019note,
  title   = {Note on Interacting {L}angevin Diffusions: Gradient Structure and Ensemble {K}alman
             Sampler by {G}arbuno-{I}nigo, {H}offmann, {L}i and {S}tuart},
  author  = {N{\"u}sken, Nikolas and Reich, Sebastian},
  journal = {arXiv preprint arXiv:1908.10890}, year = {2019}
}
@article{jimenez1999local,
  title   = {Simulation of Stochastic Differential Equations Through the Local Linearization Method.
             {A} Comparative Study},
  author  = {Jimenez, J. C. and Shoji, I. and Ozaki, T.},
  journal = {Journal of Statistical Physics},
  volume  = {94}, number = {3}, pages = {587--602}, year = {1999}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"n_particles": 2000, "dt_factor": 1.0, "energy_samples": 1000},
        "quick": {"n_particles": 20000, "dt_factor": 0.5, "energy_samples": 2000},
        "large": {"n_particles": 200000, "dt_factor": 0.25, "energy_samples": 4000},
    }

    config: LangevinConfig

    def supports(self, problem: Problem) -> Support:
        return langevin_support(problem)

    def base_step(self, problem: Problem) -> float:
        """The base time step: ``config.dt``, or ``problem.dt * config.dt_factor``."""
        return self.config.dt if self.config.dt is not None else problem.dt * self.config.dt_factor

    def _step_record(self, problem: Problem, x: Tensor, t: float, tau: float, step: int) -> StepRecord:
        every = self.config.log_energy_every
        if every == 0 or step % every != 0:
            return StepRecord(t=t, tau=tau)
        estimate = problem.energy.on_samples(x[: self.config.energy_samples])
        return StepRecord(t=t, tau=tau, energy=estimate.value, energy_stderr=estimate.stderr)

    def _kalman_step(
        self, grad_V: GradV, x: Tensor, dt_cap: float, ctx: Context, state: dict[str, Any]
    ) -> tuple[Tensor, float]:
        """One corrected-EKS step of at most ``dt_cap`` (module docstring); returns (x, dt).
        ``state`` carries the power-iteration directions and counters between steps."""
        J, d = x.shape
        config = self.config
        g = grad_V(x)
        mean, cov = ensemble_covariance(x)
        root, inverse_root = spd_sqrt_and_inverse_sqrt(cov)
        rate = covariance_rate(x, g, root, inverse_root)
        if not math.isfinite(rate):
            raise NonFiniteOutput("langevin: non-finite ensemble covariance rate")
        if rate > 0:
            _, dt = equal_steps(dt_cap, min(dt_cap, config.covariance_change / rate))
        else:
            dt = dt_cap
        directions = state["directions"]
        directions = directions / torch.linalg.vector_norm(directions, dim=1, keepdim=True)
        lam, state["directions"] = particle_stiffness(grad_V, x, g, root, directions, state["iterations"])
        state["iterations"] = 1
        if config.kalman_scheme == "euler":
            lam_max = float(lam.max())
            if lam_max > 0:
                _, dt = equal_steps(dt, min(dt, config.step_safety / lam_max))
        xi = ctx.randn(J, d)
        b = g @ root  # rows C^{1/2} ∇V(X_j)
        w = -dt * b + math.sqrt(2.0 * dt) * xi  # Euler–Maruyama in whitened coordinates
        if config.kalman_scheme == "exponential":
            stiff = (dt * lam > config.step_safety).nonzero().squeeze(1)
            if stiff.numel():
                S = whitened_hessians(grad_V, x[stiff], g[stiff], root)
                w[stiff] = local_linearisation_increment(b[stiff], S, dt, xi[stiff])
                state["stiff_steps"] += 1
        x_new = x + w @ root
        if config.ensemble_correction:
            x_new = x_new + dt * (d + 1) / J * (x - mean)
        return x_new, dt

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """Integrate from ``problem.initial`` to ``problem.times[-1]``; snapshots at ``problem.times``.

        Initial particles are drawn with ``ctx.cpu_generator`` (the problem's laws are CPU float64)
        and moved to ``ctx.device``/``ctx.dtype``; the noise comes from ``ctx.generator``.
        """
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"langevin does not support {problem.name}: {reason}")
        kalman = problem.mobility.kind == "kalman"
        dt_max = self.base_step(problem)
        J, d = self.config.n_particles, problem.dim
        if kalman and J <= d + 1:
            raise ValueError(f"the ensemble Kalman sampler needs more than d+1={d + 1} particles, got {J}")
        grad_V = problem.energy.grad_V
        walls = None
        if problem.box is not None and problem.box.wall and not kalman:
            walls = (ctx.to(torch.tensor(problem.box.low)), ctx.to(torch.tensor(problem.box.high)))
        x = ctx.to(problem.initial.sample(J, ctx.cpu_generator))
        snapshots = [ParticleSnapshot(t=0.0, x=x.clone())]
        steps: list[StepRecord] = []
        state: dict[str, Any] = {"iterations": _FIRST_POWER_ITERATIONS, "stiff_steps": 0}
        if kalman:
            state["directions"] = ctx.randn(J, d)
        t, t_final, n_steps, dt_min = 0.0, problem.final_time, 0, math.inf
        for t_next in problem.times[1:]:
            while t_next - t > _TIME_TOL * max(1.0, t_next):
                ctx.check_budget()
                _, dt_cap = equal_steps(t_next - t, dt_max)
                if kalman:
                    x, dt = self._kalman_step(grad_V, x, dt_cap, ctx, state)
                else:
                    dt = dt_cap
                    x = euler_maruyama_step(x, grad_V(x), dt, ctx.randn(J, d))
                    if walls is not None:
                        x = reflect_into_box(x, *walls)
                # The step that reaches the snapshot lands on it exactly (no accumulated round-off).
                t = t_next if t_next - (t + dt) <= _TIME_TOL * max(1.0, t_next) else t + dt
                n_steps += 1
                dt_min = min(dt_min, dt)
                steps.append(self._step_record(problem, x, t, dt, n_steps))
                ctx.progress(min(1000, int(1000 * t / t_final)), 1000)
            if not torch.isfinite(x).all():
                raise NonFiniteOutput(f"langevin: non-finite particles at t={t_next:.6g} ({n_steps} steps)")
            snapshots.append(ParticleSnapshot(t=t_next, x=x.clone()))
        info: dict[str, float | int | str] = {
            "scheme": f"ensemble-kalman-sampler/{self.config.kalman_scheme}" if kalman else "euler-maruyama",
            "n_particles": J,
            "n_steps": n_steps,
            "dt_max": dt_max,
            "dt_min": dt_min if n_steps else dt_max,
        }
        if kalman:
            info["stiff_steps"] = state["stiff_steps"]
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=None, info=info)


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`Langevin` as ``langevin``."""
    registry.add(Langevin)
