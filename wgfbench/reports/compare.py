r"""Compare two runs of the same campaign: what a branch changed, told apart from scoring noise.

``wgfbench compare BASE HEAD`` reads two run directories (:class:`wgfbench.rundir.RunDir`) of one
tier and scoring scheme, typically the committed smoke baseline of ``main`` and a pull request's
run of the same campaign, and reports per (solver, problem, metric) whether HEAD regressed.

For every metric m of :data:`METRICS` (lower is better; those of :data:`JUDGED` decide the
verdict) and every (solver, problem) with ok seeds on both sides, with per-seed values
:math:`b_1..b_n` (BASE) and :math:`h_1..h_k` (HEAD):

.. math::

    \Delta = \operatorname{med}(h) - \operatorname{med}(b), \qquad
    \hat\sigma = 1.4826\,\operatorname{med}\big(D(b) \cup D(h)\big), \quad
    D(v) = \{|v_i - \operatorname{med}(v)|\} \text{ less one zero when } |v| \text{ is odd},

    \text{threshold} = \max\big(\text{tolerance},\ 3\,\hat\sigma\big), \qquad
    \text{tolerance} = \max(\text{abs\_tolerance},\ \text{rel\_tolerance}\cdot|\operatorname{med}(b)|,
        \ \text{floor}),

where floor is the metric's noise floor, what exact samples of the output's size score (the
median over both sides' seeds of ``trajectory_floor``, of ``rel_error_floor`` at the final time,
or of the calibration row's energy error): a move smaller than the scorer's resolution at this
tier is not a signal, however tight the seeds happen to cluster.

The pooled MAD :math:`\hat\sigma` is the median absolute deviation of every seed from its own
side's median, scaled by 1.4826 so that it estimates the standard deviation of one seed's value
for normal noise (``scipy.stats.median_abs_deviation(scale="normal")``): the seed-to-seed noise
of the row, which a reseeded rerun of unchanged code shows. With an odd number of seeds one
deviation is zero by construction (the median's own) and is left out: with three seeds it would
otherwise be a third of the sample and halve the estimate. What each choice does was measured on
real smoke runs of ``campaigns/ci-smoke.toml`` (34 solver × problem pairs, 3 seeds; three pairs of
runs of the same code with other base seeds or salts, and one with a solver's errors raised by
20 %): the raw MAD with the zeros flagged 4 of 115 rows of pure noise, this rule none of the 81
judged rows of any of the three pairs, and the planted regression on 3–4 rows of that solver and
no other (``docs/ci.md``). A row

* **regresses** when Δ > threshold *and* the interval rule of the leaderboard agrees: HEAD's
  interval lies strictly above BASE's (``low_head > high_base``; intervals are [min, max] over
  the seeds, or value ± ``trajectory_floor`` with a single seed, as in
  :mod:`wgfbench.reports.ranking`). Both must hold, so the stricter of the two decides: with
  one seed the MAD is 0 and the interval rule carries the noise; with many seeds whose intervals
  are wide the MAD rule does;
* **improves** symmetrically (Δ < −threshold and HEAD's interval strictly below BASE's);
* is **unchanged** otherwise (a move within noise is reported with its size, never flagged).

Cases count too: an ok case of BASE that fails in HEAD is a regression (``status``), a failure
of BASE that HEAD fixes an improvement; (solver, problem) pairs present on one side only are
listed, not judged. Costs (median solve and prepare seconds) are reported beside, never judged:
wall time on shared CI machines is not a signal at this sample size.

The result is a :class:`Comparison`: its :meth:`Comparison.to_markdown` is the report a CI job
posts on a pull request, :meth:`Comparison.summary_line` the one line for logs, and
:attr:`Comparison.regressed` the exit status (``wgfbench compare`` exits 1 on a regression).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wgfbench.errors import WgfbenchError
from wgfbench.reports.ranking import _interval as _score_interval
from wgfbench.reports.tables import _markdown_table
from wgfbench.rundir import RunDir

__all__ = [
    "DEFAULT_REL_TOLERANCE",
    "JUDGED",
    "MAD_FACTOR",
    "MAD_SCALE",
    "METRICS",
    "Comparison",
    "compare_runs",
    "pooled_mad",
]

MAD_FACTOR = 3.0
"""A median must move by more than this many pooled MADs to count (beside the tolerance)."""
MAD_SCALE = 1.4826
"""1/Φ⁻¹(3/4): the MAD times this estimates the standard deviation of normal noise."""
DEFAULT_REL_TOLERANCE = 0.10
"""Default tolerance: 10 % of BASE's median (a smaller move is never a regression)."""

