r"""The potential network :math:`\phi_\theta(\tau, x)` of Deep JKO and its derivatives in :math:`x`.

The network is the ResNet of Lee, Wang & Li (*Deep JKO*, §3.2, eq. (27)) with input
:math:`s = (x, \tau)\in\mathbb R^{d+1}` and :math:`L` hidden layers of width :math:`m`:

.. math:: u_1 = \sigma(W_0 s + b_0),\qquad u_{l+1} = u_l + \sigma(W_l u_l + b_l)\ (l=1..L-1),
          \qquad \phi_\theta(\tau, x) = w^\top u_L\ [+\ \tfrac12 s^\top A^\top A s + c^\top s],

:math:`\sigma(a) = \log(e^a + e^{-a})` (log-cosh, :math:`\sigma' = \tanh`,
:math:`\sigma'' = 1-\tanh^2`). The bracketed quadratic part is OT-Flow's (Onken, Wu Fung, Li & Ruthotto,
AAAI 2021, ref. [30] of the paper) and is off by default (``rank = 0``): it is the paper's [30]
architecture, offered as an option.

Derivatives by the explicit recurrences of OT-Flow (the paper's (28) for :math:`L = 2`), with
:math:`a_0 = W_0 s + b_0`, :math:`a_l = W_l u_l + b_l`:

* gradient (backward recurrence): :math:`z_L = w`,
  :math:`z_l = z_{l+1} + W_l^\top(\sigma'(a_l)\odot z_{l+1})` for :math:`l = L-1..1`,
  :math:`\nabla_s\phi = W_0^\top(\sigma'(a_0)\odot z_1)` (eq. (28a, b));
* Hessian trace (forward recurrence): with Jacobians :math:`J_1 = \operatorname{diag}(\sigma'(a_0))
  W_0 E`, :math:`J_{l+1} = J_l + \operatorname{diag}(\sigma'(a_l)) W_l J_l`, for directions
  :math:`E\in\mathbb R^{(d+1)\times k}` (columns in the :math:`x`-block),

  .. math:: \operatorname{tr}(E^\top\nabla_s^2\phi E) = \sum_i (\sigma''(a_0)\odot z_1)_i\,|(W_0E)_{i,:}|^2
            + \sum_{l=1}^{L-1}\sum_i(\sigma''(a_l)\odot z_{l+1})_i\,|(W_lJ_l)_{i,:}|^2

  (eq. (28c): :math:`t_0 + t_1` for :math:`L=2`). :math:`E = [I_d; 0]` gives the exact
  :math:`\operatorname{tr}\nabla_x^2\phi`; :math:`E = [L_C; 0]` gives
  :math:`\operatorname{tr}(C\nabla_x^2\phi)` for :math:`C = L_CL_C^\top` (Kalman–Wasserstein);
  Rademacher columns give Hutchinson's estimator :math:`\frac1k\sum_j\varepsilon_j^\top
  \nabla^2_x\phi\,\varepsilon_j` at cost :math:`O(m^2k)` per particle instead of :math:`O(m^2d)`.

All three are ordinary torch expressions, so :math:`\nabla_\theta` of the loss goes through them
by automatic differentiation (the paper's Algorithm 2); ``autograd_grad_and_trace`` is the
fallback that differentiates :math:`\phi` itself twice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def log_cosh(a: Tensor) -> Tensor:
    r""":math:`\sigma(a) = \log(e^a + e^{-a}) = |a| + \log(1 + e^{-2|a|})` (overflow-free)."""
    return a.abs() + torch.log1p(torch.exp(-2.0 * a.abs()))


class PotentialResNet(nn.Module):
    r"""The ResNet potential :math:`\phi_\theta(\tau, x)` of eq. (27) (module docstring).

    ``dim`` = d, ``width`` = m, ``depth`` = L ≥ 1 hidden layers (:math:`W_0` and :math:`L-1`
    residual layers), ``rank`` of OT-Flow's optional quadratic part (0: none, the paper's network).
    Parameters are created on ``device``/``dtype`` and initialised from ``generator``: weights
    :math:`\mathcal N(0, 1/\text{fan-in})`, biases zero, :math:`w\sim\mathcal N(0, \text{init\_scale}^2/m)`
    so that the first JKO step starts from a small velocity (the paper initialises from a standard
    normal, which makes :math:`|\nabla\phi|` of order :math:`m`; we scale it down).
    """

    def __init__(
        self,
        dim: int,
        width: int,
        depth: int,
        *,
        rank: int = 0,
        init_scale: float = 0.1,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.dim, self.width, self.depth, self.rank = dim, width, depth, rank

        def normal(*shape: int, std: float) -> nn.Parameter:
            t = torch.randn(*shape, generator=generator, device=device, dtype=dtype) * std
            return nn.Parameter(t)

        self.W0 = normal(width, dim + 1, std=1.0 / math.sqrt(dim + 1))
        self.b0 = nn.Parameter(torch.zeros(width, device=device, dtype=dtype))
        self.Ws = nn.ParameterList(
            [normal(width, width, std=1.0 / math.sqrt(width)) for _ in range(depth - 1)]
        )
        self.bs = nn.ParameterList(
            [nn.Parameter(torch.zeros(width, device=device, dtype=dtype)) for _ in range(depth - 1)]
        )
        self.w = normal(width, std=init_scale / math.sqrt(width))
        if rank > 0:
            self.A = normal(rank, dim + 1, std=init_scale / math.sqrt(dim + 1))
            self.c = nn.Parameter(torch.zeros(dim + 1, device=device, dtype=dtype))
        # Affine input standardisation x̂ = S(x - m) (buffers, stored with the map; identity by
        # default). Set by the solver for the Kalman–Wasserstein metric, whose problems live at
        # coordinates of O(100) where an unscaled first layer saturates log-cosh.
        self.register_buffer("shift", torch.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("scale", torch.eye(dim, device=device, dtype=dtype))

    def set_normalisation(self, shift: Tensor, scale: Tensor) -> None:
        r"""Use :math:`\hat x = S(x - m)` as the network's space input: ``shift`` m (d,), ``scale`` S
        (d, d). :math:`\phi` stays a function of :math:`x`; the recurrences apply the chain rule
        (:math:`\nabla_x\phi = S^\top\nabla_{\hat x}\phi`, first-layer weights :math:`W_0^xS`)."""
        with torch.no_grad():
            self.shift.copy_(shift)
            self.scale.copy_(scale)

    def inputs(self, tau: float | Tensor, x: Tensor) -> Tensor:
        """:math:`s = (S(x - m), \\tau)` of shape (n, d+1) from ``x`` (n, d) and a scalar inner time
        (:math:`S = I`, :math:`m = 0` unless :meth:`set_normalisation` was called)."""
        t = torch.as_tensor(tau, dtype=x.dtype, device=x.device).expand(x.shape[0], 1)
        return torch.cat([(x - self.shift) @ self.scale.T, t], dim=1)

    def _forward_layers(self, s: Tensor) -> tuple[list[Tensor], Tensor]:
        """Pre-activations :math:`a_0..a_{L-1}` (each (n, m)) and :math:`u_L` (n, m)."""
        a = [s @ self.W0.T + self.b0]
        u = log_cosh(a[0])
        for W, b in zip(self.Ws, self.bs, strict=True):
            a.append(u @ W.T + b)
            u = u + log_cosh(a[-1])
        return a, u

    def forward(self, tau: float | Tensor, x: Tensor) -> Tensor:
        r""":math:`\phi_\theta(\tau, x)` (n,) for ``x`` (n, d), eq. (27)."""
        s = self.inputs(tau, x)
        _, u = self._forward_layers(s)
        phi = u @ self.w
        if self.rank > 0:
            As = s @ self.A.T
            phi = phi + 0.5 * (As**2).sum(1) + s @ self.c
        return phi

    def grad_and_trace(
        self, tau: float | Tensor, x: Tensor, directions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Explicit :math:`\nabla_x\phi` (n, d) and :math:`\operatorname{tr}(E^\top\nabla_x^2\phi E)`
        (n,) by the OT-Flow recurrences (module docstring; paper eq. (28)).

        ``directions`` E: ``None`` (exact trace, E = I_d), a (d, k) matrix shared by all particles,
        or an (n, d, k) batch (one set per particle, e.g. Hutchinson probes; divide by k outside
        for the Hutchinson mean).
        """
        n, d = x.shape
        s = self.inputs(tau, x)
        a, _ = self._forward_layers(s)
        dsig = [torch.tanh(al) for al in a]
        # Backward recurrence for z_l = ∂φ/∂u_l (28b).
        z = [self.w.expand(n, -1)]
        for l in range(self.depth - 1, 0, -1):
            zn = z[0]
            z.insert(0, zn + (dsig[l] * zn) @ self.Ws[l - 1])
        grad_s = (dsig[0] * z[0]) @ self.W0  # (28a)
        # Forward recurrence for the trace (28c), Jacobians stored transposed as (n, k, m) rows so
        # that every product with W_l is one GEMM. K0 = (W0 E)ᵀ on the x-columns.
        W0x = self.W0[:, :d] @ self.scale  # chain rule through x̂ = S(x - m)
        if directions is None:
            K0 = W0x.T.unsqueeze(0)  # (1, d, m)
        elif directions.ndim == 2:
            K0 = (directions.T @ W0x.T).unsqueeze(0)  # (1, k, m)
        else:
            K0 = directions.transpose(1, 2) @ W0x.T  # (n, k, m)
        trace = ((1.0 - dsig[0] ** 2) * z[0] * (K0**2).sum(1)).sum(1)
        J = dsig[0].unsqueeze(1) * K0  # J_1ᵀ (n, k, m)
        for l in range(1, self.depth):
            WJ = J @ self.Ws[l - 1].T  # (W_l J_l)ᵀ (n, k, m)
            trace = trace + ((1.0 - dsig[l] ** 2) * z[l] * (WJ**2).sum(1)).sum(1)
            if l < self.depth - 1:
                J = J + dsig[l].unsqueeze(1) * WJ
        grad_x = grad_s[:, :d] @ self.scale
        if self.rank > 0:
            Ax = self.A[:, :d] @ self.scale
            grad_x = grad_x + (s @ self.A.T) @ Ax + self.c[:d] @ self.scale
            if directions is None:
                trace = trace + (Ax**2).sum()
            elif directions.ndim == 2:
                trace = trace + ((Ax @ directions) ** 2).sum()
            else:
                trace = trace + (torch.matmul(Ax, directions) ** 2).sum((1, 2))
        return grad_x, trace


