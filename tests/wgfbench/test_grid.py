"""Grid layer: cell-averaged kernels, FFT convolution and grid energies against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from wgfbench.energy import (
    Energy,
    Entropy,
    Interaction,
    Newtonian,
    Potential,
    PowerInternal,
    PowerLaw,
    Quadratic,
)
from wgfbench.grid import Grid, GridEnergy, cell_averaged_kernel
from wgfbench.problem import Box

DTYPE = torch.float64


def _direct_convolution(grid: Grid, kernel: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    n0, n1 = grid.shape
    out = torch.zeros(grid.shape, dtype=DTYPE)
    for i in range(n0):
        for j in range(n1):
            for k in range(n0):
                for m in range(n1):
                    out[i, j] += grid.cell_volume * kernel[i - k + n0 - 1, j - m + n1 - 1] * rho[k, m]
    return out


def test_grid_geometry_and_discretisation():
    grid = Grid.with_cells(Box((0.0, -1.0), (1.0, 3.0)), (4, 8))
    assert grid.h == (0.25, 0.5) and grid.cell_volume == 0.125 and grid.n_cells == 32
    centres = grid.centres()
    assert centres.shape == (4, 8, 2)
    assert torch.allclose(centres[0, 0], torch.tensor([0.125, -0.75], dtype=DTYPE))
    rho = grid.discretise(lambda x: -((x - 0.3) ** 2).sum(1))
    assert float(grid.mass(rho)) == pytest.approx(1.0, abs=1e-14)
    flat = grid.locate(centres.reshape(-1, 2))
    assert torch.equal(flat, torch.arange(32))


def test_fft_convolution_is_the_linear_convolution():
    grid = Grid.with_cells(Box.cube(2.0, 2), (7, 5))
    energy = Energy([Interaction(Newtonian(2) + Quadratic(1.0))])
    rho = torch.rand(grid.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    kernel = cell_averaged_kernel(Newtonian(2), grid) + cell_averaged_kernel(Quadratic(1.0), grid)
    assert kernel.shape == (13, 9)
    got = GridEnergy(energy, grid).convolve(rho)
    assert torch.allclose(got, _direct_convolution(grid, kernel, rho), atol=1e-12, rtol=0)


def test_cell_average_of_the_logarithm_matches_closed_form_and_quadrature():
    grid = Grid.with_cells(Box.cube(2.0, 2), (7, 5))
    avg = cell_averaged_kernel(Newtonian(2), grid)
    a, b = grid.h[0] / 2, grid.h[1] / 2
    # ∫_0^a∫_0^b ln(x² + y²) dy dx in closed form; the origin cell is four such quarters.
    quarter = a * b * (math.log(a * a + b * b) - 3) + a * a * math.atan(b / a) + b * b * math.atan(a / b)
    assert float(avg[6, 4]) == pytest.approx(-0.5 * quarter / (a * b), rel=1e-4)
    # A neighbour cell (no singularity inside) against adaptive quadrature.
    value, _ = integrate.dblquad(
        lambda y, x: -0.5 * math.log(x * x + y * y), a, 3 * a, -b, b, epsabs=1e-13, epsrel=1e-12
    )
    assert float(avg[7, 4]) == pytest.approx(value / grid.cell_volume, rel=1e-9)


def test_first_variation_is_the_gradient_of_the_grid_energy():
    grid = Grid.with_cells(Box.cube(2.0, 2), (9, 6))
    for internal in (Entropy(), PowerInternal(2.0)):
        energy = Energy(
            [
                internal,
                Potential(lambda x: 0.5 * (x**2).sum(1)),
                Interaction(PowerLaw(4.0) + PowerLaw(2.0, -1.0)),
            ]
        )
        grid_energy = GridEnergy(energy, grid)
        rho = 0.1 + torch.rand(grid.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
        leaf = rho.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(grid_energy.value(leaf), leaf)
        assert torch.allclose(grad / grid.cell_volume, grid_energy.first_variation(rho), atol=1e-12)


def test_grid_energy_of_a_gaussian_converges_to_the_closed_form():
    # E = ∫ρlogρ + ∫|x|²/2 ρ + ½∬|x−y|²/2 ρρ for ρ = N(0, s²I₂): −log(2πe s²) + s² + s².
    s = 0.7
    energy = Energy([Entropy(), Potential(lambda x: 0.5 * (x**2).sum(1)), Interaction(Quadratic(1.0))])
    exact = -math.log(2 * math.pi * math.e * s**2) + 2 * s**2
    errors = []
    for n in (32, 64):
        grid = Grid.with_cells(Box.cube(7 * s, 2), n)
        rho = grid.discretise(lambda x: -0.5 * (x**2).sum(1) / s**2)
        errors.append(abs(float(GridEnergy(energy, grid).value(rho)) - exact))
    assert errors[1] < 1e-3
    assert errors[0] / errors[1] > 3.0  # second order in h


def test_newtonian_energy_of_the_uniform_disc():
    # ½∬(|x−y|²/2 − ln|x−y|)ρρ for the uniform unit disc: ½E|X−Y|²/2 = E|X|²/2 = 1/4, and the
    # disc's logarithmic energy ∬ −ln|x−y| ρρ = 1/4 contributes 1/8: E∞ = 3/8.
    grid = Grid.with_cells(Box.cube(1.2, 2), 96)
    rho = grid.discretise(lambda x: torch.where((x**2).sum(1) <= 1, 0.0, -math.inf))
    energy = Energy([Interaction(Quadratic(1.0) + Newtonian(2))])
    assert float(GridEnergy(energy, grid).value(rho)) == pytest.approx(0.25 + 0.125, abs=5e-3)
