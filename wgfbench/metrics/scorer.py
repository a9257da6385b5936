r"""The scorer: every metric of the registry, with noise floors, ``rel_error`` and the per-case rows.

Resolution (``docs/scoring.md``). A snapshot is scored on the solver's own points — every particle
up to the tier's ``n_output`` (10⁵ at the quick tier), no resampling, so deterministic and
quasi-uniform outputs are scored as they are — against a reference draw of ``n_reference`` points
(10⁵ at quick): W2 to a large exact sample needs no i.i.d. assumption on the output. The primary
metrics are near-linear in n (exact 1-D W2 by quantile functions, sliced W2 on fixed directions,
radial W2, Bures W2); exact W2 in d ≥ 2 stays a secondary at ``n_eval`` points.

Seeds. The reference draw a solver is scored against is seeded by a hash of (base seed, problem,
repetition, t, the run's secret scoring salt) and never the solver
(:func:`wgfbench.seeding.reference_seed`), so every solver of a run meets the same draw and none can
regenerate it. Floors and the :math:`\rho_0` distance that normalises ``rel_error`` are
expectations over *public* draws (seeded without salt), the same in every run, and cached on disk
(:class:`~wgfbench.metrics.cache.FloorCache`).

Integrity (what a trivial or dishonest output cannot win): the ranking score ``trajectory_error``
averages ``rel_error`` over every snapshot t > 0, so returning :math:`\rho_\infty` early costs;
stationary-only references are scored at the final snapshot only (``end_state_only``); grid outputs
pay for lost, invented or negative mass in ``rel_error`` (``mass_penalty``, ``flag_mass``); a
primary score far below what the exact law itself scores against the reference draw is flagged
(``flag_suspect``).

Distances are reported as :math:`W_2` (never :math:`W_2^2`); :data:`wgfbench.metrics.METRICS`
states each unit.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wgfbench.context import Tier, make_generator
from wgfbench.energy import EnergyEstimate
from wgfbench.metrics.cache import FloorCache, ScoreCache
from wgfbench.metrics.catalogue import (
    FLOOR_DRAWS,
    MASS_TOLERANCE,
    MAX_FLOOR_GRID_CELLS,
    N_MOMENT_DRAW,
    SUSPECT_FLOOR_RATIO,
    MetricRow,
)
from wgfbench.metrics.distances import (
    N_PROJECTIONS,
    SortedSample,
    _cpu,
    _moments,
    reference_on_grid,
    sliced_projections,
)
from wgfbench.metrics.registry import Metric, MetricRegistry, SnapshotContext, builtin_registry
from wgfbench.problem import Problem
from wgfbench.references import Reference, jko_step_count
from wgfbench.seeding import reference_seed, seed_from
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Snapshot, StepRecord, Trajectory

logger = logging.getLogger(__name__)

SCORING_VERSION = 2
"""Version of the scoring scheme, recorded in every run's manifest: 1 scored ``n_eval`` resampled
points against ``n_eval`` reference points with floors conditional on the scoring draw; 2 scores
the output's own points against an ``n_reference`` draw with public, disk-cached floors. The
leaderboard never ranks runs of different versions together."""


@dataclass(frozen=True)
class _Target:
    """A reference law at one time: the PDE solution, or a JKO iterate for a fixed step."""

    label: str  # "pde" or "jko:<tau>", part of cache keys and seeds
    reference: Reference
    t: float
    centre: Tensor | None


class _Draws:
    """The reference side of one :class:`SnapshotContext`: the scoring draw (salted) or, for
    floors and ρ0 distances, public draw number ``k``. Everything is cached in the run's
    :class:`ScoreCache`, so the sorted projections of a 10⁵-point draw are built once per
    (problem, t, repetition) and shared by every solver."""

    def __init__(self, scorer: Scorer, target: _Target, role: str, points: Tensor, public: bool):
        self.scorer, self.target, self.role, self.public = scorer, target, role, public
        self.points = points

    def _key(self, what: str, n: int) -> Any:
        sc = self.scorer
        salt = "" if self.public else sc.salt
        seed = 0 if self.public else sc.base_seed
        rep = 0 if self.public else sc.repetition
        return ScoreCache.key(sc.problem, seed, rep, self.target.t, n, f"{self.role}:{what}", salt)

    def _generator(self, role: str) -> torch.Generator:
        sc = self.scorer
        if self.public:
            return make_generator(seed_from("public-draw", sc.problem.name, repr(float(self.target.t)), role))
        return sc.generator(self.target.t, role)

    def reference_sample(self) -> Tensor:
        sc, n = self.scorer, self.scorer.n_reference

        def compute() -> Tensor:
            return _cpu(self.target.reference.sample(self.target.t, n, self._generator(self.role)))

        return sc.cache.get_or_compute(self._key("draw", n), compute)

    def reference_sorted(self, what: str) -> SortedSample:
        sc = self.scorer

        def compute() -> SortedSample:
            y = self.reference_sample()
            if what == "projections":
                return SortedSample.of((sc.projections @ y.T).numpy())
            if what == "radii":
                if self.target.centre is None:
                    raise ValueError(f"{sc.problem.name}: no radial centre")
                return SortedSample.of(torch.linalg.vector_norm(y - self.target.centre, dim=1).numpy())
            if what == "line":
                return SortedSample.of(y[:, 0].numpy())
            raise ValueError(f"unknown sorted reference data {what!r}")

        what_key = f"sorted:{what}:{sc.projections.shape[0]}" if what == "projections" else f"sorted:{what}"
        return sc.cache.get_or_compute(self._key(what_key, sc.n_reference), compute)

    def eval_points(self) -> Tensor:
        n = self.scorer.n_eval
        if self.points.shape[0] <= n:
            return self.points
        idx = torch.randperm(self.points.shape[0], generator=self._generator(f"{self.role}:eval"))[:n]
        return self.points[idx]

    def eval_reference(self) -> Tensor:
        return self.reference_sample()[: self.scorer.n_eval]

    def reference_moments(self) -> tuple[Tensor, Tensor]:
        return self.scorer.reference_moments(self.target, public=self.public)


class Scorer:
    """Scores trajectories of one problem, tier and repetition (see the module docstring).

    ``score(trajectory)`` returns :class:`MetricRow` s. ``metrics`` is the registry the scorer
    iterates (the host's, with plugins' metrics; the built-ins by default); ``cache`` the run's
    shared :class:`ScoreCache`; ``floors`` the on-disk :class:`FloorCache` (a private in-memory
    one by default). Metrics that do not apply are not emitted; a non-finite value is dropped
    with one warning per trajectory (``+inf`` kept where a metric may be infinite).
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
        metrics: MetricRegistry | None = None,
        floors: FloorCache | None = None,
    ):
        self.problem = problem
        self.tier = tier
        self.n_eval = int(tier.n_eval)
        self.n_reference = int(tier.n_reference)
        self.n_output = int(tier.n_output)
        self.base_seed = int(base_seed)
        self.repetition = int(repetition)
        self.salt = str(salt)
        self.cache = cache if cache is not None else ScoreCache()
        self.floors = floors if floors is not None else FloorCache(enabled=False)
        self.registry = metrics if metrics is not None else builtin_registry()
        self.metrics: list[Metric] = self.registry.for_problem(problem)
        self.n_moment_draw = int(n_moment_draw)
        if not 0 < self.n_eval <= self.n_output <= self.n_reference:
            raise ValueError(
                f"tier {tier.name}: need 0 < n_eval ≤ n_output ≤ n_reference, got {self.n_eval}, "
                f"{self.n_output}, {self.n_reference}"
            )
        self.projections = sliced_projections(problem.name, problem.dim, n_projections)
        self.stationary = problem.reference.kind == "stationary"
        self.primary = problem.primary_metric
        # a distance with a floor (the rest, e.g. energy_gap, is ranked through the energy rows)
        self._distribution_primary = self.primary in self.registry and self.registry[self.primary].floor

    # -- seeds, draws, cache -------------------------------------------------------------------

    def generator(self, t: float, role: str) -> torch.Generator:
        """The salted generator of a scoring draw (never seeded by the solver)."""
        return make_generator(
            reference_seed(self.base_seed, self.problem.name, self.repetition, t, role=role, salt=self.salt)
        )

    def _cached(self, t: float, what: str, compute: Callable[[], Any], n: int | None = None) -> Any:
        key = ScoreCache.key(
            self.problem, self.base_seed, self.repetition, t, self.n_eval if n is None else n, what, self.salt
        )
        return self.cache.get_or_compute(key, compute)

    def reference_moments(self, target: _Target, public: bool = False) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the reference at ``target``: exact where known, else those of a
        cached ``n_moment_draw``-point draw (salted for scoring, public for floors)."""
        mean, cov = target.reference.mean(target.t), target.reference.cov(target.t)
        d = self.problem.dim
        if mean is not None and cov is not None:
            return _cpu(torch.as_tensor(mean)).reshape(d), _cpu(torch.as_tensor(cov)).reshape(d, d)
        role = self._role(target, "moments")

        def compute() -> tuple[Tensor, Tensor]:
            gen = (
                make_generator(seed_from("public-draw", self.problem.name, repr(float(target.t)), role))
                if public
                else self.generator(target.t, role)
            )
            return _moments(_cpu(target.reference.sample(target.t, self.n_moment_draw, gen)))

        if public:
            key = ScoreCache.key(self.problem, 0, 0, target.t, self.n_moment_draw, f"public:{role}", "")
            return self.cache.get_or_compute(key, compute)
        return self._cached(target.t, role, compute, n=self.n_moment_draw)

    def _role(self, target: _Target, role: str) -> str:
        return role if target.label == "pde" else f"{target.label}:{role}"

    def _reference_draw(self, target: _Target) -> Tensor:
        """The scoring draw itself (``n_reference`` points, salted)."""
        return _Draws(
            self, target, self._role(target, "reference"), torch.empty(0), public=False
        ).reference_sample()

    def _initial_draw(self, n: int | None = None, public: bool = False) -> Tensor:
        n = self.n_eval if n is None else n
        if public:
            gen = make_generator(seed_from("public-draw", self.problem.name, "initial", n))
            return _cpu(self.problem.initial.sample(n, gen))

        def compute() -> Tensor:
            return _cpu(self.problem.initial.sample(n, self.generator(0.0, "initial")))

        return self._cached(0.0, "draw:initial", compute, n=n)

    # -- output points ---------------------------------------------------------------------------

    def output_points(self, snapshot: Snapshot, t: float) -> tuple[Tensor, Tensor | None]:
        r"""The points a snapshot is scored on (CPU float64) and their :math:`\log\rho`:

        * particles without weights: all of them when :math:`N \le` ``n_output``, in the solver's
          order (no resampling noise is added to a deterministic output); else a random subset
          of ``n_output``;
        * weighted particles: ``n_output`` multinomial draws, :math:`P(i) = w_i/\sum_j w_j`;
        * grids: ``n_output`` draws of the piecewise-constant density (a cell by its mass, then
          uniform in it), carrying :math:`\log\rho_K` of their cell.

        The random choices use the salted scoring generator."""
        gen = self.generator(t, "resample")
        if isinstance(snapshot, GridSnapshot):
            return snapshot.sample_with_log_rho(self.n_output, gen)
        x, log_rho = _cpu(snapshot.x), None if snapshot.log_rho is None else _cpu(snapshot.log_rho)
        if snapshot.weights is not None:
            w = _cpu(snapshot.weights)
            if (w < 0).any() or not float(w.sum()) > 0:
                raise ValueError("particle weights must be non-negative with a positive sum")
            idx = torch.multinomial(w / w.sum(), self.n_output, replacement=True, generator=gen)
        elif x.shape[0] > self.n_output:
            idx = torch.randperm(x.shape[0], generator=gen)[: self.n_output]
        else:
            return x, log_rho
        return x[idx], None if log_rho is None else log_rho[idx]

    def _context(
        self,
        target: _Target,
        t: float,
        points: Tensor,
        log_rho: Tensor | None,
        snapshot: Snapshot | None,
        draws: _Draws,
    ) -> SnapshotContext:
        return SnapshotContext(
            problem=self.problem,
            t=t,
            t_ref=target.t,
            reference=target.reference,
            centre=target.centre,
            points=points,
            log_rho=log_rho,
            snapshot=snapshot,
            projections=self.projections,
            _provider=draws,
        )

    def _compute(self, metric: Metric, ctx: SnapshotContext) -> float | None:
        """``metric.compute(ctx)``; an error in a metric other than the primary is logged and the
        metric skipped at this snapshot (a secondary or a plugin's metric never fails the case)."""
        if metric.name == self.primary:
            return metric.compute(ctx)
        try:
            return metric.compute(ctx)
        except Exception as err:
            logger.warning(
                "%s t=%s: metric %s failed: %s: %s",
                self.problem.name,
                ctx.t,
                metric.name,
                type(err).__name__,
                err,
            )
            return None

    # -- floors and the ρ0 distance (public draws, disk-cached) ---------------------------------

    def _public(self, target: _Target, k: int) -> _Draws:
        """Public reference draw ``k`` at ``target`` (``n_reference`` points, unsalted)."""
        return _Draws(self, target, self._role(target, f"public{k}"), torch.empty(0), public=True)

    def _exact_points(self, target: _Target, snapshot: Snapshot | None, n: int, k: int) -> Tensor:
        """``n`` exact points independent of public reference draw ``k``: the first ``n`` of
        public draw ``k + 1``; for grid outputs, ``n`` draws of the reference discretised on the
        output grid (the floor then includes the grid's own resolution)."""
        tag = _grid_tag(snapshot, target)
        if tag != "samples":

            def compute() -> Tensor | None:
                rho = reference_on_grid(target.reference, target.t, snapshot.grid)
                if not (torch.isfinite(rho).all() and float(rho.sum()) > 0):
                    return None
                gen = make_generator(
                    seed_from(
                        "public-draw", self.problem.name, repr(float(target.t)), target.label, tag, n, k
                    )
                )
                return GridSnapshot(target.t, snapshot.box, rho).sample(n, gen)

            x = self.cache.get_or_compute(
                ScoreCache.key(self.problem, 0, 0, target.t, n, f"{target.label}:grid{k}:{tag}", ""),
                compute,
            )
            if x is not None:
                return x
        return self._public(target, k + 1).reference_sample()[:n]

    def floor(self, metric: Metric, target: _Target, snapshot: Snapshot | None, n: int) -> float:
        r"""Expected ``metric`` of independent exact samples of size ``n`` (the output's) against
        the reference draw: the mean over :data:`FLOOR_DRAWS` pairs of public draws (exact
        points, reference draw), cached on disk by (t, target, n, n_reference, n_eval, metric,
        output kind). What exact samples of the output's size score: the noise floor."""
        tag = _grid_tag(snapshot, target)
        key = (
            f"floor|{metric.name}|t={float(target.t)!r}|{target.label}|{target.reference.kind}|n={n}"
            f"|m={self.n_reference}|eval={self.n_eval}|L={self.projections.shape[0]}"
            f"|moments={self.n_moment_draw}|{tag}|draws={FLOOR_DRAWS}"
        )

        def compute() -> float:
            values = []
            for k in range(FLOOR_DRAWS):
                x = self._exact_points(target, snapshot, n, k)
                draws = self._public(target, k)
                draws.points = x
                value = metric.compute(self._context(target, target.t, x, None, None, draws))
                if value is None:
                    return math.nan
                values.append(float(value))
            return float(np.mean(values))

        return self.floors.get_or_compute(self.problem, key, compute)

    def baseline(self, metric: Metric, target: _Target) -> float:
        r"""``metric`` between a public :math:`\rho_0` draw of ``n_reference`` points and public
        reference draw 0 at ``target``: the denominator of ``rel_error`` (cached on disk)."""
        key = (
            f"rho0|{metric.name}|t={float(target.t)!r}|{target.label}|{target.reference.kind}"
            f"|m={self.n_reference}|eval={self.n_eval}|L={self.projections.shape[0]}|moments={self.n_moment_draw}"
        )

        def compute() -> float:
            x = self._initial_draw(self.n_reference, public=True)
            draws = self._public(target, 0)
            draws.points = x
            value = metric.compute(self._context(target, target.t, x, None, None, draws))
            return math.nan if value is None else float(value)

        return self.floors.get_or_compute(self.problem, key, compute)

    # -- energy ------------------------------------------------------------------------------

    def _energy_estimate(self, x: Tensor, log_rho: Tensor | None) -> EnergyEstimate:
        energy = self.problem.energy
        return energy.on_particles(x, log_rho) if log_rho is not None else energy.on_samples(x)

    def _energy_points(
        self, snapshot: Snapshot, points: Tensor, log_rho: Tensor | None, t: float
    ) -> tuple[Tensor, Tensor | None] | None:
        """The points the energy is estimated on: a random ``n_eval`` subset of the scored
        points (all of them when fewer), with their log-density (None when no sound estimate
        exists: weighted particles without log_rho repeat points, which zeroes k-NN distances)."""
        if points.shape[0] > self.n_eval:
            idx = torch.randperm(points.shape[0], generator=self.generator(t, "energy"))[: self.n_eval]
            points, log_rho = points[idx], None if log_rho is None else log_rho[idx]
        use_particles = log_rho is not None and self.problem.reference.has_density
        if (
            isinstance(snapshot, ParticleSnapshot)
            and snapshot.weights is not None
            and not use_particles
            and self.problem.energy.internal is not None
            and torch.unique(points, dim=0).shape[0] < points.shape[0]
        ):
            logger.warning(
                "%s t=%s: weighted particles without log_rho resample with repeats; no k-NN energy",
                self.problem.name,
                snapshot.t,
            )
            return None
        return points, log_rho

    def _reference_energy(self, target: _Target, n: int, on_particles: bool) -> float:
        estimator = "on_particles" if on_particles else "on_samples"

        def compute() -> float:
            x = self._reference_draw(target)[:n]
            log_rho = _cpu(target.reference.log_density(target.t, x)) if on_particles else None
            return self._energy_estimate(x, log_rho).value

        return self._cached(target.t, f"{self._role(target, 'energy')}:{estimator}:{n}", compute)

    def _initial_energy(self, n: int, on_particles: bool) -> float | None:
        if on_particles and not self.problem.initial.has_density:
            return None
        estimator = "on_particles" if on_particles else "on_samples"

        def compute() -> float:
            x = self._initial_draw(n)
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
        if jko is None or not self._distribution_primary:
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
        * ``trajectory_floor`` — the same mean of ``<primary>_floor`` / ρ0 distance: what
          exact samples of the output's size score (the case's scoring noise);
        * ``floor_ratio`` — median over scored snapshots of primary / ``primary_floor_ref``, the
          primary of an exact ``n_reference``-point draw; ``flag_suspect`` = 1 below
          :data:`SUSPECT_FLOOR_RATIO` (the exact law itself scores about 0.7 of it; an output that
          copied the scoring draw scores 0);
        * ``mass_violation`` — the largest ``|mass − 1| + negative_mass`` over the snapshots of a
          grid output, and ``flag_mass`` = 1 when it exceeds :data:`MASS_TOLERANCE`.
        """
        out: list[MetricRow] = []

        def add(metric: str, value: float) -> None:
            out.append(MetricRow(math.nan, -1, metric, float(value)))

        rel = [r.value for r in rows if r.metric == "rel_error" and r.t > 0]
        if rel:
            add("trajectory_error", float(np.mean(rel)))
        noise = [r.value for r in rows if r.metric == "rel_error_floor" and r.t > 0]
        if noise:
            add("trajectory_floor", float(np.mean(noise)))
        add("end_state_only", float(self.stationary))
        primary = {r.step: r.value for r in rows if r.metric == self.primary}
        limit = {r.step: r.value for r in rows if r.metric == "primary_floor_ref"}
        ratios = [primary[k] / limit[k] for k in primary if k in limit and limit[k] > 0]
        if ratios:
            ratio = float(np.median(ratios))
            add("floor_ratio", ratio)
            add("flag_suspect", float(ratio < SUSPECT_FLOOR_RATIO))
        penalties = [r.value for r in rows if r.metric == "mass_penalty"]
        if penalties:
            violation = max(penalties)
            add("mass_violation", violation)
            add("flag_mass", float(violation > MASS_TOLERANCE))
        if any(r.metric == "energy_knn" for r in rows):
            add("energy_iid_assumed", 1.0)
        return out

    def _finite(self, rows: list[MetricRow]) -> list[MetricRow]:
        """Rows with a value, +inf included where a metric may be infinite (KL of an output with
        mass outside the reference's support); other non-finite values are dropped with one
        warning per trajectory naming them. Internal marker rows are removed."""
        infinite_ok = {m.name for m in self.metrics if m.may_be_infinite}
        kept, dropped = [], []
        for row in rows:
            if row.metric in _INTERNAL:
                kept.append(row)
            elif math.isfinite(row.value) or (row.value == math.inf and row.metric in infinite_ok):
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

        problem = self.problem
        points, log_rho = self.output_points(snapshot, t)

        mass_penalty = 0.0
        if isinstance(snapshot, GridSnapshot):
            mass_error, negative = abs(snapshot.mass - 1.0), snapshot.negative_mass
            mass_penalty = mass_error + negative
            add("mass_error", mass_error)
            add("negative_mass", negative)
            add("mass_penalty", mass_penalty)
            add("min_density", float(snapshot.rho.min()))

        final = step == len(problem.times) - 1
        scored = final or not self.stationary
        target = self._pde_target(problem.final_time if self.stationary else t)

        if scored:
            draws = _Draws(self, target, self._role(target, "reference"), points, public=False)
            ctx = self._context(target, t, points, log_rho, snapshot, draws)
            values: dict[str, float] = {}
            for metric in self.metrics:
                value = self._compute(metric, ctx)
                if value is None:
                    continue
                values[metric.name] = float(value)
                add(metric.name, value)
                if metric.floor:
                    add(f"{metric.name}_floor", self.floor(metric, target, snapshot, points.shape[0]))
            if t > 0 and self._distribution_primary:
                if self.primary in values:
                    metric = self.registry[self.primary]
                    baseline = self.baseline(metric, target)
                    add("rel_error", _ratio(values[self.primary], baseline) + mass_penalty)
                    add(
                        "rel_error_floor",
                        _ratio(self.floor(metric, target, snapshot, points.shape[0]), baseline),
                    )
                    if not _exact_moments(metric, target):
                        add("primary_floor_ref", self.floor(metric, target, None, self.n_reference))
                else:
                    logger.warning("%s: primary %s not applicable", problem.name, self.primary)
            if jko_tau is not None and (jko_target := self._jko_target(jko_tau, t)) is not None:
                metric = self.registry[self.primary]
                jko_draws = _Draws(
                    self, jko_target, self._role(jko_target, "reference"), points, public=False
                )
                value = metric.compute(self._context(jko_target, t, points, log_rho, snapshot, jko_draws))
                if value is not None:
                    add(f"jko_{self.primary}", value)
                    if t > 0:
                        add("jko_rel_error", _ratio(value, self.baseline(metric, jko_target)) + mass_penalty)

        rows.extend(self._energy_rows(step, t, snapshot, points, log_rho, target, scored, mass_penalty))
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

        points = self._energy_points(snapshot, x, log_rho, t)
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
        if (
            not on_particles
            and isinstance(snapshot, ParticleSnapshot)
            and self.problem.energy.internal is not None
        ):
            add("energy_knn", 1.0)
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
        rows += [
            MetricRow(float(s.t), i, "step_residual", float(s.residual))
            for i, s in enumerate(steps)
            if math.isfinite(s.residual)
        ]
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


_INTERNAL = frozenset({"rel_error_floor", "primary_floor_ref", "energy_knn"})
"""Rows the scorer emits for its own per-case bookkeeping (kept in results: the floor of
rel_error and of the primary at the reference size are useful diagnostics; energy_knn marks
a k-NN energy estimate)."""


def _grid_tag(snapshot: Snapshot | None, target: _Target) -> str:
    """How the floor's exact points are drawn for this output: "samples", or the output grid."""
    if isinstance(snapshot, GridSnapshot) and target.reference.has_density:
        shape = tuple(snapshot.rho.shape)
        if math.prod(shape) <= MAX_FLOOR_GRID_CELLS:
            return f"grid{shape}{snapshot.box.low}{snapshot.box.high}"
    return "samples"


def _exact_moments(metric: Metric, target: _Target) -> bool:
    """Bures W2 against exact moments has no reference draw to copy: no suspect ratio."""
    return (
        metric.name == "bures_w2"
        and target.reference.mean(target.t) is not None
        and (target.reference.cov(target.t) is not None)
    )
