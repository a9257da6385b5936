r"""Distances between measures as pure functions (POT is the Wasserstein engine).

Every function takes points as (n, d) tensors or arrays, computes in float64 on the CPU and returns
a Python float; distances are :math:`W_2`, never :math:`W_2^2`.

References: Peyré & Cuturi, *Computational Optimal Transport* (2019), §2–3 (exact OT) and
Remark 2.31 (Gaussian :math:`W_2`); Bonneel et al., *Sliced and Radon Wasserstein barycenters*
(JMIV 2015) eq. (9) (sliced :math:`W_2`); Flamary et al., *POT: Python Optimal Transport*
(JMLR 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import ot
import torch
from torch import Tensor

from wgfbench.context import make_generator
from wgfbench.errors import InvalidInput, WgfbenchError
from wgfbench.grid import Grid
from wgfbench.references import Reference
from wgfbench.seeding import seed_from
from wgfbench.trajectory import GridSnapshot, Snapshot

DTYPE = torch.float64

#: Network-simplex iteration cap of :func:`w2`. POT's default (100 000) stops early with only a
#: warning (6 % high at n = 5 000, d = 30, measured); 10⁹ is never reached at n ≤ 10⁴.
DEFAULT_NUM_ITER_MAX = 1_000_000_000
#: Number of fixed directions of ``sliced_w2``: sliced W2 is a primary only in 2-D, where 64
#: directions (2.8° apart) agree with 256 to 2 % at 10⁵ points and halve the sorting cost.
N_PROJECTIONS = 64

_EMD_OPTIMAL = 1  # result_code of POT's network simplex: 0 infeasible, 1 optimal, 2 unbounded, 3 max iter


class OptimalTransportError(WgfbenchError, RuntimeError):
    """The exact OT solver did not reach an optimal plan (iteration cap, infeasible or unbounded)."""


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
    :data:`MAX_DENSE_BYTES` (4 GiB, n = m ≈ 16 000) it raises :class:`~wgfbench.errors.InvalidInput`
    (a ``ValueError``) saying to subsample or use a near-linear metric. The scorer calls it on
    ``n_eval`` points of each side (at most 4 000 in the built-in tiers, 0.24 GiB), far below.

    ``num_iter_max`` caps the simplex iterations (POT's default of 10⁵ stops early at a few
    thousand points with only a warning). The solver's ``result_code`` is checked: anything but an
    optimal plan raises :class:`OptimalTransportError`, never a silent non-converged value.
    Returns a Python float (W2, not squared).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x and y live in different dimensions: {xs.shape[1]} != {ys.shape[1]}")
    if xs.shape[1] == 1 and a is None and b is None:  # exact in 1-D by quantiles, no n × m matrix
        return math.sqrt(max(float(quantile_w2_sq(xs[:, 0], SortedSample.of(ys[:, 0]))[0]), 0.0))
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
        raise InvalidInput(
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

    (Bonneel et al. 2015, eq. (9)), each 1-D :math:`W_2^2` exact (quantile functions).

    ``x`` (n, d), ``y`` (m, d), ``projections`` (L, d) unit rows (see :func:`sliced_projections`),
    optional weights ``a`` (n,), ``b`` (m,). Float64 on the CPU. Returns :math:`SW_2` (not squared).
    With uniform weights the 1-D terms come from :func:`quantile_w2_sq` (cost O((n + m) L log n),
    10⁵ points in a fraction of a second); weighted inputs go through
    ``ot.sliced_wasserstein_distance(..., p=2, projections=...)`` (the tests check both agree).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    theta = _points(projections, "projections")
    if not xs.shape[1] == ys.shape[1] == theta.shape[1]:
        raise ValueError(f"dimension mismatch: x {xs.shape}, y {ys.shape}, projections {theta.shape}")
    if a is None and b is None:
        return sliced_w2_sorted(theta @ xs.T, SortedSample.of(theta @ ys.T))
    wa, wb = _histogram(a, xs.shape[0], "a"), _histogram(b, ys.shape[0], "b")
    value = ot.sliced_wasserstein_distance(xs, ys, wa, wb, p=2, projections=np.ascontiguousarray(theta.T))
    return float(value)


@dataclass(frozen=True)
class SortedSample:
    """Uniform empirical measures on the line, one per row of ``values`` (L, m), each row sorted
    ascending. Built once for a large reference draw (its projections on every direction, or
    its radii) and reused against every output."""

    values: np.ndarray

    @classmethod
    def of(cls, samples: np.ndarray) -> SortedSample:
        """From unsorted samples: (m,) or (L, m), each row one measure."""
        return cls(np.sort(np.atleast_2d(np.asarray(samples, dtype=np.float64)), axis=-1))

    @property
    def size(self) -> int:
        return self.values.shape[-1]

    @property
    def nbytes(self) -> int:
        return self.values.nbytes


_ROW_CHUNK = 8
"""Rows of :func:`quantile_w2_sq`'s general path processed at once (8 × 2·10⁵ float64 = 13 MB)."""


