"""Deep JKO solver plugin (Lee, Wang & Li): neural-ODE particle JKO with densities along trajectories.

Modules: :mod:`.network` (ResNet potential, OT-Flow explicit gradient/Hessian-trace recurrences),
:mod:`.flow` (RK4/Euler particle push with the log-determinant, eq. (13)), :mod:`.loss` (loss (25)
with nonlinear mobility (24) and Kalman–Wasserstein (38)), :mod:`.solver` (Algorithms 1 and 2).
"""

from __future__ import annotations

import wgfbench

from .solver import DeepJKO, DeepJKOConfig

__all__ = ["DeepJKO", "DeepJKOConfig"]


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`DeepJKO` as ``deep-jko``."""
    registry.add(DeepJKO)
