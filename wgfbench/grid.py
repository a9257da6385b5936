r"""Uniform Cartesian grids and free energies evaluated on them.

A :class:`Grid` splits a problem's :class:`~wgfbench.problem.Box` into ``shape`` equal cells
:math:`K` of volume :math:`|K| = \prod_i h_i`. A density on the grid is the tensor of its cell
values :math:`\rho_K` (shape ``shape``) with mass :math:`\sum_K |K|\rho_K`.

:class:`GridEnergy` evaluates the free energy of :mod:`wgfbench.energy` on such a density
(``docs/problems.md``, "Energy estimators", grids):

.. math:: \mathcal E_h(\rho) = \sum_K |K|\Big[U(\rho_K) + V(x_K)\rho_K
          + \tfrac12\rho_K\,(W*\rho)_K\Big],\qquad
          (W*\rho)_K = \sum_L |L|\,\overline W_{K-L}\,\rho_L,

with :math:`V` at cell centres and the cell-averaged kernel
:math:`\overline W_{k} = |K|^{-1}\int_{K_0} W(kh + y)\,dy` (:math:`K_0` the cell centred at the
origin), so that integrable singular kernels such as :math:`-\ln|x|` have finite weights,
including at :math:`k = 0`. The discrete convolution is a linear convolution computed by
zero-padded FFT (Cancès, Gallouët & Todeschi, Numer. Math. 146 (2020), §5, use the same
cell-averaged interaction). Grid solvers (``fv-jko``, ``entropic-jko``) and the scorer share it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from wgfbench.energy import Energy, InternalEnergy, Kernel
from wgfbench.problem import Box

#: Gauss–Legendre points per axis for the cell averages of far cells and of near sub-cells.
FAR_QUADRATURE = 3
NEAR_QUADRATURE = 8
#: Offsets with max |k_i| ≤ NEAR_CELLS are integrated on 2^d sub-cells (the kernel may be singular there).
NEAR_CELLS = 1


@dataclass(frozen=True)
class Grid:
    """``shape`` equal cells over ``box``; cell ``K = (k_1, …, k_d)`` is centred at
    :math:`x_K = \\text{low} + (k + \\tfrac12)h`."""

    box: Box
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        object.__setattr__(self, "shape", shape)
        if len(shape) != self.box.dim or any(n < 1 for n in shape):
            raise ValueError(f"grid shape {shape} does not fit a {self.box.dim}-D box")

    @classmethod
    def with_cells(cls, box: Box, n: int | Sequence[int]) -> Grid:
        """``n`` cells per axis (an int for every axis, or one per axis)."""
        shape = (int(n),) * box.dim if isinstance(n, int) else tuple(n)
        return cls(box, shape)

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def n_cells(self) -> int:
        return math.prod(self.shape)

    @property
    def h(self) -> tuple[float, ...]:
        """Cell widths per axis."""
        return tuple((hi - lo) / n for lo, hi, n in zip(self.box.low, self.box.high, self.shape, strict=True))

    @property
    def cell_volume(self) -> float:
        return math.prod(self.h)

    def axes(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> list[Tensor]:
        """Cell-centre coordinates along each axis (1-D tensors of lengths ``shape``)."""
        return [
            lo + (torch.arange(n, dtype=dtype, device=device) + 0.5) * h
            for lo, n, h in zip(self.box.low, self.shape, self.h, strict=True)
        ]

    def centres(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
        """Cell centres, shape ``(*shape, d)``."""
        return torch.stack(torch.meshgrid(*self.axes(dtype, device), indexing="ij"), dim=-1)

    def mass(self, rho: Tensor) -> Tensor:
        """:math:`\\sum_K |K|\\rho_K`."""
        return rho.sum() * self.cell_volume

    def discretise(
        self,
        log_density: Callable[[Tensor], Tensor],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Cell-centre values :math:`\\rho(x_K)` of a density given by its log (float64 on the CPU,
        ``(n, d) -> (n,)``), renormalised to unit mass on the grid; ``-inf`` gives 0."""
        x = self.centres().reshape(-1, self.dim)
        rho = torch.exp(log_density(x).to(torch.float64)).nan_to_num(nan=0.0, posinf=math.inf)
        if not torch.isfinite(rho).all():
            raise ValueError("the density is infinite at a cell centre")
        mass = float(rho.sum()) * self.cell_volume
        if not mass > 0:
            raise ValueError("the density has no mass on the grid")
        return (rho / mass).reshape(self.shape).to(dtype=dtype, device=device)

    def locate(self, x: Tensor) -> Tensor:
        """Flat indices of the cells containing the points ``x`` (n, d) (clamped to the grid)."""
        low = torch.tensor(self.box.low, dtype=x.dtype, device=x.device)
        h = torch.tensor(self.h, dtype=x.dtype, device=x.device)
        idx = torch.floor((x - low) / h).long()
        idx = torch.minimum(idx.clamp_min(0), torch.tensor(self.shape, device=x.device) - 1)
        flat = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for axis, n in enumerate(self.shape):
            flat = flat * n + idx[:, axis]
        return flat