METRICS: dict[str, str] = {
    "trajectory_error": "the ranking score: mean rel_error over snapshot times t > 0",
    "rel_error_final": "rel_error at the final snapshot time",
    "mass_violation": "lost, invented or negative mass (grid outputs)",
    "energy_error_final": (
        "|energy − reference energy| at the final snapshot time, as a share of the energy the "
        "reference dissipates from t = 0 to then"
    ),
}
"""Metrics compared per (solver, problem), all lower-is-better; what each means."""

JUDGED: tuple[str, ...] = ("trajectory_error", "rel_error_final", "mass_violation")
"""Metrics whose regressions fail the comparison. ``energy_error_final`` is reported with its
verdict but does not count: the particle energy estimate (k-NN entropy) is noise-dominated at the
smoke tier, and on real reseeded smoke runs it crossed the rule where nothing had changed (a
langevin row on box-1d moved by 4.5× its median between two runs of the same code)."""

_PER_CASE = ("trajectory_error", "trajectory_floor", "mass_violation")
_FINAL = {"rel_error_final": "rel_error", "energy_error_final": "energy_error"}
_COSTS = ("solve_seconds", "prepare_seconds")
_KEY = ["solver", "problem"]


# --------------------------------------------------------------------------------------------------
# Per-seed values


def _per_seed(run: RunDir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(cases, values)``: the run's cases, and one row per ok (solver, problem, seed) with a
    column per judged metric, its noise floor ``<metric>:floor`` where the scorer wrote one
    (``trajectory_floor``; ``rel_error_floor`` at the final time) and the costs."""
    cases = run.cases()
    results = run.results()
    ok = cases.loc[cases["status"] == "ok", ["solver", "problem", "seed"]]
    results = results.merge(ok, on=["solver", "problem", "seed"], how="inner")
    index = ["solver", "problem", "seed"]
    per_case = results[results["t"].isna() & results["metric"].isin(_PER_CASE)]
    values = per_case.pivot_table(index=index, columns="metric", values="value", aggfunc="median")
    snapshots = results[results["t"].notna() & (results["t"] > 0)]
    if "trajectory_floor" in values:
        values["trajectory_error:floor"] = values.pop("trajectory_floor")
    for column, metric in _FINAL.items():
        rows = snapshots[snapshots["metric"].isin([metric, f"{metric}_floor"])]
        if not (rows["metric"] == metric).any():
            continue
        t_final = rows.groupby("problem")["t"].transform("max")
        final = rows[np.isclose(rows["t"], t_final)].pivot_table(
            index=index, columns="metric", values="value", aggfunc="median"
        )
        value = final[metric].rename(column)
        if column == "energy_error_final":
            value = (value.abs() / _dissipated(results, index).reindex(value.index)).rename(column)
        values = values.join(value, how="outer")
        if f"{metric}_floor" in final:
            values = values.join(final[f"{metric}_floor"].rename(f"{column}:floor"), how="outer")
    costs = cases.loc[cases["status"] == "ok"].set_index(index)[list(_COSTS)].astype(float)
    values = values.join(costs, how="outer") if len(values) else costs
    return cases, values.reset_index()


def _dissipated(results: pd.DataFrame, index: list[str]) -> pd.Series:
    """Per case, |E_ref(0) − E_ref(t_final)|: the energy the reference dissipates over the run
    (NaN where it is zero or not scored, so the energy error is then not judged)."""
    energy = results[(results["metric"] == "energy_ref") & results["t"].notna()]
    if not len(energy):
        return pd.Series(dtype=float)
    ordered = energy.sort_values("t").groupby(index)["value"]
    dissipated = (ordered.first() - ordered.last()).abs()
    return dissipated.where(dissipated > 0)


def _interval(values: np.ndarray, floors: np.ndarray) -> tuple[float, float]:
    """The leaderboard's interval of a row (:func:`wgfbench.reports.ranking._interval`): [min, max]
    over ≥ 2 seeds; with one seed value ± its floor, or the point without one."""
    low, high, _ = _score_interval(pd.Series(values), pd.Series(floors[: values.size], dtype=float))
    return low, high


def _floors(group: pd.DataFrame, values: pd.Series, metric: str) -> np.ndarray:
    """Per-seed noise floor of ``metric`` for the seeds of ``values`` (what exact samples of the
    output's size score; empty where the scorer wrote none)."""
    column = f"{metric}:floor"
    if column not in group:
        return np.empty(0)
    return group.loc[values.index, column].to_numpy(float)


def _energy_floors(values: pd.DataFrame) -> dict[str, float]:
    """Per problem, the median relative energy error of the calibration row ``reference`` (exact
    samples of the output's size): the energy estimator's own noise, the floor of
    ``energy_error_final``."""
    if "energy_error_final" not in values:
        return {}
    exact = values[values["solver"] == "reference"]
    return exact.groupby("problem")["energy_error_final"].median().dropna().to_dict()


def _deviations(values: np.ndarray) -> np.ndarray:
    """|v_i − med(v)|, less the median's own zero when the count is odd (module docstring)."""
    deviations = np.abs(values - np.median(values))
    if values.size % 2 == 1:
        deviations = np.delete(deviations, np.argmin(deviations))
    return deviations


def pooled_mad(base: np.ndarray, head: np.ndarray) -> float:
    """The scaled pooled MAD σ̂ of the two sides' seeds (0 when neither has two seeds)."""
    deviations = np.concatenate([_deviations(base), _deviations(head)])
    return MAD_SCALE * float(np.median(deviations)) if deviations.size else 0.0


# --------------------------------------------------------------------------------------------------
# The comparison


@dataclass
class Comparison:
    """What changed from BASE to HEAD.

    ``rows``: one row per (solver, problem, metric) compared, with ``base_median``,
    ``head_median``, ``delta``, ``relative`` (Δ / |base median|), ``pooled_mad``, ``threshold``,
    ``base_low``/``base_high``/``head_low``/``head_high``, ``base_seeds``/``head_seeds`` and
    ``verdict`` (``regression``, ``improvement`` or ``unchanged``). ``status`` lists cases whose
    status changed (``verdict`` ``regression`` for ok → failed). ``only_base``/``only_head``
    list (solver, problem) pairs on one side only; ``costs`` the median costs on both sides.
    """

    base: RunDir
    head: RunDir
    rows: pd.DataFrame
    status: pd.DataFrame
    costs: pd.DataFrame
    only_base: list[tuple[str, str]] = field(default_factory=list)
    only_head: list[tuple[str, str]] = field(default_factory=list)
    rel_tolerance: float = DEFAULT_REL_TOLERANCE
    abs_tolerance: float = 0.0

    @property
    def judged(self) -> pd.DataFrame:
        """The rows of the :data:`JUDGED` metrics (the others are reported, not judged)."""
        return self.rows[self.rows["metric"].isin(JUDGED)]

    @property
    def regressions(self) -> pd.DataFrame:
        return self.judged[self.judged["verdict"] == "regression"]

    @property
    def improvements(self) -> pd.DataFrame:
        return self.judged[self.judged["verdict"] == "improvement"]

    @property
    def new_failures(self) -> pd.DataFrame:
        return self.status[self.status["verdict"] == "regression"]

    @property
    def regressed(self) -> bool:
        """Whether HEAD regressed on any metric, or fails a case that BASE ran ok."""
        return bool(len(self.regressions) or len(self.new_failures))

    def summary_line(self) -> str:
        """One line for a CI log."""
        pairs = self.rows[_KEY].drop_duplicates().shape[0] if len(self.rows) else 0
        fixed = int((self.status["verdict"] == "improvement").sum()) if len(self.status) else 0
        parts = [
            f"{len(self.regressions)} regression(s)",
            f"{len(self.new_failures)} new failure(s)",
            f"{len(self.improvements)} improvement(s)",
            f"{fixed} fixed failure(s)",
            f"{int((self.judged['verdict'] == 'unchanged').sum()) if len(self.rows) else 0} unchanged",
        ]
        verdict = "REGRESSED" if self.regressed else "ok"
        return (
            f"wgfbench compare: {verdict}: {', '.join(parts)} over {pairs} solver × problem pair(s) "
            f"({self.head.manifest.run_id} vs base {self.base.manifest.run_id})"
        )

    def per_solver(self) -> pd.DataFrame:
        """One row per solver: problems compared, rows regressed and improved, and the median over
        its problems of the relative change of ``trajectory_error`` (a shift common to every
        problem shows here before any single row crosses its threshold)."""
        traj = self.rows[self.rows["metric"] == "trajectory_error"]
        records = []
        for solver, rows in self.judged.groupby("solver", sort=True):
            mine = traj[traj["solver"] == solver]["relative"].dropna()
            records.append(
                {
                    "solver": solver,
                    "problems": rows["problem"].nunique(),
                    "regressed rows": int((rows["verdict"] == "regression").sum()),
                    "improved rows": int((rows["verdict"] == "improvement").sum()),
                    "trajectory_error change (median over problems)": (
                        f"{float(mine.median()):+.1%}" if len(mine) else "—"
                    ),
                }
            )
        return pd.DataFrame(records)

    def to_markdown(self) -> str:
        """The report: summary, regressions, improvements, status changes, pairs on one side
        only, every compared row (collapsed), costs, and the rule."""
        b, h = self.base.manifest, self.head.manifest
        lines = [
            "## wgfbench compare",
            "",
            f"**{self.summary_line().split(': ', 1)[1]}**",
            "",
            f"- base: `{self.base.path}` — run `{b.run_id}`, revision `{b.git_revision or 'unknown'}`, "
            f"{b.machine_line()}",
            f"- head: `{self.head.path}` — run `{h.run_id}`, revision `{h.git_revision or 'unknown'}`, "
            f"{h.machine_line()}",
            f"- tier `{h.tier}`; a row regresses when its median over seeds rises by more than "
            f"max(tolerance, {MAD_FACTOR:g} σ̂) and its interval lies strictly above the base's; σ̂ is "
            f"the pooled MAD over seeds scaled to a standard deviation; tolerance = "
            f"max({self.abs_tolerance:g}, {self.rel_tolerance:.0%} of the base median, the metric's "
            "noise floor: what exact samples score). Every metric is lower-is-better.",
            "",
        ]
        if len(self.rows):
            lines += ["### Per solver", "", _markdown_table(self.per_solver()), ""]
        for title, frame in (("Regressions", self.regressions), ("Improvements", self.improvements)):
            lines += [f"### {title} ({len(frame)})", ""]
            lines += [_markdown_table(_display_rows(frame)), ""] if len(frame) else ["None.", ""]
        noted = self.rows[~self.rows["metric"].isin(JUDGED) & (self.rows["verdict"] != "unchanged")]
        if len(noted):
            lines += [
                f"### Moves of metrics reported, not judged ({len(noted)})",
                "",
                "The energy estimate is noise-dominated at small tiers; these moves do not fail "
                "the comparison.",
                "",
                _markdown_table(_display_rows(noted)),
                "",
            ]
        if len(self.status):
            lines += ["### Status changes", "", _markdown_table(self.status), ""]
        for title, pairs in (("Only in base", self.only_base), ("Only in head", self.only_head)):
            if pairs:
                lines += [f"### {title} (not judged)", "", ", ".join(f"`{s}` on `{p}`" for s, p in pairs), ""]
        if len(self.rows):
            lines += [
                "<details><summary>Every compared row</summary>",
                "",
                _markdown_table(_display_rows(self.rows)),
                "",
                "</details>",
                "",
            ]
        if len(self.costs):
            lines += [
                "<details><summary>Costs (median seconds per case; reported, not judged)</summary>",
                "",
                _markdown_table(self.costs.round(3)),
                "",
                "</details>",
                "",
            ]
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _display_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "solver": rows["solver"],
            "problem": rows["problem"],
            "metric": rows["metric"],
            "base median [interval]": [
                f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]"
                for m, lo, hi in zip(rows["base_median"], rows["base_low"], rows["base_high"], strict=True)
            ],
            "head median [interval]": [
                f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]"
                for m, lo, hi in zip(rows["head_median"], rows["head_low"], rows["head_high"], strict=True)
            ],
            "change": [
                f"{d:+.3g} ({r:+.1%})" if math.isfinite(r) else f"{d:+.3g}"
                for d, r in zip(rows["delta"], rows["relative"], strict=True)
            ],
            "threshold": [_fmt(v) for v in rows["threshold"]],
            "seeds": [f"{b}/{h}" for b, h in zip(rows["base_seeds"], rows["head_seeds"], strict=True)],
            "verdict": rows["verdict"],
        }
    )