def autograd_grad_and_trace(
    net: PotentialResNet, tau: float | Tensor, x: Tensor, directions: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""The autograd fallback: :math:`\nabla_x\phi` by one backward pass of :math:`\phi`, and
    :math:`\operatorname{tr}(E^\top\nabla_x^2\phi E) = \sum_j e_j^\top\nabla_x(e_j^\top\nabla_x\phi)`
    by one more backward pass per direction (d passes for the exact trace). Graphs are kept
    (``create_graph``) so the loss can be differentiated in :math:`\theta`. Same shapes as
    :meth:`PotentialResNet.grad_and_trace`."""
    n, d = x.shape
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        phi = net(tau, xg)
        (grad_x,) = torch.autograd.grad(phi.sum(), xg, create_graph=True)
        trace = torch.zeros(n, dtype=x.dtype, device=x.device)
        if directions is None:
            for j in range(d):
                (row,) = torch.autograd.grad(grad_x[:, j].sum(), xg, create_graph=True)
                trace = trace + row[:, j]
        else:
            dirs = directions.expand(n, -1, -1) if directions.ndim == 2 else directions
            for j in range(dirs.shape[2]):
                e = dirs[:, :, j]
                (hv,) = torch.autograd.grad((grad_x * e).sum(), xg, create_graph=True)
                trace = trace + (hv * e).sum(1)
    return grad_x, trace