def _gauss_legendre(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [-1/2, 1/2] (weights sum to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(q)
    return nodes / 2, weights / 2


def cell_averaged_kernel(kernel: Kernel, grid: Grid) -> Tensor:
    r"""The cell averages :math:`\overline W_k = |K|^{-1}\int_{K_0}W(kh + y)\,dy` for every offset
    :math:`k \in \{-(n_i-1),…,n_i-1\}^d`: a float64 CPU tensor of shape :math:`(2n_i - 1)_i`.

    Far offsets use tensor Gauss–Legendre with :data:`FAR_QUADRATURE` points per axis; offsets
    within :data:`NEAR_CELLS` of the origin split the cell into :math:`2^d` sub-cells with
    :data:`NEAR_QUADRATURE` points per axis each, so that a kernel singular at the origin
    (:math:`-\ln|x|`, :math:`|x|^{2-d}`) is only evaluated away from it (its singularity then sits
    on a sub-cell corner, where the integrand is integrable).
    """
    d = grid.dim
    h = torch.tensor(grid.h, dtype=torch.float64)
    offsets = [torch.arange(-(n - 1), n, dtype=torch.float64) for n in grid.shape]
    k = torch.stack(torch.meshgrid(*offsets, indexing="ij"), dim=-1)  # (*(2n-1), d)

    def average(points: np.ndarray, weights: np.ndarray, centres: Tensor) -> Tensor:
        # points: (q^d, d) in units of h relative to the cell centre; centres: (m, d) in units of h.
        y = torch.as_tensor(points, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        out = torch.empty(centres.shape[0], dtype=torch.float64)
        chunk = max(1, 2**22 // max(1, y.shape[0]))
        for start in range(0, centres.shape[0], chunk):
            z = (centres[start : start + chunk, None, :] + y[None]) * h
            out[start : start + chunk] = kernel(z) @ w
        return out

    def tensor_rule(q: int, subcells: bool) -> tuple[np.ndarray, np.ndarray]:
        nodes, weights = _gauss_legendre(q)
        if subcells:  # two halves per axis: [-1/2, 0] and [0, 1/2]
            nodes = np.concatenate([nodes / 2 - 0.25, nodes / 2 + 0.25])
            weights = np.concatenate([weights / 2, weights / 2])
        pts = np.array(list(itertools.product(nodes, repeat=d)))
        wts = np.prod(np.array(list(itertools.product(weights, repeat=d))), axis=1)
        return pts, wts

    flat = k.reshape(-1, d)
    near = flat.abs().amax(dim=1) <= NEAR_CELLS
    values = torch.empty(flat.shape[0], dtype=torch.float64)
    values[~near] = average(*tensor_rule(FAR_QUADRATURE, False), flat[~near])
    values[near] = average(*tensor_rule(NEAR_QUADRATURE, True), flat[near])
    return values.reshape(k.shape[:-1])


class GridEnergy:
    r"""The free energy of ``energy`` on ``grid`` (module docstring): value, first variation
    :math:`U'(\rho_K) + V_K + (W*\rho)_K`, and the convolution :math:`W*\rho`, on ``device`` in
    ``dtype``. The kernel's FFT is computed once per grid."""

    def __init__(
        self,
        energy: Energy,
        grid: Grid,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        self.energy, self.grid, self.dtype, self.device = energy, grid, dtype, torch.device(device)
        x = grid.centres().reshape(-1, grid.dim)
        self.V: Tensor = energy.V(x).reshape(grid.shape).to(dtype=dtype, device=self.device)
        self._kernel_fft: Tensor | None = None
        if energy.interactions:
            kernel = sum(
                (cell_averaged_kernel(i.kernel, grid) for i in energy.interactions[1:]),
                cell_averaged_kernel(energy.interactions[0].kernel, grid),
            )
            self._kernel_fft = torch.fft.rfftn(
                self._circulant(kernel).to(dtype=dtype, device=self.device), s=self._fft_shape
            )

    @property
    def internal(self) -> InternalEnergy | None:
        return self.energy.internal

    @property
    def has_interaction(self) -> bool:
        return self._kernel_fft is not None

    @cached_property
    def _fft_shape(self) -> tuple[int, ...]:
        return tuple(2 * n for n in self.grid.shape)

    def _circulant(self, kernel: Tensor) -> Tensor:
        """Place offsets −(n−1)…n−1 of each axis on a periodic lattice of length 2n (index k mod 2n),
        so that a circular convolution of length 2n is the linear one on the grid."""
        out = kernel
        for axis, n in enumerate(self.grid.shape):
            pad_shape = list(out.shape)
            pad_shape[axis] = 1
            zero = torch.zeros(pad_shape, dtype=out.dtype)
            negative, nonnegative = out.narrow(axis, 0, n - 1), out.narrow(axis, n - 1, n)
            out = torch.cat([nonnegative, zero, negative], dim=axis)
        return out

    def convolve(self, rho: Tensor) -> Tensor:
        r""":math:`(W*\rho)_K = \sum_L |L|\overline W_{K-L}\rho_L` (zero without interaction), for one
        density of shape ``grid.shape`` or a batch ``(..., *grid.shape)``."""
        if self._kernel_fft is None:
            return torch.zeros_like(rho)
        full = torch.fft.irfftn(torch.fft.rfftn(rho, s=self._fft_shape) * self._kernel_fft, s=self._fft_shape)
        return full[(..., *(slice(0, n) for n in self.grid.shape))] * self.grid.cell_volume

    def first_variation(self, rho: Tensor) -> Tensor:
        r""":math:`\delta\mathcal E_h/\delta\rho_K = U'(\rho_K) + V_K + (W*\rho)_K` per unit mass."""
        out = self.V + self.convolve(rho)
        if self.internal is not None:
            out = out + self.internal.dU(rho)
        return out

    def value(self, rho: Tensor) -> Tensor:
        r""":math:`\mathcal E_h(\rho)` (module docstring): a 0-d tensor for one density of shape
        ``grid.shape``, one value per density for a batch of shape ``(..., *grid.shape)``."""
        density = self.V * rho
        if self.internal is not None:
            density = density + self.internal.U(rho)
        if self._kernel_fft is not None:
            density = density + 0.5 * rho * self.convolve(rho)
        return density.sum(dim=tuple(range(-self.grid.dim, 0))) * self.grid.cell_volume
