"""Leaderboards built from synthetic run directories written in the store's exact schemas.

Design of the synthetic campaign (times 0, 0.5, 1; rel_error(0.5) = rel_error(1) / 2 so that the
time average over t > 0 is 0.75 × the final value):

problem P1 = fokker-planck/ou-1d (has W2 and its floor), final rel_error per seed 0, 1, 2:
    alpha  0.10 0.12 failed(run A) → 0.11 (rerun in run B)   median 0.11,  [0.10, 0.12]
    beta   0.05 0.06 0.07                                     median 0.06,  [0.05, 0.07] → rank 1
    gamma  0.20 0.25 failed                                   median 0.225, [0.20, 0.25] → rank 3
    delta  0.08 0.09 0.50 (run B only)                        median 0.09,  [0.08, 0.50] → rank 2
    doomed failed ×3                                          unranked
(trajectory_error = 0.75 × final; alpha and delta overlap, so they share rank 2; gamma lies
strictly above beta and alpha, not above delta, so its rank is 3.)
problem P2 = porous-medium/barenblatt-2d-m2 (rel_error and energy gap only, no W2):
    alpha 0.30, beta 0.50, gamma 0.10 (all seeds alike), doomed failed ×3.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from wgfbench import store
from wgfbench.errors import WgfbenchError
from wgfbench.reports.console import compact_matrices
from wgfbench.reports.leaderboard import build_leaderboard
from wgfbench.reports.ranking import _interval_ranks
from wgfbench.reports.tables import FAILED_MARK, MISSING, display_table, slugify

ROLES = {"reference": "calibration", "frozen": "baseline", "equilibrium": "baseline"}
P1 = "fokker-planck/ou-1d"
P2 = "porous-medium/barenblatt-2d-m2"
TIMES = (0.0, 0.5, 1.0)
FAIL = None  # marks a failed case in the tables below

RUN_A = {
    P1: {
        "alpha": [0.10, 0.12, FAIL],
        "beta": [0.05, 0.06, 0.07],
        "gamma": [0.20, 0.25, FAIL],
        "doomed": [FAIL, FAIL, FAIL],
    },
    P2: {
        "alpha": [0.30, 0.30, 0.30],
        "beta": [0.50, 0.50, 0.50],
        "gamma": [0.10, 0.10, 0.10],
        "doomed": [FAIL, FAIL, FAIL],
    },
}
RUN_B = {P1: {"delta": [0.08, 0.09, 0.50], "alpha": [None, None, 0.11]}}  # alpha: only seed 2


def _case_rows(
    run_id: str,
    tier: str,
    problem: str,
    solver: str,
    seed: int,
    final: float | None,
    floor: float | None = None,
):
    """One case record in the store's cases schema and its rows in the public results schema;
    ``floor`` is the case's ``trajectory_floor`` row, written when given."""
    ok = final is not None
    record = {c: None for c in store.CASES_COLUMNS} | {
        "case_key": f"{run_id}-{solver}-{slugify(problem)}-{seed}",
        "solver": solver,
        "problem": problem,
        "problem_version": 1,
        "seed": seed,
        "solver_seed": 1000 + seed,
        "role": ROLES.get(solver, "solver"),
        "tier": tier,
        "device": "cpu",
        "status": "ok" if ok else "failed",
        "error_type": None if ok else "BudgetExceeded",
        "error": None if ok else f"{solver} used more than 180 s\nTraceback: ...",
        "prepare_seconds": 0.5 if ok else None,
        "solve_seconds": 1.0 + seed if ok else None,
        "score_seconds": 0.1,
    }
    rows = []
    if not ok:
        return record, rows

    def add(t: float, metric: str, value: float) -> None:
        rows.append(
            {
                "run_id": run_id,
                "solver": solver,
                "problem": problem,
                "seed": seed,
                "t": t,
                "step": -1,
                "metric": metric,
                "value": value,
            }
        )

    add(math.nan, "trajectory_error", 0.75 * final)  # the scorer's mean of rel_error over t > 0
    if floor is not None:
        add(math.nan, "trajectory_floor", floor)
    if solver == "cheat":
        add(math.nan, "floor_ratio", 1e-9)
        add(math.nan, "flag_suspect", 1.0)
    if solver == "leaky":
        add(math.nan, "flag_mass", 1.0)
    for t in TIMES:
        rel = final * t / TIMES[-1]
        if t > 0:
            add(t, "rel_error", rel)
        if problem == P1:
            floor = 0.04 + 0.001 * seed
            add(t, "w2_floor", floor)
            add(t, "w2", floor + 0.5 * rel)
            add(t, "energy_error", -0.01 * (seed + 1))
        else:
            add(t, "energy_gap", 0.2 * rel)
    add(math.nan, "solve_seconds", 1.0 + seed)
    add(math.nan, "seconds_per_step", 0.01)
    return record, rows


