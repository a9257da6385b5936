"""Ranking statistics of the leaderboards: per-problem scores over seeds, their intervals, ranks by
the interval rule, the at-the-floor mark, the trivial-baseline test and the performance profile.

Input is the per-seed rows of one problem, as :mod:`wgfbench.reports.leaderboard` gathers them
from one or more run directories of a tier.

Score per (row, problem) (lower is better)::

    score(row) = median over ok seeds s of v_s,          v_s = trajectory_error of seed s,
    trajectory_error = (1/K) Σ_{k=1..K} rel_error(t_k)      over the K snapshot times t_k > 0,
    rel_error(t) = D(ρ_solver(t), ρ_ref(t)) / D(ρ_0, ρ_ref(t)) (+ mass penalty for grids),

where D is the problem's primary metric (W2, Bures–W2, radial W2, sliced W2 or the energy gap), so
``rel_error`` is the share of the motion ρ_0 → ρ_ref(t) the solver got wrong and every snapshot
counts equally: an output that jumps to ρ∞ pays for the transient it skipped. Problems whose
reference is stationary-only rank the end state alone and are marked so. The final-time
``rel_error`` is its own column.

Interval per (row, problem), columns ``low`` and ``high``:

* n ≥ 2 seeds with a score: [min_s v_s, max_s v_s]. Each repetition varies both the solver's seed
  and the scorer's reference draw, so the v_s are independent draws of the row's score; for n
  seeds the chance that the population median lies outside [min, max] is 2·2^-n (both ends miss
  only if all n draws fall on one side), so [min, max] of 3 seeds is a 75 % distribution-free
  interval for the median, of 5 seeds a 94 % one.
* one seed: [v − f, v + f] with f the case's ``trajectory_floor`` (the trajectory_error that
  independent exact samples of the same size score: the scoring noise), when the scorer wrote it;
  otherwise the degenerate [v, v]. ``interval_source`` says which (``seeds``, ``floor``, ``point``).

Rank (ties shared, visible as equal numbers): among the ranked rows of a problem,

    rank(row) = 1 + |{ranked rows r : high_r < low_row}|,

the number of rows whose interval lies strictly below this row's. Rows whose intervals overlap
are not told apart by either one, so neither counts for the other; a row strictly below another
always ranks strictly above it. The rule is not transitive: with intervals A < C strictly and B
overlapping both, A and B share rank 1 and C has rank 2.

At the floor (``at_floor``): a ranked row whose interval overlaps (high ≥ low_ref and
low ≤ high_ref) the interval of the calibration row ``reference`` (exact samples: the scoring
noise) on that problem; the reference row itself is not marked. Such a row is as good as the
metric can tell; shown "≈ ref". A row strictly below the reference interval is genuinely better
than exact samples of the same size and ranks strictly above ``reference``. A row at the floor
ranks above ``reference`` only when it also overlaps a row that lies strictly below the reference
interval (a row that is itself genuinely better); in particular, when no row is strictly below the
reference interval, ``reference`` has rank 1 and nothing ranks above it.

Rows have a role (``cases.parquet``): ``solver``, ``baseline`` (``frozen``, ``equilibrium``: the floor
of usefulness) or ``calibration`` (``reference``: exact samples). All rows are ranked together so
that a solver below a trivial baseline shows it. A solver row *fails to beat* a baseline unless its
interval lies strictly below the baseline's (high_solver < low_baseline): overlapping a trivial
baseline is not beating it. The summary covers solver rows only. A row with a case flagged
``flag_suspect`` (a score far below its own noise floor) or ``flag_mass`` (lost, invented or
negative mass beyond the tolerance, for a PDE that conserves mass; the penalty is also in its
score) is shown with its score but not ranked (and never marked at the floor).

The summary ranks solver rows among themselves by the same interval rule (``solver_rank``; the
calibration and baseline rows do not shift it): first places = problems where the solver's
``solver_rank`` is 1 (ties share first place), mean rank = mean ``solver_rank`` over the problems
where it is ranked, and the number of problems where it is at the floor. Its cross-problem
measure is a performance profile in the sense of Dolan & Moré (2002), "Benchmarking optimization
software with performance profiles", Math. Program. 91, eq. (1), evaluated at τ = 2:
ρ_s(2) = |{p : r_{p,s} ≤ 2}| / n_s, n_s the number of problems solver s was run on, with the
performance ratio (``profile_ratio``)

    r_{p,s} = 1                                if s's interval overlaps that of the best solver b,
            = score(s) / score(b)              otherwise,
            = ∞                                if s has no ranked score on p (failed, flagged),

where b is the ranked solver of p with the smallest score (ties: smaller ``high``, then name):
a solver that the intervals cannot tell from the best is tied with it.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import pandas as pd

CASE_KEY: tuple[str, str, str] = ("solver", "problem", "seed")
CASE_COLUMNS: tuple[str, ...] = ("solver", "problem", "seed", "status")
PROFILE_FACTOR = 2.0
"""τ of the performance profile: a solver is 'within 2×' on a problem when its performance ratio
(1 when its interval overlaps the best solver's, else its score over the best score) is at most
``PROFILE_FACTOR``."""
REFERENCE_ROW = ("reference", "calibration")
"""(solver, role) of the row whose interval is the noise floor of a problem."""

STATISTICS: tuple[str, ...] = ("median", "min", "max", "iqr")

# quantity -> metric whose unit it carries
QUANTITIES: dict[str, str] = {
    "trajectory_error": "trajectory_error",
    "trajectory_floor": "trajectory_floor",
    "rel_error_final": "rel_error",
    "rel_error_mean": "rel_error",
    "w2_excess_final": "w2",
    "w2_floor_final": "w2_floor",
    "energy_error_final": "energy_error",
    "energy_gap_final": "energy_gap",
    "dissipation": "dissipation",
    "solve_seconds": "solve_seconds",
    "prepare_seconds": "prepare_seconds",
    "peak_memory_mb": "peak_memory_mb",
}
"""Per-case quantities summarised over seeds (``<quantity>_{median,min,max,iqr}`` columns)."""

PER_CASE_COSTS: tuple[str, ...] = ("solve_seconds", "prepare_seconds", "peak_memory_mb")
"""Per-case costs: read from ``cases.parquet``, else from the per-case result rows (t = NaN)."""


# --------------------------------------------------------------------------------------------------
# Statistics


def _spread(values: pd.Series) -> dict[str, float]:
    """Median, min, max and interquartile range (q75 − q25) of the non-missing values over seeds."""
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return dict.fromkeys(STATISTICS, math.nan)
    q25, q50, q75 = np.percentile(v, [25.0, 50.0, 75.0])
    return {"median": float(q50), "min": float(v.min()), "max": float(v.max()), "iqr": float(q75 - q25)}


def _t_key(t: pd.Series) -> pd.Series:
    """Snapshot times rounded so that equal problem times from different cases compare equal."""
    return t.astype(float).round(12)


def _at_time(snap: pd.DataFrame, metric: str, t: float) -> pd.Series:
    """Per-case value of ``metric`` at snapshot time ``t``, indexed by (solver, seed)."""
    rows = snap[(snap["metric"] == metric) & (snap["t_key"] == round(float(t), 12))]
    return rows.groupby(["solver", "seed"])["value"].median()


def _problem_table(
    cases_p: pd.DataFrame, snap_p: pd.DataFrame, per_case_p: pd.DataFrame, case_rows_p: pd.DataFrame
) -> tuple[pd.DataFrame, float]:
    """Ranked table of one problem and its final snapshot time.

    For each solver, with s running over its ok seeds: ``trajectory_error`` (the scorer's per-case
    ranking score, module docstring); ``rel_error_final`` = rel_error_s(t_final);
    ``rel_error_mean`` = mean over snapshot times t > 0 of rel_error_s(t); ``w2_excess_final`` =
    W2_s(t_final) − W2floor_s(t_final) (W2, not squared); ``w2_floor_final``,
    ``energy_error_final``, ``energy_gap_final`` at t_final; ``trajectory_floor`` (per case);
    ``dissipation`` (per case: the share of logged steps whose energy rose), wall times and peak
    memory per case. Each is summarised over seeds by median, min, max and IQR. Also ``role``,
    ``suspect_seeds`` and ``mass_flag_seeds`` (seeds flagged), ``floor_ratio_median``,
    ``end_state_only``, the interval ``low``, ``high`` and ``interval_source`` (:func:`_interval`),
    ``rank`` (interval rule among all ranked rows, :func:`_interval_ranks`), ``at_floor``,
    ``solver_rank`` (the same rule among ranked solver rows only), ``profile_ratio`` (solver rows)
    and ``fails_to_beat``; module docstring. Rows without a score, or with a suspect or
    mass-flagged seed, are unranked (``rank`` and ``solver_rank`` <NA>, ``profile_ratio`` ∞ for a
    solver row). Sorted by rank, then median, then name; unranked rows last.
    """
    rel = snap_p[(snap_p["metric"] == "rel_error") & (snap_p["t"] > 0)]
    if len(rel):
        t_final = float(rel["t"].max())
    elif len(snap_p):
        t_final = float(snap_p["t"].max())
    else:
        t_final = math.nan

    per_seed = pd.DataFrame(index=pd.MultiIndex.from_frame(cases_p[["solver", "seed"]].drop_duplicates()))
    per_case_rows = case_rows_p.groupby(["solver", "seed", "metric"])["value"].median().unstack("metric")
    per_case_rows = per_case_rows.reindex(columns=list(CASE_FLAGS))
    if not math.isnan(t_final):
        per_seed["rel_error_final"] = _at_time(snap_p, "rel_error", t_final)
        per_seed["rel_error_mean"] = rel.groupby(["solver", "seed"])["value"].mean()
        w2 = _at_time(snap_p, "w2", t_final)
        floor = _at_time(snap_p, "w2_floor", t_final)
        per_seed["w2_excess_final"] = w2 - floor.reindex(w2.index)
        per_seed["w2_floor_final"] = floor
        per_seed["energy_error_final"] = _at_time(snap_p, "energy_error", t_final)
        per_seed["energy_gap_final"] = _at_time(snap_p, "energy_gap", t_final)
    per_seed["trajectory_error"] = per_case_rows["trajectory_error"]
    per_seed["trajectory_floor"] = per_case_rows["trajectory_floor"]
    per_seed["dissipation"] = per_case_rows["dissipation"]
    for column in PER_CASE_COSTS:
        if column in per_case_p:
            per_seed[column] = per_case_p[column]
    flags = per_case_rows.reindex(per_seed.index)
    per_seed = per_seed.reindex(columns=list(QUANTITIES))
    extras = _extra_metrics(snap_p) if not math.isnan(t_final) else []

    ok = cases_p["status"] == "ok"
    rows = []
    for solver, group in cases_p.groupby("solver", sort=True):
        row: dict[str, Any] = {
            "solver": solver,
            "role": _role(solver, group),
            "seeds_ok": int((group["status"] == "ok").sum()),
            "seeds_total": len(group),
            "seeds_failed": int((group["status"] != "ok").sum()),
        }
        ok_seeds = cases_p.loc[ok & (cases_p["solver"] == solver), "seed"]
        index = [(solver, s) for s in ok_seeds]
        mine = per_seed.loc[index] if len(ok_seeds) else per_seed.iloc[0:0]
        for quantity in QUANTITIES:
            for stat, value in _spread(mine[quantity]).items():
                row[f"{quantity}_{stat}"] = value
        row["low"], row["high"], row["interval_source"] = _interval(
            mine["trajectory_error"], mine["trajectory_floor"]
        )
        mine_flags = flags.loc[index] if len(ok_seeds) else flags.iloc[0:0]
        row["suspect_seeds"] = int((mine_flags["flag_suspect"] > 0).sum())
        row["mass_flag_seeds"] = int((mine_flags["flag_mass"] > 0).sum())
        row["floor_ratio_median"] = _spread(mine_flags["floor_ratio"])["median"]
        row["end_state_only"] = bool((mine_flags["end_state_only"] > 0).any())
        for metric in extras:
            values = _at_time(snap_p, metric, t_final).reindex(index) if len(ok_seeds) else pd.Series()
            row[f"{EXTRA_PREFIX}{metric}"] = _spread(values)["median"]
        rows.append(row)
    table = pd.DataFrame(rows)
    ranked = (
        table["trajectory_error_median"].notna()
        & table["low"].notna()
        & table["high"].notna()
        & (table["suspect_seeds"] == 0)
        & (table["mass_flag_seeds"] == 0)
    )
    table.insert(0, "rank", _interval_ranks(table["low"], table["high"], ranked))
    table["at_floor"] = _at_floor(table, ranked)
    is_solver = table["role"] == "solver"
    table["solver_rank"] = _interval_ranks(table["low"], table["high"], ranked & is_solver)
    table["profile_ratio"] = _profile_ratios(table, ranked & is_solver, is_solver)
    table["fails_to_beat"] = _fails_to_beat(table)
    table["_unranked"] = table["rank"].isna()
    table = (
        table.sort_values(["_unranked", "rank", "trajectory_error_median", "solver"])
        .drop(columns="_unranked")
        .reset_index(drop=True)
    )
    return table, t_final


EXTRA_PREFIX = "final:"
"""Per-problem table columns ``final:<metric>``: the median over seeds at the final time of a
snapshot metric that a plugin registered (``wgfbench_register_metrics``)."""


def _extra_metrics(snap_p: pd.DataFrame) -> list[str]:
    """Snapshot metrics in the results that the built-in catalogue does not know: those plugins
    added through ``wgfbench_register_metrics``; the leaderboard shows each at the final time."""
    catalogue = getattr(importlib.import_module("wgfbench.metrics"), "METRICS", {}) or {}
    return sorted(m for m in snap_p["metric"].unique() if m not in catalogue)


def _interval(values: pd.Series, floors: pd.Series) -> tuple[float, float, str]:
    """Interval of a row's score from its per-seed ``trajectory_error`` ``values`` and per-seed
    ``trajectory_floor`` ``floors`` (same index): ``(low, high, source)``.

    [min, max] over the seeds with a value when there are at least two (``"seeds"``; for n seeds a
    2·2^-n chance that the population median lies outside: 75 % coverage at 3 seeds); with one
    seed, value ± its ``trajectory_floor`` when that is finite and ≥ 0 (``"floor"``), else the
    degenerate [v, v] (``"point"``); no value: (NaN, NaN, "")."""
    v = values.dropna()
    if len(v) >= 2:
        return float(v.min()), float(v.max()), "seeds"
    if len(v) == 1:
        value = float(v.iloc[0])
        floor = floors.reindex(v.index).iloc[0] if len(floors) else math.nan
        if pd.notna(floor) and math.isfinite(float(floor)) and float(floor) >= 0:
            return value - float(floor), value + float(floor), "floor"
        return value, value, "point"
    return math.nan, math.nan, ""


def _interval_ranks(low: pd.Series, high: pd.Series, ranked: pd.Series) -> pd.Series:
    """``1 + |{j ranked : high_j < low_i}|`` for each ranked row i, <NA> elsewhere (Int64): a row is
    outranked only by rows whose interval lies strictly below its own; overlapping rows tie."""
    lows = low.to_numpy(dtype=float)
    highs = high.to_numpy(dtype=float)
    mask = ranked.to_numpy(dtype=bool)
    ranks = pd.array([pd.NA] * len(lows), dtype="Int64")
    for i in np.flatnonzero(mask):
        ranks[i] = 1 + int(np.sum(highs[mask] < lows[i]))
    return pd.Series(ranks, index=low.index)


def _overlaps(low: float, high: float, other_low: float, other_high: float) -> bool:
    """Whether [low, high] and [other_low, other_high] share a point (NaN never overlaps)."""
    return bool(high >= other_low and low <= other_high)


def _at_floor(table: pd.DataFrame, ranked: pd.Series) -> pd.Series:
    """Per row: ranked, not the reference row itself, and its interval overlaps the interval of
    the calibration row ``reference`` of the problem (all False when there is none, or it has no
    score)."""
    solver, role = REFERENCE_ROW
    is_reference = (table["solver"] == solver) & (table["role"] == role)
    out = pd.Series(False, index=table.index)
    if not is_reference.any():
        return out
    reference = table[is_reference].iloc[0]
    for i, row in table.iterrows():
        out[i] = bool(
            ranked[i]
            and not is_reference[i]
            and _overlaps(row["low"], row["high"], reference["low"], reference["high"])
        )
    return out


def _profile_ratios(table: pd.DataFrame, ranked_solvers: pd.Series, is_solver: pd.Series) -> pd.Series:
    """Performance ratio of each solver row on this problem (module docstring): 1 when its
    interval overlaps that of the best ranked solver (smallest median; then smaller ``high``, then
    name), else its median over the best median; ∞ for an unranked solver row; NaN for the other
    roles."""
    out = pd.Series(np.where(is_solver, math.inf, math.nan), index=table.index, dtype=float)
    candidates = table[ranked_solvers]
    if not len(candidates):
        return out
    best = candidates.sort_values(["trajectory_error_median", "high", "solver"]).iloc[0]
    for i, row in candidates.iterrows():
        if _overlaps(row["low"], row["high"], best["low"], best["high"]):
            out[i] = 1.0
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[i] = float(
                    np.float64(row["trajectory_error_median"]) / np.float64(best["trajectory_error_median"])
                )
    return out


CASE_FLAGS: tuple[str, ...] = (
    "trajectory_error",
    "trajectory_floor",
    "end_state_only",
    "floor_ratio",
    "flag_suspect",
    "flag_mass",
    "dissipation",
)
"""Per-case rows (t = NaN) of the scorer that the tables read besides the snapshot metrics."""


def _role(solver: str, cases: pd.DataFrame) -> str:
    """The row's role, as ``cases.parquet`` recorded it (``solver`` where it is missing)."""
    roles = cases["role"].dropna().astype(str) if "role" in cases else pd.Series(dtype=str)
    return str(roles.iloc[-1]) if len(roles) else "solver"


def _fails_to_beat(table: pd.DataFrame) -> list[str]:
    """Per solver row: the baselines it does not beat, comma-separated ("" when it beats them all,
    has no score, or is a baseline or the calibration row). A solver beats a baseline only when
    its interval lies strictly below the baseline's (``high`` < the baseline's ``low``); a
    baseline whose interval overlaps the solver's, or lies below it, is not beaten. On a problem
    that ranks the end state alone, ``equilibrium`` *is* the answer up to noise, so it is not a
    baseline to beat there."""
    baselines = table[(table["role"] == "baseline") & table["low"].notna() & table["high"].notna()]
    if table["end_state_only"].any():
        baselines = baselines[baselines["solver"] != "equilibrium"]
    out = []
    for _, row in table.iterrows():
        if row["role"] != "solver" or pd.isna(row["low"]) or pd.isna(row["high"]):
            out.append("")
            continue
        beaten_by = baselines[~(row["high"] < baselines["low"])]["solver"]
        out.append(", ".join(beaten_by))
    return out


def _joined_names(names: pd.Series) -> str:
    return ", ".join(sorted(n for n in names if isinstance(n, str) and n))


def _summary(per_problem: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per solver (rows of role ``solver`` only): problems run and ranked; first places (problems
    where its ``solver_rank``, the interval rule among solver rows only, is 1: ties share first
    place); mean ``solver_rank``; problems where it is at the floor; median of the per-problem
    scores; the performance profile ρ_s(τ=2) of Dolan & Moré (2002), eq. (1), over the problems the
    solver was run on, with the tie-aware ratio ``profile_ratio`` (1 when its interval overlaps the
    best solver's; a problem without a ranked score counts as not within); and the problems on
    which it fails to beat a trivial baseline."""
    records = []
    for problem, table in per_problem.items():
        solvers = table[table["role"] == "solver"]
        for _, row in solvers.iterrows():
            ranked = pd.notna(row["solver_rank"])
            ratio = row["profile_ratio"]
            records.append(
                {
                    "problem": problem,
                    "solver": row["solver"],
                    "rank": float(row["solver_rank"]) if ranked else math.nan,
                    "first": bool(ranked and row["solver_rank"] == 1),
                    "at_floor": bool(row["at_floor"]),
                    "score": row["trajectory_error_median"] if ranked else math.nan,
                    "within": bool(ranked and pd.notna(ratio) and ratio <= PROFILE_FACTOR),
                    "below_baseline": problem if row["fails_to_beat"] else "",
                }
            )
    columns = [
        "solver",
        "problems",
        "problems_ranked",
        "first_places",
        "mean_rank",
        "problems_at_floor",
        "median_trajectory_error",
        "within_2x_best",
        "below_a_baseline",
    ]
    if not records:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(records)
    long["rank"] = pd.to_numeric(long["rank"], errors="coerce")
    summary = long.groupby("solver").agg(
        problems=("problem", "nunique"),
        problems_ranked=("rank", "count"),
        first_places=("first", "sum"),
        mean_rank=("rank", "mean"),
        problems_at_floor=("at_floor", "sum"),
        median_trajectory_error=("score", "median"),
        within_2x_best=("within", "mean"),
        below_a_baseline=("below_baseline", _joined_names),
    )
    summary = summary.reset_index()
    summary["first_places"] = summary["first_places"].astype(int)
    summary["problems_at_floor"] = summary["problems_at_floor"].astype(int)
    summary["_unranked"] = summary["mean_rank"].isna()
    summary = summary.sort_values(
        ["_unranked", "mean_rank", "within_2x_best", "median_trajectory_error", "solver"],
        ascending=[True, True, False, True, True],
    )
    return summary.drop(columns="_unranked").reset_index(drop=True)[columns]
