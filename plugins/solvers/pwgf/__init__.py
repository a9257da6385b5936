"""``pwgf``: parameterized Wasserstein gradient flow (Jin, Liu, Wu, Ye & Zhou, arXiv 2404.19133).

:mod:`.pushforward` (the neural-ODE push-forward map and its log-determinant), :mod:`.metric` (the
pullback metric applied matrix-free, conjugate gradients), :mod:`.fit` (θ0 by maximum likelihood),
:mod:`.solver` (the plugin: the parameterised flow, its time stepping and documented choices).
"""

from __future__ import annotations

import wgfbench

from .solver import PWGF, PWGFConfig

__all__ = ["PWGF", "PWGFConfig"]


@wgfbench.hookimpl
def wgfbench_register_solvers(registry) -> None:
    """Register :class:`PWGF` as ``pwgf``."""
    registry.add(PWGF)
