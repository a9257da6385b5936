r"""The push-forward map :math:`T_\theta` of PWGF: a neural ODE on a flat parameter vector.

:math:`\rho_\theta = T_\theta\#\lambda`, :math:`\lambda = N(0, I_d)`, with :math:`T_\theta(z) = x(1)`
the time-1 flow of

.. math:: \dot x(s) = v_\theta(x, s) = A x + b + W_2 \tanh\big(W_1 \hat x + s\,c + b_1\big),
          \qquad \hat x = (x - \mu_0) / \sigma_0,\quad x(0) = z,

(Jin, Liu, Wu, Ye & Zhou, arXiv 2404.19133: "reduced-order models, like deep neural networks,
parameterize the push-forward maps"; the unofficial implementation also uses a neural ODE).
:math:`\theta = (A, b, W_1, c, b_1, W_2)` is one flat vector, so the parameter-space metric and its
linear solve act on plain vectors. :math:`\mu_0, \sigma_0` (coordinate-wise mean and spread of
:math:`\rho_0`) are fixed at ``prepare``: they keep the hidden units out of saturation whatever the
problem's scale (the lesson of deep-jko on ``kalman-wasserstein/elliptic-2d``).

Why this field: the linear part makes every Gaussian, and hence every Ornstein–Uhlenbeck solution,
exactly representable (the Gaussian tangent space lies in the span of :math:`\partial_\theta T`), and
the one hidden layer gives the Jacobian trace in closed form,

.. math:: \operatorname{tr}\partial_x v = \operatorname{tr}A
          + \sum_k (1 - h_k^2)\,\textstyle\sum_i W_1[k,i]\,W_2[i,k]/\sigma_{0,i},

:math:`O(md)` per point in every dimension, so the log-determinant
:math:`\log\det\nabla T_\theta(z) = \int_0^1 \operatorname{tr}\partial_x v\,ds` is exact at the
cost of a forward pass (RK4 on the augmented state, the same steps as the map). ``trace =
"hutchinson"`` replaces it by :math:`\varepsilon^\top\partial_x v\,\varepsilon` with one Rademacher
probe per point held fixed along the path (unbiased, as in FFJORD); it exists for fields without a
closed-form trace and is tested, but here it only adds variance.

The map is a diffeomorphism by construction (an ODE flow), so
:math:`\log\rho_\theta(T_\theta z) = \log\lambda(z) - \log\det\nabla T_\theta(z)` holds everywhere;
the inverse (for the maximum-likelihood fit of :math:`\theta_0`) integrates backwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Layout:
    """Shapes of the blocks of the flat parameter vector θ for dimension ``dim`` and ``width`` m."""

    dim: int
    width: int

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        d, m = self.dim, self.width
        return {"A": (d, d), "b": (d,), "W1": (m, d), "c": (m,), "b1": (m,), "W2": (d, m)}

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of θ as the named blocks (differentiable, works under ``torch.func``)."""
        sizes = [math.prod(s) for s in self.shapes.values()]
        parts = torch.split(theta, sizes)
        return {name: p.reshape(shape) for (name, shape), p in zip(self.shapes.items(), parts, strict=True)}

    def flatten(self, blocks: dict[str, Tensor]) -> Tensor:
        return torch.cat([blocks[name].reshape(-1) for name in self.shapes])


