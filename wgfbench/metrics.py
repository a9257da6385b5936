r"""Scores of a solver's trajectory against a problem's references (POT is the Wasserstein engine).

The one metrics module (``DESIGN.md``, "Metrics"; ``PROBLEMS.md``, "Wasserstein scoring pitfalls").

Every snapshot is moved to the CPU in float64 and resampled to the tier's ``n_eval`` points with a
generator whose seed hashes (base seed, problem, repetition, t, the run's secret scoring salt) and
never the solver; it is then compared with a reference draw made the same way, so every solver of a
run meets the same reference sample and none can regenerate it (:func:`wgfbench.seeding.reference_seed`).

Integrity (what a trivial or dishonest output cannot win): the ranking score ``trajectory_error``
averages ``rel_error`` over every snapshot t > 0, so returning :math:`\rho_\infty` early costs;
stationary-only references are scored at the final snapshot only (``end_state_only``); grid outputs
pay for lost, invented or negative mass in ``rel_error`` (``mass_penalty``, ``flag_mass``); a
primary score far below its own noise floor is flagged (``flag_suspect``).
Noise floors (the same estimator between two independent reference draws), reference draws,
large moment draws and the :math:`\rho_0` baselines live in a :class:`ScoreCache` that the runner
shares across solvers: scoring is never charged to a solver and a floor is computed once per
(problem, t, repetition, ``n_eval``).

Distances are reported as :math:`W_2` (never :math:`W_2^2`); :data:`METRICS` states each unit.

Low-level functions
-------------------
:func:`w2` (exact, checked), :func:`sliced_w2` with :func:`sliced_projections`, :func:`bures_w2`,
:func:`radial_w2` and :func:`resample`.

References: Peyré & Cuturi, *Computational Optimal Transport* (2019), §2–3 (exact OT) and
Remark 2.31 (Gaussian :math:`W_2`); Bonneel et al., *Sliced and Radon Wasserstein barycenters*
(JMIV 2015) eq. (9) (sliced :math:`W_2`); Flamary et al., *POT: Python Optimal Transport*
(JMLR 2021).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import ot
import torch
from torch import Tensor

from wgfbench.context import Tier, make_generator
from wgfbench.energy import EnergyEstimate
from wgfbench.errors import WgfbenchError
from wgfbench.grid import Grid
from wgfbench.problem import Problem
from wgfbench.references import Reference, jko_step_count
from wgfbench.seeding import reference_seed, seed_from
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Snapshot, StepRecord, Trajectory

logger = logging.getLogger(__name__)

DTYPE = torch.float64

#: Network-simplex iteration cap of :func:`w2`. POT's default (100 000) stops early with only a
#: warning (6 % high at n = 5 000, d = 30, PROBLEMS.md); 10⁹ is never reached at n ≤ 10⁴.
DEFAULT_NUM_ITER_MAX = 1_000_000_000
#: Number of fixed directions of ``sliced_w2``.
N_PROJECTIONS = 256
#: Size of the cached reference draw whose moments stand in for unknown reference moments.
N_MOMENT_DRAW = 100_000
FLOOR_DRAWS = 4
"""Independent reference draws averaged in each ``*_floor`` (cached per problem, t, repetition)."""
SUSPECT_FLOOR_RATIO = 0.25
"""An output whose primary distance is, in the median over its scored snapshots, below this share
of the noise floor (the same distance for independent exact samples) is flagged ``flag_suspect``:
exact samples themselves sit near ratio 1 (the calibration test checks ≤ 2), and a median of
several snapshots below 1/4 does not happen by chance; an output that copied the scoring draw
sits near 0."""
MAY_BE_INFINITE = frozenset({"kl"})
"""Metrics whose value may be +inf and is stored as such (not dropped)."""
MASS_TOLERANCE = 1e-3
"""Largest ``|mass − 1| + negative_mass`` of a grid output before it is flagged ``flag_mass``
(float32 sums over 10⁶ cells stay far below it; the classical solvers reach 1e-15)."""
#: Grids with more cells than this are not discretised for the grid floor (a plain draw is used).
MAX_FLOOR_GRID_CELLS = 1 << 22

_EMD_OPTIMAL = 1  # result_code of POT's network simplex: 0 infeasible, 1 optimal, 2 unbounded, 3 max iter
_DISTRIBUTION_PRIMARIES = ("w2", "sliced_w2", "bures_w2", "radial_w2")


class OptimalTransportError(WgfbenchError, RuntimeError):
    """The exact OT solver did not reach an optimal plan (iteration cap, infeasible or unbounded)."""


# ----------------------------------------------------------------------------------------------
# Catalogue


@dataclass(frozen=True)
class MetricInfo:
    """What one metric name means: its ``unit`` (``"W2"`` for distances, never squared), a
    one-line ``description`` and whether lower values are better."""

    name: str
    unit: str
    description: str
    lower_is_better: bool = True


def _catalogue(*infos: MetricInfo) -> dict[str, MetricInfo]:
    return {info.name: info for info in infos}


_PRIMARY_DESCRIPTIONS = {
    "w2": "exact W2 (not squared)",
    "sliced_w2": "sliced W2 (not squared)",
    "bures_w2": "Bures (Gaussian moment-fit) W2 (not squared)",
    "radial_w2": "radial W2 (not squared)",
}

METRICS: dict[str, MetricInfo] = _catalogue(
    MetricInfo(
        "w2",
        "W2",
        "exact W2 (not squared; POT emd2 on squared Euclidean costs, convergence checked) between "
        "n_eval resampled output points and n_eval reference samples",
    ),
    MetricInfo(
        "w2_floor",
        "W2",
        "same-law noise floor of w2: mean exact W2 (not squared) between the scoring draw and 4 "
        "independent reference draws of n_eval points; for grid outputs these come from the "
        "reference discretised on the output grid",
    ),
    MetricInfo(
        "sliced_w2",
        "W2",
        "sliced W2 (not squared): root mean of exact 1-D W2² over directions fixed per (problem, d)",
    ),
    MetricInfo("sliced_w2_floor", "W2", "sliced_w2 of independent reference draws (floor, as w2_floor)"),
    MetricInfo(
        "bures_w2",
        "W2",
        "Bures–Wasserstein W2 (not squared) between the Gaussian moment fit of the output and the "
        "reference mean/covariance (exact, or from a large cached reference draw)",
    ),
    MetricInfo("bures_w2_floor", "W2", "bures_w2 of independent reference draws (floor, as w2_floor)"),
    MetricInfo(
        "radial_w2",
        "W2",
        "exact 1-D W2 (not squared) between the laws of |X - centre| of output and reference "
        "(radial references only)",
    ),
    MetricInfo("radial_w2_floor", "W2", "radial_w2 of independent reference draws (floor, as w2_floor)"),
    MetricInfo("mean_error", "length", "|m - m_ref|, Euclidean norm of the error of the output mean"),
    MetricInfo(
        "cov_error", "1", "relative Frobenius error of the output covariance, |S - S_ref|_F / |S_ref|_F"
    ),
    MetricInfo(
        "kl",
        "nats",
        "KL(output | reference) = E_out[log rho_out - log rho_ref] at the output particles "
        "(particles carrying log_rho and a reference with a density); +inf, stored as a value, when "
        "the output puts mass where the reference has none (see mass_outside_support)",
    ),
    MetricInfo(
        "mass_outside_support",
        "1",
        "share of the resampled output points where the reference density is 0 (log rho_ref = -inf): "
        "mass outside the reference's support (references with a density)",
    ),
    MetricInfo(
        "energy",
        "energy",
        "free energy of the output (on_particles with log_rho, else k-NN on_samples); diagnostic",
        lower_is_better=False,
    ),
    MetricInfo(
        "energy_ref",
        "energy",
        "the same estimator with the same sample size on exact reference samples (rho_inf for "
        "stationary references); diagnostic",
        lower_is_better=False,
    ),
    MetricInfo(
        "energy_error",
        "energy",
        "energy - energy_ref (signed; estimator bias cancels); rank by its absolute value",
    ),
    MetricInfo(
        "energy_exact",
        "energy",
        "closed-form energy of the reference law scored at this snapshot (rho_inf for stationary "
        "references); diagnostic",
        lower_is_better=False,
    ),
    MetricInfo(
        "energy_gap",
        "energy",
        "stationary references: energy - energy_ref(rho_inf) with the same estimator (≥ 0 up to noise)",
    ),
    MetricInfo(
        "mass_error", "mass", "grid outputs: |mass - 1|, mass = sum_K |K| rho_K (negative cells included)"
    ),
    MetricInfo("negative_mass", "mass", "grid outputs: sum_K |K| max(-rho_K, 0), mass in negative cells"),
    MetricInfo(
        "mass_penalty",
        "1",
        "grid outputs: |mass - 1| + negative_mass, added to rel_error at the snapshot (lost or "
        "invented mass counts as that share of the solution got wrong; resampling normalises it away)",
    ),
    MetricInfo(
        "l1_error",
        "1",
        "grid outputs, references with a density (not stationary): relative L1 error "
        "sum_K |K| |rho_K - rho_ref(x_K)| / sum_K |K| rho_ref(x_K), reference at cell centres",
    ),
    MetricInfo(
        "min_density", "density", "grid outputs: minimum cell density (negative = positivity lost)", False
    ),
    MetricInfo(
        "rel_error",
        "1",
        "primary metric at t divided by the same metric between a rho_0 draw and the reference at t "
        "(share of the motion the solver got wrong), plus mass_penalty for grid outputs; for "
        "energy_gap: gap(output) / gap(rho_0); stationary-only references: final snapshot only",
    ),
    MetricInfo(
        "trajectory_error",
        "1",
        "the ranking score: mean of rel_error over the snapshot times t > 0, every snapshot weighted "
        "equally; for stationary-only references (end_state_only = 1) the final rel_error; t = NaN",
    ),
    MetricInfo(
        "end_state_only",
        "1",
        "1 when the problem's reference is stationary-only, so trajectory_error ranks the end state "
        "alone; t = NaN",
    ),
    MetricInfo(
        "floor_ratio",
        "1",
        "median over scored snapshots of primary / primary floor (exact samples sit near 1); t = NaN",
    ),
    MetricInfo(
        "flag_suspect",
        "1",
        f"1 when floor_ratio < {SUSPECT_FLOOR_RATIO:g}: a score far below that of independent exact "
        "samples (the output has seen the scoring draw); t = NaN",
    ),
    MetricInfo("mass_violation", "mass", "grid outputs: largest mass_penalty over the snapshots; t = NaN"),
    MetricInfo(
        "flag_mass",
        "1",
        f"grid outputs: 1 when mass_violation > {MASS_TOLERANCE:g} (mass lost, invented or negative); "
        "t = NaN",
    ),
    *(
        MetricInfo(
            f"jko_{name}",
            "W2",
            f"{text} against the exact JKO iterate of the solver's fixed step tau (separates the "
            "solver's error from the O(tau) JKO time error)",
        )
        for name, text in _PRIMARY_DESCRIPTIONS.items()
    ),
    MetricInfo(
        "jko_rel_error", "1", "jko_<primary> divided by the primary metric between rho_0 and the JKO iterate"
    ),
    MetricInfo(
        "step_energy",
        "energy",
        "energy logged by the solver at one step (t = step time, step = index in the log)",
        lower_is_better=False,
    ),
    MetricInfo(
        "dissipation",
        "1",
        "share of consecutive logged steps where the energy rose by more than two combined standard "
        "errors (by more than 0 without standard errors); t = NaN, step = -1",
    ),
)


@dataclass(frozen=True)
class MetricRow:
    """One score: ``metric`` at problem time ``t`` (snapshot index ``step`` in ``problem.times``)."""

    t: float
    step: int
    metric: str
    value: float


# ----------------------------------------------------------------------------------------------
# Low-level distances


def _as_numpy(x: Tensor | np.ndarray | Sequence[float], name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().to("cpu", DTYPE).numpy()
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite entries")
    return arr


def _points(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n > 0, got {arr.shape}")
    return arr


def _histogram(w: Tensor | np.ndarray | None, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    arr = _as_numpy(w, name).reshape(-1)
    if arr.shape != (n,) or (arr < 0).any() or not arr.sum() > 0:
        raise ValueError(f"{name} must be {n} non-negative weights with a positive sum")
    return arr / arr.sum()


def w2(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
    num_iter_max: int = DEFAULT_NUM_ITER_MAX,
) -> float:
    r"""Exact :math:`W_2` between two discrete measures, :math:`\sum_i a_i\delta_{x_i}` and
    :math:`\sum_j b_j\delta_{y_j}`:

    .. math:: W_2 = \Big(\min_{\gamma\in\Pi(a,b)} \sum_{ij}\gamma_{ij}\,|x_i-y_j|^2\Big)^{1/2}

    (Peyré & Cuturi 2019, eq. (2.15)), solved by POT's network simplex ``ot.emd2`` on
    ``ot.dist(x, y)`` (squared Euclidean costs, so ``emd2`` returns :math:`W_2^2`; this function
    returns its square root, :math:`W_2`).

    ``x``: (n, d), ``y``: (m, d) (a 1-D array is read as d = 1); tensors on any device or arrays,
    computed in float64 on the CPU. ``a`` (n,), ``b`` (m,): non-negative weights, normalised to
    unit mass (uniform when omitted). Memory is O(n m): 16 n m bytes; above
    :data:`MAX_DENSE_BYTES` (4 GiB, n = m ≈ 16 000) it raises ``ValueError`` saying so.

    ``num_iter_max`` caps the simplex iterations (POT's default of 10⁵ stops early at a few
    thousand points with only a warning). The solver's ``result_code`` is checked: anything but an
    optimal plan raises :class:`OptimalTransportError`, never a silent non-converged value.
    Returns a Python float (W2, not squared).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x and y live in different dimensions: {xs.shape[1]} != {ys.shape[1]}")
    _check_dense_size(xs.shape[0], ys.shape[0], "w2")
    wa, wb = _histogram(a, xs.shape[0], "a"), _histogram(b, ys.shape[0], "b")
    cost_matrix = ot.dist(xs, ys)  # squared Euclidean
    cost, log = ot.emd2(wa, wb, cost_matrix, numItermax=int(num_iter_max), log=True)
    code = int(log["result_code"])
    if code != _EMD_OPTIMAL:
        raise OptimalTransportError(
            f"exact OT (ot.emd2, n={xs.shape[0]}, m={ys.shape[0]}) did not converge: result_code={code} "
            f"({log.get('warning')}); numItermax={num_iter_max}. Raise num_iter_max."
        )
    return math.sqrt(max(float(cost), 0.0))


