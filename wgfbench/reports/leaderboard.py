"""Leaderboards: rows ranked per problem by ``trajectory_error`` with an uncertainty interval, a
cross-problem performance profile, failures listed by name, and figures of the error against time.

Input is one or more run directories (``manifest.json``, ``cases.parquet``, ``results.parquet`` in
the public long schema ``run_id, solver, problem, seed, t, step, metric, value``). Runs of one tier
may be combined (a solver run separately, a rerun of a failed case); a case ``(solver, problem,
seed)`` present in several runs is taken from the newest run, and the leaderboard says so.

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

import base64
import html
import importlib
import importlib.util
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wgfbench import store
from wgfbench.errors import WgfbenchError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "README_BEGIN",
    "README_END",
    "Leaderboard",
    "RunInfo",
    "build_leaderboard",
    "replace_readme_table",
    "slugify",
]

logger = logging.getLogger(__name__)

CASE_KEY: tuple[str, str, str] = ("solver", "problem", "seed")
CASE_COLUMNS: tuple[str, ...] = ("solver", "problem", "seed", "status")
PROFILE_FACTOR = 2.0
"""τ of the performance profile: a solver is 'within 2×' on a problem when its performance ratio
(1 when its interval overlaps the best solver's, else its score over the best score) is at most
``PROFILE_FACTOR``."""
AT_FLOOR_MARK = "≈ ref"
"""Shown after the score of a row whose interval overlaps the ``reference`` row's."""
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
    "solve_seconds": "solve_seconds",
    "prepare_seconds": "prepare_seconds",
}


_MISSING = "—"
README_BEGIN = "<!-- leaderboard-table:begin (generated by `wgfbench leaderboard --readme`; do not edit) -->"
README_END = "<!-- leaderboard-table:end -->"


# --------------------------------------------------------------------------------------------------
# Reading runs


@dataclass(frozen=True)
class RunInfo:
    """One run directory as the leaderboard saw it: identity, tier, creation time and machine."""

    run_id: str
    path: Path
    tier: str
    created: str
    machine: str
    versions: dict[str, str]
    n_cases: int
    scoring_version: int = 1


def _machine_line(manifest: dict) -> str:
    """One line naming the machine of a run: the manifest's ``device`` and, from its ``machine``
    record (see ``wgfbench.runner.machine_info``), GPU, CPU model, cores, threads and host."""
    machine = manifest.get("machine")
    source = {**manifest, **machine} if isinstance(machine, dict) else dict(manifest)
    labels = {
        "device": "device",
        "cuda_device": "GPU",
        "cpu_model": "CPU",
        "cpu_affinity": "cores available",
        "torch_threads": "torch threads",
        "host": "host",
    }
    parts = [f"{label} {source[key]}" for key, label in labels.items() if source.get(key) not in (None, "")]
    if isinstance(machine, str) and machine:
        parts.insert(0, machine)
    return ", ".join(parts) or "not recorded"


def _flat_versions(versions: Any, prefix: str = "") -> dict[str, str]:
    """``{"torch": "2.1", "plugins": {"x": "1"}}`` → ``{"torch": "2.1", "plugins/x": "1"}``."""
    if not isinstance(versions, dict):
        return {}
    flat: dict[str, str] = {}
    for key, value in versions.items():
        if isinstance(value, dict):
            flat |= _flat_versions(value, f"{prefix}{key}/")
        elif value is not None:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _check_columns(frame: pd.DataFrame, needed: Sequence[str], what: str, run_dir: Path) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise WgfbenchError(
            f"{what} of run {str(run_dir)!r} lacks column(s) {missing}; is it a wgfbench run?"
        )


def _load_run(run_dir: Path, index: int) -> tuple[RunInfo, pd.DataFrame, pd.DataFrame]:
    manifest = store.read_manifest(run_dir)
    cases, results = store.read_cases(run_dir), store.read_results(run_dir)
    _check_columns(cases, CASE_COLUMNS, "cases.parquet", run_dir)
    _check_columns(results, store.RESULTS_COLUMNS, "results.parquet", run_dir)
    tier = manifest.get("tier")
    if tier is None:
        tiers = cases["tier"].dropna().unique() if "tier" in cases else []
        tier = str(tiers[0]) if len(tiers) == 1 else None
    if tier is None:
        raise WgfbenchError(f"run {str(run_dir)!r} does not record its tier in manifest.json")
    if "tier" in cases:
        case_tiers = set(cases["tier"].dropna().astype(str)) - {str(tier)}
        if case_tiers:
            raise WgfbenchError(
                f"run {str(run_dir)!r} is tier {tier!r} but holds cases of tier(s) {sorted(case_tiers)}; "
                "leaderboards never mix tiers"
            )
    info = RunInfo(
        run_id=str(manifest.get("run_id") or run_dir.name),
        path=run_dir,
        tier=str(tier),
        created=str(manifest.get("created") or ""),
        machine=_machine_line(manifest),
        versions=_flat_versions(manifest.get("versions")),
        n_cases=len(cases),
        scoring_version=int((manifest.get("scoring") or {}).get("version") or 1),
    )
    cases = cases.copy()
    results = results.copy()
    # Join on our own run index: run_id strings in two directories may coincide.
    cases["_run"] = index
    cases["run_id"] = info.run_id
    results["_run"] = index
    return info, cases, results


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
    wall times per case. Each is summarised over seeds by median, min, max and IQR. Also ``role``,
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
    for column in ("solve_seconds", "prepare_seconds"):
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