def write_run(
    root: Path, run_id: str, tier: str, created: str, plan: dict, floors: dict | None = None
) -> Path:
    """A consolidated run directory: manifest.json, cases.parquet, results.parquet. ``floors``
    maps (problem, solver) to the ``trajectory_floor`` written for each of its cases."""
    floors = floors or {}
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    manifest = {
        "schema_version": store.SCHEMA_VERSION,
        "run_id": run_id,
        "tier": tier,
        "base_seed": 0,
        "seeds": 3,
        "device": "cpu",
        "machine": {
            "cpu_model": "Synthetic CPU 2000",
            "torch_threads": 2,
            "host": "box",
            "cuda_device": None,
        },
        "versions": {"wgfbench": "0.1.0", "torch": "2.13", "plugins": {"wgfbench-extra": "0.3"}},
        "created": created,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    records, rows = [], []
    for problem, solvers in plan.items():
        for solver, finals in solvers.items():
            for seed, final in enumerate(finals):
                if run_id.startswith("run-b") and solver == "alpha" and seed != 2:
                    continue  # run B reruns only alpha's seed 2
                floor = floors.get((problem, solver))
                record, case_rows = _case_rows(run_id, tier, problem, solver, seed, final, floor)
                records.append(record)
                rows += case_rows
    pq.write_table(pa.Table.from_pylist(records, schema=store.CASES_SCHEMA), run_dir / "cases.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=store.RESULTS_SCHEMA), run_dir / "results.parquet")
    return run_dir


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_run(tmp_path / "runs", "run-a", "quick", "2025-01-01T10:00:00+00:00", RUN_A)
    b = write_run(tmp_path / "runs", "run-b", "quick", "2025-02-01T10:00:00+00:00", RUN_B)
    return a, b


def test_ranking_spreads_and_summary(runs: tuple[Path, Path]) -> None:
    board = build_leaderboard(list(runs))
    assert board.tier == "quick"
    assert set(board.per_problem) == {P1, P2}

    t1 = board.per_problem[P1].set_index("solver")
    assert list(board.per_problem[P1]["solver"]) == ["beta", "delta", "alpha", "gamma", "doomed"]
    # intervals (× 0.75): beta [0.05, 0.07], delta [0.08, 0.50], alpha [0.10, 0.12], gamma [0.20, 0.25]
    assert list(t1["rank"].iloc[:4]) == [1, 2, 2, 3]
    assert t1.loc["beta", "low"] == pytest.approx(0.75 * 0.05)
    assert t1.loc["beta", "high"] == pytest.approx(0.75 * 0.07)
    assert t1.loc["delta", "high"] == pytest.approx(0.75 * 0.50)
    assert set(t1["interval_source"].iloc[:4]) == {"seeds"} and t1.loc["doomed", "interval_source"] == ""
    assert pd.isna(t1.loc["doomed", "low"]) and not t1["at_floor"].any()  # no reference row here
    assert pd.isna(t1.loc["doomed", "rank"])
    assert (t1.loc["doomed", "seeds_ok"], t1.loc["doomed", "seeds_total"]) == (0, 3)
    assert (t1.loc["gamma", "seeds_ok"], t1.loc["gamma", "seeds_total"]) == (2, 3)

    # beta: finals 0.05, 0.06, 0.07 → median 0.06, IQR = 0.065 − 0.055
    assert t1.loc["beta", "rel_error_final_median"] == pytest.approx(0.06)
    assert t1.loc["beta", "rel_error_final_min"] == pytest.approx(0.05)
    assert t1.loc["beta", "rel_error_final_max"] == pytest.approx(0.07)
    assert t1.loc["beta", "rel_error_final_iqr"] == pytest.approx(0.01)
    assert t1.loc["gamma", "rel_error_final_median"] == pytest.approx(0.225)
    assert t1.loc["delta", "rel_error_final_max"] == pytest.approx(0.50)
    # mean over t ∈ {0.5, 1} of rel_error = 0.75 × final; monotone, so medians scale too; it is
    # also the scorer's trajectory_error, the ranking score
    assert t1.loc["beta", "rel_error_mean_median"] == pytest.approx(0.75 * 0.06)
    assert t1.loc["beta", "trajectory_error_median"] == pytest.approx(0.75 * 0.06)
    assert set(t1["role"]) == {"solver"} and not t1["fails_to_beat"].any()
    # W2 − floor = 0.5 × rel_error at t_final; floor of seeds 0, 1, 2 = 0.040, 0.041, 0.042
    assert t1.loc["beta", "w2_excess_final_median"] == pytest.approx(0.03)
    assert t1.loc["beta", "w2_excess_final_max"] == pytest.approx(0.035)
    assert t1.loc["beta", "w2_floor_final_median"] == pytest.approx(0.041)
    assert t1.loc["beta", "energy_error_final_median"] == pytest.approx(-0.02)
    assert t1.loc["beta", "solve_seconds_median"] == pytest.approx(2.0)
    assert t1.loc["beta", "prepare_seconds_median"] == pytest.approx(0.5)
    assert board.final_times[P1] == pytest.approx(1.0)

    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert shown.loc["beta", "rel_error final, median [min–max]"] == "0.06 [0.05–0.07]"
    assert shown.loc["beta", "trajectory error, median [interval]"] == "0.045 [0.0375, 0.0525]"
    assert list(shown["rank"]) == ["1", "2", "2", "3", "—"]
    assert shown.loc["doomed", "rel_error final, median [min–max]"] == "—"
    assert shown.loc["gamma", "seeds ok/total"] == "2/3"

    t2 = board.per_problem[P2]
    assert list(t2["solver"]) == ["gamma", "alpha", "beta", "doomed"]
    assert t2["w2_excess_final_median"].isna().all()
    assert t2.set_index("solver").loc["alpha", "energy_gap_final_median"] == pytest.approx(0.06)
    assert "W2 − floor final, median [min–max]" not in display_table(t2).columns

    # mean ranks (P1: beta 1, delta 2, alpha 2, gamma 3; P2: gamma 1, alpha 2, beta 3) all 2;
    # within 2× best: delta 1/1, the others 1/2; then by median trajectory error
    s = board.summary.set_index("solver")
    assert list(board.summary["solver"]) == ["delta", "gamma", "alpha", "beta", "doomed"]
    assert s.loc["beta", "mean_rank"] == pytest.approx(2.0)
    assert s.loc["alpha", "mean_rank"] == pytest.approx(2.0)
    assert s.loc["gamma", "mean_rank"] == pytest.approx(2.0)
    assert s.loc["delta", "within_2x_best"] == pytest.approx(1.0)
    assert s.loc["gamma", "within_2x_best"] == pytest.approx(0.5)
    assert s.loc["alpha", "median_trajectory_error"] == pytest.approx(0.75 * (0.11 + 0.30) / 2)
    assert (s.loc["beta", "first_places"], s.loc["gamma", "first_places"]) == (1, 1)
    assert (s.loc["alpha", "first_places"], s.loc["delta", "first_places"]) == (0, 0)
    assert (s["problems_at_floor"] == 0).all()
    assert s.loc["doomed", "problems"] == 2 and s.loc["doomed", "problems_ranked"] == 0
    assert s.loc["doomed", "within_2x_best"] == 0.0


def test_failures_table_and_newest_duplicate(runs: tuple[Path, Path]) -> None:
    board = build_leaderboard(list(runs))
    failures = board.failures
    # doomed × 2 problems × 3 seeds, gamma seed 2 on P1; alpha's failure was superseded by run B
    assert len(failures) == 7
    assert set(failures["solver"]) == {"doomed", "gamma"}
    gamma = failures[failures["solver"] == "gamma"].iloc[0]
    assert (gamma["problem"], gamma["seed"], gamma["error_type"]) == (P1, 2, "BudgetExceeded")
    assert "used more than 180 s" in gamma["error"]

    alpha = board.per_problem[P1].set_index("solver").loc["alpha"]
    assert (alpha["seeds_ok"], alpha["seeds_total"]) == (3, 3)
    assert alpha["rel_error_final_median"] == pytest.approx(0.11)
    assert alpha["solve_seconds_median"] == pytest.approx(2.0)  # 1, 2, 3 (rerun seed 2)
    assert len(board.notes) == 1
    assert "alpha" in board.notes[0] and "run-b" in board.notes[0] and "seed 2" in board.notes[0]
    assert "Notes" in board.to_markdown() and board.notes[0] in board.to_markdown()


def test_duplicate_keeps_newest_by_created_not_argument_order(tmp_path: Path) -> None:
    # Run A is now the newer one: its failed alpha seed 2 wins over run B's ok rerun.
    a = write_run(tmp_path, "run-a", "quick", "2025-03-01T10:00:00+00:00", RUN_A)
    b = write_run(tmp_path, "run-b", "quick", "2025-02-01T10:00:00+00:00", RUN_B)
    board = build_leaderboard([a, b])
    alpha = board.per_problem[P1].set_index("solver").loc["alpha"]
    assert (alpha["seeds_ok"], alpha["seeds_total"]) == (2, 3)
    assert alpha["rel_error_final_max"] == pytest.approx(0.12)  # 0.11 of run B not used
    assert ((board.failures["solver"] == "alpha") & (board.failures["seed"] == 2)).sum() == 1
    assert "kept the newer run 'run-a'" in board.notes[0]


def test_mixed_tiers_refused(runs: tuple[Path, Path], tmp_path: Path) -> None:
    smoke = write_run(tmp_path / "other", "run-c", "smoke", "2025-03-01T00:00:00+00:00", RUN_B)
    with pytest.raises(WgfbenchError, match="never mix tiers") as info:
        build_leaderboard([*runs, smoke])
    assert "'smoke'" in str(info.value) and "'quick'" in str(info.value)
    with pytest.raises(WgfbenchError):
        build_leaderboard([])
    with pytest.raises(WgfbenchError):
        build_leaderboard([tmp_path / "nowhere"])


def test_files_written(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "board"
    board = build_leaderboard(list(runs), out_dir=out)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
        assert out / name in board.files
    assert set(board.figures) == {P1, P2}
    assert board.figures[P1].name == "fokker-planck-ou-1d.png"
    for png in board.figures.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert png in board.files

    md = (out / "leaderboard.md").read_text()
    assert "tier `quick`" in md and "run-a" in md and "run-b" in md
    assert "CPU Synthetic CPU 2000" in md and "torch threads 2" in md and "plugins/wgfbench-extra 0.3" in md
    assert "## Metric units" in md and "rel_error" in md
    section = md[md.index(f"## {P1}") : md.index(f"## {P2}")]
    positions = [section.index(f"| {s} |") for s in ("beta", "delta", "alpha", "gamma", "doomed")]
    assert positions == sorted(positions)
    assert "| 0.045 [0.0375, 0.0525] |" in section
    assert "(figures/fokker-planck-ou-1d.png)" in section
    failures = md[md.index("## Failures") :]
    assert failures.count("| doomed |") == 6 and "BudgetExceeded" in failures

    tidy = pd.read_csv(out / "leaderboard.csv")
    assert {"tier", "problem", "solver", "rank", "quantity", "statistic", "value", "unit"} <= set(
        tidy.columns
    )
    pick = tidy[
        (tidy["problem"] == P1)
        & (tidy["solver"] == "delta")
        & (tidy["quantity"] == "rel_error_final")
        & (tidy["statistic"] == "median")
    ]
    assert len(pick) == 1 and pick["value"].iloc[0] == pytest.approx(0.09) and pick["rank"].iloc[0] == 2
    assert {"low", "high", "at_floor"} <= set(tidy.columns)
    assert pick["low"].iloc[0] == pytest.approx(0.75 * 0.08) and pick["high"].iloc[0] == pytest.approx(0.375)
    assert not pick["at_floor"].iloc[0]
    summary_csv = pd.read_csv(out / "leaderboard_summary.csv")
    assert "problems_at_floor" in summary_csv.columns

    page = (out / "leaderboard.html").read_text()
    pngs = [f for f in board.files if f.suffix == ".png"]
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == len(pngs) == 5
    assert set(board.problem_figures[P1]) == {"error", "pareto"}  # no energy rows, no snapshots here
    assert set(board.summary_figures) == {"pareto"}
    assert "beta" in page and "BudgetExceeded" in page

    console = Console(file=io.StringIO(), width=250, color_system=None)
    board.to_console(console, full=True)
    text = console.file.getvalue()
    assert all(name in text for name in ("alpha", "beta", "gamma", "delta", "doomed", P1, P2))
    assert "[min–max]" in text and "[0.05–0.07]" in text  # brackets are not eaten as rich markup


def test_slugify() -> None:
    assert slugify("porous-medium/barenblatt-2d-m2") == "porous-medium-barenblatt-2d-m2"
    assert slugify("Aggregation/Newton 2D (c=1)") == "aggregation-newton-2d-c-1"


def test_baselines_suspects_and_mass_flags(tmp_path: Path) -> None:
    plan = {
        P1: {
            "reference": [0.04, 0.05, 0.06],
            "frozen": [1.0, 1.0, 1.0],
            "equilibrium": [0.3, 0.3, 0.3],
            "good": [0.1, 0.1, 0.1],
            "lazy": [0.5, 0.5, 0.5],  # worse than equilibrium
            "cheat": [1e-9, 1e-9, 1e-9],  # copied the scoring draw: flagged by the scorer
            "leaky": [0.2, 0.2, 0.2],  # mass violated
        }
    }
    board = build_leaderboard([write_run(tmp_path, "run-f", "quick", "2025-01-01T00:00:00+00:00", plan)])
    table = board.per_problem[P1].set_index("solver")
    roles = table["role"].to_dict()
    assert roles["reference"] == "calibration" and roles["frozen"] == roles["equilibrium"] == "baseline"
    assert roles["good"] == "solver"
    # the suspect row is not ranked, whatever its score; everything else is ranked together
    assert pd.isna(table.loc["cheat", "rank"]) and table.loc["cheat", "suspect_seeds"] == 3
    assert pd.isna(table.loc["leaky", "rank"]) and table.loc["leaky", "mass_flag_seeds"] == 3
    assert list(board.per_problem[P1]["solver"])[:5] == ["reference", "good", "equilibrium", "lazy", "frozen"]
    assert table.loc["lazy", "fails_to_beat"] == "equilibrium"
    assert table.loc["good", "fails_to_beat"] == "" and table.loc["frozen", "fails_to_beat"] == ""
    assert table.loc["leaky", "mass_flag_seeds"] == 3
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert "does not beat equilibrium" in shown.loc["lazy", "flags"]
    assert shown.loc["cheat", "flags"].startswith("SUSPECT 3/3")
    assert "mass violated 3/3, not ranked" in shown.loc["leaky", "flags"]
    assert "frozen (baseline)" in shown.index and "reference (calibration)" in shown.index
    # the summary covers solvers only and names where a solver fails to beat a baseline
    s = board.summary.set_index("solver")
    assert set(s.index) == {"good", "lazy", "cheat", "leaky"}
    assert s.loc["good", "first_places"] == 1 and s.loc["lazy", "below_a_baseline"] == P1
    assert s.loc["good", "below_a_baseline"] == ""
    assert s.loc["cheat", "problems_ranked"] == 0 and s.loc["leaky", "problems_ranked"] == 0


# --------------------------------------------------------------------------------------------------
# Intervals, ties and the floor. Plans give final rel_error per seed; trajectory_error = 0.75 × final,
# so every interval below is 0.75 × [min, max] of its list.

TRAJECTORY = "trajectory error, median [interval]"

# p [0.10, 0.30] and q [0.25, 0.50] overlap; r [0.35, 0.70] overlaps q but lies strictly above p.
# q's median (0.45) is 2.25 × p's (0.20); r's (0.60) is 3 ×.
TIES = {"p": [0.10, 0.20, 0.30], "q": [0.25, 0.45, 0.50], "r": [0.35, 0.60, 0.70]}

# reference [0.10, 0.14]; better [0.02, 0.04] strictly below it; floorish [0.09, 0.15] overlaps it;
# shifted [0.30, 0.34] strictly above it; the two trivial baselines far above everything.
FLOOR = {
    "reference": [0.10, 0.12, 0.14],
    "better": [0.02, 0.03, 0.04],
    "floorish": [0.09, 0.13, 0.15],
    "shifted": [0.30, 0.32, 0.34],
    "equilibrium": [0.60, 0.60, 0.60],
    "frozen": [1.0, 1.0, 1.0],
}


def _board(tmp_path: Path, plan: dict, floors: dict | None = None):
    run = write_run(tmp_path, "run-i", "quick", "2025-01-01T00:00:00+00:00", plan, floors)
    return build_leaderboard([run])


def test_overlapping_intervals_share_a_rank(tmp_path: Path) -> None:
    board = _board(tmp_path, {P1: TIES})
    table = board.per_problem[P1].set_index("solver")
    # by medians alone the ranks would be 1, 2, 3
    assert table["rank"].to_dict() == {"p": 1, "q": 1, "r": 2}
    assert (table.loc["q", "low"], table.loc["q", "high"]) == pytest.approx((0.75 * 0.25, 0.75 * 0.50))
    assert list(board.per_problem[P1]["solver"]) == ["p", "q", "r"]  # ties ordered by median
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert shown["rank"].to_dict() == {"p": "1", "q": "1", "r": "2"}
    assert shown.loc["p", TRAJECTORY] == "0.15 [0.075, 0.225]"
    assert not table["at_floor"].any()  # no reference row: nothing is at the floor


def test_strictly_better_row_ranks_above_reference(tmp_path: Path) -> None:
    board = _board(tmp_path, {P1: FLOOR})
    table = board.per_problem[P1].set_index("solver")
    assert table.loc["better", "rank"] == 1 and table.loc["reference", "rank"] == 2
    assert not table.loc["better", "at_floor"]
    assert list(board.per_problem[P1]["solver"])[:2] == ["better", "reference"]
    assert board.summary.set_index("solver").loc["better", "first_places"] == 1


def test_row_overlapping_reference_is_at_floor_and_not_above_it(tmp_path: Path) -> None:
    board = _board(tmp_path, {P1: FLOOR})
    table = board.per_problem[P1].set_index("solver")
    assert table["at_floor"].to_dict() == {
        "better": False,
        "reference": False,  # the reference row itself is never marked
        "floorish": True,
        "shifted": False,
        "equilibrium": False,
        "frozen": False,
    }
    # floorish's low (0.0675) is below reference's (0.075), yet it shares reference's rank: only
    # better, strictly below both, counts for either
    assert table.loc["floorish", "rank"] == table.loc["reference", "rank"] == 2
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert shown.loc["floorish", TRAJECTORY].endswith("≈ ref")
    assert "≈" not in shown.loc["reference (calibration)", TRAJECTORY]
    assert "≈" not in shown.loc["better", TRAJECTORY]
    assert board.summary.set_index("solver")["problems_at_floor"].to_dict() == {
        "better": 0,
        "floorish": 1,
        "shifted": 0,
    }
    assert "≈ ref" in board.to_markdown() and "≈ ref" in board.to_html()

    # without a row strictly below it, reference ranks first and a row at the floor ties with it
    alone = {k: v for k, v in FLOOR.items() if k != "better"}
    table = _board(tmp_path / "alone", {P1: alone}).per_problem[P1].set_index("solver")
    assert table.loc["reference", "rank"] == 1 and table.loc["floorish", "rank"] == 1
    assert table.loc["floorish", "at_floor"]


def test_only_rows_overlapping_a_strictly_better_row_can_pass_reference() -> None:
    """The tie rule's guarantee about the reference row R, over random intervals: a row strictly
    below R ranks above it; a row X overlapping R ranks above R only if some row Y lies strictly
    below R and overlaps X (then X is tied with a row that is genuinely better than R)."""
    rng = np.random.default_rng(0)
    checked_pass = 0
    for _ in range(400):
        n = int(rng.integers(2, 8))
        low = rng.uniform(0.0, 1.0, n)
        high = low + rng.uniform(0.0, 0.4, n)
        ranks = _interval_ranks(pd.Series(low), pd.Series(high), pd.Series([True] * n)).to_numpy()
        r = 0  # row 0 plays reference
        for x in range(1, n):
            if high[x] < low[r]:
                assert ranks[x] < ranks[r]
            elif low[x] <= high[r] and ranks[x] < ranks[r]:  # overlaps R and ranks above it
                witnesses = [y for y in range(n) if high[y] < low[r] and high[y] >= low[x]]
                assert witnesses, (low, high, ranks)
                checked_pass += 1
        if not (high < low[r]).any():
            assert ranks[r] == 1
    assert checked_pass > 0  # the case occurs and was checked
    # the smallest instance: Y [0.3, 0.4] < R [0.5, 1.0]; X [0.2, 0.6] overlaps both
    ranks = _interval_ranks(pd.Series([0.5, 0.3, 0.2]), pd.Series([1.0, 0.4, 0.6]), pd.Series([True] * 3))
    assert list(ranks) == [2, 1, 1]


def test_shifted_solver_ranks_below_reference_and_not_at_floor(tmp_path: Path) -> None:
    board = _board(tmp_path, {P1: FLOOR})
    table = board.per_problem[P1].set_index("solver")
    # better, reference and floorish all lie strictly below shifted
    assert table.loc["shifted", "rank"] == 4 > table.loc["reference", "rank"]
    assert not table.loc["shifted", "at_floor"]
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert shown.loc["shifted", TRAJECTORY] == "0.24 [0.225, 0.255]"


def test_single_seed_interval_uses_trajectory_floor(tmp_path: Path) -> None:
    plan = {
        P1: {
            "solo": [0.20],  # 0.15 ± 0.03 = [0.12, 0.18]
            "solo2": [0.22],  # 0.165 ± 0.03 = [0.135, 0.195]: overlaps solo
            "bare": [0.40],  # no floor written: [0.30, 0.30]
            "multi": [0.50, 0.60],  # two seeds: [0.375, 0.45], its floor is not used
        }
    }
    floors = {(P1, "solo"): 0.03, (P1, "solo2"): 0.03, (P1, "multi"): 0.5}
    board = _board(tmp_path, plan, floors)
    table = board.per_problem[P1].set_index("solver")
    assert (table.loc["solo", "low"], table.loc["solo", "high"]) == pytest.approx((0.12, 0.18))
    assert (table.loc["bare", "low"], table.loc["bare", "high"]) == pytest.approx((0.30, 0.30))
    assert (table.loc["multi", "low"], table.loc["multi", "high"]) == pytest.approx((0.375, 0.45))
    assert table["interval_source"].to_dict() == {
        "solo": "floor",
        "solo2": "floor",
        "bare": "point",
        "multi": "seeds",
    }
    assert table["rank"].to_dict() == {"solo": 1, "solo2": 1, "bare": 3, "multi": 4}
    assert table.loc["solo", "trajectory_floor_median"] == pytest.approx(0.03)
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert shown.loc["solo", TRAJECTORY] == "0.15 [0.12, 0.18]"
    assert shown.loc["bare", TRAJECTORY] == "0.3"  # a point interval is shown as the score alone


def test_summary_first_places_are_shared_by_ties(tmp_path: Path) -> None:
    # reference lies strictly below every solver; ranks among solvers must not see it
    plan = {P1: {**TIES, "reference": [0.02, 0.03, 0.04]}}
    board = _board(tmp_path, plan)
    table = board.per_problem[P1].set_index("solver")
    assert table["rank"].to_dict() == {"reference": 1, "p": 2, "q": 2, "r": 3}
    assert table.loc[["p", "q", "r"], "solver_rank"].to_list() == [1, 1, 2]
    assert pd.isna(table.loc["reference", "solver_rank"])
    s = board.summary.set_index("solver")
    assert s["first_places"].to_dict() == {"p": 1, "q": 1, "r": 0}
    assert s["mean_rank"].to_dict() == pytest.approx({"p": 1.0, "q": 1.0, "r": 2.0})
    # the README matrix bolds every solver in first place
    row = board.matrix().iloc[0]
    assert row["p"].startswith("**") and row["q"].startswith("**") and not row["r"].startswith("**")


def test_performance_profile_counts_a_tied_solver_as_ratio_one(tmp_path: Path) -> None:
    plan = {P1: {**TIES, "doomed": [FAIL, FAIL, FAIL]}}
    board = _board(tmp_path, plan)
    table = board.per_problem[P1].set_index("solver")
    # q: median 2.25 × p's, but its interval overlaps p's → tied with the best
    assert table.loc["q", "profile_ratio"] == 1.0 and table.loc["p", "profile_ratio"] == 1.0
    assert table.loc["r", "profile_ratio"] == pytest.approx(3.0)
    assert table.loc["doomed", "profile_ratio"] == math.inf
    s = board.summary.set_index("solver")
    assert s["within_2x_best"].to_dict() == {"p": 1.0, "q": 1.0, "r": 0.0, "doomed": 0.0}


def test_fails_to_beat_unless_strictly_below_the_baseline(tmp_path: Path) -> None:
    plan = {
        P1: {
            "equilibrium": [0.30, 0.30, 0.30],
            "frozen": [1.0, 1.0, 1.0],
            "meh": [0.20, 0.25, 0.40],  # median below equilibrium's, interval overlaps it
            "fine": [0.10, 0.15, 0.20],  # strictly below both baselines
            "worse": [0.50, 0.60, 0.70],  # strictly above equilibrium, strictly below frozen
            "awful": [0.90, 1.00, 1.10],  # overlaps frozen, strictly above equilibrium
        }
    }
    board = _board(tmp_path, plan)
    table = board.per_problem[P1].set_index("solver")
    assert table["fails_to_beat"].to_dict() == {
        "fine": "",
        "meh": "equilibrium",
        "equilibrium": "",
        "worse": "equilibrium",
        "awful": "equilibrium, frozen",
        "frozen": "",
    }
    shown = display_table(board.per_problem[P1]).set_index("solver")
    assert "does not beat equilibrium" in shown.loc["meh", "flags"]
    s = board.summary.set_index("solver")
    assert s.loc["meh", "below_a_baseline"] == P1 and s.loc["fine", "below_a_baseline"] == ""
    assert board.matrix().iloc[0]["meh"].endswith("↓")


def test_matrix_marks_failed_partly_failed_and_unsupported(runs: tuple[Path, Path]) -> None:
    board = build_leaderboard(list(runs))
    shown = board.matrix().set_index("problem")
    assert shown.loc[f"`{P1}`", "doomed"] == shown.loc[f"`{P2}`", "doomed"] == FAILED_MARK  # ran, all failed
    assert shown.loc[f"`{P1}`", "gamma"] == "0.169 (2/3 ok)"  # seed 2 failed: 0.75 × 0.225
    assert shown.loc[f"`{P2}`", "delta"] == MISSING  # delta never ran on P2: not supported
    assert shown.loc[f"`{P1}`", "beta"] == "**0.045**"
    readme = board.to_readme_table()
    assert f"{FAILED_MARK}: it ran and every seed failed" in readme and f"{MISSING}: not supported" in readme
    shown_p1 = display_table(board.per_problem[P1]).set_index("solver")
    assert shown_p1.loc["doomed", "trajectory error, median [interval]"] == FAILED_MARK
    assert "1/3 seed(s) failed" in shown_p1.loc["gamma", "flags"]
    assert shown_p1.loc["beta", "flags"] == ""


def test_compact_matrix_fits_120_columns_with_many_solvers_and_problems(tmp_path: Path) -> None:
    problems = [f"some-long-family-name/problem-number-{i}-{d}d" for i, d in enumerate(range(1, 25))]
    solvers = [f"a-rather-long-solver-name-{i}" for i in range(14)] + ["frozen", "reference"]
    finals = {
        s: [0.1 + 0.01 * j, 0.11 + 0.01 * j, FAIL if j % 5 == 0 else 0.12] for j, s in enumerate(solvers)
    }
    plan = {p: dict(finals) for p in problems}
    plan[problems[0]]["a-rather-long-solver-name-3"] = [FAIL, FAIL, FAIL]
    del plan[problems[1]]["a-rather-long-solver-name-4"]
    board = build_leaderboard([write_run(tmp_path, "run-many", "quick", "2025-01-01T00:00:00+00:00", plan)])

    tables, key = compact_matrices(board, width=120)
    assert len(tables) >= 2  # 16 columns do not fit in one
    covered = [column.header.plain for table in tables for column in table.columns[1:]]
    assert len(covered) == len(solvers) and len(set(covered)) == len(covered)
    assert set(key.values()) == {s for s in solvers if len(s) > 8}
    for table in tables:
        assert table.row_count == len(problems)

    console = Console(file=io.StringIO(), width=120, color_system=None)
    board.to_console(console)
    lines = console.file.getvalue().splitlines()
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    assert "…" not in text
    for problem in problems:  # one line per problem and table: nothing wrapped, nothing cut
        short = "slfn/" + problem.split("/", 1)[1]
        rows = [line for line in lines if re.match(rf"\s*{re.escape(short)}\s", line)]
        assert len(rows) == len(tables), (problem, rows)
    assert FAILED_MARK in text and "a-rather-long-solver-name-3" in text  # in the key
    row = next(line for line in lines if line.strip().startswith("slfn/problem-number-1-2d "))
    assert MISSING in row
