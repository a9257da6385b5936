"""``wgfbench compare``: a planted 20 % error regression is flagged, reseeded noise is not (real
runs), failures count, and the committed CI baseline matches its campaign file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from wgfbench import store
from wgfbench.cli import main
from wgfbench.errors import WgfbenchError
from wgfbench.reports.compare import MAD_FACTOR, _judge, compare_runs
from wgfbench.rundir import RunDir
from wgfbench.runner import load_campaign, make_plan, run_plan

ROOT = Path(__file__).resolve().parents[2]
SOLVERS = ["reference", "langevin", "fv-jko"]
PROBLEMS = ["fokker-planck/ou-1d", "fokker-planck/ou-2d"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two real smoke runs of one campaign, reseeded (base seed 0 and 1, and two scoring salts):
    the noise a branch that changes nothing shows. The salts are fixed so that the test sees the
    same draws on every machine."""
    root = tmp_path_factory.mktemp("compare")
    out = {}
    for name, base_seed in (("base", 0), ("head", 1)):
        plan = make_plan(SOLVERS, PROBLEMS, seeds=3, tier="smoke", base_seed=base_seed)
        run_plan(plan, root / name, salt=f"test-compare-{name}")
        assert (store.read_cases(root / name)["status"] == "ok").all()
        out[name] = root / name
    return out


def _planted(run: Path, into: Path, solver: str, factor: float) -> Path:
    """A copy of ``run`` whose ``solver`` has every error metric multiplied by ``factor``."""
    shutil.copytree(run, into)
    results = store.read_results(into)
    errors = results["metric"].isin(["trajectory_error", "rel_error", "energy_error"])
    results.loc[errors & (results["solver"] == solver), "value"] *= factor
    store.write_parquet_atomic(into / store.RESULTS, results, store.RESULTS_SCHEMA)
    return into


def test_reseeded_noise_is_not_a_regression(runs):
    comparison = compare_runs(runs["base"], runs["head"])
    assert len(comparison.rows) >= 12
    moved = comparison.rows["delta"].abs() > 0
    assert moved.mean() > 0.5, "reseeded runs should differ: the test needs real noise"
    assert not comparison.regressed, comparison.to_markdown()
    assert comparison.summary_line().startswith("wgfbench compare: ok: 0 regression(s)")


def test_a_planted_20_percent_error_regression_is_flagged(runs, tmp_path):
    head = _planted(runs["head"], tmp_path / "head-regressed", "fv-jko", 1.2)
    comparison = compare_runs(runs["base"], head)
    assert comparison.regressed
    flagged = comparison.regressions
    assert set(flagged["solver"]) == {"fv-jko"}, comparison.to_markdown()
    traj = flagged[flagged["metric"] == "trajectory_error"]
    assert "fokker-planck/ou-2d" in set(traj["problem"])  # its seeds agree to 0.5 %: a clear move
    for _, row in traj.iterrows():
        assert row["relative"] > 0.1 and row["delta"] > MAD_FACTOR * row["pooled_mad"]
        assert row["head_low"] > row["base_high"]
    result = CliRunner().invoke(
        main, ["compare", str(runs["base"]), str(head), "--out", str(tmp_path / "r.md")]
    )
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("wgfbench compare: REGRESSED:") and "regression(s)" in last
    report = (tmp_path / "r.md").read_text()
    assert "### Regressions" in report and "fv-jko" in report.split("### Improvements")[0]


def test_the_same_planted_change_downwards_is_an_improvement(runs, tmp_path):
    head = _planted(runs["head"], tmp_path / "head-better", "fv-jko", 1 / 1.2)
    comparison = compare_runs(runs["base"], head)
    assert not comparison.regressed
    assert set(comparison.improvements["solver"]) == {"fv-jko"}
    result = CliRunner().invoke(main, ["compare", str(runs["base"]), str(head), "--quiet"])
    assert result.exit_code == 0 and result.output.count("\n") == 1


def test_a_case_that_fails_in_head_is_a_regression(runs, tmp_path):
    head = tmp_path / "head-failed"
    shutil.copytree(runs["head"], head)
    cases = store.read_cases(head)
    hit = (
        (cases["solver"] == "langevin")
        & (cases["seed"] == cases["seed"].min())
        & (cases["problem"] == PROBLEMS[0])
    )
    cases.loc[hit, ["status", "error_type"]] = ["failed", "BudgetExceeded"]
    store.write_parquet_atomic(head / store.CASES, cases, store.CASES_SCHEMA)
    comparison = compare_runs(runs["base"], head)
    assert comparison.regressed and len(comparison.new_failures) == 1
    assert comparison.new_failures.iloc[0]["error"] == "BudgetExceeded"


