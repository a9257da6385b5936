"""The leaderboard on a terminal: the summary and one compact problem × solver matrix that fit the
console's width (120 columns by default) without wrapping, short problem ids and abbreviated
solver names (with their key), split into several matrices by groups of solver columns when one
does not fit; then where the written files are. ``full`` also prints every per-problem table and
the failures (they are always in the markdown and HTML files)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wgfbench.errors import WgfbenchError
from wgfbench.reports.ranking import PROFILE_FACTOR
from wgfbench.reports.tables import (
    AT_FLOOR_MARK,
    FAILED_MARK,
    MISSING,
    MatrixCell,
    _display_failures,
    _fmt,
    abbreviate,
    display_table,
    matrix_cells,
    short_problem,
)

if TYPE_CHECKING:
    from wgfbench.reports.leaderboard import Leaderboard

DEFAULT_WIDTH = 120
SOLVER_ABBREVIATION = 8
"""Solver names longer than this are abbreviated in the matrix columns (see :func:`abbreviate`)."""

COMPACT_LEGEND: tuple[str, ...] = (
    "*: first place among solvers (ties share it); ≈: at the noise floor; ↓: not below a trivial baseline",
    f"!: suspect; m: mass violated; k/n: only k of n seeds ok; {FAILED_MARK}: every seed failed; "
    f"{MISSING}: not run (unsupported)",
    "†: the problem ranks the end state only",
)
"""The legend of the compact matrix, one line each (each fits in :data:`DEFAULT_WIDTH`)."""


def _rendered_width(table: Table) -> int:
    """The width of the widest line of ``table`` rendered without a width limit."""
    console = Console(file=io.StringIO(), width=10_000, color_system=None, legacy_windows=False)
    console.print(table)
    return max((len(line) for line in console.file.getvalue().splitlines()), default=0)


def _matrix_table(
    title: str,
    problems: Sequence[str],
    columns: Sequence[str],
    labels: dict[str, str],
    cells: dict[str, dict[str, MatrixCell]],
    ends: set[str],
) -> Table:
    table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(Text("problem"), no_wrap=True)
    for name in columns:
        table.add_column(Text(labels[name]), no_wrap=True, justify="right")
    for problem in problems:
        row = [Text(short_problem(problem) + ("†" if problem in ends else ""))]
        for name in columns:
            cell = cells[problem][name]
            style = "bold" if cell.first else ("red" if cell.status == "failed" else "")
            row.append(Text(cell.plain(), style=style))
        table.add_row(*row)
    return table


def compact_matrices(board: Leaderboard, width: int = DEFAULT_WIDTH) -> tuple[list[Table], dict[str, str]]:
    """The problem × solver matrix as rich tables no wider than ``width``: problems by short id
    (:func:`short_problem`, ``†`` for end-state-only problems), solvers by abbreviation
    (:func:`abbreviate`), the solver columns split into the fewest consecutive groups that fit,
    of near-equal sizes. Returns the tables and the abbreviation key (abbreviation → name) of the
    shortened names."""
    columns, cells = matrix_cells(board.per_problem, board.summary)
    labels = abbreviate(columns, SOLVER_ABBREVIATION)
    problems = list(cells)
    ends = {p for p, t in board.per_problem.items() if "end_state_only" in t and t["end_state_only"].any()}

    def build(group: Sequence[str], part: int, parts: int) -> Table:
        title = "Problem × solver: median trajectory_error" + (f" ({part}/{parts})" if parts > 1 else "")
        return _matrix_table(title, problems, group, labels, cells, ends)

    groups = _groups(columns, lambda group: _rendered_width(build(group, 1, 1)) <= width)
    tables = [build(group, i + 1, len(groups)) for i, group in enumerate(groups)]
    key = {labels[n]: n for n in columns if labels[n] != n}
    return tables, key


def _groups(columns: Sequence[str], fits: Callable[[Sequence[str]], bool]) -> list[list[str]]:
    """``columns`` cut into the fewest consecutive groups that each ``fits``, balanced: k groups of
    near-equal size for the smallest k where all fit (greedy groups when no balanced cut does; a
    single column that does not fit is a group of its own)."""
    columns = list(columns)
    if not columns:
        return [[]]
    for k in range(1, len(columns) + 1):
        size, extra = divmod(len(columns), k)
        groups, start = [], 0
        for i in range(k):
            stop = start + size + (1 if i < extra else 0)
            groups.append(columns[start:stop])
            start = stop
        if all(fits(g) for g in groups):
            return groups
    return [[c] for c in columns]


def summary_table(board: Leaderboard, width: int = DEFAULT_WIDTH) -> Table:
    """The summary (solver rows) with counts instead of problem lists, every column unwrapped;
    solver names abbreviated as in the matrix (:func:`abbreviate`) when the full names do not fit
    in ``width``."""
    table = _summary_table(board, {})
    if _rendered_width(table) > width:
        table = _summary_table(board, abbreviate(list(board.summary["solver"]), SOLVER_ABBREVIATION))
    return table


def _summary_table(board: Leaderboard, labels: dict[str, str]) -> Table:
    summary = board.summary
    table = Table(
        title=Text("Summary (solvers only)"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    headers = (
        "solver",
        "ranked/run",
        "first",
        "mean rank",
        f"{AT_FLOOR_MARK}",
        "median error",
        f"≤{PROFILE_FACTOR:g}× best",
        "below baseline",
        "failed cases",
    )
    for header in headers:
        table.add_column(Text(header), no_wrap=True, justify="left" if header == "solver" else "right")
    failed = _failed_counts(board)
    for _, row in summary.iterrows():
        below = [p for p in str(row["below_a_baseline"] or "").split(", ") if p]
        table.add_row(
            Text(labels.get(str(row["solver"]), str(row["solver"]))),
            Text(f"{row['problems_ranked']}/{row['problems']}"),
            Text(str(row["first_places"])),
            Text(_fmt(row["mean_rank"])),
            Text(str(row["problems_at_floor"])),
            Text(_fmt(row["median_trajectory_error"])),
            Text(f"{row['within_2x_best']:.0%}"),
            Text(str(len(below))),
            Text(failed.get(str(row["solver"]), "0")),
        )
    return table


def _failed_counts(board: Leaderboard) -> dict[str, str]:
    """Per solver: the number of its failed cases."""
    failures = board.failures
    if not len(failures):
        return {}
    return {str(s): str(n) for s, n in failures.groupby("solver").size().items()}


def _rich_table(frame: pd.DataFrame, title: str) -> Table:
    # Text objects, not markup strings: "[min–max]" would otherwise be read as a style tag.
    table = Table(title=Text(title), title_justify="left")
    for column in frame.columns:
        table.add_column(Text(str(column)), overflow="fold")
    for row in frame.itertuples(index=False):
        # A spread on its own line keeps the columns narrow on a terminal.
        table.add_row(*[Text(str(v).replace(" [", "\n[")) for v in row])
    return table


def print_leaderboard(
    board: Leaderboard, console: Console, full: bool = False, files_hint: bool = True
) -> None:
    """Print the header, the summary and the compact matrix (:func:`compact_matrices` at the
    console's width, at most :data:`DEFAULT_WIDTH`), then where the files are (or, with
    ``files_hint``, how to write them); with ``full`` also every per-problem table and the
    failures."""
    width = min(console.width, DEFAULT_WIDTH)
    console.print(f"[bold]wgfbench leaderboard[/bold] — tier {escape(board.tier)}", highlight=False)
    for run in board.runs:
        console.print(f"run {run.run_id} ({run.n_cases} cases) on {run.machine}", markup=False)
    for note in board.notes:
        console.print(f"note: {note}", markup=False)
    if len(board.summary):
        console.print(summary_table(board, width))
    else:
        console.print(
            "Summary: no row of role 'solver' ran (only baselines or calibration rows)", markup=False
        )
    if board.per_problem:
        tables, key = compact_matrices(board, width)
        for table in tables:
            console.print(table)
        if key:
            console.print("solvers: " + "; ".join(f"{a} = {n}" for a, n in key.items()), markup=False)
        for line in COMPACT_LEGEND:
            console.print(line, markup=False, highlight=False)
    if len(board.failures):
        console.print(
            f"{len(board.failures)} failed case(s): listed under Failures in the written files "
            "(or with --full)",
            markup=False,
        )
    if full:
        for problem, table in board.per_problem.items():
            console.print(_rich_table(display_table(table), board.problem_heading(problem)))
        if len(board.failures):
            console.print(_rich_table(_display_failures(board.failures), "Failures"))
    elif board.per_problem:
        console.print(
            f"{len(board.per_problem)} per-problem table(s) (costs, energy, flags): in the written files, "
            "or print them with --full",
            markup=False,
        )
    if board.out_dir is not None and board.files:
        for name in ("leaderboard.md", "leaderboard.html"):
            path = board.out_dir / name
            if path.is_file():
                console.print(f"written: {path}", markup=False, highlight=False, soft_wrap=True)
        n_figures = sum(1 for f in board.files if f.suffix == ".png")
        console.print(
            f"  and CSV files and {n_figures} figure(s) in {board.out_dir}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    elif files_hint:
        console.print("markdown, HTML, CSV and figures: add --out DIR", markup=False)


def print_run_leaderboard(run_dir: Path, console: Console) -> None:
    """The end of ``wgfbench run``: the run's summary and compact matrix (no per-problem tables,
    no files written) and the command that writes the full reports. Prints why when the run
    cannot be ranked (no ok case, an unreadable run) instead of raising."""
    from wgfbench.reports.leaderboard import build_leaderboard

    try:
        board = build_leaderboard([run_dir])
    except WgfbenchError as exc:
        console.print(f"no leaderboard for {run_dir}: {exc}", markup=False, highlight=False)
        return
    print_leaderboard(board, console, files_hint=False)
    console.print(
        f"Tables, figures and the HTML report: wgfbench leaderboard {run_dir} "
        f"--out {run_dir / 'leaderboard'}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
