"""A small real campaign for the report tests: a few problems cut out of the committed quick-tier
runs of the README's reference campaign (``leaderboards/quick-cpu/runs``), with their final
snapshots, and the leaderboard built from it with every file written (once per session).

Problems: ``fokker-planck/ou-1d`` (1-D), ``fokker-planck/ou-2d`` (2-D), ``fokker-planck/ou-10d``
(d = 10), and from the ``pwgf`` run ``kalman-wasserstein/elliptic-2d`` (every pwgf seed failed)
and ``kalman-wasserstein/linear-10d`` (one pwgf seed of three failed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wgfbench import store
from wgfbench.reports.leaderboard import Leaderboard, build_leaderboard

ROOT = Path(__file__).resolve().parents[3]
RUNS = ROOT / "leaderboards" / "quick-cpu" / "runs"
ONE_D, TWO_D, HIGH_D = "fokker-planck/ou-1d", "fokker-planck/ou-2d", "fokker-planck/ou-10d"
ALL_FAILED, PARTLY_FAILED = "kalman-wasserstein/elliptic-2d", "kalman-wasserstein/linear-10d"
SUBSETS = {
    "solvers": [ONE_D, TWO_D, HIGH_D, ALL_FAILED, PARTLY_FAILED],
    "pwgf-other": [ALL_FAILED, PARTLY_FAILED],
}


def subset_run(source: Path, target: Path, problems: list[str]) -> Path:
    """A copy of the run ``source`` holding only the cases of ``problems`` (manifest, cases,
    results, their final snapshots)."""
    target.mkdir(parents=True)
    shutil.copy2(source / store.MANIFEST, target / store.MANIFEST)
    cases = store.read_cases(source)
    cases = cases[cases["problem"].isin(problems)].reset_index(drop=True)
    results = store.read_results(source)
    results = results[results["problem"].isin(problems)].reset_index(drop=True)
    schema = pq.read_schema(source / store.CASES)
    pq.write_table(pa.Table.from_pandas(cases, schema=schema, preserve_index=False), target / store.CASES)
    pq.write_table(
        pa.Table.from_pandas(results, schema=store.RESULTS_SCHEMA, preserve_index=False),
        target / store.RESULTS,
    )
    for key in cases["case_key"]:
        snapshot = store.final_snapshot_path(source, key)
        if snapshot.is_file():
            (target / store.ARTIFACTS / key).mkdir(parents=True)
            shutil.copy2(snapshot, target / store.ARTIFACTS / key / snapshot.name)
    return target


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The subsets of the committed runs (see module docstring)."""
    missing = [name for name in SUBSETS if not (RUNS / name / store.MANIFEST).is_file()]
    if missing:
        pytest.fail(f"the committed reference-campaign runs {missing} are missing under {RUNS}")
    root = tmp_path_factory.mktemp("real-runs")
    return [subset_run(RUNS / name, root / name, problems) for name, problems in SUBSETS.items()]


@pytest.fixture(scope="session")
def real_board(real_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Leaderboard:
    """The leaderboard of :func:`real_runs`, every file written."""
    return build_leaderboard(real_runs, out_dir=tmp_path_factory.mktemp("real-board") / "leaderboard")
