"""Error measures for the ``fv-jko`` tests: L1 against exact cell averages, 1-D W2 by quantiles,
radial W2 and Bures W2 from grid moments (independent of the scheme's code)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from wgfbench.grid import Grid
from wgfbench.references import Reference


def exact_cell_averages(reference: Reference, t: float, grid: Grid, q: int = 4) -> Tensor:
    r"""Cell averages :math:`|K|^{-1}\int_K\rho(t)` by tensor Gauss–Legendre with ``q`` points per
    axis (float64, shape ``grid.shape``)."""
    nodes, weights = np.polynomial.legendre.leggauss(q)
    nodes, weights = torch.tensor(nodes / 2), torch.tensor(weights / 2)
    h = torch.tensor(grid.h, dtype=torch.float64)
    centres = grid.centres().reshape(-1, grid.dim)
    total = torch.zeros(centres.shape[0], dtype=torch.float64)
    for idx in np.ndindex(*(q,) * grid.dim):
        offset = torch.stack([nodes[i] for i in idx]) * h
        w = math.prod(float(weights[i]) for i in idx)
        total += w * torch.exp(reference.log_density(t, centres + offset))
    return total.reshape(grid.shape)


def l1_error(rho: Tensor, exact: Tensor, grid: Grid) -> float:
    r""":math:`\sum_K|K|\,|\rho_K - \bar\rho_K|`."""
    return float((rho - exact).abs().sum()) * grid.cell_volume


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cdf = np.cumsum(w) / w.sum()
    return v[np.minimum(np.searchsorted(cdf, levels), len(v) - 1)]


def w2_1d_grid(rho: Tensor, exact_rho: Tensor, grid: Grid, n_levels: int = 20000) -> float:
    r"""W2 between two piecewise-constant 1-D densities on ``grid`` (exact for them):
    :math:`(\int_0^1|F^{-1}(q)-G^{-1}(q)|^2dq)^{1/2}` with piecewise-linear CDFs, midpoint rule in q."""
    low, h = grid.box.low[0], grid.h[0]
    edges = low + h * np.arange(grid.shape[0] + 1)
    levels = (np.arange(n_levels) + 0.5) / n_levels

    def quantile(r: Tensor) -> np.ndarray:
        mass = r.double().cpu().numpy() * h
        cdf = np.concatenate([[0.0], np.cumsum(mass)]) / mass.sum()
        return np.interp(levels, cdf, edges)

    return float(np.sqrt(np.mean((quantile(rho) - quantile(exact_rho)) ** 2)))


def radial_w2_grid(rho: Tensor, exact_rho: Tensor, grid: Grid, n_levels: int = 20000) -> float:
    r"""1-D W2 between the laws of :math:`|x|` under two cell densities on ``grid`` (cell mass at
    the cell centre): a lower bound of W2 used for radial profiles."""
    r = torch.linalg.vector_norm(grid.centres(), dim=-1).reshape(-1).numpy()
    levels = (np.arange(n_levels) + 0.5) / n_levels
    a = _weighted_quantiles(r, rho.reshape(-1).double().cpu().numpy(), levels)
    b = _weighted_quantiles(r, exact_rho.reshape(-1).double().cpu().numpy(), levels)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def grid_moments(rho: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    r"""Mean and covariance of the piecewise-constant density (cell-uniform: :math:`+h_i^2/12` on
    the diagonal)."""
    x = grid.centres().reshape(-1, grid.dim)
    w = rho.reshape(-1).double().cpu() * grid.cell_volume
    w = w / w.sum()
    mean = w @ x
    xc = x - mean
    cov = (xc * w[:, None]).T @ xc + torch.diag(torch.tensor(grid.h, dtype=torch.float64) ** 2 / 12)
    return mean, cov


def bures_w2(m1: Tensor, c1: Tensor, m2: Tensor, c2: Tensor) -> float:
    r"""W2 between :math:`N(m_1,C_1)` and :math:`N(m_2,C_2)`:
    :math:`|m_1-m_2|^2 + \mathrm{tr}(C_1 + C_2 - 2(C_1^{1/2}C_2C_1^{1/2})^{1/2})`."""

    def sqrtm(c: Tensor) -> Tensor:
        e, v = torch.linalg.eigh(0.5 * (c + c.T))
        return (v * e.clamp_min(0).sqrt()) @ v.T

    s1 = sqrtm(c1)
    cross = sqrtm(s1 @ c2 @ s1)
    val = float(((m1 - m2) ** 2).sum() + torch.trace(c1 + c2 - 2 * cross))
    return math.sqrt(max(val, 0.0))


def observed_order(hs: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])