# --------------------------------------------------------------------------------------------------
# Formatting


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return _MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def _fmt_spread(row: pd.Series, quantity: str) -> str:
    median, lo, hi = row[f"{quantity}_median"], row[f"{quantity}_min"], row[f"{quantity}_max"]
    if pd.isna(median):
        return _MISSING
    if lo == hi:
        return _fmt(median)
    return f"{_fmt(median)} [{_fmt(lo)}–{_fmt(hi)}]"


def _fmt_interval(row: pd.Series) -> str:
    """The ranking cell: ``median [low, high]`` (the median alone when the interval is a point),
    followed by :data:`AT_FLOOR_MARK` when the row is at the floor."""
    median, lo, hi = row["trajectory_error_median"], row["low"], row["high"]
    if pd.isna(median):
        return _MISSING
    text = _fmt(median) if pd.isna(lo) or lo == hi else f"{_fmt(median)} [{_fmt(lo)}, {_fmt(hi)}]"
    return f"{text} {AT_FLOOR_MARK}" if bool(row.get("at_floor", False)) else text


_TRAJECTORY_HEADER = "trajectory error, median [interval]"

# display header -> (quantity, with spread)
_DISPLAY_COLUMNS: dict[str, tuple[str, bool]] = {
    _TRAJECTORY_HEADER: ("trajectory_error", True),
    "rel_error final, median [min–max]": ("rel_error_final", True),
    "W2 − floor final, median [min–max]": ("w2_excess_final", True),
    "W2 floor final": ("w2_floor_final", False),
    "energy error final, median [min–max]": ("energy_error_final", True),
    "energy gap final, median [min–max]": ("energy_gap_final", True),
    "solve s (median)": ("solve_seconds", False),
    "prepare s (median)": ("prepare_seconds", False),
}


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per-problem table as strings for reading: the ranking score as ``median [low, high]`` with
    "≈ ref" for rows at the floor, other spreads as ``median [min–max]``, 3 significant digits,
    columns that no solver has (e.g. W2 on an energy-gap problem) left out."""
    out = pd.DataFrame(
        {
            "rank": [_fmt(r) for r in table["rank"]],
            "solver": [_label(row) for _, row in table.iterrows()],
            "seeds ok/total": [
                f"{o}/{n}" for o, n in zip(table["seeds_ok"], table["seeds_total"], strict=True)
            ],
        }
    )
    for header, (quantity, spread) in _DISPLAY_COLUMNS.items():
        if table[f"{quantity}_median"].isna().all() and quantity not in (
            "trajectory_error",
            "rel_error_final",
        ):
            continue
        if header == _TRAJECTORY_HEADER:
            out[header] = [_fmt_interval(row) for _, row in table.iterrows()]
        elif spread:
            out[header] = [_fmt_spread(row, quantity) for _, row in table.iterrows()]
        else:
            out[header] = [_fmt(v) for v in table[f"{quantity}_median"]]
    for column in [c for c in table.columns if str(c).startswith(EXTRA_PREFIX)]:
        out[f"{column[len(EXTRA_PREFIX) :]} (final)"] = [_fmt(v) for v in table[column]]
    out["flags"] = [_flags(row) for _, row in table.iterrows()]
    return out


def _label(row: pd.Series) -> str:
    return str(row["solver"]) if row["role"] == "solver" else f"{row['solver']} ({row['role']})"


def _flags(row: pd.Series) -> str:
    """What a reader must know about a row: suspect scores, mass violations, baselines not beaten."""
    parts = []
    if row["suspect_seeds"]:
        parts.append(
            f"SUSPECT {row['suspect_seeds']}/{row['seeds_ok']}: below its noise floor "
            f"(W/floor {_fmt(row['floor_ratio_median'])}), not ranked"
        )
    if row["mass_flag_seeds"]:
        parts.append(f"mass violated {row['mass_flag_seeds']}/{row['seeds_ok']}, not ranked")
    if row["fails_to_beat"]:
        parts.append(f"does not beat {row['fails_to_beat']}")
    return "; ".join(parts)


def _display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "solver": summary["solver"].astype(str),
            "problems (ranked/run)": [
                f"{r}/{n}" for r, n in zip(summary["problems_ranked"], summary["problems"], strict=True)
            ],
            "first places": summary["first_places"].astype(str),
            "mean rank": [_fmt(v) for v in summary["mean_rank"]],
            f"at the floor ({AT_FLOOR_MARK})": summary["problems_at_floor"].astype(str),
            "median trajectory error": [_fmt(v) for v in summary["median_trajectory_error"]],
            f"share within {PROFILE_FACTOR:g}× best": [f"{v:.0%}" for v in summary["within_2x_best"]],
            "does not beat a trivial baseline on": [v or "—" for v in summary["below_a_baseline"]],
        }
    )


def _first_line(message: Any, limit: int = 160) -> str:
    text = "" if message is None or (isinstance(message, float) and math.isnan(message)) else str(message)
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _display_failures(failures: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "solver": failures["solver"].astype(str),
            "problem": failures["problem"].astype(str),
            "seed": failures["seed"].astype(str),
            "error type": [_fmt(v) if _fmt(v) != _MISSING else "" for v in failures["error_type"]],
            "message": [_first_line(m) for m in failures["error"]],
            "run": failures["run_id"].astype(str),
        }
    )


def _markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table (pipes in cells escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def slugify(name: str) -> str:
    """File-name-safe form of a problem name: ``porous-medium/barenblatt-2d-m2`` →
    ``porous-medium-barenblatt-2d-m2`` (lower case; runs of other characters become one ``-``)."""
    slug = re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.")
    return slug or "problem"


def _metric_units(names: Sequence[str]) -> pd.DataFrame:
    """Unit and meaning of each metric, from the catalogue of the default host's metric registry
    (built-ins and plugins' metrics) where it describes it."""
    from wgfbench.host import default_host
    from wgfbench.metrics.catalogue import catalogue as build_catalogue

    catalogue: dict[str, Any] = build_catalogue(default_host().metrics)
    rows = []
    for name in names:
        info = catalogue.get(name)
        if info is not None:
            rows.append((name, str(info.unit), str(info.description)))
        else:
            rows.append((name, "", ""))
    return pd.DataFrame(rows, columns=["metric", "unit", "meaning"])


# --------------------------------------------------------------------------------------------------
# The leaderboard


@dataclass
class Leaderboard:
    """Rows ranked per problem by the median over seeds of ``trajectory_error`` and its interval
    (module docstring: interval, tie rule, at-the-floor rule, profile).

    ``per_problem[problem]`` has one row per solver, baseline and calibration row: ``rank``
    (nullable Int64, <NA> when the row has no score or is flagged; equal numbers are ties),
    ``solver``, ``role``, ``seeds_ok``, ``seeds_total``, for each quantity in :data:`QUANTITIES`
    the columns ``<quantity>_{median,min,max,iqr}`` over ok seeds, the interval ``low``, ``high``
    and its ``interval_source``, ``at_floor``, ``solver_rank``, ``profile_ratio`` and
    ``fails_to_beat``. ``summary`` has one row per solver (see :func:`_summary`); ``failures`` one
    row per failed case (``solver, problem, seed, error_type, error, run_id``). ``figures`` maps a
    problem to its PNG, ``files`` lists everything written (empty without ``out_dir``).
    """

    tier: str
    per_problem: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    failures: pd.DataFrame
    figures: dict[str, Path]
    files: list[Path]
    runs: list[RunInfo] = field(default_factory=list)
    final_times: dict[str, float] = field(default_factory=dict)
    problem_versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metric_units: pd.DataFrame = field(default_factory=pd.DataFrame)
    out_dir: Path | None = None

    def _problem_heading(self, problem: str) -> str:
        version = self.problem_versions.get(problem)
        parts = [f"version {version}"] if version else []
        t_final = self.final_times.get(problem, math.nan)
        if not math.isnan(t_final):
            parts.append(f"final t = {t_final:g}")
        table = self.per_problem.get(problem)
        if table is not None and "end_state_only" in table and table["end_state_only"].any():
            parts.append("stationary reference only: ranks the end state alone")
        return f"{problem} ({', '.join(parts)})" if parts else problem

    def tidy(self) -> pd.DataFrame:
        """Long form of the per-problem tables: one row per (problem, solver, quantity, statistic)
        with the rank, the ranking interval (``low``, ``high``), ``at_floor``, seed counts and the
        unit of the quantity; this is ``leaderboard.csv``."""
        units = dict(zip(self.metric_units.get("metric", []), self.metric_units.get("unit", []), strict=True))
        frames = []
        for problem, table in self.per_problem.items():
            value_columns = [f"{q}_{s}" for q in QUANTITIES for s in STATISTICS]
            long = table.melt(
                id_vars=["rank", "low", "high", "at_floor", "solver", "role", "seeds_ok", "seeds_total"],
                value_vars=value_columns,
                var_name="column",
                value_name="value",
            )
            split = long["column"].str.rsplit("_", n=1, expand=True)
            long["quantity"], long["statistic"] = split[0], split[1]
            long["unit"] = long["quantity"].map(lambda q: units.get(QUANTITIES[q], ""))
            long.insert(0, "problem", problem)
            long.insert(1, "problem_version", self.problem_versions.get(problem, ""))
            long.insert(2, "t_final", self.final_times.get(problem, math.nan))
            long.insert(0, "tier", self.tier)
            frames.append(long.drop(columns="column"))
            extra = [c for c in table.columns if str(c).startswith(EXTRA_PREFIX)]
            if extra:
                more = table.melt(
                    id_vars=["rank", "low", "high", "at_floor", "solver", "role", "seeds_ok", "seeds_total"],
                    value_vars=extra,
                    var_name="quantity",
                    value_name="value",
                )
                more["quantity"] = more["quantity"].str[len(EXTRA_PREFIX) :]
                more["statistic"] = "median"
                more["unit"] = more["quantity"].map(lambda q: units.get(q, ""))
                more.insert(0, "problem", problem)
                more.insert(1, "problem_version", self.problem_versions.get(problem, ""))
                more.insert(2, "t_final", self.final_times.get(problem, math.nan))
                more.insert(0, "tier", self.tier)
                frames.append(more)
        order = ["tier", "problem", "problem_version", "t_final", "solver", "role", "rank", "low", "high"]
        order += ["at_floor", "seeds_ok", "seeds_total"]
        order += ["quantity", "statistic", "value", "unit"]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)[order]

    def _header_lines(self) -> list[str]:
        lines = [f"- Tier: `{self.tier}`"]
        for run in self.runs:
            created = f", created {run.created}" if run.created else ""
            lines.append(f"- Run `{run.run_id}`{created}, {run.n_cases} case(s), machine: {run.machine}")
            if run.versions:
                shown = ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))
                lines.append(f"  - versions: {shown}")
        lines.append(
            "- Score: the median over seeds of `trajectory_error`, the mean of `rel_error` over every "
            "snapshot t > 0 with equal weights (lower is better); the final-time `rel_error` is its own "
            "column; other spreads are [min–max] over seeds; W2 is a distance (not squared)."
        )
        lines.append(
            "- Interval [low, high] of the score: [min, max] over the seeds (with n seeds the median "
            "lies outside with chance 2·2^-n: 75 % coverage at 3 seeds); with one seed, the score ± "
            "its `trajectory_floor` (scoring noise) when scored, else the score alone. Rank = 1 + the "
            "number of rows whose interval lies strictly below the row's: overlapping intervals share "
            f"a rank. '{AT_FLOOR_MARK}': the interval overlaps that of `reference` (at the floor: as "
            "good as the metric can tell)."
        )
        lines.append(
            "- `frozen` (ρ0 forever) and `equilibrium` (ρ∞ for t > 0) are the trivial baselines, "
            "`reference` (exact samples) the calibration row; they see the problem's references and "
            "are ranked beside the solvers but never counted as solvers. 'does not beat' names the "
            "baselines whose interval the solver's does not lie strictly below; SUSPECT rows scored "
            "far below their noise floor and are not ranked; grid outputs pay |mass − 1| + negative "
            "mass in `rel_error`."
        )
        lines.append(
            "- Summary: ranks among solvers only, by the same interval rule (ties share first place); "
            f"'share within {PROFILE_FACTOR:g}× best' is the performance profile ρ(τ={PROFILE_FACTOR:g}) "
            "of Dolan & Moré (2002) over the problems each solver was run on, a solver whose interval "
            "overlaps the best solver's counting as ratio 1."
        )
        return lines

    def to_markdown(self) -> str:
        """The whole leaderboard as markdown: header (tier, runs, machine, units), notes, summary,
        one ranked table per problem (with its figure when written), failures."""
        out = [f"# wgfbench leaderboard — tier `{self.tier}`", "", *self._header_lines(), ""]
        if self.notes:
            out += ["## Notes", "", *[f"- {note}" for note in self.notes], ""]
        if len(self.metric_units):
            out += ["## Metric units", "", _markdown_table(self.metric_units), ""]
        out += ["## Summary", ""]
        out += [
            _markdown_table(_display_summary(self.summary)) if len(self.summary) else "No solver ran.",
            "",
        ]
        for problem, table in self.per_problem.items():
            out += [f"## {self._problem_heading(problem)}", "", _markdown_table(display_table(table)), ""]
            figure = self.figures.get(problem)
            if figure is not None:
                link = os.path.relpath(figure, self.out_dir) if self.out_dir is not None else str(figure)
                out += [f"![{problem}: rel_error vs t]({Path(link).as_posix()})", ""]
        out += ["## Failures", ""]
        if len(self.failures):
            out += [_markdown_table(_display_failures(self.failures)), ""]
        else:
            out += ["No case failed.", ""]
        return "\n".join(out)

    def matrix(self) -> pd.DataFrame:
        """Problem × row matrix of the median ``trajectory_error`` as strings, rows in the order of
        the summary (solvers), then calibration and baselines. Marks: bold the solvers in first
        place (``solver_rank`` 1: ties share it), ``≈`` at the floor (interval overlaps
        ``reference``'s), ``↓`` does not beat a trivial baseline, ``!`` suspect (not ranked), ``m``
        mass violated; ``—`` not run (unsupported) or no score."""
        solvers = list(self.summary["solver"]) if len(self.summary) else []
        others: list[str] = []
        for table in self.per_problem.values():
            for name, role in zip(table["solver"], table["role"], strict=True):
                if role != "solver" and name not in others:
                    others.append(name)
        order = (
            ["reference", *sorted(o for o in others if o != "reference")]
            if "reference" in others
            else sorted(others)
        )
        columns = solvers + order
        rows = []
        for problem, table in self.per_problem.items():
            indexed = table.set_index("solver")
            first = set(table.loc[(table["role"] == "solver") & (table["solver_rank"] == 1), "solver"])
            row = {"problem": f"`{problem}`" + (" (end state)" if table["end_state_only"].any() else "")}
            for name in columns:
                if name not in indexed.index or pd.isna(indexed.loc[name, "trajectory_error_median"]):
                    row[name] = _MISSING
                    continue
                entry = indexed.loc[name]
                text = f"{entry['trajectory_error_median']:.3f}"
                if name in first:
                    text = f"**{text}**"
                marks = "≈" if entry["at_floor"] else ""
                marks += ("↓" if entry["fails_to_beat"] else "") + ("!" if entry["suspect_seeds"] else "")
                marks += "m" if entry["mass_flag_seeds"] else ""
                row[name] = text + marks
            rows.append(row)
        return pd.DataFrame(rows, columns=["problem", *columns])

    def to_readme_table(self) -> str:
        """The markdown of :meth:`matrix` with its legend: what the README shows."""
        legend = (
            "Median over seeds of `trajectory_error` (mean `rel_error` over every snapshot t > 0; "
            "lower is better). Interval: [min, max] over seeds (± `trajectory_floor` for a single "
            "seed). **Bold**: first place among solvers — no other solver's interval lies strictly "
            "below its own (ties share first place); ≈: its interval overlaps `reference`'s (at the "
            "noise floor); ↓: its interval is not strictly below a trivial baseline's (`frozen`, "
            "`equilibrium`); !: scored far below its noise floor (not ranked); m: grid mass violated; "
            "—: not supported. `reference` is exact samples (the noise level)."
        )
        return f"{_markdown_table(self.matrix())}\n\n{legend}\n"

    def to_html(self) -> str:
        """A self-contained HTML page (inline CSS, figures embedded as base64 PNG)."""
        esc = html.escape
        body = [f"<h1>wgfbench leaderboard — tier <code>{esc(self.tier)}</code></h1>", "<ul>"]
        body += [f"<li>{esc(line[2:].strip())}</li>" for line in self._header_lines()]
        body.append("</ul>")
        if self.notes:
            body += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(n)}</li>" for n in self.notes], "</ul>"]
        if len(self.metric_units):
            body += ["<h2>Metric units</h2>", self.metric_units.to_html(index=False, border=0)]
        body += ["<h2>Summary</h2>", _display_summary(self.summary).to_html(index=False, border=0)]
        for problem, table in self.per_problem.items():
            body += [f"<h2>{esc(self._problem_heading(problem))}</h2>"]
            body.append(display_table(table).to_html(index=False, border=0))
            figure = self.figures.get(problem)
            if figure is not None and figure.is_file():
                data = base64.b64encode(figure.read_bytes()).decode("ascii")
                body.append(f'<img alt="{esc(problem)}" src="data:image/png;base64,{data}">')
        body.append("<h2>Failures</h2>")
        if len(self.failures):
            body.append(_display_failures(self.failures).to_html(index=False, border=0))
        else:
            body.append("<p>No case failed.</p>")
        style = (
            "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
            "text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>wgfbench leaderboard ({esc(self.tier)})</title><style>{style}</style></head>"
            f"<body>\n{chr(10).join(body)}\n</body></html>\n"
        )

    def to_console(self, console: Console) -> None:
        """Print the summary, the per-problem tables, notes and failures with rich."""
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        # Text objects, not markup strings: "[min–max]" would otherwise be read as a style tag.
        def rich_table(frame: pd.DataFrame, title: str) -> Table:
            table = Table(title=Text(title), title_justify="left")
            for column in frame.columns:
                table.add_column(Text(str(column)), overflow="fold")
            for row in frame.itertuples(index=False):
                # A spread on its own line keeps the columns narrow on a terminal.
                table.add_row(*[Text(str(v).replace(" [", "\n[")) for v in row])
            return table

        console.print(f"[bold]wgfbench leaderboard[/bold] — tier {escape(self.tier)}", highlight=False)
        for run in self.runs:
            console.print(f"run {run.run_id} ({run.n_cases} cases) on {run.machine}", markup=False)
        for note in self.notes:
            console.print(f"note: {note}", markup=False)
        if len(self.summary):
            console.print(rich_table(_display_summary(self.summary), "Summary"))
        for problem, table in self.per_problem.items():
            console.print(rich_table(display_table(table), self._problem_heading(problem)))
        if len(self.failures):
            console.print(rich_table(_display_failures(self.failures), "Failures"))


