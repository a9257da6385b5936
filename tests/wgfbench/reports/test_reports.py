"""The written reports of a small real campaign (``conftest.py``: problems in 1, 2 and 10
dimensions cut out of the committed reference-campaign runs, a solver whose seeds all failed and
one with a failed seed): every figure kind per problem, the markdown's relative links, the
self-contained HTML, CSV, the failed / partly failed / unsupported marks and the terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from wgfbench.reports.figures import Snapshot, plot_snapshots, snapshot_panel_count
from wgfbench.reports.leaderboard import FIGURE_KINDS, Leaderboard
from wgfbench.reports.tables import FAILED_MARK, MATRIX_LEGEND, MISSING

PNG = b"\x89PNG\r\n\x1a\n"
# the problems of the campaign of conftest.py
ONE_D, TWO_D, HIGH_D = "fokker-planck/ou-1d", "fokker-planck/ou-2d", "fokker-planck/ou-10d"
ALL_FAILED, PARTLY_FAILED = "kalman-wasserstein/elliptic-2d", "kalman-wasserstein/linear-10d"


@pytest.mark.parametrize("problem", [ONE_D, TWO_D, HIGH_D])
def test_every_figure_kind_is_written_per_problem(real_board: Leaderboard, problem: str) -> None:
    kinds = real_board.problem_figures[problem]
    assert set(kinds) == set(FIGURE_KINDS)
    for path in kinds.values():
        assert path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
        assert path in real_board.files
    assert real_board.figures[problem] == kinds["error"]
    assert real_board.summary_figures["pareto"].read_bytes()[:8] == PNG


def _panel_means(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=float)


def test_snapshot_figures_differ_by_dimension(tmp_path: Path) -> None:
    """1-D density curves, 2-D heat maps (one panel more: the reference draw) and radial profiles
    each draw; a solver far from the reference changes the picture."""
    rng = np.random.default_rng(0)
    for dim in (1, 2, 5):
        reference = rng.normal(size=(4000, dim))
        near = Snapshot("near", rng.normal(size=(500, dim)), 1.0)
        far = Snapshot("far", rng.normal(size=(500, dim)) + 3.0, 1.0)
        a = plot_snapshots(f"toy/{dim}d", [near, near], reference, tmp_path / f"a{dim}.png")
        b = plot_snapshots(f"toy/{dim}d", [near, far], reference, tmp_path / f"b{dim}.png")
        pixels_a, pixels_b = _panel_means(a), _panel_means(b)
        assert pixels_a.shape == pixels_b.shape
        assert np.abs(pixels_a - pixels_b).mean() > 0.5, dim
        # 2-D: the reference draw is a heat map of its own; 1-D and radial: drawn in each panel
        assert snapshot_panel_count([near, far], reference) == (3 if dim == 2 else 2)
    one_panel = plot_snapshots("toy/1d", [near], None, tmp_path / "alone.png")
    assert one_panel.read_bytes()[:8] == PNG


def test_failed_partly_failed_and_unsupported_marks(real_board: Leaderboard) -> None:
    shown = real_board.matrix().set_index("problem")
    assert shown.loc[f"`{ALL_FAILED}`", "pwgf"] == FAILED_MARK
    assert shown.loc[f"`{PARTLY_FAILED}`", "pwgf"] == "0.024 (2/3 ok)"
    assert shown.loc[f"`{TWO_D}`", "pwgf"] == MISSING  # pwgf was not run on the OU problems here
    assert shown.loc[f"`{ONE_D}`", "quantile-jko"].startswith("**")
    assert FAILED_MARK in MATRIX_LEGEND and "not supported" in MATRIX_LEGEND and "k/n ok" in MATRIX_LEGEND
    table = real_board.per_problem[ALL_FAILED].set_index("solver")
    assert (table.loc["pwgf", "seeds_ok"], table.loc["pwgf", "seeds_failed"]) == (0, 3)
    md = (real_board.out_dir / "leaderboard.md").read_text()
    section = md[md.index(f"## {ALL_FAILED}") :]
    assert re.search(rf"\| pwgf \| 0/3 \| {FAILED_MARK} \|", section)
    partial = md[md.index(f"## {PARTLY_FAILED}") :]
    assert "1/3 seed(s) failed (see Failures)" in partial


def test_per_problem_tables_have_costs_energy_and_dissipation(real_board: Leaderboard) -> None:
    table = real_board.per_problem[PARTLY_FAILED].set_index("solver")
    assert table.loc["pwgf", "peak_memory_mb_median"] > 0
    assert table.loc["pwgf", "prepare_seconds_median"] > 0 and table.loc["pwgf", "solve_seconds_median"] > 0
    assert 0 <= table.loc["pwgf", "dissipation_median"] <= 1
    assert (
        table.loc["langevin", "energy_error_final_median"]
        == table.loc["langevin", "energy_error_final_median"]
    )
    shown = real_board.tables()[real_board.problem_heading(PARTLY_FAILED)]
    for header in (
        "energy error final, median [min–max]",
        "energy rises, share of steps (median [min–max])",
        "prepare s (median)",
        "solve s (median)",
        "peak MiB (median)",
    ):
        assert header in shown.columns
    tidy = pd.read_csv(real_board.out_dir / "leaderboard.csv")
    assert {"dissipation", "peak_memory_mb"} <= set(tidy["quantity"])
    assert set(tidy.loc[tidy["quantity"] == "peak_memory_mb", "unit"]) == {"MiB"}


def test_markdown_links_every_figure_relatively(real_board: Leaderboard) -> None:
    out = real_board.out_dir
    md = (out / "leaderboard.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    pngs = {p for p in real_board.files if p.suffix == ".png"}
    assert len(links) == len(pngs) == 5 * len(FIGURE_KINDS) + 1
    for link in links:
        assert not link.startswith(("/", "http")) and (out / link).resolve() in {p.resolve() for p in pngs}
    assert "## Problem × solver" in md and MATRIX_LEGEND in md
    matrix = pd.read_csv(out / "leaderboard_matrix.csv")
    assert list(matrix.columns) == list(real_board.matrix().columns)


def test_html_is_self_contained_and_complete(real_board: Leaderboard) -> None:
    page = (real_board.out_dir / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert (
        not re.search(r'(src|href)="(https?:)?//', page) and "http://" not in page and "https://" not in page
    )
    assert len(sources) == len([p for p in real_board.files if p.suffix == ".png"])
    assert page.count("<table>") == len(real_board.tables())
    for title in real_board.tables():
        assert title.replace("&", "&amp;") in page


def test_terminal_shows_summary_and_compact_matrix_only(real_board: Leaderboard) -> None:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    real_board.to_console(console)
    text = console.file.getvalue()
    assert all(len(line) <= 120 for line in text.splitlines())
    assert "Summary" in text and "Problem × solver" in text and "…" not in text
    assert "fp/ou-1d" in text and "kw/linear-10d" in text and FAILED_MARK in text and "0.024 2/3" in text
    assert real_board.problem_heading(ONE_D) not in text  # per-problem tables: files only
    assert str(real_board.out_dir / "leaderboard.html") in text
    assert str(real_board.out_dir / "leaderboard.md") in text

    full = Console(file=io.StringIO(), width=200, color_system=None)
    real_board.to_console(full, full=True)
    assert real_board.problem_heading(ONE_D) in full.file.getvalue()


def test_show_draws_and_tabulates_a_real_run(real_runs: list[Path], tmp_path: Path) -> None:
    from PIL import Image

    from wgfbench.reports.show import final_metrics, plot_final_snapshots, show_run
    from wgfbench.rundir import RunDir

    run = RunDir(real_runs[0])
    cases = run.cases()
    picked = cases[
        cases["problem"].isin([ONE_D, TWO_D, HIGH_D]) & cases["solver"].isin(["reference", "frozen"])
    ]
    assert len(picked) == 18  # 3 problems × 2 rows × 3 seeds
    path = plot_final_snapshots(run, picked, tmp_path / "snapshots.png")
    width, height = Image.open(path).size
    # 4 panels a row: 2 rows per problem (6 snapshots; 7 panels with the 2-D reference draw)
    assert (width, height) == (4 * 330, 6 * 300)

    final = final_metrics(run.results(), None)
    assert list(final.columns[:4]) == ["problem", "solver", "seed", "trajectory_error"]
    assert len(final) == int((cases["status"] == "ok").sum())
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert show_run(run, console, ["w2"], tmp_path / "all.png") == [tmp_path / "all.png"]
    text = console.file.getvalue()
    assert (
        run.manifest.run_id in text
        and "Metrics at the final time" in text
        and "final snapshots saved" in text
    )


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    from wgfbench.reports.figures import _pareto_front, pareto_points

    seconds = np.array([1.0, 2.0, 3.0, 4.0, 2.0])
    errors = np.array([3.0, 2.0, 4.0, 1.0, 2.5])
    assert list(_pareto_front(seconds, errors)) == [0, 1, 3]  # (3, 4) and (2, 2.5) are dominated
    table = pd.DataFrame(
        {
            "solver": ["a", "b", "c"],
            "role": ["solver"] * 3,
            "prepare_seconds_median": [1.0, np.nan, 0.5],
            "solve_seconds_median": [2.0, 1.0, np.nan],
            "trajectory_error_median": [0.1, 0.2, 0.3],
            "low": [0.05, 0.1, 0.2],
            "high": [0.2, 0.3, 0.4],
        }
    )
    points = pareto_points(table)  # no prepare time counts as 0; no solve time: no point
    assert list(points["solver"]) == ["a", "b"] and list(points["seconds"]) == [3.0, 1.0]
