"""Exact provenance: the case key covers the solver's settings resolved per problem and its plugin's
code, so ``--resume`` reruns exactly the cases a change affects; each case records where its
numbers came from."""

from __future__ import annotations

import json
import textwrap

import pytest
from wgfbench_plugins.solvers.deep_jko import solver as deep_jko_solver

import wgfbench
from wgfbench import runner, store

PROBLEMS = ["fokker-planck/ou-1d", "porous-medium/barenblatt-1d-m2"]


@pytest.fixture(scope="module")
def host():
    return wgfbench.Host(distributions={"wgfbench"})


def test_changing_a_per_tier_table_entry_reruns_only_the_cases_it_affects(host, tmp_path, monkeypatch):
    plan = runner.make_plan(["deep-jko"], PROBLEMS, seeds=2, tier="smoke", host=host)
    assert len(plan.cases) == 4
    out = tmp_path / "run"
    first = runner.run_plan(plan, out, host=host)
    assert first.ran == 4 and first.n_ok == 4
    before = {r["problem"]: r["settings"]["resolved"] for r in first.records}

    # Edit deep-jko's smoke table for the porous-medium family only (as a maintainer would).
    monkeypatch.setitem(deep_jko_solver._FAMILY["smoke"], "porous-medium", {"max_iterations": 4})
    again = runner.make_plan(["deep-jko"], PROBLEMS, seeds=2, tier="smoke", host=host)
    resumed = runner.run_plan(again, out, host=host, resume=True)
    assert resumed.ran == 2 and resumed.reused == 2
    records = store.read_case_records(out)
    rerun = {r["problem"] for r in records if r["started"] > first.records[-1]["finished"]}
    assert rerun == {"porous-medium/barenblatt-1d-m2"}
    after = {r["problem"]: r["settings"]["resolved"] for r in records}
    assert after["porous-medium/barenblatt-1d-m2"]["max_iterations"] == 4
    assert after["fokker-planck/ou-1d"] == before["fokker-planck/ou-1d"]
    # The run ends with the new cases only: the superseded ones stay as parts but not in the plan.
    keys = {c.key(host) for c in again.cases}
    assert keys <= set(store.committed_cases(out))


PLUGIN = """
import wgfbench
from wgfbench.trajectory import ParticleSnapshot, Trajectory


class Drift(wgfbench.Solver):
    name = "edited-drift"

    def solve(self, problem, ctx):
        x = ctx.to(problem.initial.sample(200, ctx.cpu_generator))
        return Trajectory([ParticleSnapshot(t, x * (1 - VELOCITY * t)) for t in problem.times])


VELOCITY = {velocity}


@wgfbench.hookimpl
def wgfbench_register_solvers(registry):
    registry.add(Drift)
"""


def _plugin_host(tmp_path, monkeypatch, velocity: float):
    """A third-party plugin module on disk (same version throughout), loaded afresh."""
    import importlib
    import sys

    path = tmp_path / "plugin_src"
    path.mkdir(exist_ok=True)
    (path / "edited_plugin.py").write_text(textwrap.dedent(PLUGIN.format(velocity=velocity)))
    monkeypatch.syspath_prepend(str(path))
    sys.modules.pop("edited_plugin", None)
    importlib.invalidate_caches()
    runner.provenance._files_digest.cache_clear()
    module = importlib.import_module("edited_plugin")
    return wgfbench.Host(distributions={"wgfbench"}, plugins=[module])


def test_an_edited_plugin_is_rerun_without_a_version_bump(tmp_path, monkeypatch):
    host = _plugin_host(tmp_path, monkeypatch, 0.5)
    plan = runner.make_plan(["edited-drift"], ["fokker-planck/ou-1d"], tier="smoke", host=host)
    out = tmp_path / "run"
    first = runner.run_plan(plan, out, host=host)
    assert first.ran == 1
    same = runner.run_plan(plan, out, host=host, resume=True)
    assert same.ran == 0 and same.reused == 1

    host = _plugin_host(tmp_path, monkeypatch, 0.25)  # the velocity halved, version unchanged
    plan = runner.make_plan(["edited-drift"], ["fokker-planck/ou-1d"], tier="smoke", host=host)
    edited = runner.run_plan(plan, out, host=host, resume=True)
    assert edited.ran == 1 and edited.reused == 0
    hashes = {r["code_hash"] for r in store.read_case_records(out)}
    assert len(hashes) == 2


def test_each_case_records_revision_versions_command_and_solver_info(host, tmp_path):
    plan = runner.make_plan(["langevin", "reference"], ["fokker-planck/ou-1d"], tier="smoke", host=host)
    result = runner.run_plan(plan, tmp_path / "run", host=host, command=["wgfbench", "run", "-s", "x"])
    for record in result.records:
        assert record["versions"]["scipy"] and record["versions"]["torch"]
        assert record["command"] == "wgfbench run -s x"
        assert "git_revision" in record and "git_dirty" in record
        assert record["worker"] and record["code_hash"]
        assert isinstance(record["info"], dict) and record["info"]  # the solver's Trajectory.info
        assert record["budget_clock"] == "cpu_per_thread"
    langevin = next(r for r in result.records if r["solver"] == "langevin")
    assert langevin["settings"] == json.loads(langevin["config"])  # no per-problem table: the config
    manifest = store.read_manifest(result.run_dir)
    session = manifest["sessions"][-1]
    assert session["command"] == "wgfbench run -s x" and session["ran"] == 2 and session["finished"]