@lru_cache(maxsize=4)
def _quantile_pieces(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (i, j) and lengths of the pieces of [0, 1] on which the quantile functions of
    uniform n- and m-point measures are both constant: the breakpoints i/n and j/m, merged
    exactly as integers in units of 1/(n m)."""
    edges = np.union1d(np.arange(0, n * m + 1, m, dtype=np.int64), np.arange(0, n * m + 1, n, dtype=np.int64))
    left = edges[:-1]
    return left // m, left // n, np.diff(edges).astype(np.float64) / (n * m)


def quantile_w2_sq(x: np.ndarray, y: SortedSample) -> np.ndarray:
    r"""Exact 1-D :math:`W_2^2` between uniform empirical measures, row by row:

    .. math:: W_2^2 = \int_0^1 \big|F_x^{-1}(q) - F_y^{-1}(q)\big|^2\,dq
              = \sum_k \ell_k\,\big(x_{(i_k)} - y_{(j_k)}\big)^2

    (Peyré & Cuturi 2019, Remark 2.30): a sum over the at most n + m − 1 pieces of [0, 1] on
    which both quantile functions are constant, of lengths :math:`\ell_k`. When one size divides
    the other (a 10³- or 10⁵-point output against a 10⁵-point reference) the pieces are blocks
    and no index arrays are built. Differences are taken before squaring, so identical inputs
    give exactly 0.

    ``x``: (n,) or (L, n) samples (sorted here), ``y``: a :class:`SortedSample` with L rows.
    Float64. Returns (L,) squared distances. Cost O((n + m) L) after sorting; no n × m matrix.
    """
    xs = np.sort(np.atleast_2d(np.asarray(x, dtype=np.float64)), axis=-1)
    ys = y.values
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(f"x has {xs.shape[0]} rows, y {ys.shape[0]}")
    n, m = xs.shape[-1], ys.shape[-1]
    if m % n == 0:
        diff = np.subtract(ys.reshape(ys.shape[0], n, m // n), xs[:, :, None])
    elif n % m == 0:
        diff = np.subtract(xs.reshape(xs.shape[0], m, n // m), ys[:, :, None])
    else:
        i, j, widths = _quantile_pieces(n, m)
        out = np.empty(xs.shape[0])
        for start in range(0, xs.shape[0], _ROW_CHUNK):  # bounds the (rows, n + m) temporaries
            rows = slice(start, start + _ROW_CHUNK)
            diff = np.subtract(xs[rows][:, i], ys[rows][:, j])
            out[rows] = np.square(diff, out=diff) @ widths
        return out
    return np.square(diff, out=diff).mean(axis=(1, 2))


def sliced_w2_sorted(x_proj: np.ndarray, y: SortedSample) -> float:
    r""":math:`SW_2` from the output's projections ``x_proj`` (L, n) (:math:`\theta\,x^\top`) and
    a reference's sorted projections ``y`` (:class:`SortedSample` with L rows), uniform weights."""
    return math.sqrt(max(float(quantile_w2_sq(x_proj, y).mean()), 0.0))


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
    (``docs/problems.md``, "Scoring pitfalls"). ``x`` (n, d), ``y`` (m, d), ``centre`` (d,),
    optional weights ``a`` (n,), ``b`` (m,); float64 on the CPU. Returns :math:`W_2` (not squared).
    """
    xs, ys = _points(x, "x"), _points(y, "y")
    c = _as_numpy(centre, "centre").reshape(-1)
    if not xs.shape[1] == ys.shape[1] == c.shape[0]:
        raise ValueError(f"dimension mismatch: x {xs.shape}, y {ys.shape}, centre {c.shape}")
    rx, ry = np.linalg.norm(xs - c, axis=1), np.linalg.norm(ys - c, axis=1)
    if a is None and b is None:
        return math.sqrt(max(float(quantile_w2_sq(rx, SortedSample.of(ry))[0]), 0.0))
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

    ``generator`` is a CPU ``torch.Generator``. (The scorer itself scores every particle up to the
    tier's ``n_output``, see :meth:`wgfbench.metrics.Scorer.output_points`; this resampling serves
    the ``final.npz`` artefacts and plots.)
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
    """Mean (d,) and unbiased covariance (d, d) of points (n, d); a single point has covariance 0."""
    d = x.shape[1]
    if x.shape[0] < 2:
        return x.mean(dim=0), torch.zeros(d, d, dtype=x.dtype)
    return x.mean(dim=0), torch.cov(x.T).reshape(d, d)
