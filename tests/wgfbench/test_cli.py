"""The command line through click's CliRunner: list (json/table), run (plan, skips, failures as
results, resume), show, leaderboard, bad names and bad configs."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import types
from typing import ClassVar

import numpy as np
import pydantic
import pytest
from click.testing import CliRunner

import wgfbench
from wgfbench import store
from wgfbench.cli import main
from wgfbench.host import Host, set_default_host
from wgfbench.references import DistributionPath, Gaussian
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory


def ou_law(t: float) -> Gaussian:
    """Ornstein–Uhlenbeck ∂tρ = ∂x(ρx) + ∂²xρ from N(2, 1/4): N(2e^{-t}, e^{-2t}/4 + 1 − e^{-2t})."""
    return Gaussian([2.0 * math.exp(-t)], [[0.25 * math.exp(-2 * t) + 1 - math.exp(-2 * t)]])


def make_ou(name: str = "toy/ou-1d") -> wgfbench.Problem:
    return wgfbench.Problem(
        name=name,
        family="toy",
        dim=1,
        energy=wgfbench.Energy([wgfbench.Entropy(), wgfbench.Potential(lambda x: 0.5 * (x**2).sum(-1))]),
        initial=ou_law(0.0),
        times=(0.0, 1.0),
        dt=0.1,
        references={"pde": DistributionPath(ou_law, dim=1)},
        primary_metric="w2",
    )


class Config(wgfbench.SolverConfig):
    n_particles: pydantic.PositiveInt = 300


class ExactSampler(wgfbench.Solver):
    name = "toy-exact"
    role = "calibration"  # reads the exact reference, so it is handed the problem, not its view
    Config = Config
    presets: ClassVar = {"smoke": {"n_particles": 300}}

    def solve(self, problem, ctx):
        snaps = [
            ParticleSnapshot(t, problem.reference.sample(t, self.config.n_particles, ctx.cpu_generator))
            for t in problem.times
        ]
        return Trajectory(snaps, [StepRecord(t=1.0, tau=1.0, iterations=1)])


class Raising(ExactSampler):
    name = "toy-raise"

    def supports(self, problem):
        return True if problem.name == "toy/ou-1d" else "only toy/ou-1d"

    def solve(self, problem, ctx):
        raise RuntimeError("boom")


class Interrupting(ExactSampler):
    """A stop in the middle of a campaign: SIGTERM (what ``kill`` or a batch scheduler sends; the
    CLI treats it as Ctrl-C) to the campaign's process, this case's parent. SIGINT would do the
    same from a terminal, but a process started in the background ignores it."""

    name = "toy-interrupt"

    def supports(self, problem):
        return True if problem.name == "toy/other-1d" else "only toy/other-1d"

    def solve(self, problem, ctx):
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(60)


def plugin(broken: bool = False) -> types.ModuleType:
    module = types.ModuleType("toy_cli_plugin" if not broken else "broken_plugin")

    @wgfbench.hookimpl
    def wgfbench_register_problems(registry):
        if broken:
            raise ImportError("needs a missing package")
        registry.add(make_ou, name="toy/ou-1d")
        registry.add(lambda: make_ou("toy/other-1d"), name="toy/other-1d")

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        if not broken:
            registry.add(ExactSampler)
            registry.add(Raising)
            registry.add(Interrupting)

    module.wgfbench_register_problems = wgfbench_register_problems
    module.wgfbench_register_solvers = wgfbench_register_solvers
    return module


@pytest.fixture(autouse=True)
def toy_host():
    host = Host(entry_points=False, plugins=[plugin(), plugin(broken=True)])
    old = set_default_host(host)
    yield host
    set_default_host(old)


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_help_everywhere(cli):
    for command in ([], ["list"], ["run"], ["show"], ["leaderboard"]):
        result = cli(*command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output


def test_list_json_names_plugins_problems_and_failures(cli):
    result = cli("list", "--format", "json")
    assert result.exit_code == 0
    payload = json.loads(result.output)
    solvers = {s["name"]: s for s in payload["solvers"]}
    assert (
        set(solvers) == {"toy-exact", "toy-raise", "toy-interrupt"}
        and solvers["toy-exact"]["plugin"] == "toy_cli_plugin"
    )
    assert "n_particles" in solvers["toy-exact"]["config_schema"]["properties"]
    problems = {p["name"]: p for p in payload["problems"]}
    ou = problems["toy/ou-1d"]
    assert (ou["family"], ou["dim"], ou["reference"], ou["primary_metric"]) == ("toy", 1, "exact", "w2")
    assert ou["plugin"] == "toy_cli_plugin" and ou["error"] is None
    (failure,) = payload["failures"]
    assert failure["plugin"] == "broken_plugin" and "needs a missing package" in failure["error"]
    only = json.loads(cli("list", "--format", "json", "--kind", "solvers").output)
    assert "problems" not in only and len(only["solvers"]) == 3


def test_list_table(cli):
    result = cli("list")
    assert result.exit_code == 0
    for text in ("toy-exact", "toy/ou-1d", "toy_cli_plugin", "broken_plugin", "needs a missing package"):
        assert text in result.output


def test_run_show_resume_and_leaderboard(cli, tmp_path):
    out = tmp_path / "run"
    args = ["run", "-s", "toy-[er]*", "-p", "toy/*", "--out", str(out), "--no-progress", "--budget", "30"]
    result = cli(*args)
    assert result.exit_code == 0, result.output  # a failed case is a result, not an error
    assert "Skipped" in result.output and "only toy/ou-1d" in result.output
    assert "RuntimeError: boom" in result.output and "2 ok, 1 failed" in result.output
    # the end of the run: its summary and compact matrix, and how to write the full reports
    assert "Problem × solver" in result.output and f"wgfbench leaderboard {out} --out" in result.output
    cases = store.read_cases(out)
    assert sorted(zip(cases["solver"], cases["problem"], cases["status"], strict=True)) == [
        ("toy-exact", "toy/other-1d", "ok"),
        ("toy-exact", "toy/ou-1d", "ok"),
        ("toy-raise", "toy/ou-1d", "failed"),
    ]
    manifest = store.read_manifest(out)
    assert manifest["command"].startswith("wgfbench")

    shown = cli("show", str(out))
    assert shown.exit_code == 0, shown.output
    for text in (
        manifest["run_id"],
        "RuntimeError: boom",
        "Metrics at the final time",
        "w2_floor",
        "rel_error",
    ):
        assert text in shown.output
    figure = tmp_path / "final.png"
    assert cli("show", str(out), "--metric", "w2", "--figure", str(figure)).exit_code == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"

    again = cli(*args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0 and "0 ran now, 3 kept" in resumed.output
    assert len(store.read_cases(out)) == 3

    board_dir = tmp_path / "board"
    board = cli("leaderboard", str(out), "--out", str(board_dir))
    assert board.exit_code == 0, board.output
    assert "Summary: no row of role 'solver'" in board.output and "Problem × solver" in board.output
    # the matrix names problems by short id; the failed toy-raise case shows as failed, not unsupported
    assert "toy/ou-1d" in board.output and "✗ failed" in board.output
    for name in ("leaderboard.md", "leaderboard.html"):
        assert (board_dir / name).is_file() and f"written: {board_dir / name}" in board.output
    assert "toy/ou-1d (version" not in board.output  # the per-problem tables stay in the files...
    full = cli("leaderboard", str(out), "--full")
    assert full.exit_code == 0 and "toy/ou-1d (version" in full.output  # ...unless asked for
    assert "add --out DIR" in full.output


def test_final_snapshot_matches_the_reference_law(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("run", "-s", "toy-exact", "-p", "toy/ou-1d", "--out", str(out), "--no-progress").exit_code == 0
    (key,) = store.read_cases(out)["case_key"]
    x = store.load_npz(store.final_snapshot_path(out, key))["x"]
    assert x.shape == (wgfbench.TIERS["smoke"].n_eval, 1)
    var = 0.25 * math.exp(-2) + 1 - math.exp(-2)  # 500 resampled of 300 exact draws: loose 5σ bands
    assert abs(x.mean() - 2 * math.exp(-1)) < 5 * math.sqrt(var / 300)
    assert abs(np.var(x) / var - 1) < 5 * math.sqrt(2 / 300)


def test_unknown_names_and_bad_configs_are_usage_errors(cli, tmp_path):
    result = cli("run", "-s", "toy-exakt", "-p", "toy/ou-1d", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "Did you mean 'toy-exact'" in result.output
    result = cli("run", "-s", "toy-exact", "-p", "toy/ou-2d", "--out", str(tmp_path / "a"))
    assert result.exit_code == 2 and "unknown problem 'toy/ou-2d'" in result.output
    result = cli("run", "-s", "toy-exact", "-p", "toy/ou-1d", "--set", "toy-exact.n_particles=-5")
    assert result.exit_code == 2 and "n_particles" in result.output
    result = cli("run", "-s", "toy-exact", "-p", "toy/ou-1d", "--set", "toy-exact.n_particle=5")
    assert result.exit_code == 2 and "n_particle" in result.output
    result = cli("run", "-s", "toy-raise", "-p", "toy/other-1d", "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and "every selected" in result.output
    result = cli("run", "-s", "toy-exact", "-p", "toy/ou-1d", "--retry-failed")
    assert result.exit_code == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    result = cli("show", str(tmp_path))
    assert result.exit_code == 2 and "not a wgfbench run directory" in result.output


def test_dry_run_prints_the_plan_only(cli, tmp_path):
    out = tmp_path / "dry"
    result = cli("run", "-s", "toy-exact", "-p", "toy/*", "--seeds", "3", "--out", str(out), "--dry-run")
    assert result.exit_code == 0 and "6 case(s)" in result.output and not out.exists()


def test_interrupt_keeps_finished_cases_and_says_how_to_resume(cli, tmp_path):
    out = tmp_path / "run"
    args = ["run", "-s", "toy-exact", "-s", "toy-interrupt", "-p", "toy/other-1d", "--out", str(out)]
    result = cli(*args, "--no-progress")
    assert result.exit_code == 130 and "Interrupted" in result.output and "--resume" in result.output
    cases = store.read_cases(out)  # the case finished before Ctrl-C is on disk and readable
    assert list(zip(cases["solver"], cases["status"], strict=True)) == [("toy-exact", "ok")]
    assert store.read_manifest(out)["interrupted"] is True


@pytest.fixture
def builtins():
    old = set_default_host(Host(distributions={"wgfbench"}))
    yield
    set_default_host(old)


def test_resolution_runs_the_reference_row_and_writes_its_table(tmp_path, builtins):
    out = tmp_path / "res"
    result = CliRunner().invoke(
        main, ["resolution", "--tier", "smoke", "--seeds", "2", "-p", "fokker-planck/ou-1d", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = (out / "resolution-smoke.md").read_text()
    assert "| fokker-planck/ou-1d | bures_w2 | exact | 2 |" in table and "1 of 1 problems meet" in table
    # the same table from the existing run, without running anything
    again = CliRunner().invoke(
        main, ["resolution", "--tier", "smoke", "--from-run", str(out / "run"), "-o", str(tmp_path / "again")]
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "resolution-smoke.csv").read_text() == (
        out / "resolution-smoke.csv"
    ).read_text()
    wrong = CliRunner().invoke(main, ["resolution", "--tier", "quick", "--from-run", str(out / "run")])
    assert wrong.exit_code == 2 and "pass --tier smoke" in wrong.output


def test_floors_prebuilds_the_cache_and_run_no_cache_writes_none(tmp_path, monkeypatch, builtins):
    monkeypatch.setenv("WGFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["floors", "--tier", "smoke", "-p", "fokker-planck/ou-1d"])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "cache" / "floors").glob("fokker-planck__ou-1d--v*.json"))
    monkeypatch.setenv("WGFBENCH_CACHE_DIR", str(tmp_path / "other"))
    run = ["run", "-s", "reference", "-p", "fokker-planck/ou-1d", "--no-cache", "--no-progress"]
    result = CliRunner().invoke(main, [*run, "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "other").exists()
    scoring = store.read_manifest(tmp_path / "run")["scoring"]
    assert scoring["version"] == 2 and scoring["n_output"] == 20_000 and scoring["n_reference"] == 20_000
