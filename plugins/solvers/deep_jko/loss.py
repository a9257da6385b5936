r"""The Deep JKO loss (25) with the energy terms on particles carrying log-densities.

For particles :math:`x_j\sim\rho^n` with :math:`\log\rho^n(x_j)` known, and the push
:math:`z_j = z_j^{N_\tau}`, :math:`\log\rho(z_j) = \log\rho^n(x_j) - l_j^{N_\tau}` of :mod:`.flow`,

.. math:: L(\theta) = \frac1N\sum_j\Big[c_j + 2\Delta t\Big(\frac{U(\rho(z_j))}{\rho(z_j)} + V(z_j)
          + \frac12\frac1{N-1}\sum_{l\ne j}W(z_j - z_l)\Big)\Big]

(Deep JKO eq. (25) with (26)), :math:`c_j` the kinetic action of the particle:

* Wasserstein: :math:`\int_0^1|\nabla\phi_\theta|^2d\tau` (eq. (25));
* nonlinear mobility :math:`M`: :math:`\int_0^1\frac{\rho}{M(\rho)}|v_\theta|^2d\tau` along the
  trajectory, :math:`\rho` from the log-determinant (eq. (24));
* Kalman–Wasserstein: :math:`\int_0^1 v_\theta^\top C(0)^{-1}v_\theta\,d\tau`, the preconditioner
  frozen at the covariance :math:`C(0)` of the batch at the start of the step, as in §4.4 (eq. (38)).
  We parametrise :math:`v_\theta = -C(0)\nabla\phi_\theta`, the form of the optimal velocity for this
  metric (:math:`v = -C\nabla\delta\mathcal E/\delta\rho`); the kinetic term is then
  :math:`\nabla\phi^\top C(0)\nabla\phi` and
  :math:`\operatorname{div}v = -\operatorname{tr}(C(0)\nabla^2\phi)`. The network sees the
  standardised input :math:`C(0)^{-1/2}(x - m(0))` (see :mod:`.solver`).

The interaction is the U-statistic of :math:`\tfrac12\iint W\rho\rho` (eq. (2)/(32)); the ½ is
missing from (25) as printed, a slip (with it, :math:`L/2\Delta t` is the JKO functional
:math:`W_2^2/2\Delta t + \mathcal E`). The internal term uses ``InternalEnergy.per_mass``, i.e.
any :math:`U` (eq. (26); for :math:`U = \rho\log\rho` it is :math:`\log\rho`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wgfbench.energy import Energy
from wgfbench.problem import Mobility

from .flow import KineticWeight, Push, Scheme, VelocityField, push


def mobility_weight(mobility: Mobility) -> KineticWeight:
    r""":math:`\kappa(\log\rho) = \rho/M(\rho)` for a nonlinear mobility (eq. (24)), else ``None``.
    Where :math:`M(\rho)\le0` (e.g. :math:`\rho\ge1` for :math:`M = \rho(1-\rho)`) the weight is
    capped at :math:`10^6`: the action is then a steep barrier instead of NaN/negative."""
    if mobility.kind != "nonlinear":
        return None
    M = mobility.M
    assert M is not None

    def weight(log_rho: Tensor) -> Tensor:
        rho = log_rho.exp()
        m = M(rho)
        ratio = rho / m.clamp_min(1e-300)
        return torch.where(m > 0, ratio.clamp_max(1e6), torch.full_like(ratio, 1e6))

    return weight


@dataclass
class LossValue:
    """The loss (scalar, differentiable), its kinetic and energy means (floats) and the push."""

    loss: Tensor
    kinetic: float
    energy: float
    pushed: Push


def jko_loss(
    field: VelocityField,
    x: Tensor,
    log_rho: Tensor,
    energy: Energy,
    dt: float,
    n_steps: int,
    scheme: Scheme,
    kinetic_weight: KineticWeight = None,
) -> LossValue:
    r"""The loss (25) at particles ``x`` (N, d) ~ ρⁿ with ``log_rho`` (N,), JKO step ``dt``,
    ``n_steps`` = :math:`N_\tau` inner steps of ``scheme`` (module docstring)."""
    pushed = push(field, x, log_rho, n_steps, scheme, kinetic_weight)
    e = energy.particle_terms(pushed.z, pushed.log_rho)
    kinetic = pushed.kinetic.mean()
    e_mean = e.mean()
    loss = kinetic + 2.0 * dt * e_mean
    return LossValue(loss=loss, kinetic=float(kinetic.detach()), energy=float(e_mean.detach()), pushed=pushed)
