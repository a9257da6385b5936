"""Convergence of ``fv-jko`` against closed forms: porous-medium/barenblatt-2d-m2 (Barenblatt,
t₀ = 0.1 built into the problem) and fokker-planck/ou-2d (Gaussian), in L1 against the exact cell
averages and in W2 (radial W2 for Barenblatt, Bures W2 from the grid moments for OU: both lower
bounds of W2 computed without sampling). τ ∝ h over a grid sequence, then a τ sequence at a fixed
fine grid. A coarse version runs by default; the full table is ``slow``."""

from __future__ import annotations

import pytest
import torch
from fv_jko_errors import (
    bures_w2,
    exact_cell_averages,
    grid_moments,
    l1_error,
    observed_order,
    radial_w2_grid,
)
from wgfbench_plugins.solvers.fv_jko import FVJKOScheme, initial_density

import wgfbench
from wgfbench.grid import Grid, GridEnergy


def errors_at(name: str, n: int, tau: float, t_end: float) -> tuple[float, float, float, torch.Tensor]:
    """(h, L1, W2, ρ) of the scheme on ``n`` cells per axis with ``k`` equal steps ≈ ``tau`` to ``t_end``."""
    problem = wgfbench.get_problem(name)
    grid = Grid.with_cells(problem.box, n)
    scheme = FVJKOScheme(grid, GridEnergy(problem.energy, grid))
    rho = initial_density(problem, grid, 1e-10)
    k = max(1, round(t_end / tau))
    for _ in range(k):
        rho, _ = scheme.step(rho, t_end / k)
    exact = exact_cell_averages(problem.reference, t_end, grid)
    exact = exact / grid.mass(exact)
    if name.startswith("porous-medium"):
        w2 = radial_w2_grid(rho, exact, grid)
    else:
        mean, cov = grid_moments(rho, grid)
        ref = problem.reference
        w2 = bures_w2(mean, cov, ref.mean(t_end).to(torch.float64), ref.cov(t_end).to(torch.float64))
    return max(grid.h), l1_error(rho, exact, grid), w2, rho


def table(name: str, cases: list[tuple[int, float]], t_end: float) -> list[tuple]:
    """Rows (n, τ, h, L1, W2, ρ), printed."""
    rows = []
    for n, tau in cases:
        h, l1, w2, rho = errors_at(name, n, tau, t_end)
        rows.append((n, tau, h, l1, w2, rho))
    print(f"\n{name}, t = {t_end}\n   n      tau        h         L1         W2")
    for n, tau, h, l1, w2, _ in rows:
        print(f"{n:4d} {tau:9.5f} {h:9.5f} {l1:10.3e} {w2:10.3e}")
    return rows


def orders(rows, by: int) -> tuple[float, float]:
    x = [r[by] for r in rows]
    return observed_order(x, [r[3] for r in rows]), observed_order(x, [r[4] for r in rows])


# (problem, t_end, τ/h)
SETUPS = [("porous-medium/barenblatt-2d-m2", 0.25, 0.05), ("fokker-planck/ou-2d", 0.5, 0.05)]


@pytest.mark.parametrize("name,t_end,ratio", SETUPS)
def test_coarse_grid_sequence_first_order(name, t_end, ratio):
    """Coarse grids (24², 48², τ = 2·ratio·h): W2 already converges at first order; L1 is still
    pre-asymptotic there (measured 0.67 Barenblatt, 0.71 OU), so only ≥ 0.6 is required here and
    the 0.8 bound is checked on the finer grids of the slow table."""
    problem = wgfbench.get_problem(name)
    width = max(h - l for l, h in zip(problem.box.low, problem.box.high, strict=True))
    rows = table(name, [(n, 2 * ratio * width / n) for n in (24, 48)], t_end)
    l1_order, w2_order = orders(rows, 2)
    print("orders in h (L1, W2):", l1_order, w2_order)
    assert w2_order >= 0.8 and l1_order >= 0.6


@pytest.mark.slow
@pytest.mark.parametrize("name,t_end,ratio", SETUPS)
def test_convergence_table_h_and_tau(name, t_end, ratio):
    problem = wgfbench.get_problem(name)
    width = max(h - l for l, h in zip(problem.box.low, problem.box.high, strict=True))
    rows = table(name, [(n, ratio * width / n) for n in (32, 64, 128)], t_end)
    l1_order, w2_order = orders(rows, 2)
    finest_l1, finest_w2 = orders(rows[1:], 2)
    print("orders in h with tau ∝ h, least squares (L1, W2):", l1_order, w2_order)
    print("orders in h with tau ∝ h, finest pair (L1, W2):", finest_l1, finest_w2)
    assert finest_l1 >= 0.8 and finest_w2 >= 0.8 and l1_order >= 0.7
    # τ sequence at a fine grid: the τ part of the error, isolated as the L1 distance to the
    # solution with the finest τ on the same grid, ≈ A(τ − τ_min).
    taus = [t_end / k for k in (4, 8, 16, 32)]  # exact divisors of t_end
    trows = table(name, [(128, tau) for tau in taus], t_end)
    grid_volume = Grid.with_cells(problem.box, 128).cell_volume
    dist = [float((r[5] - trows[-1][5]).abs().sum()) * grid_volume for r in trows[:-1]]
    tau_order = observed_order([r[1] - taus[-1] for r in trows[:-1]], dist)
    print("L1 distances to the finest tau:", dist, "order in tau:", tau_order)
    assert 0.8 <= tau_order <= 1.3


@pytest.mark.slow
def test_quick_tier_acceptance(tmp_path):
    """Run the real runner and scorer at the quick tier (one seed). OU: ``rel_error`` ≤ 0.05 at the
    final snapshot (measured 0.014). Barenblatt: the sample-based ``radial_w2`` at n_eval = 1000 is
    floor-dominated: the exact ``reference`` solver itself scores a median rel_error of 0.062
    (0.035-0.069 over 3 seeds, quick-cpu leaderboard) at t = 1, and fv-jko measured 0.069 (radial_w2
    0.032 vs floor 0.021; grid L1 0.024). So the Barenblatt checks are the grid L1 error ≤ 0.05,
    radial_w2 ≤ 2 × its floor (the calibration bar of ``tests/test_calibration.py``) and
    rel_error ≤ 0.1; the issue's rel_error ≤ 0.05 is not reachable through this metric at quick."""
    from wgfbench.runner import make_plan, run_plan
    from wgfbench.store import read_cases, read_results

    host = wgfbench.default_host()
    problems = ["porous-medium/barenblatt-2d-m2", "fokker-planck/ou-2d"]
    plan = make_plan(["fv-jko"], problems, seeds=1, tier="quick", host=host)
    run_plan(plan, tmp_path, host=host)
    cases = read_cases(tmp_path)
    assert (cases.status == "ok").all(), cases[["problem", "error"]]
    results = read_results(tmp_path)
    final = results[results.t == results.groupby("problem").t.transform("max")]
    wide = final.pivot_table(index="problem", columns="metric", values="value")
    print(wide[[c for c in wide.columns if "w2" in c or c in ("rel_error", "l1_error")]].to_string())
    print(cases[["problem", "solve_seconds"]].to_string())
    assert wide.loc["fokker-planck/ou-2d", "rel_error"] <= 0.05
    bb = wide.loc["porous-medium/barenblatt-2d-m2"]
    assert bb["l1_error"] <= 0.05
    assert bb["radial_w2"] <= 2.0 * bb["radial_w2_floor"]
    assert bb["rel_error"] <= 0.1
