r"""The free energy :math:`F(\theta) = \mathcal E(T_\theta\#\lambda)` as a differentiable Monte Carlo
estimate over reference points :math:`z_i\sim\lambda`:

.. math:: F(\theta) \approx \frac1N\sum_i\Big[\frac{U(\rho_i)}{\rho_i} + V(x_i)
          + \frac12\frac1{N-1}\sum_{j\ne i}W(x_i - x_j)\Big],\qquad x_i = T_\theta(z_i),\
          \log\rho_i = \log\lambda(z_i) - \log\det\nabla T_\theta(z_i),

the internal energy through the log-determinant (:math:`\int U(\rho) = \mathbb E_\rho[U(\rho)/\rho]`,
``InternalEnergy.per_mass``; for the entropy it is :math:`\mathbb E[\log\rho]`), potential and
interaction by Monte Carlo (the interaction as a U-statistic). Its gradient is
:math:`\nabla_\theta F`, the right-hand side of the parameterised flow.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wgfbench.energy import Energy


def pair_terms(kernel, x: Tensor) -> Tensor:
    r"""Per-point :math:`\tfrac12\frac1{N-1}\sum_{j\ne i}W(x_i-x_j)` (N,), differentiable in ``x``
    (the diagonal is masked before the square root, so kernels singular at 0 never see it)."""
    n = x.shape[0]
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    r = torch.where(eye, torch.ones_like(sq), sq).sqrt()
    w = torch.where(eye, torch.zeros_like(sq), kernel.of_distance(r))
    return 0.5 * w.sum(1) / (n - 1)


def energy_terms(energy: Energy, x: Tensor, log_rho: Tensor) -> Tensor:
    """Per-point terms (N,) whose mean is the estimate of :math:`\\mathcal E` above."""
    total = energy.V(x)
    if energy.internal is not None:
        total = total + energy.internal.per_mass(log_rho)
    for interaction in energy.interactions:
        total = total + pair_terms(interaction.kernel, x)
    return total
