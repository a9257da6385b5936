"""Display formatting of the leaderboards: the per-problem tables, the summary, the failures and
the problem × solver matrix as strings (3 significant digits, spreads, marks), and markdown.

Marks of a cell of the matrix (:func:`matrix`) and their legend (:data:`MATRIX_LEGEND`): **bold**
first place among solvers, ``≈`` at the floor, ``↓`` not strictly below a trivial baseline, ``!``
suspect, ``m`` grid mass violated, ``k/n ok`` only k of the n seeds ran to the end,
:data:`FAILED_MARK` every seed failed, :data:`MISSING` not supported (never run).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wgfbench.reports.ranking import EXTRA_PREFIX, PROFILE_FACTOR

MISSING = "—"
"""A cell with nothing to show; in the matrix: the solver was not run on the problem (unsupported)."""
_MISSING = MISSING
FAILED_MARK = "✗ failed"
"""The matrix cell (and ranking cell) of a solver that ran on a problem but whose every seed failed."""
AT_FLOOR_MARK = "≈ ref"
"""Shown after the score of a row whose interval overlaps the ``reference`` row's."""


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return _MISSING
    if isinstance(value, (float, np.floating)):
        return f"{value:.3g}"
    return str(value)


def _fmt_score(value: float) -> str:
    """A matrix cell's score: three decimals (columns align), scientific below 5·10⁻⁴ so that a
    small score never reads as 0.000."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 5e-4 else f"{value:.1e}"


def _fmt_spread(row: pd.Series, quantity: str) -> str:
    median, lo, hi = row[f"{quantity}_median"], row[f"{quantity}_min"], row[f"{quantity}_max"]
    if pd.isna(median):
        return _MISSING
    if lo == hi:
        return _fmt(median)
    return f"{_fmt(median)} [{_fmt(lo)}–{_fmt(hi)}]"


def _fmt_interval(row: pd.Series) -> str:
    """The ranking cell: ``median [low, high]`` (the median alone when the interval is a point),
    followed by :data:`AT_FLOOR_MARK` when the row is at the floor; :data:`FAILED_MARK` when every
    seed of the row failed."""
    median, lo, hi = row["trajectory_error_median"], row["low"], row["high"]
    if pd.isna(median):
        return FAILED_MARK if _all_failed(row) else _MISSING
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
    "energy rises, share of steps (median [min–max])": ("dissipation", True),
    "prepare s (median)": ("prepare_seconds", False),
    "solve s (median)": ("solve_seconds", False),
    "peak MiB (median)": ("peak_memory_mb", False),
}


def _all_failed(row: pd.Series) -> bool:
    """Whether the row ran (it has cases) and none of its seeds ended ok."""
    return int(row.get("seeds_total", 0) or 0) > 0 and int(row.get("seeds_ok", 0) or 0) == 0


def _partly_failed(row: pd.Series) -> bool:
    """Whether some but not all seeds of the row ended ok."""
    return 0 < int(row.get("seeds_ok", 0) or 0) < int(row.get("seeds_total", 0) or 0)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per-problem table as strings for reading: the ranking score as ``median [low, high]`` with
    "≈ ref" for rows at the floor (:data:`FAILED_MARK` when every seed failed), other spreads as
    ``median [min–max]``, the final energy error, the share of logged steps whose energy rose
    (``dissipation``), prepare and solve seconds and peak memory, 3 significant digits; columns
    that no row has (e.g. W2 on an energy-gap problem) left out."""
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
    """What a reader must know about a row: failed seeds, suspect scores, mass violations,
    baselines not beaten."""
    parts = []
    if _partly_failed(row):
        failed = int(row["seeds_total"]) - int(row["seeds_ok"])
        parts.append(f"{failed}/{row['seeds_total']} seed(s) failed (see Failures)")
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
# The problem × solver matrix

NO_SCORE = "no score"
"""The matrix cell of a row whose seeds ended ok but wrote no ``trajectory_error``."""

MATRIX_LEGEND = (
    "Median over seeds of `trajectory_error` (mean `rel_error` over every snapshot t > 0; "
    "lower is better). Interval: [min, max] over seeds (± `trajectory_floor` for a single "
    "seed). **Bold**: first place among solvers — no other solver's interval lies strictly "
    "below its own (ties share first place); ≈: its interval overlaps `reference`'s (at the "
    "noise floor); ↓: its interval is not strictly below a trivial baseline's (`frozen`, "
    "`equilibrium`); !: scored far below its noise floor (not ranked); m: grid mass violated; "
    f"k/n ok: only k of its n seeds ran to the end (the score is over those); {FAILED_MARK}: it ran "
    f"and every seed failed (see Failures); {MISSING}: not supported (never run). `reference` is "
    "exact samples (the noise level)."
)
"""The legend of :func:`matrix` as the README and the reports show it."""


