r"""The pullback metric :math:`G(\theta)` of PWGF, applied matrix-free, and its linear solve.

For :math:`\rho_\theta = T_\theta\#\lambda` a parameter velocity :math:`\dot\theta` moves each point
with :math:`\dot x = J_\theta(z)\dot\theta`, :math:`J_\theta(z) = \partial_\theta T_\theta(z)`
(d × P). The Wasserstein metric pulled back to parameter space is

.. math:: G(\theta) = \mathbb E_{z\sim\lambda}\big[\kappa(z)\,J_\theta(z)^\top K\,J_\theta(z)\big],

with :math:`\kappa = 1`, :math:`K = I` for :math:`W_2` (Jin, Liu, Wu, Ye & Zhou, arXiv 2404.19133),
:math:`\kappa = \rho/M(\rho)` at :math:`T_\theta z` for a nonlinear mobility :math:`M` (the metric
:math:`\int\rho^2|v|^2/M(\rho)`, since the flux is :math:`\rho v = -M\nabla\delta\mathcal E/\delta\rho`),
and :math:`K = C_\theta^{-1}`, the inverse covariance of :math:`\rho_\theta`, for Kalman–Wasserstein
(metric :math:`\int v^\top C^{-1}v\,\rho`, optimal velocity :math:`-C\nabla\delta\mathcal E/\delta\rho`).
The parameterised flow is :math:`\dot\theta = -(G + \varepsilon I)^{-1}\nabla_\theta F(\theta)`.

:math:`G\eta` is one Jacobian-vector product (:math:`J\eta` for every point) followed by one
vector-Jacobian product (:math:`\sum_i J_i^\top(\cdot)`), both backward passes over one graph
built per solve: the VJP graph of :math:`x = T_\theta(z)`, and the JVP by the double-backward
trick (:math:`J\eta = \partial_u\langle J^\top u, \eta\rangle`, reverse mode applied to the
linear map :math:`u\mapsto J^\top u`). On the quick tier's map (N = 1000 points, d = 2, 4 RK4
steps) one application takes 16 ms this way against 155 ms with ``torch.func.jvp``/``vjp``, which
re-trace the map at every call (measured, 2-core CPU, one thread); ``torch.func.jacrev`` gives the
explicit Jacobian the tests compare with. The solve is conjugate gradients (:math:`G +
\varepsilon I` is symmetric positive definite), warm-started from the previous step's direction;
torch has no CG and SciPy's would move every vector to the host on a GPU, so it is the
textbook recurrence below (Hestenes–Stiefel), twenty lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class PullbackMetric:
    r""":math:`G(\theta)` at fixed reference points ``z`` (N, d): ``weights`` :math:`\kappa` (N,) or
    None, ``precision`` :math:`K` (d, d) or None (identity)."""

    def __init__(
        self,
        push: Callable[[Tensor, Tensor], Tensor],
        theta: Tensor,
        z: Tensor,
        weights: Tensor | None = None,
        precision: Tensor | None = None,
    ):
        self.z = z
        self.weights = weights
        self.precision = precision
        self.applications = 0
        with torch.enable_grad():
            self._theta = theta.detach().requires_grad_(True)
            self._x = push(self._theta, z)
            self._u = torch.zeros_like(self._x, requires_grad=True)
            (self._jtu,) = torch.autograd.grad(self._x, self._theta, self._u, create_graph=True)

    def jacobian_vector(self, eta: Tensor) -> Tensor:
        r""":math:`J_\theta(z_i)\eta` for every point, (N, d)."""
        return torch.autograd.grad(self._jtu, self._u, eta, retain_graph=True)[0]

    def vector_jacobian(self, u: Tensor) -> Tensor:
        r""":math:`\sum_i J_\theta(z_i)^\top u_i` (P,) for ``u`` (N, d)."""
        return torch.autograd.grad(self._x, self._theta, u, retain_graph=True)[0]

    def apply(self, eta: Tensor) -> Tensor:
        r""":math:`G\eta` (P,)."""
        self.applications += 1
        u = self.jacobian_vector(eta)
        if self.precision is not None:
            u = u @ self.precision
        if self.weights is not None:
            u = u * self.weights[:, None]
        return self.vector_jacobian(u / self.z.shape[0])


@dataclass(frozen=True)
class SolveResult:
    """Solution ``x`` of :math:`(G+\\varepsilon I)x = g`, relative residual
    :math:`\\|g - (G+\\varepsilon I)x\\|/\\|g\\|`, iterations and whether ``tol`` was reached."""

    x: Tensor
    residual: float
    iterations: int
    converged: bool


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    g: Tensor,
    epsilon: float,
    tol: float,
    max_iterations: int,
    x0: Tensor | None = None,
) -> SolveResult:
    """Conjugate gradients for :math:`(A + \\varepsilon I)x = g` with ``apply`` = :math:`A` SPD."""
    norm_g = float(torch.linalg.vector_norm(g))
    if norm_g == 0.0:
        return SolveResult(torch.zeros_like(g), 0.0, 0, True)

    def op(v: Tensor) -> Tensor:
        return apply(v) + epsilon * v

    x = torch.zeros_like(g) if x0 is None else x0.clone()
    r = g - op(x) if x0 is not None else g.clone()
    p = r.clone()
    rr = float(r @ r)
    best_x, best = x.clone(), math.sqrt(rr) / norm_g
    iterations = 0
    while best > tol and iterations < max_iterations:
        q = op(p)
        curvature = float(p @ q)
        if not curvature > 0:  # breakdown: p is (numerically) in the null space
            break
        alpha = rr / curvature
        x = x + alpha * p
        r = r - alpha * q
        rr_new = float(r @ r)
        iterations += 1
        rel = math.sqrt(rr_new) / norm_g
        if rel < best:
            best_x, best = x.clone(), rel
        p = r + (rr_new / rr) * p
        rr = rr_new
    return SolveResult(best_x, best, iterations, best <= tol)
