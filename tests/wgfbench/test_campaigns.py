"""Campaign files (``wgfbench run FILE``), ``wgfbench rerun``, SIGTERM and the run directory's lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from wgfbench import store
from wgfbench.cli import main
from wgfbench.runner import RunLock, load_campaign

CAMPAIGN = """
solvers = ["reference", "frozen"]
problems = ["fokker-planck/ou-1d"]
seeds = 2
tier = "smoke"
out = "{out}"

[set.frozen]
n_particles = 300
"""


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_campaign_file_runs_the_whole_plan_and_is_recorded(tmp_path):
    path = tmp_path / "campaign.toml"
    out = tmp_path / "run"
    path.write_text(CAMPAIGN.format(out=out))
    result = _invoke("run", str(path), "--no-progress")
    assert result.exit_code == 0, result.output
    cases = store.read_cases(out)
    assert len(cases) == 4 and (cases["status"] == "ok").all()
    manifest = store.read_manifest(out)
    assert manifest["spec"]["set"] == {"frozen": {"n_particles": 300}} and manifest["spec"]["seeds"] == 2
    frozen = next(r for r in store.read_case_records(out) if r["solver"] == "frozen")
    assert json.loads(frozen["config"])["n_particles"] == 300


def test_several_tiers_run_into_one_directory_each(tmp_path):
    path = tmp_path / "campaign.toml"
    path.write_text(
        'solvers = ["frozen"]\nproblems = ["fokker-planck/ou-1d"]\n'
        f'tiers = ["smoke", "quick"]\nout = "{tmp_path / "both"}"\n'
    )
    spec = load_campaign(path)
    assert spec.tiers == ["smoke", "quick"]
    result = _invoke("run", str(path), "--dry-run")
    assert result.exit_code == 0 and str(tmp_path / "both" / "quick") in result.output.replace("\n", "")


def test_rerun_reproduces_a_run_from_its_manifest(tmp_path):
    out = tmp_path / "run"
    first = _invoke(
        "run",
        "-s",
        "langevin",
        "-p",
        "fokker-planck/ou-1d",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--no-progress",
    )
    assert first.exit_code == 0, first.output
    again = tmp_path / "again"
    result = _invoke("rerun", str(out), "--out", str(again), "--same-salt", "--no-progress")
    assert result.exit_code == 0, result.output
    a, b = store.read_results(out), store.read_results(again)
    timed_a, timed_b = a[a["t"].notna()], b[b["t"].notna()]
    np.testing.assert_array_equal(timed_a["value"].to_numpy(), timed_b["value"].to_numpy())
    assert store.read_manifest(again)["spec"]["solvers"] == ["langevin"]
    assert set(store.read_cases(out)["case_key"]) == set(store.read_cases(again)["case_key"])


def test_a_second_run_on_a_directory_being_written_is_refused(tmp_path):
    out = tmp_path / "run"
    assert _invoke("run", "-s", "frozen", "-p", "fokker-planck/ou-1d", "--out", str(out)).exit_code == 0
    before = sorted(p.name for p in (out / "parts").iterdir())
    with RunLock(out):
        result = CliRunner().invoke(
            main, ["run", "-s", "frozen", "-p", "fokker-planck/ou-1d", "--out", str(out), "--resume"]
        )
    assert result.exit_code == 2
    assert "being written by another wgfbench run (pid" in result.output
    assert sorted(p.name for p in (out / "parts").iterdir()) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_leaves_every_finished_case_on_disk_and_the_run_resumable(tmp_path):
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "wgfbench",
        "run",
        "-s",
        "langevin",
        "-p",
        "fokker-planck/ou-1d",
        "-p",
        "fokker-planck/ou-2d",
        "--seeds",
        "4",
        "--no-progress",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list((out / "parts").glob("*.case.json"))) < 2:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "--resume" in output
    manifest = store.read_manifest(out)
    assert manifest["interrupted"] is True and manifest["scoring"]["salt"]
    committed = store.committed_cases(out)
    assert 2 <= len(committed) < 8
    assert len(store.read_cases(out)) == len(committed)  # consolidated on the way out
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    cases = store.read_cases(out)
    assert len(cases) == 8 and cases["case_key"].is_unique and (cases["status"] == "ok").all()
    assert not any(p.name.startswith(".") and p.suffix == ".tmp" for p in (out / "parts").iterdir())
    assert os.path.exists(out / "results.parquet")