def test_mismatched_runs_are_refused_with_the_reason(runs, tmp_path):
    other = tmp_path / "other-tier"
    shutil.copytree(runs["head"], other)
    manifest = RunDir(other).manifest
    manifest.tier = "quick"
    RunDir(other).write_manifest(manifest)
    with pytest.raises(WgfbenchError, match="cannot compare tier 'quick'"):
        compare_runs(runs["base"], other)
    result = CliRunner().invoke(main, ["compare", str(runs["base"]), str(other)])
    assert result.exit_code == 2 and "cannot compare tier" in result.output


@pytest.mark.parametrize(
    ("base", "head", "verdict"),
    [
        ([1.0, 1.0, 1.0], [1.2, 1.2, 1.2], "regression"),  # no noise: the tolerance decides
        ([1.0, 1.0, 1.0], [1.05, 1.05, 1.05], "unchanged"),  # within the 10 % tolerance
        ([1.0, 0.7, 1.3], [1.2, 0.9, 1.5], "unchanged"),  # MAD 0.3: 3 × MAD = 0.9 > 0.2
        ([1.0, 0.99, 1.01], [1.3, 0.5, 1.31], "unchanged"),  # moved median, overlapping intervals
        ([1.0, 0.99, 1.01], [0.7, 0.69, 0.71], "improvement"),
    ],
)
def test_the_rule_takes_the_stricter_of_the_mad_and_interval_rules(base, head, verdict):
    base, head = np.array(base), np.array(head)
    row = _judge(base, head, np.empty(0), np.empty(0), tolerance=0.1 * np.median(base))
    assert row["verdict"] == verdict, row


def test_one_seed_uses_the_floor_as_its_interval():
    row = _judge(np.array([1.0]), np.array([1.3]), np.array([0.2]), np.array([0.2]), tolerance=0.1)
    assert row["pooled_mad"] == 0 and row["verdict"] == "unchanged"  # [0.8, 1.2] vs [1.1, 1.5]
    row = _judge(np.array([1.0]), np.array([1.5]), np.array([0.2]), np.array([0.2]), tolerance=0.1)
    assert row["verdict"] == "regression"


def test_the_committed_ci_baseline_is_a_run_of_the_ci_campaign():
    """CI compares a branch's run of campaigns/ci-smoke.toml with leaderboards/baseline/smoke:
    they must be the same campaign, and the baseline compared with itself shows nothing."""
    spec = load_campaign(ROOT / "campaigns" / "ci-smoke.toml")
    baseline = RunDir(ROOT / "leaderboards" / "baseline" / "smoke")
    manifest = baseline.manifest
    assert [manifest.tier] == spec.tiers and manifest.base_seed == spec.base_seed
    cases = baseline.cases()
    planned = {(c["solver"], c["problem"]) for c in manifest.plan_cases()}
    skipped = {(s["solver"], s["problem"]) for s in manifest.plan_skipped()}
    assert planned | skipped == {(s, p) for s in spec.solvers for p in spec.problems}
    assert len(cases) == len(planned) * spec.seeds
    assert (cases["status"] == "ok").all(), cases[cases["status"] != "ok"][["solver", "problem", "error"]]
    itself = compare_runs(baseline, baseline)
    assert not itself.regressed and (itself.rows["delta"] == 0).all()


def test_the_ci_workflow_in_the_docs_runs_commands_that_exist():
    import yaml

    text = (ROOT / "docs" / "ci.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    workflow = yaml.safe_load(block)
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    script = "\n".join(steps)
    assert "wgfbench run campaigns/ci-smoke.toml" in script
    assert "wgfbench compare leaderboards/baseline/smoke" in script
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    for name in ("run", "compare"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0


def test_results_without_final_snapshot_metrics_still_compare(runs, tmp_path):
    head = tmp_path / "head-no-energy"
    shutil.copytree(runs["head"], head)
    results = store.read_results(head)
    results = results[results["metric"] != "energy_error"]
    store.write_parquet_atomic(head / store.RESULTS, results, store.RESULTS_SCHEMA)
    comparison = compare_runs(runs["base"], head)
    assert "energy_error_final" not in set(comparison.rows["metric"])
    assert isinstance(comparison.costs, pd.DataFrame) and len(comparison.costs)


def test_the_measurement_in_docs_ci_is_its_committed_table(tmp_path):
    """docs/ci.md shows leaderboards/compare-noise/table.md verbatim, and that table is what
    benchmarks/compare_noise.py computes from the committed runs (all but the line naming the
    output file)."""
    import subprocess
    import sys

    from wgfbench.reports.readme import stale_blocks

    docs = ROOT / "docs" / "ci.md"
    assert stale_blocks(docs.read_text(), docs.parent) == []
    out = tmp_path / "table.md"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_noise.py"), "--out", str(out)],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    committed = (ROOT / "leaderboards" / "compare-noise" / "table.md").read_text()
    assert out.read_text().splitlines()[:-1] == committed.splitlines()[:-1]