@dataclass(frozen=True)
class MatrixCell:
    """One cell of the problem × solver matrix: the score's text (or a status mark), its marks,
    whether it is a first place among solvers, and the ``k/n ok`` count of a partial failure."""

    text: str
    marks: str = ""
    first: bool = False
    partial: str = ""
    status: str = "ok"  # ok, failed, unsupported, no-score

    def markdown(self) -> str:
        """``**0.048**≈ (2/3 ok)``: bold first place, marks, partial failure."""
        text = f"**{self.text}**" if self.first else self.text
        return text + self.marks + (f" ({self.partial} ok)" if self.partial else "")

    def plain(self) -> str:
        """``0.048*≈ 2/3``: a first place starred (for text without bold), marks, ok/total seeds."""
        return (
            self.text
            + ("*" if self.first else "")
            + self.marks
            + (f" {self.partial}" if self.partial else "")
        )


def _columns(per_problem: dict[str, pd.DataFrame], summary: pd.DataFrame) -> list[str]:
    solvers = list(summary["solver"]) if len(summary) else []
    others: list[str] = []
    for table in per_problem.values():
        for name, role in zip(table["solver"], table["role"], strict=True):
            if role != "solver" and name not in others and name not in solvers:
                others.append(name)
    rest = sorted(o for o in others if o != "reference")
    return solvers + (["reference"] if "reference" in others else []) + rest


def matrix_cells(
    per_problem: dict[str, pd.DataFrame], summary: pd.DataFrame
) -> tuple[list[str], dict[str, dict[str, MatrixCell]]]:
    """The columns (solvers in summary order, then ``reference``, then the baselines) and, per
    problem, one :class:`MatrixCell` per column (module docstring: marks)."""
    columns = _columns(per_problem, summary)
    cells: dict[str, dict[str, MatrixCell]] = {}
    for problem, table in per_problem.items():
        indexed = table.set_index("solver")
        first = set(table.loc[(table["role"] == "solver") & (table["solver_rank"] == 1), "solver"])
        row: dict[str, MatrixCell] = {}
        for name in columns:
            if name not in indexed.index:
                row[name] = MatrixCell(MISSING, status="unsupported")
                continue
            entry = indexed.loc[name]
            if pd.isna(entry["trajectory_error_median"]):
                failed = _all_failed(entry)
                row[name] = MatrixCell(
                    FAILED_MARK if failed else NO_SCORE, status="failed" if failed else "no-score"
                )
                continue
            marks = "≈" if entry["at_floor"] else ""
            marks += ("↓" if entry["fails_to_beat"] else "") + ("!" if entry["suspect_seeds"] else "")
            marks += "m" if entry["mass_flag_seeds"] else ""
            partial = f"{entry['seeds_ok']}/{entry['seeds_total']}" if _partly_failed(entry) else ""
            row[name] = MatrixCell(
                _fmt_score(entry["trajectory_error_median"]), marks, name in first, partial
            )
        cells[problem] = row
    return columns, cells


def matrix(per_problem: dict[str, pd.DataFrame], summary: pd.DataFrame) -> pd.DataFrame:
    """Problem × row matrix of the median ``trajectory_error`` as markdown strings, columns in the
    order of :func:`matrix_cells`; the legend is :data:`MATRIX_LEGEND`."""
    columns, cells = matrix_cells(per_problem, summary)
    rows = []
    for problem, row in cells.items():
        table = per_problem[problem]
        label = f"`{problem}`" + (" (end state)" if table["end_state_only"].any() else "")
        rows.append({"problem": label, **{name: row[name].markdown() for name in columns}})
    return pd.DataFrame(rows, columns=["problem", *columns])


# --------------------------------------------------------------------------------------------------
# Short names for the terminal


def short_problem(name: str) -> str:
    """A short id of a problem name: the family's initials (its first three letters when it is one
    word) before the slash: ``fokker-planck/ou-1d`` → ``fp/ou-1d``, ``aggregation/ring-2d`` →
    ``agg/ring-2d``."""
    if "/" not in name:
        return name
    family, rest = name.split("/", 1)
    words = [w for w in re.split(r"[-_]", family) if w]
    short = "".join(w[0] for w in words) if len(words) > 1 else family[:3]
    return f"{short}/{rest}"


def abbreviate(names: Sequence[str], width: int = 8) -> dict[str, str]:
    """Distinct abbreviations of at most ``width`` characters: a name that fits is kept; a longer
    one keeps the initials of its leading dash-separated words and its last word
    (``quantile-jko`` → ``q-jko``, ``learn-to-evolve`` → ``lt-evolv``), cut to ``width``; clashes
    get a number."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        if len(name) <= width:
            short = name
        else:
            words = [w for w in name.split("-") if w]
            short = ("".join(w[0] for w in words[:-1]) + "-" + words[-1] if len(words) > 1 else name)[:width]
        base, n = short, 2
        while short in used:
            suffix = str(n)
            short, n = base[: width - len(suffix)] + suffix, n + 1
        used.add(short)
        out[name] = short
    return out