def _judge(
    base: np.ndarray, head: np.ndarray, base_floor: np.ndarray, head_floor: np.ndarray, tolerance: float
) -> dict[str, float | str]:
    """The row of one (solver, problem, metric): medians, Δ, pooled MAD, threshold, intervals and
    the verdict (module docstring)."""
    mb, mh = float(np.median(base)), float(np.median(head))
    delta = mh - mb
    pooled = pooled_mad(base, head)
    threshold = max(tolerance, MAD_FACTOR * pooled)
    b_low, b_high = _interval(base, base_floor)
    h_low, h_high = _interval(head, head_floor)
    if delta > threshold and h_low > b_high:
        verdict = "regression"
    elif delta < -threshold and h_high < b_low:
        verdict = "improvement"
    else:
        verdict = "unchanged"
    return {
        "base_median": mb,
        "head_median": mh,
        "delta": delta,
        "relative": delta / abs(mb) if mb != 0 else math.nan,
        "pooled_mad": pooled,
        "threshold": threshold,
        "base_low": b_low,
        "base_high": b_high,
        "head_low": h_low,
        "head_high": h_high,
        "base_seeds": int(base.size),
        "head_seeds": int(head.size),
        "verdict": verdict,
    }


def _status_changes(base_cases: pd.DataFrame, head_cases: pd.DataFrame) -> pd.DataFrame:
    index = ["solver", "problem", "seed"]
    # A case written twice (a resumed run) counts once, as its last record.
    b = base_cases.drop_duplicates(index, keep="last").set_index(index)
    h = head_cases.drop_duplicates(index, keep="last").set_index(index)
    both = b.index.intersection(h.index)
    rows = []
    for key in both:
        sb, sh = str(b.at[key, "status"]), str(h.at[key, "status"])
        if sb == sh:
            continue
        verdict = "regression" if sb == "ok" else ("improvement" if sh == "ok" else "unchanged")
        error = h.at[key, "error_type"] if sh != "ok" else b.at[key, "error_type"]
        rows.append(
            {
                "solver": key[0],
                "problem": key[1],
                "seed": key[2],
                "base": sb,
                "head": sh,
                "error": "" if pd.isna(error) else str(error),
                "verdict": verdict,
            }
        )
    columns = ["solver", "problem", "seed", "base", "head", "error", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _check_complete(run: RunDir) -> None:
    """:class:`WgfbenchError` unless every planned case of ``run`` is committed: a run killed
    half-way would otherwise pass for one with fewer cases."""
    planned = {c["key"] for c in run.manifest.plan_cases()}
    committed = set(run.cases()["case_key"]) if planned else set()
    missing = planned - committed
    if missing:
        raise WgfbenchError(
            f"{run.path} is not a complete run ({len(planned) - len(missing)} of {len(planned)} planned "
            f"cases committed): finish it with `wgfbench run ... --out {run.path} --resume` before comparing"
        )


def compare_runs(
    base: Path | str | RunDir,
    head: Path | str | RunDir,
    *,
    rel_tolerance: float = DEFAULT_REL_TOLERANCE,
    abs_tolerance: float = 0.0,
    metrics: Sequence[str] | None = None,
) -> Comparison:
    """Compare run HEAD with run BASE (module docstring for the rule).

    Raises :class:`WgfbenchError` when the runs are of different tiers or scoring schemes (their
    numbers are not comparable), or share no (solver, problem) pair.
    """
    if rel_tolerance < 0 or abs_tolerance < 0:
        raise WgfbenchError("tolerances are ≥ 0")
    base = base if isinstance(base, RunDir) else RunDir(base)
    head = head if isinstance(head, RunDir) else RunDir(head)
    metrics = list(METRICS) if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise WgfbenchError(f"unknown metric(s) {unknown} to compare; known: {', '.join(METRICS)}")
    b, h = base.manifest, head.manifest
    if b.tier != h.tier:
        raise WgfbenchError(
            f"cannot compare tier {h.tier!r} ({head.path}) with tier {b.tier!r} ({base.path})"
        )
    if b.scoring_version != h.scoring_version:
        raise WgfbenchError(
            f"{base.path} was scored by scoring scheme {b.scoring_version} and {head.path} by "
            f"{h.scoring_version}: rerun the base with this wgfbench (docs/scoring.md)"
        )
    for run in (base, head):
        _check_complete(run)
    base_cases, base_values = _per_seed(base)
    head_cases, head_values = _per_seed(head)
    pairs_b = set(map(tuple, base_cases[_KEY].to_numpy()))
    pairs_h = set(map(tuple, head_cases[_KEY].to_numpy()))
    common = sorted(pairs_b & pairs_h)
    if not common:
        raise WgfbenchError(f"{base.path} and {head.path} share no (solver, problem) pair to compare")

    rows = []
    energy_floor = _energy_floors(pd.concat([base_values, head_values], ignore_index=True))
    by_b = {k: g for k, g in base_values.groupby(_KEY)}
    by_h = {k: g for k, g in head_values.groupby(_KEY)}
    for pair in common:
        gb, gh = by_b.get(pair), by_h.get(pair)
        if gb is None or gh is None:
            continue
        for metric in metrics:
            if metric not in gb or metric not in gh:
                continue
            vb, vh = gb[metric].dropna(), gh[metric].dropna()
            if vb.empty or vh.empty:
                continue
            base_arr = vb.to_numpy(float)
            floors = _floors(gb, vb, metric), _floors(gh, vh, metric)
            if metric == "energy_error_final":
                resolution = energy_floor.get(pair[1], 0.0)
            else:
                both = np.concatenate(floors)
                resolution = float(np.nanmedian(both)) if both.size and np.isfinite(both).any() else 0.0
            tolerance = max(abs_tolerance, rel_tolerance * abs(float(np.median(base_arr))), resolution)
            judged = _judge(base_arr, vh.to_numpy(float), *floors, tolerance)
            rows.append({"solver": pair[0], "problem": pair[1], "metric": metric, **judged})
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=[*_KEY, "metric", "verdict"])
    order = {"regression": 0, "improvement": 1, "unchanged": 2}
    frame = (
        frame.assign(_order=frame["verdict"].map(order))
        .sort_values(["_order", "problem", "solver", "metric"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )

    costs = pd.concat(
        {
            "base": base_values.groupby(_KEY)[list(_COSTS)].median(),
            "head": head_values.groupby(_KEY)[list(_COSTS)].median(),
        },
        axis=1,
    )
    costs.columns = [f"{side} {name.replace('_seconds', ' s')}" for side, name in costs.columns]
    costs = costs.reindex(pd.MultiIndex.from_tuples(common, names=_KEY)).reset_index()

    return Comparison(
        base=base,
        head=head,
        rows=frame,
        status=_status_changes(base_cases, head_cases),
        costs=costs,
        only_base=sorted(pairs_b - pairs_h),
        only_head=sorted(pairs_h - pairs_b),
        rel_tolerance=rel_tolerance,
        abs_tolerance=abs_tolerance,
    )
