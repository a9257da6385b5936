r"""Lagrangian states of the operator: weighted particles that carry their log-density.

A :class:`Cloud` is a batch of ``B`` densities, each given by ``N`` particles :math:`x_k` with masses
:math:`m_k` (:math:`\sum_k m_k = 1`) and log-densities :math:`\log\rho(x_k)`. Pushed by a map
:math:`T`, a particle keeps its mass and its density changes by the Jacobian,
:math:`\log\rho'(T(x_k)) = \log\rho(x_k) - \log\det DT(x_k)` (change of variables), so a rollout
accumulates no interpolation error: grids are used only to *read* a cloud (the network's input,
the interaction potential), never to store it.

:class:`Stencil` is the bilinear (1-D: linear) interpolation between cell centres of a
:class:`~wgfbench.grid.Grid` and arbitrary points: ``interpolate`` reads a grid field and its
spatial derivative at the particles (the derivative of the interpolant itself, exact almost
everywhere), ``deposit`` spreads particle masses onto the grid with the same weights (cloud-in-cell,
mass exactly conserved inside the box). Both are differentiable in the particle positions and in
the field.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from wgfbench.grid import Grid
from wgfbench.problem import Box

# log ρ given to lattice points where ρ₀ vanishes (their mass is 0 and they never matter, but every
# per-particle quantity must stay finite): this many nats below the largest log-density.
_LOG_EMPTY = 700.0


@dataclass
class Cloud:
    """``x`` (B, N, d), ``log_rho`` (B, N), ``mass`` (B, N) with unit total per member."""

    x: Tensor
    log_rho: Tensor
    mass: Tensor

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    def select(self, index: list[int] | Tensor) -> Cloud:
        return Cloud(self.x[index], self.log_rho[index], self.mass[index])

    def detach(self) -> Cloud:
        return Cloud(self.x.detach(), self.log_rho.detach(), self.mass.detach())

    @staticmethod
    def cat(clouds: list[Cloud]) -> Cloud:
        return Cloud(
            torch.cat([c.x for c in clouds]),
            torch.cat([c.log_rho for c in clouds]),
            torch.cat([c.mass for c in clouds]),
        )


def lattice_cloud(
    log_density: Callable[[Tensor], Tensor],
    box: Box,
    cells: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Cloud:
    r"""One density as particles at the centres of a ``cells``-per-axis lattice over ``box``, with
    masses :math:`\rho(x_k)|K|` normalised to one and :math:`\log\rho` shifted by the same
    normalisation (midpoint quadrature of the density on the box). Returns a batch of one."""
    grid = Grid.with_cells(box, cells)
    x = grid.centres().reshape(-1, grid.dim)
    log_rho = log_density(x).to(torch.float64)
    top = float(log_rho[torch.isfinite(log_rho)].max())
    log_rho = torch.nan_to_num(log_rho, nan=-math.inf).clamp_min(top - _LOG_EMPTY)
    log_mass = log_rho + math.log(grid.cell_volume)
    log_total = torch.logsumexp(log_mass, dim=0)
    mass = torch.exp(log_mass - log_total)
    mass = torch.where(log_rho <= top - _LOG_EMPTY, torch.zeros_like(mass), mass)
    mass = mass / mass.sum()
    cloud = Cloud(x[None], (log_rho - log_total)[None], mass[None])
    return Cloud(*(t.to(dtype=dtype, device=device) for t in (cloud.x, cloud.log_rho, cloud.mass)))


class Stencil:
    """Bilinear weights of points ``x`` (B, N, d) between the cell centres of ``grid`` (module
    docstring). Points outside the centres' hull use the nearest cell pair (constant
    extrapolation: their weights do not depend on the position there)."""

    def __init__(self, x: Tensor, grid: Grid):
        self.grid = grid
        d = grid.dim
        low = torch.tensor(grid.box.low, dtype=x.dtype, device=x.device)
        h = torch.tensor(grid.h, dtype=x.dtype, device=x.device)
        shape = torch.tensor(grid.shape, device=x.device)
        s = (x - low) / h - 0.5  # position in cell-centre units
        i0 = torch.minimum(torch.floor(s).clamp_min(0).long(), shape - 2)
        frac = s - i0
        inside = (frac >= 0) & (frac <= 1)
        frac = frac.clamp(0.0, 1.0)
        dfrac = torch.where(inside, 1.0 / h, torch.zeros_like(frac))  # d frac / dx per axis
        strides = [math.prod(grid.shape[k + 1 :]) for k in range(d)]
        self.index, self.weight, self.dweight = [], [], []
        for corner in itertools.product((0, 1), repeat=d):
            flat = sum((i0[..., k] + corner[k]) * strides[k] for k in range(d))
            factors = [frac[..., k] if corner[k] else 1.0 - frac[..., k] for k in range(d)]
            signs = [dfrac[..., k] if corner[k] else -dfrac[..., k] for k in range(d)]
            weight = math.prod(factors) if d > 1 else factors[0]
            grads = []
            for k in range(d):
                others = [factors[j] for j in range(d) if j != k]
                grads.append(signs[k] * (math.prod(others) if others else 1.0))
            self.index.append(flat)
            self.weight.append(weight)
            self.dweight.append(torch.stack(grads, dim=-1))

    def interpolate(self, field: Tensor) -> tuple[Tensor, Tensor]:
        """``field`` (B, C, *grid.shape) at the points: values (B, N, C) and spatial derivatives
        (B, N, C, d) of the interpolant."""
        flat = field.reshape(field.shape[0], field.shape[1], -1)
        value, grad = 0.0, 0.0
        for index, weight, dweight in zip(self.index, self.weight, self.dweight, strict=True):
            corner = torch.gather(flat, 2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)
            value = value + weight[..., None] * corner
            grad = grad + corner[..., None] * dweight[:, :, None, :]
        return value, grad

    def deposit(self, mass: Tensor) -> Tensor:
        """Cell averages (B, *grid.shape) of the particle masses (B, N) spread with the weights."""
        out = torch.zeros(mass.shape[0], self.grid.n_cells, dtype=mass.dtype, device=mass.device)
        for index, weight in zip(self.index, self.weight, strict=True):
            out = out.scatter_add(1, index, weight * mass)
        return out.reshape(mass.shape[0], *self.grid.shape) / self.grid.cell_volume
