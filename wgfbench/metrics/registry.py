r"""The metric registry: one entry per snapshot metric, iterated by the scorer.

A :class:`Metric` is everything the benchmark knows about a score: its name, unit, description,
direction, when it applies (:attr:`Metric.applies`, per problem) and how to compute it
(:attr:`Metric.compute`, per snapshot, from a :class:`SnapshotContext`). Distances between laws set
``floor=True``: the scorer then also reports ``<name>_floor``, the same metric for independent
exact samples of the output's size (see ``docs/scoring.md``), and the metric may be a problem's
primary. Adding a metric is one entry; a plugin adds its own with the
``wgfbench_register_metrics`` hook::

    @wgfbench.hookimpl
    def wgfbench_register_metrics(registry):
        registry.add(Metric("median_radius", "length", "median |x| of the output",
                            compute=lambda ctx: float(ctx.points.norm(dim=1).median())))

Per-case rows (``trajectory_error``, flags, costs) and the energy rows are derived by the scorer
and runner from these; :data:`wgfbench.metrics.METRICS` describes every name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from wgfbench.metrics.distances import (
    _cpu,
    _moments,
    bures_w2,
    grid_l1_error,
    quantile_w2_sq,
    w2,
)
from wgfbench.metrics.divergences import fitted_gaussian_symmetric_kl, particle_symmetric_kl
from wgfbench.trajectory import GridSnapshot

if TYPE_CHECKING:
    from wgfbench.metrics.distances import SortedSample
    from wgfbench.problem import Problem
    from wgfbench.references import Reference
    from wgfbench.trajectory import Snapshot


@dataclass
class SnapshotContext:
    r"""What a metric sees of one scored snapshot.

    * ``points`` (n, d), CPU float64: the output as scored by near-linear metrics — every particle
      of an unweighted particle output up to the tier's ``n_output`` (a random subset beyond it),
      ``n_output`` multinomial draws for weighted particles, ``n_output`` draws of a grid's
      piecewise-constant density; ``log_rho`` (n,) its log-density there, when known.
    * ``snapshot``: the solver's snapshot itself (``None`` for floor draws), ``t`` its time;
      ``reference`` the law scored against at time ``t_ref`` (the final time for stationary-only
      references), ``centre`` its radial centre (or ``None``).
    * :meth:`reference_sample` (``n_reference`` exact draws), :meth:`reference_sorted` (their
      sorted projections), :meth:`eval_points` / :meth:`eval_reference` (``n_eval`` of each, for
      exact OT), :meth:`reference_moments`: supplied by the scorer, cached across solvers.
    """

    problem: Problem
    t: float
    t_ref: float
    reference: Reference
    centre: Tensor | None
    points: Tensor
    log_rho: Tensor | None
    snapshot: Snapshot | None
    projections: Tensor
    _provider: Any = field(repr=False)
    _log_reference: Tensor | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @property
    def is_grid(self) -> bool:
        return isinstance(self.snapshot, GridSnapshot)

    def reference_sample(self) -> Tensor:
        """``n_reference`` exact samples of the reference at ``t_ref`` (n, d), CPU float64."""
        return self._provider.reference_sample()

    def reference_sorted(self, what: str) -> SortedSample:
        """Sorted 1-D data of the reference sample: ``"projections"`` (one row per direction of
        ``projections``), ``"radii"`` (|y − centre|) or ``"line"`` (1-D problems)."""
        return self._provider.reference_sorted(what)

    def eval_points(self) -> Tensor:
        """A random ``n_eval`` subset of :attr:`points` (all of them when fewer)."""
        return self._provider.eval_points()

    def eval_reference(self) -> Tensor:
        """The first ``n_eval`` of :meth:`reference_sample`."""
        return self._provider.eval_reference()

    def reference_moments(self) -> tuple[Tensor, Tensor]:
        """Mean (d,) and covariance (d, d) of the reference: exact where known, else from a large
        cached draw."""
        return self._provider.reference_moments()


@dataclass(frozen=True)
class Metric:
    """One metric of the registry (see the module docstring).

    ``compute(ctx)`` returns the value at one snapshot, or ``None`` where it does not apply there
    (e.g. a grid-only metric on particles); ``applies(problem)`` filters whole problems. Values
    may be ``+inf`` only if ``may_be_infinite``; other non-finite values are dropped with a warning.
    """

    name: str
    unit: str
    description: str
    compute: Callable[[SnapshotContext], float | None]
    lower_is_better: bool = True
    applies: Callable[[Problem], bool] = field(default=lambda problem: True)
    floor: bool = False
    may_be_infinite: bool = False


class MetricRegistry:
    """The metrics the scorer iterates, in registration order: the built-ins first, then those
    plugins add through ``wgfbench_register_metrics``."""

    def __init__(self, metrics: tuple[Metric, ...] = ()) -> None:
        self.entries: dict[str, Metric] = {}
        self.current_plugin: Any = None
        self.origin: dict[str, Any] = {}
        for metric in metrics:
            self.add(metric)

    def add(self, metric: Metric) -> None:
        """Register ``metric``; a name taken by another metric (or a derived built-in row) is an error."""
        from wgfbench.errors import DuplicateNameError
        from wgfbench.metrics.catalogue import DERIVED

        if not isinstance(metric, Metric):
            raise TypeError(f"registry.add expects a wgfbench.metrics.Metric, got {metric!r}")
        if not metric.name or metric.name != metric.name.strip() or " " in metric.name:
            raise ValueError(f"metric name {metric.name!r}: use a non-empty name without spaces")
        taken = set(self.entries) | set(DERIVED)
        taken |= {f"{m.name}_floor" for m in self.entries.values() if m.floor}
        taken |= {f"jko_{m.name}" for m in self.entries.values() if m.floor}
        names = [metric.name] + ([f"{metric.name}_floor"] if metric.floor else [])
        for name in names:
            if name in taken:
                raise DuplicateNameError(f"metric {name!r} is already registered")
        self.entries[metric.name] = metric
        self.origin[metric.name] = self.current_plugin

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Metric:
        return self.entries[name]

    def __len__(self) -> int:
        return len(self.entries)

    def for_problem(self, problem: Problem) -> list[Metric]:
        return [m for m in self if m.applies(problem)]


# ----------------------------------------------------------------------------------------------
# Built-in snapshot metrics


def _sqrt(x: float) -> float:
    return math.sqrt(max(float(x), 0.0))


def _w2(ctx: SnapshotContext) -> float:
    if ctx.dim == 1:  # exact on all points: quantile functions, near-linear in n
        return _sqrt(quantile_w2_sq(ctx.points[:, 0].numpy(), ctx.reference_sorted("line"))[0])
    return w2(ctx.eval_points(), ctx.eval_reference())


def _sliced_w2(ctx: SnapshotContext) -> float:
    proj = (ctx.projections @ ctx.points.T).numpy()
    return _sqrt(quantile_w2_sq(proj, ctx.reference_sorted("projections")).mean())


def _radial_w2(ctx: SnapshotContext) -> float | None:
    if ctx.centre is None:
        return None
    radii = torch.linalg.vector_norm(ctx.points - ctx.centre, dim=1).numpy()
    return _sqrt(quantile_w2_sq(radii, ctx.reference_sorted("radii"))[0])


def _bures_w2(ctx: SnapshotContext) -> float:
    m, S = _moments(ctx.points)
    m_ref, S_ref = ctx.reference_moments()
    return bures_w2(m, S, m_ref, S_ref)


def _mean_error(ctx: SnapshotContext) -> float | None:
    m_ref = ctx.reference.mean(ctx.t_ref)
    if m_ref is None:
        return None
    return float(torch.linalg.vector_norm(ctx.points.mean(0) - _cpu(torch.as_tensor(m_ref)).reshape(-1)))


def _cov_error(ctx: SnapshotContext) -> float | None:
    S_ref = ctx.reference.cov(ctx.t_ref)
    if S_ref is None:
        return None
    _, S = _moments(ctx.points)
    S_ref = _cpu(torch.as_tensor(S_ref)).reshape(S.shape)
    return float(torch.linalg.matrix_norm(S - S_ref) / torch.linalg.matrix_norm(S_ref))


def _log_reference(ctx: SnapshotContext) -> Tensor:
    """log rho_ref at the scored points, computed once per snapshot (kl, symkl and
    mass_outside_support share it)."""
    if ctx._log_reference is None:
        ctx._log_reference = _cpu(ctx.reference.log_density(ctx.t_ref, ctx.points))
    return ctx._log_reference


def _mass_outside_support(ctx: SnapshotContext) -> float | None:
    if not ctx.reference.has_density:
        return None
    return float(torch.isneginf(_log_reference(ctx)).double().mean())


def _kl(ctx: SnapshotContext) -> float | None:
    if ctx.log_rho is None or not ctx.reference.has_density:
        return None
    log_ref = _log_reference(ctx)
    if bool(torch.isneginf(log_ref).any()):  # mass where the reference has none
        return math.inf
    return float((ctx.log_rho - log_ref).mean())


def _grid(ctx: SnapshotContext) -> GridSnapshot | None:
    return ctx.snapshot if isinstance(ctx.snapshot, GridSnapshot) else None


def _l1_error(ctx: SnapshotContext) -> float | None:
    grid = _grid(ctx)
    if grid is None or not ctx.reference.has_density or ctx.t_ref != ctx.t:
        return None
    return grid_l1_error(grid, ctx.reference)


def _symkl(ctx: SnapshotContext) -> float | None:
    """Mokrov et al.'s symmetric KL: with the output's log-density at its points, KL(p|q) by Monte
    Carlo plus KL(q|p) by importance weights on the same points; without it, on the Gaussian flows
    (the problems ranked by ``bures_w2``), the symmetric KL of the output's Gaussian fit (bias ≈
    (d + d(d+1)/2)/n; +inf for a collapsed output); otherwise not defined."""
    if not ctx.reference.has_density:
        return None
    if ctx.log_rho is not None:
        return particle_symmetric_kl(ctx.points, ctx.log_rho, partial(_log_q, ctx))
    if ctx.problem.primary_metric != "bures_w2":  # the Gaussian fit is the law only on Gaussian flows
        return None
    if ctx.points.shape[0] <= ctx.dim:  # no regular covariance from so few points
        return math.inf
    m_ref, S_ref = ctx.reference_moments()
    try:
        return fitted_gaussian_symmetric_kl(ctx.points, m_ref, S_ref)
    except ValueError:  # a collapsed output (singular covariance) against a regular Gaussian
        return math.inf


def _log_q(ctx: SnapshotContext, x: Tensor) -> Tensor:
    """log rho_ref at ``x``: the memoized values when ``x`` are the scored points themselves."""
    if x is ctx.points or (x.shape == ctx.points.shape and torch.equal(x, ctx.points)):
        return _log_reference(ctx)
    return _cpu(ctx.reference.log_density(ctx.t_ref, x))


def _is_radial(problem: Problem) -> bool:
    return problem.reference.radial_centre is not None


BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric(
        "w2",
        "W2",
        "exact W2 (not squared): in 1-D between all scored output points and the n_reference "
        "reference draw (quantile functions); in d ≥ 2 by POT's network simplex between n_eval of "
        "each (exact OT costs O(n²) memory)",
        _w2,
        floor=True,
    ),
    Metric(
        "sliced_w2",
        "W2",
        "sliced W2 (not squared): root mean over fixed directions of the exact 1-D W2² between the "
        "projected output points and the projected n_reference reference draw",
        _sliced_w2,
        applies=lambda problem: problem.dim >= 2,  # in 1-D it is w2
        floor=True,
    ),
    Metric(
        "bures_w2",
        "W2",
        "Bures–Wasserstein W2 (not squared) between the Gaussian moment fit of the output points "
        "and the reference mean/covariance (exact, or from a large cached reference draw)",
        _bures_w2,
        floor=True,
    ),
    Metric(
        "radial_w2",
        "W2",
        "exact 1-D W2 (not squared) between the laws of |X − centre| of the output points and of "
        "the n_reference reference draw (radial references only)",
        _radial_w2,
        applies=_is_radial,
        floor=True,
    ),
    Metric(
        "mean_error", "length", "|m − m_ref|, Euclidean norm of the error of the output mean", _mean_error
    ),
    Metric(
        "cov_error",
        "1",
        "relative Frobenius error of the output covariance, |S − S_ref|_F / |S_ref|_F",
        _cov_error,
    ),
    Metric(
        "kl",
        "nats",
        "KL(output | reference) = E_out[log rho_out − log rho_ref] at the scored output points "
        "(outputs carrying log_rho, references with a density); +inf, stored as a value, when the "
        "output puts mass where the reference has none (see mass_outside_support)",
        _kl,
        may_be_infinite=True,
    ),
    Metric(
        "symkl",
        "nats",
        "symmetric KL, KL(output | reference) + KL(reference | output) (Mokrov et al. 2021): "
        "outputs with log_rho by Monte Carlo on their points plus importance weights for the "
        "reverse term; outputs without, on the Gaussian flows (bures_w2 problems), through their "
        "Gaussian moment fit; "
        "+inf when the output puts mass where the reference has none",
        _symkl,
        may_be_infinite=True,
    ),
    Metric(
        "mass_outside_support",
        "1",
        "share of the scored output points where the reference density is 0 (log rho_ref = −inf): "
        "mass outside the reference's support (references with a density)",
        _mass_outside_support,
    ),
    Metric(
        "l1_error",
        "1",
        "grid outputs, time-resolved references with a density: relative L1 error "
        "sum_K |K| |rho_K − rho_ref(x_K)| / sum_K |K| rho_ref(x_K), reference at cell centres",
        _l1_error,
    ),
)
"""The built-in snapshot metrics, in the order the scorer emits them."""


def builtin_registry() -> MetricRegistry:
    """A registry holding the built-in metrics only (the host adds plugins' metrics to its own)."""
    return MetricRegistry(BUILTIN_METRICS)
