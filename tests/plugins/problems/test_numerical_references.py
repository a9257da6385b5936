"""The numerical references of saturation-{1,2}d and ring-2d (stored fv-jko runs) against
independent checks.

Each reference is a stored, hash-pinned fixed-τ fv-jko run. Checked here: hash and provenance,
unit mass and positivity (and the density cap) at every stored time, the stored ρ(0) against the
problem's initial law, energy decay and the gap to the exact E∞, and agreement at every snapshot
with a scheme written independently of the solver:

* saturation: explicit upwind finite volumes (forward Euler, face flux v p↑(1 − p↓/cap), the
  velocity −c(x − x̄) of the quadratic kernel in closed form) on a coarser grid;
* ring-2d: for a radial law, ∇W∗ρ(x) = (|x|² + 2m₂ − 1)x with m₂ = E|X|² (W = |x|⁴/4 − |x|²/2:
  the odd moments vanish and E[YYᵀ] = m₂/2 I), so every radius obeys
  ṙ = −r(r² + 2m₂(t) − 1): an ODE for the quantiles of |X|, solved by RK4 (derived).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from wgfbench_plugins.problems.aggregation import RING_REFERENCE_SOLVER, RING_TIMES, make_ring_2d
from wgfbench_plugins.problems.nonlinear_mobility import REFERENCE_SOLVER, make_saturation

import wgfbench
from wgfbench.grid import Grid, GridEnergy
from wgfbench.numerical import GridPath, max_difference
from wgfbench.references import Stationary

F64 = torch.float64
PROBLEMS = ("nonlinear-mobility/saturation-1d", "nonlinear-mobility/saturation-2d", "aggregation/ring-2d")
CELLS = {PROBLEMS[0]: (4000,), PROBLEMS[1]: (128, 128), PROBLEMS[2]: (128, 128)}
SOLVER = {
    PROBLEMS[0]: REFERENCE_SOLVER[1],
    PROBLEMS[1]: REFERENCE_SOLVER[2],
    PROBLEMS[2]: RING_REFERENCE_SOLVER,
}


@pytest.fixture(scope="module", params=PROBLEMS)
def problem(request):
    return wgfbench.get_problem(request.param)


def snapshots(problem) -> list:
    return [problem.reference.snapshot(t) for t in problem.times]


def grid_energies(problem) -> list[float]:
    snaps = snapshots(problem)
    energy = GridEnergy(problem.energy, snaps[0].grid)
    return [float(energy.value(s.rho)) for s in snaps]


def radial_quantiles(rho: np.ndarray, grid: Grid, q: np.ndarray, sub: int = 4) -> np.ndarray:
    """Quantiles of |X| (of X itself in 1-D) for the piecewise-constant density ``rho`` on ``grid``
    (each cell split into ``sub``^d equal parts at their centres)."""
    d = grid.dim
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    centres = grid.centres().reshape(-1, d).numpy()
    shifts = np.stack(np.meshgrid(*[offsets * h for h in grid.h], indexing="ij"), -1).reshape(-1, d)
    points = centres[:, None, :] + shifts[None]
    r = points[..., 0].ravel() if d == 1 else np.linalg.norm(points, axis=-1).ravel()
    w = np.repeat(rho.ravel() * grid.cell_volume / sub**d, sub**d)
    order = np.argsort(r)
    cdf = np.cumsum(w[order])
    return np.interp(q * cdf[-1], cdf, r[order])


def quantile_w2(a: np.ndarray, b: np.ndarray) -> float:
    """W2 between two 1-D laws given by their quantiles at the same equispaced levels."""
    return float(np.sqrt(np.mean((a - b) ** 2)))


# ----------------------------------------------------------------------------------------------
# independent schemes


def upwind_saturation(d: int, n: int, times, c: float, cap: float, L: float = 1.25) -> list[np.ndarray]:
    """Explicit upwind finite volumes for ∂t p = ∇·(p(1 − p/cap) c(x − x̄)) on [−L, L]^d with the
    face flux v p↑ (1 − p↓/cap) (0 ≤ p ≤ cap under the CFL condition), from the cell-centre values
    of (1 − |x|²)₊ normalised; densities at ``times``."""
    h = 2 * L / n
    x = -L + h * (np.arange(n) + 0.5)
    X = np.meshgrid(*[x] * d, indexing="ij")
    p = np.clip(1 - sum(Xi**2 for Xi in X), 0, None)
    p /= p.sum() * h**d
    faces = -L + h * np.arange(1, n)
    out = [p.copy()]
    for t0, t1 in itertools.pairwise(times):
        k = math.ceil((t1 - t0) / (0.4 * h / (c * L * d)))
        dt = (t1 - t0) / k
        for _ in range(k):
            div = np.zeros_like(p)
            for ax in range(d):
                q = np.moveaxis(p, ax, 0)
                x_bar = float((np.moveaxis(X[ax], ax, 0) * q).sum() * h**d)
                v = (-c * (faces - x_bar)).reshape((-1,) + (1,) * (d - 1))
                left, right = q[:-1], q[1:]
                flux = np.where(v > 0, v * left * (1 - right / cap), v * right * (1 - left / cap))
                dq = np.zeros_like(q)
                dq[:-1] += flux
                dq[1:] -= flux
                div += np.moveaxis(dq, 0, ax)
            p = p - dt * div / h
        out.append(p.copy())
    return out


def ring_radial_ode(times, q: np.ndarray, scale: float = 0.5, dt: float = 0.005) -> list[np.ndarray]:
    """Quantiles of |X(t)| at levels ``q`` for ring-2d: r0 the Rayleigh(``scale``) quantiles,
    ṙ = −r(r² + 2m₂ − 1), m₂ the mean of r² over the levels (module docstring), RK4."""
    r = scale * np.sqrt(-2 * np.log1p(-q))

    def f(r):
        return -r * (r**2 + 2 * np.mean(r**2) - 1)

    out = [r.copy()]
    for t0, t1 in itertools.pairwise(times):
        k = math.ceil((t1 - t0) / dt)
        h = (t1 - t0) / k
        for _ in range(k):
            k1 = f(r)
            k2 = f(r + 0.5 * h * k1)
            k3 = f(r + 0.5 * h * k2)
            k4 = f(r + h * k3)
            r = r + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(r.copy())
    return out


# ----------------------------------------------------------------------------------------------
# the stored data


def test_stored_reference_loads_with_its_hash_and_provenance(problem):
    reference = problem.reference
    assert isinstance(reference, GridPath) and reference.kind == "numerical"
    # radial_w2 in 2-D saturation: the motion is below the 2-D w2 noise (nonlinear_mobility.PRIMARY_METRICS);
    # sliced_w2 on the other 2-D problems, exact w2 in 1-D
    primary = {"nonlinear-mobility/saturation-2d": "radial_w2", "nonlinear-mobility/saturation-1d": "w2"}.get(
        problem.name, "sliced_w2"
    )
    assert problem.primary_metric == primary and problem.version == 2
    assert reference.times == problem.times
    assert torch.equal(reference.radial_centre, torch.zeros(problem.dim, dtype=F64))
    record = json.loads(reference.provenance)
    assert record["solver"] == "fv-jko" and record["content_sha256"] == reference.sha256
    for key, value in SOLVER[problem.name].items():
        assert record["config"][key] == value
    assert record["command"] == f"wgfbench reference build {problem.name}"
    assert record["problem"] == problem.name and record["problem_version"] == 2
    assert reference.data.box == problem.box
    stationary = problem.references["stationary"]
    assert isinstance(stationary, Stationary) and math.isfinite(stationary.energy_inf)


def test_unit_mass_and_positive_at_every_stored_time(problem):
    cap = problem.mobility.M.cap if problem.mobility.kind == "nonlinear" else math.inf
    for snap in snapshots(problem):
        assert snap.rho.shape == CELLS[problem.name]
        assert snap.mass == pytest.approx(1.0, abs=1e-12)
        assert float(snap.rho.min()) > 0 and float(snap.rho.max()) <= cap * (1 + 1e-12)


def test_stored_initial_density_is_the_initial_law(problem):
    snap = problem.reference.snapshot(0.0)
    grid = snap.grid
    exact = torch.exp(problem.initial.log_density(grid.centres().reshape(-1, problem.dim))).reshape(
        grid.shape
    )
    # the cell-centre values, normalised on the grid (fv-jko's ρ0); the floor moves ≤ 1e-10 of mass
    l1 = float((snap.rho - exact / grid.mass(exact)).abs().sum() * grid.cell_volume)
    assert l1 < 1e-8, l1
    # and the moments of the law itself, up to the O(h²) of the grid
    mean, cov = problem.reference.mean(0.0), problem.reference.cov(0.0)
    assert float((mean - problem.initial.mean()).abs().max()) < 1e-10
    assert float((cov - problem.initial.cov()).abs().max()) < 2 * max(grid.h) ** 2


def test_energy_decreases_towards_the_exact_minimum(problem):
    energies = grid_energies(problem)
    e_inf = problem.references["stationary"].energy_inf
    gaps = [e - e_inf for e in energies]
    print(problem.name, "energy gaps at", problem.times, np.round(gaps, 6).tolist())
    assert all(b < a for a, b in itertools.pairwise(energies)), energies
    # exact initial energies: saturation μ tr Cov(p0) = μ d/(d+4); ring N(0, s²I): 4s⁴ − s² = 0
    if problem.family == "nonlinear-mobility":
        mu = 1 / problem.mobility.M.cap
        assert energies[0] == pytest.approx(mu * problem.dim / (problem.dim + 4), rel=2e-3)
    else:
        assert abs(energies[0]) < 2e-3
    # measured gaps at t = 0 and T: saturation-1d 0.1167 → 0.00101, saturation-2d 0.1719 → 0.00081
    # (about 1 % and 0.5 %: not stationary, the flow is scored, not its limit), ring-2d 0.0834 →
    # 0.00028 (0.3 %); the grid energies stay above E∞ (≥ −h-sized discretisation error)
    assert -2e-3 < gaps[-1] < 0.015 * gaps[0], gaps


def test_ring_ends_near_the_circle():
    problem = wgfbench.get_problem("aggregation/ring-2d")
    assert problem.times == RING_TIMES
    snap = problem.reference.snapshot(problem.final_time)
    q = (np.arange(2000) + 0.5) / 2000
    r = radial_quantiles(snap.rho.numpy(), snap.grid, q)
    # measured: W2(|X|, 1/√3) = 0.033 at t = 8 for the stored run, 0.019 for the radial ODE of
    # test_reference_agrees_with_an_independent_scheme (the rest is the grid's first-order error)
    distance = quantile_w2(r, np.full_like(r, 1 / math.sqrt(3)))
    print("ring-2d W2(|X(8)|, 1/sqrt 3):", distance)
    assert distance < 0.04


def test_reference_agrees_with_an_independent_scheme(problem):
    q = (np.arange(4000) + 0.5) / 4000
    snaps = snapshots(problem)
    if problem.family == "nonlinear-mobility":
        d = problem.dim
        n = 500 if d == 1 else 64
        factor = CELLS[problem.name][0] // n
        c = 2 / problem.mobility.M.cap
        others = upwind_saturation(d, n, problem.times, c, problem.mobility.M.cap)
        coarse_grid = Grid.with_cells(problem.box, n)
        rows = []
        for t, snap, other in zip(problem.times, snaps, others, strict=True):
            fine = snap.rho.numpy()
            coarse = fine.reshape(*sum(((n, factor),) * d, ())).mean(axis=tuple(range(1, 2 * d, 2)))
            l1 = float(np.abs(coarse - other).sum() * coarse_grid.cell_volume)
            w2 = quantile_w2(
                radial_quantiles(fine, snap.grid, q), radial_quantiles(other, coarse_grid, q, sub=8)
            )
            rows.append((t, l1, w2))
    else:
        ode = ring_radial_ode(problem.times, q)
        rows = [
            (t, math.nan, quantile_w2(radial_quantiles(snap.rho.numpy(), snap.grid, q), r))
            for t, snap, r in zip(problem.times, snaps, ode, strict=True)
        ]
    print(problem.name, "(t, L1, radial W2) against the independent scheme:", np.round(rows, 5).tolist())
    for _, l1, w2 in rows[1:]:
        assert l1 < TOLERANCE[problem.name]["l1"] or math.isnan(l1)
        assert w2 < TOLERANCE[problem.name]["w2"]


# Measured maxima over t > 0 (printed rows), with a margin of about 1.5:
# * saturation-1d (explicit upwind, 500 cells): L1 0.0037, W2 0.00052 (at t = 0.2–0.5);
# * saturation-2d (explicit upwind, 64²): L1 0.025, radial W2 0.0042 (at t = 0.2);
# * ring-2d (radial ODE, 4000 quantiles, exact up to RK4): radial W2 0.019–0.022 at every t > 0.
#   That is the reference's own first-order grid error (h = 0.047): fv-jko at 64² is 0.031–0.043
#   from the ODE, at 64² with τ/2 0.028–0.043 (so τ is not the limit), at 128² 0.021–0.022. It is
#   below the noise floor of the primary w2 at n = 1000 (0.043 at t = 8, 0.070 at t = 0.5), and the
#   reason the primary is not radial_w2, whose floor is lower.
TOLERANCE = {
    PROBLEMS[0]: {"l1": 0.006, "w2": 0.001},
    PROBLEMS[1]: {"l1": 0.04, "w2": 0.007},
    PROBLEMS[2]: {"l1": math.nan, "w2": 0.03},
}


@pytest.mark.slow
def test_rebuilding_the_reference_reproduces_it_to_1e_10(problem):
    rebuilt = problem.reference.build()
    assert max_difference(problem.reference.data, rebuilt) <= 1e-10


@pytest.mark.parametrize(
    "make",
    [lambda: make_saturation(1, False), lambda: make_saturation(2, False), lambda: make_ring_2d(False)],
)
def test_without_the_numerical_reference_the_problem_scores_the_energy_gap(make):
    bare = make()
    assert bare.reference.kind == "stationary" and bare.primary_metric == "energy_gap"
    assert bare.reference is bare.references["stationary"]