MAX_DENSE_BYTES = 4 * 2**30
"""Largest memory exact OT may ask for: the n × m float64 cost matrix and POT's plan of the same
size (two n m 8-byte arrays); :func:`w2` refuses larger inputs instead of exhausting memory."""


def _check_dense_size(n: int, m: int, name: str) -> None:
    needed = 2 * 8 * n * m
    if needed > MAX_DENSE_BYTES:
        raise ValueError(
            f"{name} on {n} × {m} points needs about {needed / 2**30:.1f} GiB (cost matrix and plan), "
            f"over the {MAX_DENSE_BYTES / 2**30:.0f} GiB limit: subsample, or use sliced_w2, bures_w2 "
            "or radial_w2, whose cost is near-linear in n"
        )


def sliced_projections(problem_name: str, d: int, n_projections: int = N_PROJECTIONS) -> Tensor:
    r"""Fixed unit directions :math:`\theta_1,\dots,\theta_L\in S^{d-1}` for :func:`sliced_w2`.

    Drawn uniformly on the sphere (normalised standard Gaussians) from a CPU generator seeded by
    ``seed_from("sliced-projections", problem_name, d, n_projections)``: the same for every solver,
    repetition and snapshot of a problem, so that sliced scores compare. Returns
    (n_projections, d) float64 on the CPU.
    """
    if d < 1 or n_projections < 1:
        raise ValueError(f"need d ≥ 1 and n_projections ≥ 1, got d={d}, n_projections={n_projections}")
    gen = make_generator(seed_from("sliced-projections", problem_name, d, n_projections))
    theta = torch.randn(n_projections, d, generator=gen, dtype=DTYPE)
    return theta / torch.linalg.vector_norm(theta, dim=1, keepdim=True)


