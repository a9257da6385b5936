"""The plugin author's kit end to end: ``wgfbench new-plugin`` writes a project that installs, is
discovered through its entry point, passes its own conformance suite and shows up in a
leaderboard, all in subprocesses that see only what pip installed (no import of the project's
files from this process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from wgfbench.cli import main
from wgfbench.scaffold import NAME_RULE, ScaffoldError, create_plugin, render_plugin, validate_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NAME = "kit-demo"
WGFBENCH = [sys.executable, "-m", "wgfbench"]
SMOKE = ["--tier", "smoke", "--seeds", "1", "--out"]
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]


def _env(site: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return env


def _run(
    args: list[str], cwd: Path, site: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(site), capture_output=True, text=True, timeout=timeout)


def test_scaffolded_plugin_installs_is_discovered_passes_its_suite_and_ranks(tmp_path):
    # 1. The command writes the project.
    made = _run([*WGFBENCH, "new-plugin", NAME, "--dir", str(tmp_path)], cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    project = tmp_path / NAME
    assert (project / "pyproject.toml").is_file()
    assert (project / "src" / "kit_demo" / "plugin.py").is_file()

    # 2. It installs with pip, as a plugin author's users would install it.
    site = tmp_path / "site"
    pip = _run(
        [*PIP_INSTALL, "--target", str(site), str(project)],
        cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "kit_demo" / "solver.py").is_file()

    # 3. wgfbench discovers it through its entry point.
    listed = _run([*WGFBENCH, "list", "--format", "json"], cwd=tmp_path, site=site)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    solvers = {s["name"]: s for s in items["solvers"]}
    problems = {p["name"]: p for p in items["problems"]}
    assert solvers[NAME]["distribution"] == NAME and solvers[NAME]["plugin"] == NAME
    assert problems[f"{NAME}/ou-1d"]["distribution"] == NAME
    assert problems[f"{NAME}/ou-1d"]["error"] is None
    assert not [f for f in items.get("failures", []) if NAME in json.dumps(f)]

    # 4. Its own tests (the conformance suite, one test per check) pass against the installed copy.
    tests = _run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs", "tests"],
        cwd=project,
        site=site,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    suite = "tests/test_solver.py::TestEulerMaruyamaConformance"
    assert f"{suite}::test_contract[{NAME}] PASSED" in tests.stdout
    for check in ("test_no_reference_access", "test_seed_reproducible", "test_mass", "test_finite"):
        assert f"{suite}::{check}[{NAME}-make_ou_1d] PASSED" in tests.stdout, check
    assert "tests/test_problem.py::TestOU1dConformance::test_reference[make_ou_1d] PASSED" in tests.stdout
    if torch.cuda.is_available():
        assert f"{suite}::test_cpu_gpu_parity[{NAME}-make_ou_1d] PASSED" in tests.stdout
    else:
        assert "CUDA is not available: CPU/GPU parity not checked" in tests.stdout
    assert not re.search(r"\d+ (failed|error)", tests.stdout.splitlines()[-1]), tests.stdout[-2000:]

    # 5. It runs next to the calibration row and appears in the leaderboard.
    out = tmp_path / "run"
    ran = _run(
        [
            *WGFBENCH,
            "run",
            "--solver",
            NAME,
            "--solver",
            "reference",
            "--problem",
            f"{NAME}/ou-1d",
            *SMOKE,
            str(out),
        ],
        cwd=tmp_path,
        site=site,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    board = _run([*WGFBENCH, "leaderboard", str(out)], cwd=tmp_path, site=site)
    assert board.returncode == 0, board.stdout + board.stderr
    summary = board.stdout.split("Summary", 1)[1]
    assert any(line.split()[:1] == [NAME] for line in summary.splitlines()), board.stdout


def test_single_kind_projects_import_and_collect_their_suite(tmp_path):
    """``--kind solver`` / ``--kind problem``: only that half, and its tests collect (imports
    resolve, the suite parametrises) from the source tree."""
    solver = create_plugin("kit-solver", "solver", tmp_path)
    problem = create_plugin("kit-problem", "problem", tmp_path)
    assert sorted(p.name for p in (solver / "src/kit_solver").iterdir()) == [
        "__init__.py",
        "plugin.py",
        "solver.py",
    ]
    assert sorted(p.name for p in (problem / "src/kit_problem").iterdir()) == [
        "__init__.py",
        "plugin.py",
        "problem.py",
    ]
    pytest_args = ["-p", "no:cacheprovider", "--collect-only", "-q", "--import-mode=importlib"]
    collected = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            *pytest_args,
            "--rootdir",
            str(tmp_path),
            "kit-solver",
            "kit-problem",
        ],
        cwd=tmp_path,
        site=Path(os.pathsep.join([str(solver / "src"), str(problem / "src")])),
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    listed = collected.stdout
    assert (
        "kit-solver/tests/test_solver.py::TestEulerMaruyamaConformance::test_contract[kit-solver]" in listed
    )
    assert "kit-problem/tests/test_problem.py::TestOU1dConformance::test_contract[make_ou_1d]" in listed
    assert "kit-solver/tests/test_problem.py" not in listed
    assert "kit-problem/tests/test_solver.py" not in listed


def test_rendered_files_are_complete_python():
    for kind in ("solver", "problem", "both"):
        for path, text in render_plugin("my_plugin2", kind).items():
            assert "$" not in text, (kind, path)  # every template placeholder filled
            if path.endswith(".py"):
                compile(text, path, "exec")
    pyproject = render_plugin("my-plugin")["pyproject.toml"]
    assert '[project.entry-points.wgfbench]\nmy-plugin = "my_plugin.plugin"' in pyproject


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("MyPlugin", "capitals"),
        ("my plugin", "spaces"),
        ("2fast", "a first character '2'"),
        ("my.plugin", "the character(s) '.'"),
        ("my--plugin", "doubled"),
        ("plugin-", "trailing"),
        ("x" * 41, "41 characters"),
    ],
)
def test_invalid_names_are_refused_with_the_rule(name, what):
    with pytest.raises(ScaffoldError) as info:
        validate_name(name)
    assert what in str(info.value) and NAME_RULE in str(info.value)


def test_names_that_would_shadow_a_module_are_refused():
    for name in ("torch", "json", "wgfbench", "class"):
        with pytest.raises(ScaffoldError, match=r"shadow|keyword"):
            validate_name(name)
    assert validate_name("my-solver_2") == "my-solver_2"


def test_cli_refuses_to_overwrite_and_reports_bad_names(tmp_path):
    runner = CliRunner()
    first = runner.invoke(main, ["new-plugin", NAME, "--dir", str(tmp_path), "--kind", "solver"])
    assert first.exit_code == 0, first.output
    marker = tmp_path / NAME / "pyproject.toml"
    before = marker.read_text()
    marker.write_text(before + "# edited by the author\n")
    again = runner.invoke(main, ["new-plugin", NAME, "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert marker.read_text().endswith("# edited by the author\n")  # nothing overwritten
    assert not (tmp_path / NAME / "src" / "kit_demo" / "problem.py").exists()
    bad = runner.invoke(main, ["new-plugin", "Bad Name", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "lower case" in bad.output
    assert not (tmp_path / "Bad Name").exists()


def test_a_wheel_ships_the_kit():
    """pyproject.toml lists every package of wgfbench (a non-editable install has the CLI, the
    kit and the scaffold), the templates as package data and the pytest11 module."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    packages = {
        ".".join(path.relative_to(ROOT).parent.parts)
        for path in (ROOT / "wgfbench").rglob("__init__.py")
        if "templates" not in path.parts
    }
    assert packages <= set(setuptools["packages"]), sorted(packages - set(setuptools["packages"]))
    assert setuptools["package-data"]["wgfbench.scaffold"] == ["templates/*.tmpl"]
    assert (
        sorted(p.name for p in (ROOT / "wgfbench/scaffold/templates").iterdir() if p.suffix != ".tmpl") == []
    )
    assert setuptools["py-modules"] == ["_wgfbench_pytestplugin"]
    assert config["project"]["entry-points"]["pytest11"] == {"wgfbench": "_wgfbench_pytestplugin"}
