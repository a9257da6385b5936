r"""The JKO objective Learn-to-Evolve minimises, evaluated on clouds.

For a density :math:`\rho` (a :class:`~wgfbench_plugins.solvers.learn_to_evolve.cloud.Cloud`) and
the operator's map :math:`T = \mathrm{id} + u`, the JKO subproblem of step :math:`\tau` is

.. math:: J_\tau(T;\rho) = \mathcal E(T\#\rho) + \frac{1}{2\tau}\sum_k m_k|u(x_k)|^2
          \;\ge\; \mathcal E(T\#\rho) + \frac{W_2^2(\rho, T\#\rho)}{2\tau},

an upper bound of the JKO objective at :math:`T\#\rho` (equality for the optimal map), so its
minimiser over maps is the JKO step. The free energy (Deep JKO, eq. (2)) of the pushed cloud,
with :math:`y_k = T(x_k)` and :math:`\log\rho'(y_k) = \log\rho(x_k) - \log\det DT(x_k)`:

* internal energy :math:`\int U(\rho') = \sum_k m_k\,U(\rho'_k)/\rho'_k`
  (:meth:`~wgfbench.energy.InternalEnergy.per_mass`): exact up to the quadrature of the cloud;
* potential :math:`\sum_k m_k V(y_k)`;
* interaction :math:`\tfrac12\sum_k m_k (W*\rho'_h)(y_k)`, with :math:`\rho'_h` the masses deposited
  on the operator's grid and :math:`W*\rho'_h` its convolution with the cell-averaged kernel
  (:meth:`~wgfbench.grid.GridEnergy.convolve`, FFT), read back bilinearly: :math:`O(NG)` instead of
  the :math:`O(N^2)` pair sum, with an :math:`O(h^2)` smoothing of the kernel.

Every term is differentiable in the positions and log-densities, hence in :math:`\theta`.
"""

from __future__ import annotations

from torch import Tensor
from wgfbench_plugins.solvers.learn_to_evolve.cloud import Cloud, Stencil

from wgfbench.grid import GridEnergy


def cloud_energy(cloud: Cloud, energy: GridEnergy) -> Tensor:
    """:math:`\\mathcal E` of each member of ``cloud`` (module docstring), (B,)."""
    B, N, d = cloud.x.shape
    total = (cloud.mass * energy.energy.V(cloud.x.reshape(-1, d)).reshape(B, N)).sum(dim=-1)
    internal = energy.internal
    if internal is not None:
        total = total + (cloud.mass * internal.per_mass(cloud.log_rho)).sum(dim=-1)
    if energy.has_interaction:
        stencil = Stencil(cloud.x, energy.grid)
        potential = energy.convolve(stencil.deposit(cloud.mass))
        at_particles, _ = stencil.interpolate(potential[:, None])
        total = total + 0.5 * (cloud.mass * at_particles[..., 0]).sum(dim=-1)
    return total


def jko_objective(moved: Cloud, cost: Tensor, energy: GridEnergy, tau: float) -> Tensor:
    """:math:`J_\\tau` per member: ``moved`` the pushed cloud, ``cost`` its transport cost
    :math:`\\sum_k m_k|u_k|^2` (module docstring)."""
    return cloud_energy(moved, energy) + cost / (2.0 * tau)