def sliced_w2(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    projections: Tensor | np.ndarray,
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> float:
    r"""Sliced :math:`W_2` over fixed directions:

    .. math:: SW_2 = \Big(\frac1L\sum_{l=1}^{L} W_2^2\big(\theta_l{}_\#\mu,\ \theta_l{}_\#\nu\big)\Big)^{1/2}

    (Bonneel et al. 2015, eq. (9)), each 1-D :math:`W_2^2` exact (sorted quantiles), computed by
    ``ot.sliced_wasserstein_distance(..., p=2, projections=...)``.

    ``x`` (n, d), ``y`` (m, d), ``projections`` (L, d) unit rows (see :func:`sliced_projections`),
    optional weights ``a`` (n,), ``b`` (m,). Float64 on the CPU. Returns :math:`SW_2` (not squared).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    theta = _points(projections, "projections")
    if not xs.shape[1] == ys.shape[1] == theta.shape[1]:
        raise ValueError(f"dimension mismatch: x {xs.shape}, y {ys.shape}, projections {theta.shape}")
    wa, wb = _histogram(a, xs.shape[0], "a"), _histogram(b, ys.shape[0], "b")
    value = ot.sliced_wasserstein_distance(xs, ys, wa, wb, p=2, projections=np.ascontiguousarray(theta.T))
    return float(value)


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(0.5 * (s + s.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def bures_w2(
    m1: Tensor | np.ndarray,
    S1: Tensor | np.ndarray,
    m2: Tensor | np.ndarray,
    S2: Tensor | np.ndarray,
) -> float:
    r""":math:`W_2` between Gaussians :math:`\mathcal N(m_1,\Sigma_1)` and :math:`\mathcal N(m_2,\Sigma_2)`:

    .. math:: W_2^2 = |m_1-m_2|^2 + \operatorname{tr}\big(\Sigma_1+\Sigma_2
              - 2(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}\big)

    (Peyré & Cuturi 2019, Remark 2.31; Dowson & Landau 1982). This is the formula of
    ``ot.gaussian.bures_wasserstein_distance``, evaluated here with eigenvalues clamped at zero
    because POT's NumPy ``sqrtm`` returns NaN, or fails to converge, on the slightly indefinite
    matrices that singular covariances (collapsed particles) produce in floating point; the tests
    check agreement with POT on regular covariances.

    ``m1``, ``m2``: (d,); ``S1``, ``S2``: (d, d) symmetric positive semi-definite; float64 on the
    CPU. Returns :math:`W_2` (not squared), as POT's function does.
    """
    mu1, mu2 = _as_numpy(m1, "m1").reshape(-1), _as_numpy(m2, "m2").reshape(-1)
    d = mu1.shape[0]
    c1, c2 = _as_numpy(S1, "S1").reshape(d, d), _as_numpy(S2, "S2").reshape(d, d)
    if mu2.shape != (d,):
        raise ValueError(f"means must both have shape ({d},), got {mu2.shape}")
    root1 = _sqrtm_psd(c1)
    cross = root1 @ c2 @ root1
    cross_trace = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (cross + cross.T)), 0.0, None)).sum())
    sq = float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * cross_trace)
    return math.sqrt(max(sq, 0.0))


def radial_w2(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    centre: Tensor | np.ndarray | Sequence[float],
    a: Tensor | np.ndarray | None = None,
    b: Tensor | np.ndarray | None = None,
) -> float:
    r"""Exact 1-D :math:`W_2` between the laws of :math:`|X-c|` and :math:`|Y-c|`:

    .. math:: W_2 = \Big(\int_0^1 |F^{-1}_{|X-c|}(q) - F^{-1}_{|Y-c|}(q)|^2\,dq\Big)^{1/2}

    (Peyré & Cuturi 2019, Remark 2.30), by ``ot.wasserstein_1d(..., p=2)`` which returns
    :math:`W_2^2`; this function returns its root. A low-noise score for radial references
    (PROBLEMS.md, "Wasserstein scoring pitfalls"). ``x`` (n, d), ``y`` (m, d), ``centre`` (d,),
    optional weights ``a`` (n,), ``b`` (m,); float64 on the CPU. Returns :math:`W_2` (not squared).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    c = _as_numpy(centre, "centre").reshape(-1)
    if not xs.shape[1] == ys.shape[1] == c.shape[0]:
        raise ValueError(f"dimension mismatch: x {xs.shape}, y {ys.shape}, centre {c.shape}")
    rx, ry = np.linalg.norm(xs - c, axis=1), np.linalg.norm(ys - c, axis=1)
    wa, wb = _histogram(a, xs.shape[0], "a"), _histogram(b, ys.shape[0], "b")
    return math.sqrt(max(float(ot.wasserstein_1d(rx, ry, wa, wb, p=2)), 0.0))


# ----------------------------------------------------------------------------------------------
# Resampling


def _cpu(x: Tensor) -> Tensor:
    return x.detach().to("cpu", DTYPE)


def _resample_indices(n_particles: int, n: int, weights: Tensor | None, generator: torch.Generator) -> Tensor:
    if weights is not None:
        w = _cpu(weights)
        if (w < 0).any() or not float(w.sum()) > 0:
            raise ValueError("particle weights must be non-negative with a positive sum")
        return torch.multinomial(w / w.sum(), n, replacement=True, generator=generator)
    if n_particles >= n:
        return torch.randperm(n_particles, generator=generator)[:n]
    return torch.randint(n_particles, (n,), generator=generator)


def _resample_with_log_rho(
    snapshot: Snapshot, n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    if isinstance(snapshot, GridSnapshot):
        return snapshot.sample_with_log_rho(n, generator)
    idx = _resample_indices(snapshot.x.shape[0], n, snapshot.weights, generator)
    x = _cpu(snapshot.x)[idx]
    log_rho = None if snapshot.log_rho is None else _cpu(snapshot.log_rho)[idx]
    return x, log_rho


def resample(snapshot: Snapshot, n: int, generator: torch.Generator) -> Tensor:
    r"""``n`` points distributed as the snapshot's law, on the CPU in float64: shape (n, d).

    * particles with ``weights``: multinomial resampling, :math:`P(i) = w_i/\sum_j w_j`;
    * particles without weights, :math:`N \ge n`: a uniformly random subset of size ``n`` drawn
      without replacement (:math:`N = n` returns a permutation of all particles);
    * :math:`N < n`: ``n`` draws with replacement;
    * :class:`~wgfbench.trajectory.GridSnapshot`: ``snapshot.sample`` (a cell by its mass, then
      uniform within it); the points carry :math:`\log\rho_K` of their cell, so energies of grid
      outputs use the particle estimator :math:`\mathbb E[U(\rho)/\rho]` on the piecewise-constant density.

    ``generator`` is a CPU ``torch.Generator`` (the scorer seeds it independently of the solver).
    """
    return _resample_with_log_rho(snapshot, n, generator)[0]


def reference_on_grid(reference: Reference, t: float, grid: Grid) -> Tensor:
    """The reference density :math:`\\rho(t, x_K)` at the cell centres (CPU float64, ``grid.shape``)."""
    centres = grid.centres().reshape(-1, grid.dim)
    return torch.exp(_cpu(reference.log_density(t, centres))).reshape(grid.shape)


def grid_l1_error(snapshot: GridSnapshot, reference: Reference) -> float:
    r"""Relative L1 error of a grid density against the reference density at the cell centres:
    :math:`\sum_K |K|\,|\rho_K - \rho(t, x_K)| \,/\, \sum_K |K|\rho(t, x_K)`."""
    exact = reference_on_grid(reference, snapshot.t, snapshot.grid)
    return float((_cpu(snapshot.rho) - exact).abs().sum() / exact.sum())


def _moments(x: Tensor) -> tuple[Tensor, Tensor]:
    d = x.shape[1]
    return x.mean(dim=0), torch.cov(x.T).reshape(d, d)


# ----------------------------------------------------------------------------------------------
# Cache shared across solvers

CacheKey = tuple[str, int, int, int, float, int, str, str]


class ScoreCache:
    """Reference draws, floors and :math:`\\rho_0` baselines shared by every solver of a run.

    Keys are ``(problem name, version, base_seed, repetition, t, n_eval, what, salt)``; values are
    tensors or floats that only depend on that key (never on a solver), so a campaign computes
    each floor once per (problem, t, repetition, n_eval). Thread-safe: concurrent scorers may
    compute the same entry twice (deterministically) but never see a partial one.
    ``hits``/``misses`` count lookups, for tests and reports.
    """

    def __init__(self) -> None:
        self._store: dict[CacheKey, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        problem: Problem, base_seed: int, repetition: int, t: float, n_eval: int, what: str, salt: str = ""
    ) -> CacheKey:
        """The key of one cached quantity: (name, version, base_seed, repetition, t, n_eval, what,
        salt)."""
        return (
            problem.name,
            int(problem.version),
            int(base_seed),
            int(repetition),
            float(t),
            int(n_eval),
            what,
            str(salt),
        )

    def get_or_compute(self, key: CacheKey, compute: Callable[[], Any]) -> Any:
        """The cached value for ``key``, computing and storing it on first use."""
        with self._lock:
            if key in self._store:
                self.hits += 1
                return self._store[key]
            self.misses += 1
        value = compute()
        with self._lock:
            return self._store.setdefault(key, value)

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._store)

    def clear(self) -> None:
        with self._lock:
            self._store.clear()


# ----------------------------------------------------------------------------------------------
# The scorer


@dataclass(frozen=True)
class _Target:
    """A reference law at one time: the PDE solution, or a JKO iterate for a fixed step."""

    label: str  # "pde" or "jko:<tau>", part of cache keys and seeds
    reference: Reference
    t: float
    centre: Tensor | None


class Scorer:
    """Scores trajectories of one problem, tier and repetition (see the module docstring).

    ``score(trajectory)`` returns :class:`MetricRow` s; the metric names are the keys of
    :data:`METRICS`. Metrics that do not apply are not emitted; a non-finite value is dropped with
    a logged warning. Pass the runner's shared :class:`ScoreCache` as ``cache``.
    """

    def __init__(
        self,
        problem: Problem,
        tier: Tier,
        base_seed: int,
        repetition: int,
        cache: ScoreCache | None = None,
        n_projections: int = N_PROJECTIONS,
        n_moment_draw: int = N_MOMENT_DRAW,
        salt: str = "",
    ):
        self.problem = problem
        self.tier = tier
        self.n_eval = int(tier.n_eval)
        self.base_seed = int(base_seed)
        self.repetition = int(repetition)
        self.salt = str(salt)
        self.cache = cache if cache is not None else ScoreCache()
        self.n_moment_draw = int(n_moment_draw)
        self.projections = sliced_projections(problem.name, problem.dim, n_projections)
        self.stationary = problem.reference.kind == "stationary"
        self.primary = problem.primary_metric

    # -- cache and seeds ---------------------------------------------------------------------

    def _cached(self, t: float, what: str, compute: Callable[[], Any]) -> Any:
        key = ScoreCache.key(self.problem, self.base_seed, self.repetition, t, self.n_eval, what, self.salt)
        return self.cache.get_or_compute(key, compute)

    def _generator(self, t: float, role: str) -> torch.Generator:
        return make_generator(
            reference_seed(self.base_seed, self.problem.name, self.repetition, t, role=role, salt=self.salt)
        )

    def _role(self, target: _Target, role: str) -> str:
        return role if target.label == "pde" else f"{target.label}:{role}"

    def _draw(self, target: _Target, role: str) -> Tensor:
        """``n_eval`` reference samples at ``target.t`` (``role`` "reference" or "floor")."""
        role = self._role(target, role)

        def compute() -> Tensor:
            x = target.reference.sample(target.t, self.n_eval, self._generator(target.t, role))
            return _cpu(x)

        return self._cached(target.t, f"draw:{role}", compute)

    def _initial_draw(self) -> Tensor:
        def compute() -> Tensor:
            return _cpu(self.problem.initial.sample(self.n_eval, self._generator(0.0, "initial")))

        return self._cached(0.0, "draw:initial", compute)

    def _reference_moments(self, target: _Target) -> tuple[Tensor, Tensor]:
        mean, cov = target.reference.mean(target.t), target.reference.cov(target.t)
        if mean is not None and cov is not None:
            d = self.problem.dim
            return _cpu(torch.as_tensor(mean)).reshape(d), _cpu(torch.as_tensor(cov)).reshape(d, d)
        role = self._role(target, "moments")

        def compute() -> tuple[Tensor, Tensor]:
            x = target.reference.sample(target.t, self.n_moment_draw, self._generator(target.t, role))
            return _moments(_cpu(x))

        key = ScoreCache.key(
            self.problem, self.base_seed, self.repetition, target.t, self.n_moment_draw, role, self.salt
        )
        return self.cache.get_or_compute(key, compute)

    def _floor_draw(self, target: _Target, snapshot: Snapshot, k: int) -> tuple[Tensor, str]:
        """The ``k``-th independent reference draw; for grid outputs the reference discretised on
        the output grid (cell-centre densities), so the floor includes the grid's own resolution."""
        floor_role = "floor" if k == 0 else f"floor{k}"
        if not isinstance(snapshot, GridSnapshot) or not target.reference.has_density:
            return self._draw(target, floor_role), "samples"
        shape = tuple(snapshot.rho.shape)
        if math.prod(shape) > MAX_FLOOR_GRID_CELLS:
            return self._draw(target, floor_role), "samples"
        tag = f"grid:{shape}:{snapshot.box.low}:{snapshot.box.high}"
        role = self._role(target, floor_role)

        def compute() -> Tensor:
            rho = reference_on_grid(target.reference, target.t, snapshot.grid)
            if not torch.isfinite(rho).all() or not float(rho.sum()) > 0:
                logger.warning(
                    "%s: reference density not usable on the grid; plain floor draw", self.problem.name
                )
                return self._draw(target, floor_role)
            grid = GridSnapshot(target.t, snapshot.box, rho)
            return grid.sample(self.n_eval, self._generator(target.t, role))

        return self._cached(target.t, f"draw:{role}:{tag}", compute), tag

    # -- distances ---------------------------------------------------------------------------

    def _distance(self, metric: str, x: Tensor, target: _Target) -> float:
        if metric == "w2":
            return w2(x, self._draw(target, "reference"))
        if metric == "sliced_w2":
            return sliced_w2(x, self._draw(target, "reference"), self.projections)
        if metric == "radial_w2":
            if target.centre is None:
                raise ValueError(f"{self.problem.name}: radial_w2 needs a reference radial_centre")
            return radial_w2(x, self._draw(target, "reference"), target.centre)
        if metric == "bures_w2":
            m, S = _moments(x)
            m_ref, S_ref = self._reference_moments(target)
            return bures_w2(m, S, m_ref, S_ref)
        raise ValueError(f"not a distribution metric: {metric!r}")

    def _floor(self, metric: str, target: _Target, snapshot: Snapshot) -> float:
        """Mean of ``metric`` between the scoring draw and :data:`FLOOR_DRAWS` independent
        reference draws: the expected score of exact samples, conditional on the scoring draw.
        One pair alone is too noisy to compare with (in 1-D the ratio of two independent W2s
        exceeds 2 about 4 % of the time)."""
        values = []
        for k in range(FLOOR_DRAWS):
            floor_x, tag = self._floor_draw(target, snapshot, k)
            role = self._role(target, "floor" if k == 0 else f"floor{k}")
            values.append(
                self._cached(
                    target.t, f"{role}:{metric}:{tag}", partial(self._distance, metric, floor_x, target)
                )
            )
        return float(np.mean(values))

    def _baseline(self, metric: str, target: _Target) -> float:
        """``metric`` between the cached ρ0 draw and ``target`` (denominator of ``rel_error``)."""
        role = self._role(target, "baseline")
        return self._cached(
            target.t, f"{role}:{metric}", lambda: self._distance(metric, self._initial_draw(), target)
        )

    # -- energy ------------------------------------------------------------------------------

    def _energy_estimate(self, x: Tensor, log_rho: Tensor | None) -> EnergyEstimate:
        energy = self.problem.energy
        return energy.on_particles(x, log_rho) if log_rho is not None else energy.on_samples(x)

    def _energy_points(
        self, snapshot: Snapshot, x_eval: Tensor, log_rho_eval: Tensor | None
    ) -> tuple[Tensor, Tensor | None] | None:
        """The points the energy is estimated on (None when no sound estimate exists).

        Without weights and with fewer particles than ``n_eval``, all particles are used rather
        than a resample with repeats (repeats would put k-NN distances at zero); the reference is
        then estimated at that same sample size, so the k-NN bias still cancels.
        """
        if isinstance(snapshot, ParticleSnapshot) and snapshot.weights is None:
            if snapshot.x.shape[0] < self.n_eval:
                x = _cpu(snapshot.x)
                return x, None if snapshot.log_rho is None else _cpu(snapshot.log_rho)
        use_particles = log_rho_eval is not None and self.problem.reference.has_density
        if (
            isinstance(snapshot, ParticleSnapshot)
            and snapshot.weights is not None
            and not use_particles
            and self.problem.energy.internal is not None
            and torch.unique(x_eval, dim=0).shape[0] < x_eval.shape[0]
        ):
            logger.warning(
                "%s t=%s: weighted particles without log_rho resample with repeats; no k-NN energy",
                self.problem.name,
                snapshot.t,
            )
            return None
        return x_eval, log_rho_eval

    def _reference_energy(self, target: _Target, n: int, on_particles: bool) -> float:
        estimator = "on_particles" if on_particles else "on_samples"

        def compute() -> float:
            x = self._draw(target, "reference")[:n]
            log_rho = _cpu(target.reference.log_density(target.t, x)) if on_particles else None
            return self._energy_estimate(x, log_rho).value

        return self._cached(target.t, f"{self._role(target, 'energy')}:{estimator}:{n}", compute)

    def _initial_energy(self, n: int, on_particles: bool) -> float | None:
        if on_particles and not self.problem.initial.has_density:
            return None
        estimator = "on_particles" if on_particles else "on_samples"

        def compute() -> float:
            x = self._initial_draw()[:n]
            log_rho = _cpu(self.problem.initial.log_density(x)) if on_particles else None
            return self._energy_estimate(x, log_rho).value

        return self._cached(0.0, f"initial:energy:{estimator}:{n}", compute)

    # -- scoring -----------------------------------------------------------------------------

    def _pde_target(self, t: float) -> _Target:
        ref = self.problem.reference
        return _Target(
            "pde", ref, t, None if ref.radial_centre is None else _cpu(torch.as_tensor(ref.radial_centre))
        )

    def _jko_target(self, tau: float, t: float) -> _Target | None:
        jko = self.problem.jko
        if jko is None or self.primary not in _DISTRIBUTION_PRIMARIES:
            return None
        try:
            jko_step_count(t, tau)
        except ValueError as err:
            logger.warning("%s: no jko_%s at t=%s: %s", self.problem.name, self.primary, t, err)
            return None
        ref = jko.for_step(tau)
        centre = ref.radial_centre if ref.radial_centre is not None else self.problem.reference.radial_centre
        if self.primary == "radial_w2" and centre is None:
            return None
        return _Target(f"jko:{tau!r}", ref, t, None if centre is None else _cpu(torch.as_tensor(centre)))

    def score(self, trajectory: Trajectory) -> list[MetricRow]:
        """All metric rows of ``trajectory`` (validated against the problem's times and dimension):
        per snapshot, per logged step, and the per-case rows of :meth:`_case_rows` (the ranking
        score ``trajectory_error`` and the integrity flags)."""
        problem = self.problem
        trajectory.validate(problem.times, problem.dim)
        rows: list[MetricRow] = []
        for step, (t, snapshot) in enumerate(zip(problem.times, trajectory.snapshots, strict=True)):
            rows.extend(self._score_snapshot(step, t, snapshot, trajectory.jko_tau))
        rows.extend(self._score_steps(trajectory.steps))
        rows = self._finite(rows)
        return rows + self._case_rows(rows)

    def _case_rows(self, rows: Sequence[MetricRow]) -> list[MetricRow]:
        r"""Per-case rows (``t = NaN``, ``step = −1``) computed from the snapshot rows:

        * ``trajectory_error`` — the ranking score: the mean of ``rel_error`` over the snapshot
          times :math:`t_1<\dots<t_K` with :math:`t>0`, each snapshot weighted equally,
          :math:`\frac1K\sum_k \mathrm{rel\_error}(t_k)`; for stationary-only references
          (``end_state_only`` = 1) the final ``rel_error`` alone;
        * ``floor_ratio`` — median over scored snapshots of primary / primary floor, and
          ``flag_suspect`` = 1 when it is below :data:`SUSPECT_FLOOR_RATIO` (an output that
          beats independent exact samples by that much has seen the scoring draw);
        * ``mass_violation`` — the largest ``|mass − 1| + negative_mass`` over the snapshots of a
          grid output, and ``flag_mass`` = 1 when it exceeds :data:`MASS_TOLERANCE`.
        """
        out: list[MetricRow] = []

        def add(metric: str, value: float) -> None:
            out.append(MetricRow(math.nan, -1, metric, float(value)))

        rel = [r.value for r in rows if r.metric == "rel_error" and r.t > 0]
        if rel:
            add("trajectory_error", float(np.mean(rel)))
        add("end_state_only", float(self.stationary))
        primary = {r.step: r.value for r in rows if r.metric == self.primary}
        floor = {r.step: r.value for r in rows if r.metric == f"{self.primary}_floor"}
        ratios = [primary[k] / floor[k] for k in primary if k in floor and floor[k] > 0]
        if ratios:
            ratio = float(np.median(ratios))
            add("floor_ratio", ratio)
            add("flag_suspect", float(ratio < SUSPECT_FLOOR_RATIO))
        penalties = [r.value for r in rows if r.metric == "mass_penalty"]
        if penalties:
            violation = max(penalties)
            add("mass_violation", violation)
            add("flag_mass", float(violation > MASS_TOLERANCE))
        return out

    def _finite(self, rows: list[MetricRow]) -> list[MetricRow]:
        """Rows with a value, +inf included where a metric can be infinite (:data:`MAY_BE_INFINITE`:
        KL of an output with mass outside the reference's support); other non-finite values are
        dropped with one warning per trajectory naming them."""
        kept, dropped = [], []
        for row in rows:
            if math.isfinite(row.value) or (row.value == math.inf and row.metric in MAY_BE_INFINITE):
                kept.append(row)
            else:
                dropped.append(f"{row.metric}={row.value} at t={row.t}")
        if dropped:
            logger.warning("%s: dropped non-finite %s", self.problem.name, "; ".join(dropped))
        return kept

    def _score_snapshot(
        self, step: int, t: float, snapshot: Snapshot, jko_tau: float | None
    ) -> list[MetricRow]:
        rows: list[MetricRow] = []

        def add(metric: str, value: float) -> None:
            rows.append(MetricRow(t, step, metric, float(value)))

        problem, reference = self.problem, self.problem.reference
        x, log_rho = _resample_with_log_rho(snapshot, self.n_eval, self._generator(t, "resample"))

        mass_penalty = 0.0
        if isinstance(snapshot, GridSnapshot):
            mass_error, negative = abs(snapshot.mass - 1.0), snapshot.negative_mass
            mass_penalty = mass_error + negative
            add("mass_error", mass_error)
            add("negative_mass", negative)
            add("mass_penalty", mass_penalty)
            add("min_density", float(snapshot.rho.min()))
            if reference.has_density and not self.stationary:
                add("l1_error", grid_l1_error(snapshot, reference))

        final = step == len(problem.times) - 1
        scored = final or not self.stationary
        t_ref = problem.final_time if self.stationary else t
        target = self._pde_target(t_ref)

        if scored:
            values: dict[str, float] = {}
            metrics = ["w2", "sliced_w2", "bures_w2"] + (["radial_w2"] if target.centre is not None else [])
            for metric in metrics:
                values[metric] = self._distance(metric, x, target)
                add(metric, values[metric])
                add(f"{metric}_floor", self._floor(metric, target, snapshot))
            m, S = _moments(x)
            m_ref, S_ref = reference.mean(t_ref), reference.cov(t_ref)
            if m_ref is not None:
                add(
                    "mean_error",
                    float(torch.linalg.vector_norm(m - _cpu(torch.as_tensor(m_ref)).reshape(-1))),
                )
            if S_ref is not None:
                S_ref = _cpu(torch.as_tensor(S_ref)).reshape(S.shape)
                add("cov_error", float(torch.linalg.matrix_norm(S - S_ref) / torch.linalg.matrix_norm(S_ref)))
            if reference.has_density:
                log_ref = _cpu(reference.log_density(t_ref, x))
                outside = torch.isneginf(log_ref)
                add("mass_outside_support", float(outside.double().mean()))
                if log_rho is not None:
                    # mass where the reference has none makes KL infinite: a value, kept as +inf
                    kl = math.inf if bool(outside.any()) else float((log_rho - log_ref).mean())
                    add("kl", kl)
            if t > 0 and self.primary in _DISTRIBUTION_PRIMARIES:
                if self.primary in values:
                    relative = _ratio(values[self.primary], self._baseline(self.primary, target))
                    add("rel_error", relative + mass_penalty)
                else:
                    logger.warning("%s: primary %s not applicable", problem.name, self.primary)
            if jko_tau is not None and (jko_target := self._jko_target(jko_tau, t)) is not None:
                value = self._distance(self.primary, x, jko_target)
                add(f"jko_{self.primary}", value)
                if t > 0:
                    add(
                        "jko_rel_error",
                        _ratio(value, self._baseline(self.primary, jko_target)) + mass_penalty,
                    )

        rows.extend(self._energy_rows(step, t, snapshot, x, log_rho, target, scored, mass_penalty))
        return rows

    def _energy_rows(
        self,
        step: int,
        t: float,
        snapshot: Snapshot,
        x: Tensor,
        log_rho: Tensor | None,
        target: _Target,
        scored: bool,
        mass_penalty: float = 0.0,
    ) -> list[MetricRow]:
        r"""Energy rows at one snapshot. For stationary references the gap to
        :math:`\mathcal E(\rho_\infty)` (and its ``rel_error``) exists at the final snapshot only:
        at earlier times the flow is not at :math:`\rho_\infty`, and a small gap there would
        reward converging too fast."""
        rows: list[MetricRow] = []

        def add(metric: str, value: float) -> None:
            rows.append(MetricRow(t, step, metric, float(value)))

        points = self._energy_points(snapshot, x, log_rho)
        if points is None:
            return rows
        ex, elog = points
        on_particles = elog is not None and target.reference.has_density
        try:
            estimate = self._energy_estimate(ex, elog if on_particles else None)
            energy_ref = self._reference_energy(target, ex.shape[0], on_particles)
        except ValueError as err:  # e.g. too few points for the k-NN estimators
            logger.warning("%s t=%s: no energy estimate: %s", self.problem.name, t, err)
            return rows
        add("energy", estimate.value)
        add("energy_ref", energy_ref)
        if self.stationary:
            if scored:
                gap = estimate.value - energy_ref
                add("energy_gap", gap)
                if t > 0 and self.primary == "energy_gap":
                    initial = self._initial_energy(ex.shape[0], on_particles)
                    if initial is None:
                        logger.warning("%s: rho_0 has no density; no energy_gap rel_error", self.problem.name)
                    else:
                        add("rel_error", _ratio(gap, initial - energy_ref) + mass_penalty)
        else:
            add("energy_error", estimate.value - energy_ref)
        if scored and (exact := target.reference.energy(target.t)) is not None:
            add("energy_exact", exact)
        return rows

    def _score_steps(self, steps: Sequence[StepRecord]) -> list[MetricRow]:
        logged = [(i, s) for i, s in enumerate(steps) if math.isfinite(s.energy)]
        rows = [MetricRow(float(s.t), i, "step_energy", float(s.energy)) for i, s in logged]
        if len(logged) >= 2:
            rises = 0
            for (_, prev), (_, cur) in itertools.pairwise(logged):
                se = math.hypot(_finite_or_zero(prev.energy_stderr), _finite_or_zero(cur.energy_stderr))
                rises += cur.energy - prev.energy > 2.0 * se
            rows.append(MetricRow(math.nan, -1, "dissipation", rises / (len(logged) - 1)))
        return rows


def _finite_or_zero(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else math.nan