def log_standard_normal(z: Tensor) -> Tensor:
    """:math:`\\log\\lambda(z)` for the standard Gaussian reference, shape (n,)."""
    return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class PushForward:
    """:math:`T_\\theta`: the RK4 flow of :math:`v_\\theta` over :math:`s\\in[0,1]` in ``steps`` steps.

    ``shift``/``scale`` are :math:`\\mu_0, \\sigma_0` (fixed, not parameters)."""

    def __init__(self, dim: int, width: int, steps: int, shift: Tensor, scale: Tensor):
        self.layout = Layout(dim, width)
        self.steps = steps
        self.shift = shift
        self.scale = scale

    # -- the velocity field -------------------------------------------------------------------

    def velocity(self, p: dict[str, Tensor], x: Tensor, s: float) -> tuple[Tensor, Tensor]:
        """:math:`v_\\theta(x, s)` (n, d) and the hidden activations h (n, m)."""
        h = torch.tanh(((x - self.shift) / self.scale) @ p["W1"].T + s * p["c"] + p["b1"])
        return x @ p["A"].T + p["b"] + h @ p["W2"].T, h

    def divergence(self, p: dict[str, Tensor], h: Tensor, probe: Tensor | None) -> Tensor:
        """:math:`\\operatorname{tr}\\partial_x v` at the points whose activations are ``h`` (n,):
        exact (``probe`` None) or Hutchinson's :math:`\\varepsilon^\\top\\partial_x v\\,\\varepsilon`."""
        slope = 1.0 - h * h
        if probe is None:
            q = (p["W1"] / self.scale * p["W2"].T).sum(1)  # (m,): Σ_i W1[k,i] W2[i,k] / σ_i
            return torch.diagonal(p["A"]).sum() + slope @ q
        quad = ((probe @ p["A"].T) * probe).sum(1)
        return quad + (slope * ((probe / self.scale) @ p["W1"].T) * (probe @ p["W2"])).sum(1)

    # -- the flow -------------------------------------------------------------------------------

    def _integrate(
        self, theta: Tensor, x: Tensor, forward: bool, logdet: bool, probe: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        p = self.layout.unflatten(theta)
        k = self.steps
        h = (1.0 if forward else -1.0) / k
        ld = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if logdet else None

        def f(y: Tensor, s: float) -> tuple[Tensor, Tensor | None]:
            v, act = self.velocity(p, y, s)
            return v, (self.divergence(p, act, probe) if logdet else None)

        for i in range(k):
            s = i / k if forward else 1.0 - i / k
            k1, t1 = f(x, s)
            k2, t2 = f(x + 0.5 * h * k1, s + 0.5 * h)
            k3, t3 = f(x + 0.5 * h * k2, s + 0.5 * h)
            k4, t4 = f(x + h * k3, s + h)
            x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
            if ld is not None:
                ld = ld + h / 6.0 * (t1 + 2 * t2 + 2 * t3 + t4)  # type: ignore[operator]
        return x, ld

    def push(self, theta: Tensor, z: Tensor) -> Tensor:
        """:math:`T_\\theta(z)` (n, d)."""
        return self._integrate(theta, z, True, False, None)[0]

    def push_with_logdet(
        self, theta: Tensor, z: Tensor, probe: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """:math:`T_\\theta(z)` and :math:`\\log\\det\\nabla T_\\theta(z)` (exact, or Hutchinson with
        ``probe`` (n, d))."""
        x, ld = self._integrate(theta, z, True, True, probe)
        assert ld is not None
        return x, ld

    def log_density(self, theta: Tensor, x: Tensor) -> Tensor:
        """:math:`\\log\\rho_\\theta(x)` by integrating backwards to :math:`z = T_\\theta^{-1}(x)`."""
        z, ld = self._integrate(theta, x, False, True, None)
        assert ld is not None
        # Backwards in s the accumulated ∫ tr ∂v ds carries the sign of -log det ∇T(z).
        return log_standard_normal(z) + ld

    def sample(self, theta: Tensor, z: Tensor, chunk: int = 20_000) -> tuple[Tensor, Tensor]:
        """Push-forward samples of ``z`` ~ λ with :math:`\\log\\rho_\\theta` at them, in chunks
        (no graph)."""
        xs, lrs = [], []
        with torch.no_grad():
            for start in range(0, z.shape[0], chunk):
                zc = z[start : start + chunk]
                x, ld = self.push_with_logdet(theta, zc)
                xs.append(x)
                lrs.append(log_standard_normal(zc) - ld)
        return torch.cat(xs), torch.cat(lrs)

    # -- initialisation ------------------------------------------------------------------------

    def affine_init(self, mean: Tensor, cov: Tensor, generator: torch.Generator, init_scale: float) -> Tensor:
        r"""θ whose flow is (up to RK4 error) the affine map :math:`z\mapsto \mathrm{Cov}^{1/2}z +
        \mathrm{mean}`: :math:`A = \tfrac12\log\mathrm{Cov}`, :math:`b = \varphi(A)^{-1}\mathrm{mean}`
        with :math:`\varphi(A) = (e^A - I)A^{-1}` (the flow of :math:`\dot x = Ax + b` is
        :math:`e^A z + \varphi(A) b`), :math:`W_1` scaled normal, :math:`W_2 = 0`."""
        d, m = self.layout.dim, self.layout.width
        evals, evecs = torch.linalg.eigh(cov)
        a = 0.5 * torch.log(evals.clamp_min(1e-12))
        phi = torch.where(a.abs() > 1e-8, torch.expm1(a) / a, torch.ones_like(a))
        dtype, device = mean.dtype, mean.device
        blocks = {
            "A": evecs @ torch.diag(a) @ evecs.T,
            "b": evecs @ ((evecs.T @ mean) / phi),
            "W1": init_scale
            * torch.randn(m, d, generator=generator, dtype=dtype, device=device)
            / math.sqrt(d),
            "c": init_scale * torch.randn(m, generator=generator, dtype=dtype, device=device),
            "b1": init_scale * torch.randn(m, generator=generator, dtype=dtype, device=device),
            "W2": torch.zeros(d, m, dtype=dtype, device=device),
        }
        return self.layout.flatten(blocks)
