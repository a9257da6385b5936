r"""The neural-ODE particle push of one JKO step, with log-densities along trajectories.

Within a JKO step the particles follow :math:`\dot z = v_\theta(\tau, z)`, :math:`\tau\in[0,1]`,
:math:`v_\theta = -P\nabla_x\phi_\theta` (:math:`P = I` for the Wasserstein metric; the frozen
preconditioner :math:`P = C(0)` for Kalman–Wasserstein, see :mod:`.loss`), and the log-determinant of
the flow map evolves by the instantaneous change of variables (Deep JKO, Proposition 1, eq. (13)):

.. math:: \dot l = \operatorname{div} v_\theta(\tau, z) = -\operatorname{tr}(P\nabla_x^2\phi_\theta),
          \qquad l(0) = 0,\qquad \log\rho(\tau, z(\tau)) = \log\rho^n(x) - l(\tau)

(eq. (26); the paper's (25) and Algorithm 1 print :math:`l^0 = \log|\det\nabla^2\phi|`, a slip: the
flow map at :math:`\tau = 0` is the identity, so :math:`l^0 = 0`). The kinetic action
:math:`\int_0^1 \kappa(\rho)\,v^\top P^{-1}v\,d\tau` (:math:`\kappa = 1`, or :math:`\rho/M(\rho)` for
a nonlinear mobility, eq. (24)) is integrated along with them. Integrators over :math:`N_\tau`
steps of :math:`d\tau = 1/N_\tau`: forward Euler (exactly the recursion printed under (25)) and
classical RK4 (the paper's choice in §4), both applied to the augmented state :math:`(z, l, c)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .network import PotentialResNet, autograd_grad_and_trace

Scheme = Literal["rk4", "euler"]
# ρ ↦ ρ/M(ρ) as a function of log ρ (nonlinear mobility), or None (Wasserstein/Kalman: κ = 1).
KineticWeight = Callable[[Tensor], Tensor] | None


@dataclass
class VelocityField:
    r""":math:`v_\theta = -P\nabla_x\phi_\theta`, its divergence and the metric norm
    :math:`v^\top P^{-1}v = |L^\top\nabla_x\phi|^2` (:math:`P = LL^\top`).

    ``derivatives``: ``"explicit"`` (OT-Flow recurrences) or ``"autograd"``; ``trace``:
    ``"exact"`` or ``"hutchinson"`` with ``probes`` (n, d, k) Rademacher vectors (set by
    :meth:`draw_probes` once per push, shared by the stages). ``precond_root`` L (d, d) or None.
    """

    net: PotentialResNet
    derivatives: Literal["explicit", "autograd"] = "explicit"
    trace: Literal["exact", "hutchinson"] = "exact"
    precond_root: Tensor | None = None
    probes: Tensor | None = None

    def draw_probes(self, n: int, k: int, generator: torch.Generator, like: Tensor) -> None:
        """Rademacher probes ε (n, d, k), scaled by :math:`1/\\sqrt k` so that the summed quadratic
        forms are Hutchinson's mean :math:`\\frac1k\\sum_j\\varepsilon_j^\\top H\\varepsilon_j`."""
        d = self.net.dim
        signs = torch.randint(0, 2, (n, d, k), generator=generator, device=like.device)
        self.probes = (2.0 * signs.to(like.dtype) - 1.0) / k**0.5

    def _directions(self) -> Tensor | None:
        if self.trace == "hutchinson":
            if self.probes is None:
                raise RuntimeError("Hutchinson trace: draw_probes first")
            if self.precond_root is None:
                return self.probes
            return torch.matmul(self.precond_root, self.probes)
        return self.precond_root

    def __call__(self, tau: float, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(v, div v, v^T P^{-1} v)`` at ``z`` (n, d): shapes (n, d), (n,), (n,)."""
        directions = self._directions()
        if self.derivatives == "explicit":
            grad, tr = self.net.grad_and_trace(tau, z, directions)
        else:
            grad, tr = autograd_grad_and_trace(self.net, tau, z, directions)
        if self.precond_root is None:
            return -grad, -tr, (grad**2).sum(1)
        Lt_grad = grad @ self.precond_root  # rows Lᵀ∇φ
        return -(Lt_grad @ self.precond_root.T), -tr, (Lt_grad**2).sum(1)


@dataclass
class Push:
    """End of a push: positions ``z`` (n, d), ``log_rho`` (n,) at them and the per-particle
    kinetic action ``kinetic`` (n,)."""

    z: Tensor
    log_rho: Tensor
    kinetic: Tensor


def push(
    field: VelocityField,
    x: Tensor,
    log_rho: Tensor,
    n_steps: int,
    scheme: Scheme = "rk4",
    kinetic_weight: KineticWeight = None,
) -> Push:
    r"""Integrate :math:`(z, l, c)` from :math:`(x, 0, 0)` over :math:`\tau\in[0,1]` with ``n_steps``
    steps of ``scheme``: :math:`\dot z = v`, :math:`\dot l = \operatorname{div}v`,
    :math:`\dot c = \kappa(\log\rho^n - l)\,v^\top P^{-1}v`; returns :math:`z(1)`,
    :math:`\log\rho^n - l(1)` (eq. (26)) and :math:`c(1)`. ``x`` (n, d), ``log_rho`` (n,).

    Forward Euler is the recursion under (25):
    :math:`z^{k+1} = z^k - d\tau\nabla\phi(kd\tau, z^k)`,
    :math:`l^{k+1} = l^k - d\tau\operatorname{tr}\nabla^2\phi(kd\tau, z^k)`, :math:`l^0 = 0`,
    kinetic :math:`d\tau\sum_k|\nabla\phi(kd\tau, z^k)|^2`.
    """
    h = 1.0 / n_steps

    def rhs(tau: float, z: Tensor, l: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        v, div, sq = field(tau, z)
        if kinetic_weight is not None:
            sq = sq * kinetic_weight(log_rho - l)
        return v, div, sq

    z, l = x, torch.zeros_like(log_rho)
    c = torch.zeros_like(log_rho)
    for k in range(n_steps):
        tau = k * h
        if scheme == "euler":
            v, div, sq = rhs(tau, z, l)
            z, l, c = z + h * v, l + h * div, c + h * sq
            continue
        v1, d1, s1 = rhs(tau, z, l)
        v2, d2, s2 = rhs(tau + 0.5 * h, z + 0.5 * h * v1, l + 0.5 * h * d1)
        v3, d3, s3 = rhs(tau + 0.5 * h, z + 0.5 * h * v2, l + 0.5 * h * d2)
        v4, d4, s4 = rhs(tau + h, z + h * v3, l + h * d3)
        z = z + h / 6.0 * (v1 + 2.0 * v2 + 2.0 * v3 + v4)
        l = l + h / 6.0 * (d1 + 2.0 * d2 + 2.0 * d3 + d4)
        c = c + h / 6.0 * (s1 + 2.0 * s2 + 2.0 * s3 + s4)
    return Push(z=z, log_rho=log_rho - l, kinetic=c)