# --------------------------------------------------------------------------------------------------
# Figures


def _plot_problem(problem: str, snap_p: pd.DataFrame, order: list[str], path: Path) -> Path:
    """PNG of rel_error(t), t > 0, per solver (median over seeds, band from min to max); a second
    panel of W2(t) with each solver's W2 floor dashed where the floor was scored."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    palette = dict(zip(order, sns.color_palette("tab10", n_colors=max(len(order), 1)), strict=False))
    rel = snap_p[(snap_p["metric"] == "rel_error") & (snap_p["t"] > 0)]
    w2 = snap_p[snap_p["metric"] == "w2"]
    floor = snap_p[snap_p["metric"] == "w2_floor"]
    two_panels = len(w2) > 0 and len(floor) > 0

    # A bare Figure on the Agg canvas: no pyplot state, nothing left open.
    fig = Figure(figsize=(11.0 if two_panels else 6.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if two_panels else 1, squeeze=False)[0]
    common = {"x": "t", "y": "value", "hue": "solver", "estimator": "median", "errorbar": ("pi", 100)}
    ax = axes[0]
    if len(rel):
        hue_order = [s for s in order if s in set(rel["solver"])]
        sns.lineplot(data=rel, hue_order=hue_order, palette=palette, marker="o", ax=ax, **common)
        if (rel["value"] > 0).all():
            ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("rel_error (median over seeds, band min–max)")
    ax.set_title(problem)
    if two_panels:
        ax = axes[1]
        hue_order = [s for s in order if s in set(w2["solver"])]
        sns.lineplot(data=w2, hue_order=hue_order, palette=palette, marker="o", ax=ax, **common)
        lines = {
            solver: rows.groupby("t")["value"].median().sort_index()
            for solver, rows in floor.groupby("solver")
        }
        first = next(iter(lines.values()))
        shared = all(line.index.equals(first.index) and np.allclose(line, first) for line in lines.values())
        # Sample floors depend only on the reference draws and coincide across solvers; grid
        # floors depend on each solver's grid and are drawn in its colour.
        for solver, line in [(None, first)] if shared else lines.items():
            colour = "black" if solver is None else palette.get(solver, "grey")
            ax.plot(line.index, line.to_numpy(), linestyle="--", color=colour, alpha=0.8)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="black" if shared else "grey", linestyle="--"))
        labels.append("W2 floor" if shared else "W2 floor (per solver, dashed)")
        ax.legend(handles, labels, fontsize="small")
        ax.set_xlabel("t")
        ax.set_ylabel("W2 (not squared)")
        ax.set_title(f"{problem}: W2 and its floor")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    fig.clear()
    return path


# --------------------------------------------------------------------------------------------------
# Building


def _order_key(info: RunInfo, index: int) -> tuple[pd.Timestamp, int]:
    created = pd.to_datetime(info.created, utc=True, errors="coerce") if info.created else pd.NaT
    if pd.isna(created):
        created = pd.Timestamp.min.tz_localize("UTC")
    return created, index


def _deduplicate(cases: pd.DataFrame, runs: list[RunInfo]) -> tuple[pd.DataFrame, list[str]]:
    """Keep, for each (solver, problem, seed), the case of the newest run (by manifest ``created``;
    a later position on the command line breaks ties and orders runs without a date). Returns the
    kept cases and one note per (superseded run, newer run, solver, problem)."""
    rank = {i: pos for pos, i in enumerate(sorted(range(len(runs)), key=lambda i: _order_key(runs[i], i)))}
    cases = cases.assign(_age=cases["_run"].map(rank)).sort_values("_age", kind="stable")
    kept = cases.drop_duplicates(list(CASE_KEY), keep="last")
    winners = kept.set_index(list(CASE_KEY))["_run"]
    dropped = cases.drop(kept.index)
    dropped = dropped.assign(
        _winner=winners.reindex(pd.MultiIndex.from_frame(dropped[list(CASE_KEY)])).to_numpy()
    )
    # A case repeated inside one run (a resumed run written twice) is not a cross-run duplicate.
    dropped = dropped[dropped["_run"] != dropped["_winner"]]
    notes = []
    for (old, new, solver, problem), rows in dropped.groupby(["_run", "_winner", "solver", "problem"]):
        seeds = ", ".join(str(s) for s in sorted(rows["seed"].unique()))
        notes.append(
            f"{solver} on {problem} (seed {seeds}) is in runs {runs[old].run_id!r} and "
            f"{runs[new].run_id!r}; kept the newer run {runs[new].run_id!r}"
            + (f" (created {runs[new].created})" if runs[new].created else "")
        )
    return kept.drop(columns="_age").reset_index(drop=True), notes


def build_leaderboard(run_dirs: Sequence[Path | str], out_dir: Path | str | None = None) -> Leaderboard:
    """Rank solvers per problem over one or more run directories of the same tier.

    Per problem: median over seeds of ``trajectory_error`` (the ranking score; lower is better)
    with its interval ([min, max] over seeds, or ± ``trajectory_floor`` for a single seed), rank by
    the interval rule (overlapping intervals tie), at-the-floor mark, final-time ``rel_error``,
    ``rel_error`` averaged over the snapshot times t > 0, the W2 excess over the floor at the final
    time (W2 − W2_floor, W2 not squared), energy error or gap at the final time, and median solve
    and prepare wall times. Failed cases go to ``failures``; a solver with no ok seed is listed
    unranked. Rules and summary: see module docstring.

    Parameters
    ----------
    run_dirs
        Run directories written by the runner. All must share one tier, else :class:`WgfbenchError`.
        A (solver, problem, seed) in several runs is taken from the newest (manifest ``created``).
    out_dir
        When given, writes ``leaderboard.md``, ``leaderboard.csv`` (long form, see
        :meth:`Leaderboard.tidy`), ``leaderboard_summary.csv``, ``leaderboard_failures.csv``,
        ``leaderboard.html`` (self-contained) and ``figures/<problem-slug>.png``.
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise WgfbenchError("build_leaderboard needs at least one run directory")
    seen: set[Path] = set()
    unique_paths = []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique_paths.append(path)

    loaded = [_load_run(path, i) for i, path in enumerate(unique_paths)]
    runs = [info for info, _, _ in loaded]
    tiers = sorted({run.tier for run in runs})
    if len(tiers) > 1:
        listing = "; ".join(f"{run.run_id!r} ({run.path}) is tier {run.tier!r}" for run in runs)
        raise WgfbenchError(
            f"leaderboards never mix tiers, but these runs do: {listing}. Build one leaderboard per tier."
        )
    tier = tiers[0]
    schemes = sorted({run.scoring_version for run in runs})
    if len(schemes) > 1:
        listing = "; ".join(
            f"{run.run_id!r} ({run.path}) scoring version {run.scoring_version}" for run in runs
        )
        raise WgfbenchError(
            f"these runs were scored by different scoring schemes and cannot be ranked together: {listing}. "
            "Rerun the older ones (see docs/scoring.md)."
        )

    cases, notes = _deduplicate(pd.concat([c for _, c, _ in loaded], ignore_index=True), runs)
    for note in notes:
        logger.info(note)
    for column, default in (("error_type", None), ("error", None), ("problem_version", None)):
        if column not in cases:
            cases[column] = default
    problem_versions: dict[str, str] = {}
    for problem, versions in cases.groupby("problem")["problem_version"]:
        distinct = sorted({str(v) for v in versions.dropna()})
        problem_versions[problem] = ", ".join(distinct)
        if len(distinct) > 1:
            notes.append(f"{problem} combines problem versions {', '.join(distinct)} across runs")
    skipped = cases["status"] == "skipped"
    if skipped.any():
        notes.append(f"{int(skipped.sum())} skipped case(s) are not counted")
        cases = cases[~skipped]

    failures = (
        cases.loc[cases["status"] != "ok", ["solver", "problem", "seed", "error_type", "error", "run_id"]]
        .sort_values(["problem", "solver", "seed"])
        .reset_index(drop=True)
    )

    # Results of kept, ok cases only: a failed case never contributes a score.
    ok_keys = cases.loc[cases["status"] == "ok", ["_run", *CASE_KEY]]
    results = pd.concat([r for _, _, r in loaded], ignore_index=True)
    results = results.merge(ok_keys, on=["_run", *CASE_KEY], how="inner")
    results["value"] = pd.to_numeric(results["value"], errors="coerce")
    results["t"] = pd.to_numeric(results["t"], errors="coerce")
    snap = results[results["t"].notna()].copy()
    snap["t_key"] = _t_key(snap["t"])
    case_rows = results[results["t"].isna() & results["metric"].isin(CASE_FLAGS)]

    # Per-case wall times: cases.parquet first, per-case result rows (t = NaN) where it lacks them.
    per_case = cases.loc[cases["status"] == "ok"].set_index(["problem", "solver", "seed"])
    per_case = per_case.reindex(columns=["solve_seconds", "prepare_seconds"]).astype(float)
    timing_rows = results[results["t"].isna() & results["metric"].isin(["solve_seconds", "prepare_seconds"])]
    if len(timing_rows):
        from_results = timing_rows.pivot_table(
            index=["problem", "solver", "seed"], columns="metric", values="value", aggfunc="median"
        )
        per_case = per_case.combine_first(from_results.reindex(columns=per_case.columns))

    per_problem: dict[str, pd.DataFrame] = {}
    final_times: dict[str, float] = {}
    for problem in sorted(cases["problem"].unique()):
        cases_p = cases[cases["problem"] == problem]
        snap_p = snap[snap["problem"] == problem]
        per_case_p = (
            per_case.xs(problem, level="problem")
            if problem in per_case.index.get_level_values("problem")
            else pd.DataFrame(columns=per_case.columns)
        )
        per_problem[problem], final_times[problem] = _problem_table(
            cases_p, snap_p, per_case_p, case_rows[case_rows["problem"] == problem]
        )

    board = Leaderboard(
        tier=tier,
        per_problem=per_problem,
        summary=_summary(per_problem),
        failures=failures,
        figures={},
        files=[],
        runs=runs,
        final_times=final_times,
        problem_versions=problem_versions,
        notes=notes,
        metric_units=_metric_units(
            list(
                dict.fromkeys(
                    [
                        *QUANTITIES.values(),
                        *(
                            str(c)[len(EXTRA_PREFIX) :]
                            for table in per_problem.values()
                            for c in table.columns
                            if str(c).startswith(EXTRA_PREFIX)
                        ),
                    ]
                )
            )
        ),
        out_dir=Path(out_dir) if out_dir is not None else None,
    )
    if board.out_dir is not None:
        _write(board, snap)
    return board


