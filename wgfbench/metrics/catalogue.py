"""The catalogue of metric names."""

from __future__ import annotations

from dataclasses import dataclass

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


_DISTRIBUTION_PRIMARIES = ("w2", "sliced_w2", "bures_w2", "radial_w2")


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
