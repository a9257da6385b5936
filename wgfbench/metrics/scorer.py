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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wgfbench.context import Tier, make_generator
from wgfbench.energy import EnergyEstimate
from wgfbench.metrics.cache import ScoreCache
from wgfbench.metrics.catalogue import (
    _DISTRIBUTION_PRIMARIES,
    FLOOR_DRAWS,
    MASS_TOLERANCE,
    MAX_FLOOR_GRID_CELLS,
    MAY_BE_INFINITE,
    N_MOMENT_DRAW,
    SUSPECT_FLOOR_RATIO,
    MetricRow,
)
from wgfbench.metrics.distances import (
    N_PROJECTIONS,
    _cpu,
    _moments,
    _resample_with_log_rho,
    bures_w2,
    grid_l1_error,
    radial_w2,
    reference_on_grid,
    sliced_projections,
    sliced_w2,
    w2,
)
from wgfbench.problem import Problem
from wgfbench.references import Reference, jko_step_count
from wgfbench.seeding import reference_seed
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Snapshot, StepRecord, Trajectory

logger = logging.getLogger(__name__)


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
