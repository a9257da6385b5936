"""The catalogue of metric names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Size of the cached reference draw whose moments stand in for unknown reference moments.
N_MOMENT_DRAW = 100_000
FLOOR_DRAWS = 4
"""Pairs of public draws averaged in each ``*_floor``: pair k compares exact points from public
draw k + 1 with public reference draw k (independent draws; cached on disk per problem, t, size)."""
SUSPECT_FLOOR_RATIO = 0.25
"""An output whose primary distance is, in the median over its scored snapshots, below this share
of ``primary_floor_ref`` (the primary of independent exact draws of the reference's own size
``n_reference``) is flagged ``flag_suspect``. No honest output gets there, however regular its
points: the exact law itself scores about 1/√2 ≈ 0.7 of it against a finite draw, exact samples
of that size about 1, and quasi-uniform or deterministic particles (which may beat exact samples
of *their own* size) at best the exact law; an output that copied the scoring draw scores 0."""
MASS_TOLERANCE = 1e-3
"""Largest ``|mass − 1| + negative_mass`` of a grid output before it is flagged ``flag_mass``
(float32 sums over 10⁶ cells stay far below it; the classical solvers reach 1e-15)."""
#: Grids with more cells than this are not discretised for the grid floor (a plain draw is used).
MAX_FLOOR_GRID_CELLS = 1 << 22


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

DERIVED: dict[str, MetricInfo] = _catalogue(
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
        "median over scored snapshots of primary / primary_floor_ref (the primary of an exact "
        "n_reference-point draw): exact samples of that size sit near 1, the exact law itself near "
        "0.7, a copy of the scoring draw at 0; t = NaN",
    ),
    MetricInfo(
        "flag_suspect",
        "1",
        f"1 when floor_ratio < {SUSPECT_FLOOR_RATIO:g}: closer to the scoring draw than the exact law "
        "itself can be (the output has seen the scoring draw); t = NaN",
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
        "step_residual",
        "1",
        "relative residual of the inner linear solve a solver logged at one step (e.g. pwgf's "
        "metric solve; t = step time, step = index in the log)",
    ),
    MetricInfo(
        "dissipation",
        "1",
        "share of consecutive logged steps where the energy rose by more than two combined standard "
        "errors (by more than 0 without standard errors); t = NaN, step = -1",
    ),
    MetricInfo(
        "rel_error_floor",
        "1",
        "<primary>_floor divided by the rho_0 distance: the rel_error independent exact samples of "
        "the output's size score at this snapshot (the scoring noise of rel_error)",
    ),
    MetricInfo(
        "primary_floor_ref",
        "W2",
        "the primary's floor at the reference draw's own size n_reference: what a perfect output "
        "scores up to a factor about 1/sqrt(2); the denominator of floor_ratio",
    ),
    MetricInfo(
        "energy_knn",
        "1",
        "1 at a snapshot whose energy was estimated by k-NN on particles without log_rho (assumes "
        "i.i.d. samples)",
    ),
    MetricInfo(
        "trajectory_floor",
        "1",
        "mean over the snapshot times t > 0 of <primary>_floor / the rho_0 distance: the "
        "trajectory_error that independent exact samples of the output's size score (the scoring "
        "noise of this case); t = NaN",
    ),
    MetricInfo(
        "energy_iid_assumed",
        "1",
        "1 when the energy rows of particles without log_rho use the k-NN entropy estimator, which "
        "assumes i.i.d. samples: for deterministic or quasi-uniform particles its error is the "
        "estimator's, not the solver's; t = NaN",
    ),
    MetricInfo("prepare_seconds", "s", "wall time of the solver's prepare (training, fitting); t = NaN"),
    MetricInfo("solve_seconds", "s", "wall time of the solver's solve; t = NaN"),
    MetricInfo("seconds_per_step", "s", "solve_seconds per logged step; t = NaN"),
    MetricInfo("peak_memory_mb", "MiB", "peak memory of the case (CUDA, else process RSS growth); t = NaN"),
    MetricInfo("iterations", "1", "inner iterations summed over the logged steps; t = NaN"),
)
"""Names the scorer and runner derive (floors, rel_error, energies, per-case rows, costs); the
snapshot metrics themselves live in :data:`wgfbench.metrics.registry.BUILTIN_METRICS`."""


@dataclass(frozen=True)
class MetricRow:
    """One score: ``metric`` at problem time ``t`` (snapshot index ``step`` in ``problem.times``)."""

    t: float
    step: int
    metric: str
    value: float


def catalogue(metrics: Iterable[Any] = ()) -> dict[str, MetricInfo]:
    """Every metric name described: the registry's ``metrics`` (built-ins when empty), their
    ``*_floor`` rows, and the :data:`DERIVED` rows."""
    from wgfbench.metrics.registry import BUILTIN_METRICS

    entries = list(metrics) or list(BUILTIN_METRICS)
    out = {m.name: MetricInfo(m.name, m.unit, m.description, m.lower_is_better) for m in entries}
    for m in entries:
        if m.floor and f"{m.name}_floor" not in DERIVED:
            out[f"{m.name}_floor"] = MetricInfo(
                f"{m.name}_floor",
                m.unit,
                f"noise floor of {m.name}{' (W2, not squared)' if m.unit == 'W2' else ''}: its expected "
                "value for independent exact samples of the "
                "output's size against the reference draw (mean over 4 pairs of public draws, cached "
                "on disk); for grid outputs the exact samples come from the reference discretised "
                "on the output grid",
            )
    return {**out, **DERIVED}


METRICS: dict[str, MetricInfo] = catalogue()
"""Unit, description and direction of every built-in metric name (:func:`catalogue`)."""
