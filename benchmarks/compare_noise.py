"""How well ``wgfbench compare`` tells change from noise, on committed real runs.

Three runs of ``campaigns/ci-smoke.toml`` (smoke tier, 3 seeds, 34 solver × problem pairs):
``leaderboards/compare-noise/seed0`` (base seed 0), ``.../seed1`` (base seed 1: new solver seeds
and reference draws) and the CI baseline ``leaderboards/baseline/smoke`` (base seed 0, another
scoring salt, a later revision whose solver changes, the no-flux wall flag, leave these problems'
numerics as they were). Every pair of them is noise: any flag is a false one. Then, for each
solver in turn, a copy of ``seed1`` with that solver's error metrics (``trajectory_error``,
``rel_error``, ``energy_error``) multiplied by 1.2 is compared with ``seed0`` and with the baseline:
the flags it raises on that solver are detections, on any other solver false ones.

    python benchmarks/compare_noise.py --out leaderboards/compare-noise/table.md

writes the markdown table that ``docs/ci.md`` shows (``wgfbench readme docs/ci.md`` copies it).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
from pathlib import Path

from wgfbench import store
from wgfbench.reports.compare import JUDGED, compare_runs
from wgfbench.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "seed0": ROOT / "leaderboards" / "compare-noise" / "seed0",
    "seed1": ROOT / "leaderboards" / "compare-noise" / "seed1",
    "baseline": ROOT / "leaderboards" / "baseline" / "smoke",
}
FACTOR = 1.2
ERRORS = ("trajectory_error", "rel_error", "energy_error")


def _short(revision: str | None) -> str:
    if not revision:
        return "unknown"
    return revision[:7] + (" with local changes" if revision.endswith("+dirty") else "")


def planted(run: Path, into: Path, solver: str) -> Path:
    """A copy of ``run`` (manifest, cases, results) with ``solver``'s errors times :data:`FACTOR`."""
    into.mkdir(parents=True)
    for name in (store.MANIFEST, store.CASES):
        shutil.copy(run / name, into / name)
    results = store.read_results(run)
    hit = results["metric"].isin(ERRORS) & (results["solver"] == solver)
    results.loc[hit, "value"] *= FACTOR
    store.write_parquet_atomic(into / store.RESULTS, results, store.RESULTS_SCHEMA)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    lines = [
        "| comparison (base → head) | judged rows | false regressions | false improvements "
        "| energy rows moved (not judged) |",
        "|---|---:|---:|---:|---:|",
    ]
    for a, b in itertools.combinations(RUNS, 2):
        c = compare_runs(RUNS[a], RUNS[b])
        noted = c.rows[~c.rows["metric"].isin(JUDGED) & (c.rows["verdict"] != "unchanged")]
        lines.append(
            f"| `{a}` → `{b}` | {len(c.judged)} | {len(c.regressions)} | "
            f"{len(c.improvements)} | {len(noted)} |"
        )
    lines += [
        "",
        f"| errors × {FACTOR:g} planted on | vs `seed0`: its rows flagged | vs baseline: its rows flagged "
        "| trajectory_error change, median over its problems | other solvers' rows flagged |",
        "|---|---:|---:|---:|---:|",
    ]
    solvers = sorted(set(store.read_cases(RUNS["seed1"])["solver"]))
    with tempfile.TemporaryDirectory() as tmp:
        for solver in solvers:
            head = planted(RUNS["seed1"], Path(tmp) / solver, solver)
            cells, others, change = [], 0, ""
            for base in ("seed0", "baseline"):
                c = compare_runs(RUNS[base], head)
                mine = c.judged[c.judged["solver"] == solver]
                cells.append(f"{int((mine['verdict'] == 'regression').sum())} of {len(mine)}")
                others += int(((c.judged["solver"] != solver) & (c.judged["verdict"] != "unchanged")).sum())
                if base == "seed0":
                    row = c.per_solver().set_index("solver").loc[solver]
                    change = row["trajectory_error change (median over problems)"]
            lines.append(f"| `{solver}` | {cells[0]} | {cells[1]} | {change} | {others} |")
    runs = ", ".join(
        f"`{p.relative_to(ROOT)}` (revision {_short(RunDir(p).manifest.git_revision)}, base seed "
        f"{RunDir(p).manifest.base_seed})"
        for p in RUNS.values()
    )
    lines += [
        "",
        f"Runs: {runs} (smoke tier, 3 seeds, `campaigns/ci-smoke.toml`). Default rule: tolerance 10 % "
        "of the base median or the metric's noise floor, 3 σ̂, non-overlapping intervals. Written by "
        f"`python benchmarks/compare_noise.py --out {args.out}`.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
