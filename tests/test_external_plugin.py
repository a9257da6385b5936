"""A plugin installed from outside the repository appears in ``wgfbench list`` and runs in
``wgfbench run`` without touching wgfbench's code (examples/wgfbench-example-plugin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "wgfbench-example-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin pip-installed into its own directory (no dependencies pulled)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
    )
    return site


def _wgfbench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "wgfbench", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_installed_plugin_is_listed_and_runs(plugin_site, tmp_path):
    listed = _wgfbench(plugin_site, "list", "--format", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    solvers = {s["name"]: s for s in items["solvers"]}
    problems = {p["name"]: p for p in items["problems"]}
    assert solvers["heun-langevin"]["distribution"] == "wgfbench-example-plugin"
    assert problems["example/ou-shifted-1d"]["plugin"] == "example-heun"
    assert "langevin" in solvers  # the built-ins are still there

    out = tmp_path / "run"
    ran = _wgfbench(
        plugin_site,
        "run",
        "--solver",
        "heun-langevin",
        "--problem",
        "example/*",
        "--problem",
        "fokker-planck/ou-1d",
        "--tier",
        "smoke",
        "--seeds",
        "2",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    cases = pd.read_parquet(out / "cases.parquet")
    assert len(cases) == 4 and (cases.status == "ok").all(), cases[["problem", "status", "error"]]
    results = pd.read_parquet(out / "results.parquet")
    final = results[(results.metric == "rel_error") & (results.problem == "example/ou-shifted-1d")]
    assert len(final) and final.value.max() < 0.5


def test_example_plugin_passes_its_conformance_suite(plugin_site):
    """The example's own tests (the conformance suite, one test per check) pass against the
    installed copy, and a broken check would name itself: every check is a separate test."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suite = "tests/test_conformance.py::TestHeunLangevin"
    for check in ("test_shapes", "test_mass", "test_no_reference_access", "test_seed_reproducible"):
        assert f"{suite}::{check}[heun-langevin-make_ou_shifted_1d] PASSED" in done.stdout, check
    assert "TestOuShifted1d::test_reference[make_ou_shifted_1d] PASSED" in done.stdout
