r"""The neural JKO operator :math:`G_\theta`: a transport map conditioned on the density.

One JKO step is a push-forward, :math:`\rho' = T\#\rho` with :math:`T = \mathrm{id} - \tau\nabla\varphi`
(Jordan, Kinderlehrer & Otto 1998; the optimality condition of the JKO subproblem). The operator
outputs such a map for any input density: :math:`T_\theta(x;\rho) = x + u_\theta[\rho](x)`, with
the displacement field :math:`u_\theta[\rho]` produced on a grid by a convolutional network that
reads :math:`\rho` there, and interpolated bilinearly to the particles of the
:class:`~wgfbench_plugins.solvers.learn_to_evolve.cloud.Cloud` (design (b) of the issue: the
map is what makes the transport term honest, :math:`W_2^2(\rho, T\#\rho)\le\sum_k m_k|u(x_k)|^2`,
with equality when :math:`T` is the optimal map; the new density follows by change of variables).

**Input** (the encoding of :math:`\rho`): the cloud's density on the grid
(:meth:`TransportOperator.density`), scaled by its maximum :math:`s`, and three channels:

* :math:`r = \rho/s`;
* :math:`\tau\,\Delta_h P(\rho)/s`, the explicit diffusion increment of the internal energy
  (pressure :math:`P = \rho U' - U`: :math:`\rho` for the entropy, :math:`\rho^m` for the porous
  medium);
* :math:`\tau\,\nabla_h\!\cdot(\rho\nabla_h\Phi)/s`, the explicit drift increment of
  :math:`\Phi = V + W*\rho` (potential and interaction, :class:`~wgfbench.grid.GridEnergy`).

The increments (two-point face differences, zero flux through the box boundary) are *features*,
not the answer: they hand the network the energy's first variation, which for aggregation is
non-local, so that a small convolutional network with a 17-cell receptive field can represent the
step, whose velocity is :math:`-\nabla\delta\mathcal E/\delta\rho` at the *new* density.

**Network.** A 1×1 lift to ``width`` channels, ``depth`` residual blocks (two ``kernel``-wide
convolutions with a GELU), a 1×1 projection without bias to ``d`` channels, initialised to zero so
that the untrained operator is the identity map. Its output is the displacement in units of the
cell width. Float32 weights; features, particles and log-densities in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from wgfbench_plugins.solvers.learn_to_evolve.cloud import Cloud, Stencil

from wgfbench.energy import Entropy
from wgfbench.grid import GridEnergy


def _face_divergence(flux: list[Tensor], h: tuple[float, ...]) -> Tensor:
    """:math:`\\sum_i (F_{i+1/2} - F_{i-1/2})/h_i` from interior face fluxes (zero on the boundary)."""
    out = 0.0
    for axis, (f, hi) in enumerate(zip(flux, h, strict=True)):
        dim = f.dim() - len(h) + axis
        pad = [0, 0] * (f.dim() - dim - 1) + [1, 1]
        out = out + nn.functional.pad(f, pad).diff(dim=dim) / hi
    return out


def _gradient_flux(u: Tensor, weight: Tensor | None, h: tuple[float, ...]) -> list[Tensor]:
    """Interior face fluxes :math:`w_{i+1/2}(u_{i+1}-u_i)/h_i` (``weight`` averaged to the faces)."""
    flux = []
    for axis, hi in enumerate(h):
        dim = u.dim() - len(h) + axis
        grad = u.diff(dim=dim) / hi
        if weight is not None:
            n = weight.shape[dim]
            grad = grad * 0.5 * (weight.narrow(dim, 0, n - 1) + weight.narrow(dim, 1, n - 1))
        flux.append(grad)
    return flux


def pressure_and_potential(energy: GridEnergy, rho: Tensor) -> tuple[Tensor | None, Tensor]:
    r"""The pressure :math:`P(\rho) = \rho U' - U` (``None`` without internal energy; 0 where
    :math:`\rho = 0`) and :math:`\Phi = V + W*\rho` of grid densities ``rho`` (B, *shape): what the
    features and the explicit base step both read, computed once per step."""
    internal = energy.internal
    pressure = None
    if internal is not None:
        pressure = torch.where(rho > 0, internal.pressure(rho.clamp_min(1e-300)), torch.zeros_like(rho))
    return pressure, energy.V + energy.convolve(rho)


class PhysicsFeatures:
    """The three input channels of :class:`JKOOperator` (module docstring) for one grid energy."""

    channels = 3

    def __init__(self, energy: GridEnergy, tau: float):
        self.energy, self.tau, self.h = energy, float(tau), energy.grid.h

    def __call__(self, rho: Tensor, pressure: Tensor | None, phi: Tensor) -> tuple[Tensor, Tensor]:
        """``(features (B, 3, *shape), scale (B, 1, …))`` for ``rho`` (B, *shape) with its
        :func:`pressure_and_potential`."""
        dims = tuple(range(1, rho.dim()))
        scale = rho.amax(dim=dims, keepdim=True)
        if pressure is None:
            diffusion = torch.zeros_like(rho)
        else:
            diffusion = _face_divergence(_gradient_flux(pressure, None, self.h), self.h)
        drift = _face_divergence(_gradient_flux(phi, rho, self.h), self.h)
        feats = torch.stack([rho, self.tau * diffusion, self.tau * drift], dim=1) / scale.unsqueeze(1)
        return feats, scale


class _Block(nn.Module):
    def __init__(self, conv: type[nn.Module], width: int, kernel: int):
        super().__init__()
        self.a = conv(width, width, kernel, padding=kernel // 2)
        self.b = conv(width, width, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.b(nn.functional.gelu(self.a(nn.functional.gelu(x))))


class JKOOperator(nn.Module):
    r"""The network of :math:`G_\theta` (module docstring) on a ``dim``-D grid (1 or 2)."""

    def __init__(self, dim: int, width: int = 16, depth: int = 4, kernel: int = 3):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError("the Learn-to-Evolve operator is implemented on 1-D and 2-D grids")
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        self.dim = dim
        self.shape = {"dim": dim, "width": width, "depth": depth, "kernel": kernel}
        self.lift = conv(PhysicsFeatures.channels, width, 1)
        self.blocks = nn.Sequential(*(_Block(conv, width, kernel) for _ in range(depth)))
        self.project = conv(width, dim, 1, bias=False)
        nn.init.zeros_(self.project.weight)

    def forward(self, features: Tensor) -> Tensor:
        """Displacement (B, d, *shape) in cell widths."""
        x = features.to(self.lift.weight.dtype)
        return self.project(nn.functional.gelu(self.blocks(self.lift(x)))).to(features.dtype)


FOLD_DET = 0.05
"""Below this Jacobian determinant :func:`log_det` continues linearly (a barrier against folds)."""


def binomial(field: Tensor, dim: int) -> Tensor:
    """The binomial filter (1, 2, 1)/4 along each of the last ``dim`` axes, reflecting at the box
    (mass-conserving on densities): it removes grid-scale (checkerboard) noise, the mode through
    which a rollout's density encoding and displacement feed each other until the map folds
    (measured on ou-1d: without it the displacement's derivative grew from 0.2 to 6 in eight
    steps of a 112-step rollout)."""
    for axis in range(field.dim() - dim, field.dim()):
        n = field.shape[axis]
        left = torch.cat([field.narrow(axis, 0, 1), field.narrow(axis, 0, n - 1)], dim=axis)
        right = torch.cat([field.narrow(axis, 1, n - 1), field.narrow(axis, n - 1, 1)], dim=axis)
        field = 0.25 * left + 0.5 * field + 0.25 * right
    return field


def log_det(jacobian: Tensor) -> Tensor:
    r""":math:`\log\det(I + J)` for displacement Jacobians ``jacobian`` (..., d, d), d ≤ 2, in closed
    form, continued linearly below :data:`FOLD_DET` (value and slope continuous): a fold
    (:math:`\det\le0`) gets a finite, steeply growing density, so the internal energy of the
    objective acts as a barrier against it instead of the flat penalty a clamp would give, and
    nothing overflows."""
    d = jacobian.shape[-1]
    if d == 1:
        det = 1.0 + jacobian[..., 0, 0]
    else:
        a, b, c, e = jacobian[..., 0, 0], jacobian[..., 0, 1], jacobian[..., 1, 0], jacobian[..., 1, 1]
        det = (1.0 + a) * (1.0 + e) - b * c
    safe = torch.log(det.clamp_min(FOLD_DET))
    return torch.where(det >= FOLD_DET, safe, math.log(FOLD_DET) + (det - FOLD_DET) / FOLD_DET)


class TransportOperator:
    r"""A :class:`JKOOperator` bound to one grid energy and step :math:`\tau`: ``op(cloud)`` returns
    :math:`T_\theta\#\rho` as a cloud (positions moved, masses kept, log-densities by change of
    variables) and the transport cost :math:`\sum_k m_k|u(x_k)|^2` per member."""

    def __init__(self, network: JKOOperator, energy: GridEnergy, tau: float, explicit_base: bool = True):
        self.network, self.energy, self.tau = network, energy, float(tau)
        self.explicit_base = bool(explicit_base)
        self.grid = energy.grid
        self.features = PhysicsFeatures(energy, tau)
        self._h = torch.tensor(self.grid.h, dtype=torch.float64, device=energy.device)

    def density(self, cloud: Cloud, stencil: Stencil | None = None) -> Tensor:
        """The cloud read on the grid (its network input), (B, *shape): its masses deposited
        (:meth:`Stencil.deposit`) and smoothed by :func:`binomial`. Particles sit about one cell
        apart, so raw cloud-in-cell masses alias (a cell catches one particle or two) and so would
        the base velocity; the filter removes that grid-scale noise."""
        stencil = Stencil(cloud.x, self.grid) if stencil is None else stencil
        return binomial(stencil.deposit(cloud.mass), self.grid.dim)

    def explicit_displacement(self, rho: Tensor, pressure: Tensor | None, phi: Tensor) -> Tensor:
        r"""The explicit Lagrangian step :math:`\tau v` on the grid, (B, d, *shape), with
        :math:`v = -\nabla P(\rho)/\rho - \nabla\Phi` (central differences; :math:`\rho` floored at
        :math:`10^{-8}\max\rho` where it is divided by). The pressure part is clipped per component:
        to a fifth of a cell width for power internal energies, whose densities have compact support
        and whose :math:`\nabla P/\rho` jumps at the front (entries of the clipped part's bilinear
        Jacobian are then at most 0.4, so alone it cannot fold: :math:`\det\ge0.6^2-0.4^2>0`;
        measured: half a cell made barenblatt-2d-m2's rollouts fold and training diverge), to one
        cell for the entropy (full support, :math:`\nabla\log\rho` smooth; measured on ou-2d: a
        fifth of a cell tripled the early error). The drift :math:`-\tau\nabla\Phi` is smooth and
        kept whole. The network learns the correction that makes the step implicit (the JKO step's
        velocity is evaluated at the new density)."""
        spacing = list(self.grid.h)
        dims = list(range(1, rho.dim()))
        grad_phi = torch.gradient(phi, spacing=spacing, dim=dims)
        displacement = [-self.tau * g for g in grad_phi]
        internal = self.energy.internal
        if pressure is not None:
            floor = 1e-8 * rho.amax(dim=tuple(dims), keepdim=True)
            clip = 1.0 if isinstance(internal, Entropy) else 0.2
            grad_p = torch.gradient(pressure, spacing=spacing, dim=dims)
            displacement = [
                u - (self.tau * gp / rho.clamp_min(floor)).clamp(-clip * hk, clip * hk)
                for u, gp, hk in zip(displacement, grad_p, self.grid.h, strict=True)
            ]
        return torch.stack(displacement, dim=1)

    def __call__(self, cloud: Cloud) -> tuple[Cloud, Tensor]:
        stencil = Stencil(cloud.x, self.grid)
        rho = self.density(cloud, stencil)
        pressure, phi = pressure_and_potential(self.energy, rho)
        feats, _scale = self.features(rho, pressure, phi)
        shape = (1, self.grid.dim) + (1,) * self.grid.dim
        field = self.network(feats) * self._h.reshape(shape).to(feats.dtype)
        if self.explicit_base:
            detached = None if pressure is None else pressure.detach()
            field = field + self.explicit_displacement(rho.detach(), detached, phi.detach())
        field = binomial(field, self.grid.dim)
        u, du = stencil.interpolate(field)
        moved = Cloud(cloud.x + u, cloud.log_rho - log_det(du), cloud.mass)
        return moved, (cloud.mass * (u**2).sum(dim=-1)).sum(dim=-1)