def _write(board: Leaderboard, snap: pd.DataFrame) -> None:
    out = board.out_dir
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for problem, table in board.per_problem.items():
        snap_p = snap[snap["problem"] == problem]
        if not (snap_p["metric"] == "rel_error").any() and not (snap_p["metric"] == "w2").any():
            continue
        slug = base = slugify(problem)
        n = 2
        while slug in used:  # two names may slugify alike
            slug, n = f"{base}-{n}", n + 1
        used.add(slug)
        board.figures[problem] = _plot_problem(
            problem, snap_p, list(table["solver"]), out / "figures" / f"{slug}.png"
        )

    written = {
        "leaderboard.md": board.to_markdown(),
        "leaderboard.html": board.to_html(),
    }
    for name, text in written.items():
        (out / name).write_text(text, encoding="utf-8")
    board.tidy().to_csv(out / "leaderboard.csv", index=False)
    board.summary.to_csv(out / "leaderboard_summary.csv", index=False)
    board.failures.to_csv(out / "leaderboard_failures.csv", index=False)
    board.files = [
        out / "leaderboard.md",
        out / "leaderboard.csv",
        out / "leaderboard_summary.csv",
        out / "leaderboard_failures.csv",
        out / "leaderboard.html",
        *board.figures.values(),
    ]


def replace_readme_table(text: str, table: str) -> str:
    """``text`` with the block between :data:`README_BEGIN` and :data:`README_END` replaced by
    ``table``; raises :class:`WgfbenchError` when the markers are missing."""
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise WgfbenchError(f"no '{README_BEGIN}' … '{README_END}' block to replace")
    return text[: start + len(README_BEGIN)] + "\n" + table + text[end:]
