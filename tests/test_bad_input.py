"""Bad input, fed through the command line and the API: each gets one clear line naming what is
wrong (and, where one exists, what to do) and the documented exit code, never a traceback, never
an all-null table read from a foreign file, never an answer to a question that has none.

The cases are one table, :data:`BAD_INPUTS`: append a :class:`BadInput` row for a new kind of bad
input. A row prepares the situation (``setup``), then either runs the CLI with ``call`` as its
arguments (``{run}``, ``{tmp}`` and ``{key}`` are replaced by a fresh copy of a real smoke run
directory, the test's temporary directory and that run's case key) and expects the exit code, or
calls ``call(env)`` and expects the exception type; in both cases ``message`` must appear on one
line. ``warns`` is a regex of a ``UserWarning`` the row must raise (a damaged file that is
rebuilt from others is read with a warning, not refused). A row whose fix lies in code that does
not yet pass the error on (the CLI, the runner) is a strict ``xfail`` naming the missing piece, so
that it fails, and its mark is removed, once that piece is in.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from toy_plugins import FrozenSolver, tiny_problem

import wgfbench
from wgfbench import store
from wgfbench.cli import main
from wgfbench.errors import InvalidInput, PluginError, UnknownNameError
from wgfbench.host import Host, set_default_host
from wgfbench.metrics import distances
from wgfbench.runner import RunLock

SMOKE_RUN = ["run", "-s", "reference", "-p", "fokker-planck/ou-1d", "--tier", "smoke", "--no-progress"]
"""One exact-sampling case at the smoke tier: a real run directory in a few seconds."""


# ----------------------------------------------------------------------------------------------
# The environment a row works in


@dataclass
class Env:
    """What a row's ``setup`` and ``call`` work with: a fresh copy of the smoke run (``run``), a
    temporary directory, pytest's ``monkeypatch`` and :meth:`use_host` for a custom plugin host."""

    run: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    host: Host | None = None

    @property
    def key(self) -> str:
        """The case key of the run's single case."""
        (path,) = (self.run / store.PARTS).glob(f"*{store.CASE_SUFFIX}")
        return path.name.removesuffix(store.CASE_SUFFIX)

    def use_host(self, host: Host) -> Host:
        """Make ``host`` the default host (the CLI's) for this row; the fixture restores the old."""
        self.host = host
        set_default_host(host)
        return host


@dataclass(frozen=True)
class BadInput:
    """One bad input: ``setup(env)``, then ``call`` (CLI arguments, or a callable of ``env``);
    ``expected`` is the exit code for CLI arguments and the exception type for a callable;
    ``message`` must appear on one line of the output (or in the exception's one-line message)."""

    id: str
    setup: Callable[[Env], Any]
    call: Sequence[str] | Callable[[Env], Any]
    expected: int | type[BaseException]
    message: str
    warns: str | None = None
    marks: tuple[Any, ...] = field(default=())


def nothing(env: Env) -> None:
    """A row that needs no preparation."""


def hold_lock(env: Env) -> None:
    """Another campaign writing the run directory: its lock is held until the row ends."""
    lock = RunLock(env.run).__enter__()
    env.monkeypatch.setattr(RunLock, "held_by_test", lock, raising=False)


def campaign(text: str) -> Callable[[Env], None]:
    """A campaign file ``{tmp}/campaign.toml`` holding ``text``."""

    def setup(env: Env) -> None:
        (env.tmp / "campaign.toml").write_text(text)

    return setup


# ----------------------------------------------------------------------------------------------
# Ways to damage a run directory


def write_bytes(relative: str, data: bytes, drop: Sequence[str] = ()) -> Callable[[Env], None]:
    """Overwrite ``run/<relative>`` (``{key}`` is the case key) with ``data`` and delete the
    ``drop`` paths (``parts`` to leave nothing to rebuild from)."""

    def setup(env: Env) -> None:
        (env.run / relative.format(key=env.key)).write_bytes(data)
        for name in drop:
            path = env.run / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    return setup


def truncate(relative: str, drop: Sequence[str] = ()) -> Callable[[Env], None]:
    """Cut ``run/<relative>`` to half its size (a copy killed midway, a full disk)."""

    def setup(env: Env) -> None:
        path = env.run / relative.format(key=env.key)
        data = path.read_bytes()
        write_bytes(relative, data[: len(data) // 2], drop)(env)

    return setup


def foreign_parquet() -> bytes:
    """A valid Parquet file of somebody else's table."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"name": ["a", "b"], "score": [1.0, 2.0]}), sink)
    return sink.getvalue().to_pybytes()


CONSOLIDATED = (store.CASES, store.RESULTS)
"""Deleted by rows that damage a part, so that readers go to the parts."""


# ----------------------------------------------------------------------------------------------
# Plugin hosts


def plugin(name: str, problems=(), solvers=(), factories=(), broken: str | None = None) -> types.ModuleType:
    """A plugin module registering ``problems``, ``(name, factory)`` pairs and ``solvers``;
    ``broken`` makes its solver hook raise that ImportError message instead."""
    module = types.ModuleType(name)

    @wgfbench.hookimpl
    def wgfbench_register_problems(registry):
        for p in problems:
            registry.add(p)
        for problem_name, factory in factories:
            registry.add(factory, name=problem_name)

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        if broken is not None:
            raise ImportError(broken)
        for s in solvers:
            registry.add(s)

    module.wgfbench_register_problems = wgfbench_register_problems
    module.wgfbench_register_solvers = wgfbench_register_solvers
    return module


def failing_factory() -> wgfbench.Problem:
    raise RuntimeError("reference data file missing")


def duplicate_hosts(env: Env) -> None:
    a = plugin("plugin_a", [tiny_problem()], [FrozenSolver])
    b = plugin("plugin_b", [], [FrozenSolver])
    env.use_host(Host(entry_points=False, plugins=[a, b]))


def broken_solver_plugin(env: Env) -> None:
    good = plugin("good", [tiny_problem()], [FrozenSolver])
    env.use_host(
        Host(entry_points=False, plugins=[good, plugin("broken_plugin", broken="needs torch_geometric")])
    )


def broken_factory_host(env: Env) -> None:
    good = plugin("good", [tiny_problem()], [FrozenSolver])
    env.use_host(
        Host(
            entry_points=False,
            plugins=[good, plugin("factories", factories=[("toy/broken-1d", failing_factory)])],
        )
    )


def unimportable_entry_point(env: Env) -> None:
    """An installed entry point whose module does not exist (its package was uninstalled)."""
    real = metadata.entry_points

    def with_broken(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        if group == "wgfbench":
            eps.append(metadata.EntryPoint("gone-plugin", "wgfbench_gone_plugin_xyz", "wgfbench"))
        return eps

    env.monkeypatch.setattr(metadata, "entry_points", with_broken)
    env.use_host(Host(distributions={"wgfbench", None}))  # the broken entry point has no distribution


def disable_typo(env: Env) -> None:
    env.monkeypatch.setenv("WGFBENCH_DISABLE_PLUGINS", "langevn")
    env.use_host(Host(distributions={"wgfbench"}))


# ----------------------------------------------------------------------------------------------
# API calls


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def reference(name: str) -> Any:
    return wgfbench.get_problem(name).reference


BAD_INPUTS: list[BadInput] = [
    # --- run directory: consolidated tables -------------------------------------------------
    BadInput(
        "results-parquet-foreign-rebuilt-from-parts",
        write_bytes(store.RESULTS, foreign_parquet()),
        ["show", "{run}"],
        0,
        "fokker-planck/ou-1d",
        warns=r"results\.parquet is not a wgfbench results table \(missing columns .*reading the run's parts",
    ),
    BadInput(
        "results-parquet-foreign-no-parts",
        write_bytes(store.RESULTS, foreign_parquet(), drop=[store.PARTS]),
        ["show", "{run}"],
        2,
        "results.parquet is not a wgfbench results table (missing columns ['run_id', 'solver'",
    ),
    BadInput(
        "results-parquet-truncated-no-parts",
        truncate(store.RESULTS, drop=[store.PARTS]),
        ["show", "{run}"],
        2,
        "results.parquet is not a readable Parquet file",
    ),
    BadInput(
        "cases-parquet-garbage-rebuilt-from-parts",
        write_bytes(store.CASES, b"\x00garbage" * 64),
        ["show", "{run}"],
        0,
        "fokker-planck/ou-1d",
        warns=r"cases\.parquet is not a readable Parquet file.*--resume.*reading the run's parts",
    ),
    BadInput(
        "cases-parquet-garbage-no-parts",
        write_bytes(store.CASES, b"\x00garbage" * 64, drop=[store.PARTS]),
        ["show", "{run}"],
        2,
        "the run has no parts/ to rebuild it from",
    ),
    BadInput(
        "cases-parquet-missing-no-parts",
        write_bytes(store.CASES, b"", drop=[store.PARTS, store.CASES]),
        ["show", "{run}"],
        2,
        "cases.parquet is missing and the run has no parts/",
    ),
    # --- run directory: manifest ---------------------------------------------------------------
    BadInput(
        "manifest-invalid-json",
        write_bytes(store.MANIFEST, b'{"schema_version": 2, "plan": '),
        ["show", "{run}"],
        2,
        "manifest.json is not valid JSON (Expecting value at line 1, column 31)",
    ),
    BadInput(
        "manifest-not-an-object",
        write_bytes(store.MANIFEST, b"[1, 2, 3]"),
        ["show", "{run}"],
        2,
        "manifest.json holds a JSON list, not an object",
    ),
    BadInput(
        "manifest-invalid-json-on-resume",
        write_bytes(store.MANIFEST, b"\xff\xfe not utf-8"),
        [*SMOKE_RUN, "--out", "{run}", "--resume"],
        2,
        "manifest.json cannot be read (UnicodeDecodeError",
    ),
    BadInput(
        "manifest-future-schema",
        write_bytes(store.MANIFEST, b'{"schema_version": 99}'),
        ["show", "{run}"],
        2,
        "schema_version 99 is not one this wgfbench reads",
    ),
    # --- run directory: parts and artefacts ----------------------------------------------------
    BadInput(
        "case-json-invalid",
        write_bytes("parts/{key}.case.json", b'{"case_key": ', drop=CONSOLIDATED),
        ["show", "{run}"],
        2,
        ".case.json is not valid JSON",
    ),
    BadInput(
        "case-json-not-a-record",
        write_bytes("parts/{key}.case.json", b'{"hello": "world"}', drop=CONSOLIDATED),
        ["show", "{run}"],
        2,
        "lacks the fields ['case_key', 'solver', 'problem', 'seed', 'status'] of a case record",
    ),
    BadInput(
        "case-json-invalid-is-rerun-on-resume",
        write_bytes("parts/{key}.case.json", b"\x00\x00"),
        [*SMOKE_RUN, "--out", "{run}", "--resume"],
        0,
        "1 ran now",
        warns=r"\.case\.json is not valid JSON.*the case counts as not run: --resume reruns it",
    ),
    BadInput(
        "results-part-truncated",
        truncate("parts/{key}.results.parquet", drop=CONSOLIDATED),
        ["show", "{run}"],
        2,
        ".results.parquet is not a readable Parquet file",
    ),
    BadInput(
        "results-part-foreign",
        write_bytes("parts/{key}.results.parquet", foreign_parquet(), drop=CONSOLIDATED),
        ["show", "{run}"],
        2,
        ".results.parquet is not a wgfbench results table (missing columns",
    ),
    BadInput(
        "final-npz-corrupt-api",
        truncate("artifacts/{key}/final.npz"),
        lambda env: store.load_npz(store.final_snapshot_path(env.run, env.key)),
        store.StoreError,
        "final.npz is not a readable .npz (BadZipFile",
    ),
    BadInput(
        "final-npz-corrupt-show-figure",
        truncate("artifacts/{key}/final.npz"),
        ["show", "{run}", "--figure", "{tmp}/final.png"],
        2,
        "final.npz is not a readable .npz",
    ),
    BadInput("show-non-run-directory", nothing, ["show", "{tmp}"], 2, "is not a wgfbench run directory"),
    # --- plugins -------------------------------------------------------------------------------
    BadInput(
        "duplicate-solver-name-listed",
        duplicate_hosts,
        ["list"],
        0,
        "DuplicateNameError: solver 'toy-frozen' is registered twice",
    ),
    BadInput(
        "failed-plugin-named-by-unknown-solver-api",
        broken_solver_plugin,
        lambda env: wgfbench.get_solver("graph-solver", host=env.host),
        UnknownNameError,
        "Plugin 'broken_plugin' failed to register its solvers (ImportError: needs torch_geometric)",
    ),
    BadInput(
        "unimportable-plugin-named-by-unknown-problem-api",
        unimportable_entry_point,
        lambda env: wgfbench.get_problem("gone/problem-2d", host=env.host),
        UnknownNameError,
        "Plugin 'gone-plugin' failed to load (ModuleNotFoundError: No module named "
        "'wgfbench_gone_plugin_xyz'); its solvers and problems are unavailable",
    ),
    BadInput(
        "failed-plugin-named-by-unknown-solver-cli",
        broken_solver_plugin,
        ["run", "-s", "graph-solver", "-p", "toy/gauss-1d", "--out", "{tmp}/out", "--dry-run"],
        2,
        "Plugin 'broken_plugin' failed to register its solvers",
    ),
    BadInput(
        "broken-problem-factory-api",
        broken_factory_host,
        lambda env: wgfbench.get_problem("toy/broken-1d", host=env.host),
        PluginError,
        "problem 'toy/broken-1d' of plugin factories (not installed) failed to build: "
        "RuntimeError: reference data file missing",
    ),
    BadInput(
        "broken-problem-factory-listed",
        broken_factory_host,
        ["list", "--kind", "problems"],
        0,
        "failed to build: PluginError: problem 'toy/broken-1d'",
    ),
    BadInput(
        "broken-problem-factory-skipped-by-plan",
        broken_factory_host,
        ["run", "-s", "toy-frozen", "-p", "toy/*", "--out", "{tmp}/out", "--dry-run"],
        0,
        "failed to build: RuntimeError: reference data file missing",
    ),
    BadInput(
        "unknown-disabled-plugin-listed",
        disable_typo,
        ["list"],
        0,
        "WGFBENCH_DISABLE_PLUGINS names 'langevn', but no plugin has that name, so nothing was disabled; "
        "did you mean 'langevin'?",
        warns=r"'langevn'.*did you mean 'langevin'",
    ),
    # --- references ----------------------------------------------------------------------------
    BadInput(
        "reference-negative-time",
        nothing,
        lambda env: reference("fokker-planck/ou-2d").sample(-1.0, 10, generator()),
        InvalidInput,
        "reference of fokker-planck/ou-2d asked for t = -1: times start at 0",
    ),
    BadInput(
        "reference-nan-time",
        nothing,
        lambda env: reference("fokker-planck/ou-2d").log_density(math.nan, torch.zeros(3, 2)),
        InvalidInput,
        "reference of fokker-planck/ou-2d asked for t = nan",
    ),
    BadInput(
        "reference-infinite-time",
        nothing,
        lambda env: reference("porous-medium/barenblatt-2d-m2").sample(math.inf, 10, generator()),
        InvalidInput,
        "asked for t = inf: times are finite",
    ),
    BadInput(
        "reference-infinite-points",
        nothing,
        lambda env: reference("fokker-planck/ou-2d").log_density(
            0.5, torch.tensor([[0.0, 0.0], [math.inf, 1.0], [-math.inf, math.nan]], dtype=torch.float64)
        ),
        InvalidInput,
        "asked for log_density at t = 0.5 of 2 non-finite point(s)",
    ),
    BadInput(
        "reference-time-beyond-stored-data",
        nothing,
        lambda env: reference("fokker-planck/four-wells-2d").sample(4.0, 10, generator()),
        InvalidInput,
        "reference of fokker-planck/four-wells-2d asked for t = 4: its stored data end at t = 2",
    ),
    BadInput(
        "jko-reference-zero-step",
        nothing,
        lambda env: wgfbench.get_problem("fokker-planck/ou-1d").jko.for_step(0.0),
        InvalidInput,
        "asked for tau = 0: the JKO step is a positive finite number",
    ),
    # --- metrics -------------------------------------------------------------------------------
    BadInput(
        "exact-w2-too-large",
        nothing,
        lambda env: distances.w2(np.zeros((50_000, 2)), np.zeros((50_000, 2))),
        InvalidInput,
        "w2 on 50000 × 50000 points needs about 37.3 GiB",
    ),
    # --- command-line usage --------------------------------------------------------------------
    BadInput(
        "unknown-solver-suggests",
        nothing,
        ["run", "-s", "langevn", "-p", "fokker-planck/ou-1d", "--dry-run"],
        2,
        "unknown solver 'langevn'. Did you mean 'langevin'?",
    ),
    BadInput(
        "unknown-problem-suggests",
        nothing,
        ["run", "-s", "langevin", "-p", "fokker-planck/ou-1", "--dry-run"],
        2,
        "unknown problem 'fokker-planck/ou-1'. Did you mean",
    ),
    BadInput(
        "unknown-tier-lists-tiers",
        nothing,
        ["run", "-s", "langevin", "-p", "fokker-planck/ou-1d", "--tier", "quik", "--dry-run"],
        2,
        "'quik' is not one of 'smoke', 'quick'",
    ),
    BadInput(
        "malformed-set",
        nothing,
        ["run", "-s", "langevin", "-p", "fokker-planck/ou-1d", "--set", "langevin.dt", "--dry-run"],
        2,
        "--set expects solver.field=value, got 'langevin.dt'",
    ),
    BadInput(
        "bad-config-value-names-field",
        nothing,
        [
            "run",
            "-s",
            "langevin",
            "-p",
            "fokker-planck/ou-1d",
            "--set",
            "langevin.n_particles=-5",
            "--dry-run",
        ],
        2,
        "n_particles",
    ),
    # --- run directories and campaigns ----------------------------------------------------------
    BadInput(
        "out-is-a-file",
        lambda env: (env.tmp / "file").write_text("not a directory"),
        ["run", "-s", "frozen", "-p", "fokker-planck/ou-1d", "--out", "{tmp}/file"],
        2,
        "is a file.",
    ),
    BadInput(
        "out-cannot-be-created",
        lambda env: (env.tmp / "file").write_text("not a directory"),
        ["run", "-s", "frozen", "-p", "fokker-planck/ou-1d", "--out", "{tmp}/file/run"],
        2,
        "cannot create the run directory",
    ),
    BadInput(
        "out-not-empty-and-not-a-run",
        lambda env: (env.tmp / "mine").mkdir() or (env.tmp / "mine" / "thesis.tex").write_text("keep me"),
        ["run", "-s", "frozen", "-p", "fokker-planck/ou-1d", "--out", "{tmp}/mine"],
        2,
        "exists and is neither empty nor a wgfbench run",
    ),
    BadInput(
        "out-holds-a-run-without-resume",
        nothing,
        ["run", "-s", "reference", "-p", "fokker-planck/ou-1d", "--out", "{run}"],
        2,
        "already holds a run; pass --resume",
    ),
    BadInput(
        "resume-with-another-tier",
        nothing,
        [
            "run",
            "-s",
            "reference",
            "-p",
            "fokker-planck/ou-1d",
            "--tier",
            "quick",
            "--out",
            "{run}",
            "--resume",
        ],
        2,
        "cannot resume",
    ),
    BadInput(
        "two-runs-on-one-directory",
        hold_lock,
        ["run", "-s", "reference", "-p", "fokker-planck/ou-1d", "--out", "{run}", "--resume"],
        2,
        "is being written by another wgfbench run (pid",
    ),
    BadInput(
        "rerun-of-a-non-run",
        nothing,
        ["rerun", "{tmp}"],
        2,
        "is not a wgfbench run directory",
    ),
    BadInput(
        "campaign-file-missing",
        nothing,
        ["run", "{tmp}/nowhere.toml"],
        2,
        "campaign file",
    ),
    BadInput(
        "campaign-file-not-toml",
        campaign("solvers = [langevin\n"),
        ["run", "{tmp}/campaign.toml"],
        2,
        "campaign.toml: not valid TOML",
    ),
    BadInput(
        "campaign-unknown-field",
        campaign('solver = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\n'),
        ["run", "{tmp}/campaign.toml"],
        2,
        "field 'solver': unknown field; did you mean 'solvers'?",
    ),
    BadInput(
        "campaign-bad-seeds",
        campaign('solvers = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\nseeds = 0\n'),
        ["run", "{tmp}/campaign.toml"],
        2,
        "field 'seeds': Input should be greater than 0 (got 0)",
    ),
    BadInput(
        "campaign-unknown-tier",
        campaign('solvers = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\ntier = "quik"\n'),
        ["run", "{tmp}/campaign.toml"],
        2,
        "unknown tier 'quik' (known: smoke, quick, large); did you mean 'quick'?",
    ),
    BadInput(
        "campaign-missing-problems",
        campaign('solvers = ["langevin"]\n'),
        ["run", "{tmp}/campaign.toml"],
        2,
        "field 'problems': Field required",
    ),
    BadInput(
        "campaign-bad-executor",
        campaign('solvers = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\n[executor]\nworkers = 4\n'),
        ["run", "{tmp}/campaign.toml"],
        2,
        "the local executor runs one case at a time",
    ),
    BadInput(
        "campaign-bad-override-value",
        campaign(
            'solvers = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\n[set.langevin]\nn_particles = -3\n'
        ),
        ["run", "{tmp}/campaign.toml", "--dry-run"],
        2,
        "n_particles",
    ),
    BadInput(
        "campaign-file-and-plan-options",
        campaign('solvers = ["langevin"]\nproblems = ["fokker-planck/ou-1d"]\n'),
        ["run", "{tmp}/campaign.toml", "--seeds", "3"],
        2,
        "holds the plan: edit it instead of passing --seeds",
    ),
]


# ----------------------------------------------------------------------------------------------
# The test


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A real run directory (one exact-sampling case), made once; rows get copies."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    result = CliRunner().invoke(main, [*SMOKE_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def env(smoke_run, tmp_path, monkeypatch) -> Iterator[Env]:
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    work = tmp_path / "work"
    work.mkdir()
    previous = set_default_host(None)
    set_default_host(previous)
    yield Env(run, work, monkeypatch)
    set_default_host(previous)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in BAD_INPUTS])
def test_bad_input(case: BadInput, env: Env):
    warned = pytest.warns(UserWarning, match=case.warns) if case.warns else contextlib.nullcontext()
    with warned:
        case.setup(env)
        if callable(case.call):
            assert isinstance(case.expected, type)
            with pytest.raises(case.expected) as info:
                case.call(env)
            text = str(info.value)
            assert case.message in text, text
            assert "\n" not in text, f"not one line: {text!r}"
            return
        argv = [a.format(run=env.run, tmp=env.tmp, key=env.key if "{key}" in a else "") for a in case.call]
        result = CliRunner().invoke(main, argv, env={"COLUMNS": "400"})
    output = result.output
    unexpected = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not unexpected, f"uncaught {type(result.exception).__name__}: {result.exception}\n{output}"
    assert "Traceback" not in output, output
    assert result.exit_code == case.expected, output
    assert any(case.message in line for line in output.splitlines()), output


def test_the_table_covers_every_kind_of_bad_input():
    assert len(BAD_INPUTS) >= 25
    assert len({c.id for c in BAD_INPUTS}) == len(BAD_INPUTS)


# ----------------------------------------------------------------------------------------------
# What a run directory must still read: older runs, and file modes


def test_cases_of_an_older_schema_read_with_nulls_for_columns_added_since(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    shutil.rmtree(run / store.PARTS)
    table = pq.read_table(run / store.CASES)
    older = table.drop_columns(["score_salt_sha256", "peak_memory_mb", "role"])
    pq.write_table(older, run / store.CASES)
    cases = store.read_cases(run)
    assert list(cases.columns) == list(store.CASES_COLUMNS)
    assert cases["role"].isna().all() and cases["peak_memory_mb"].isna().all()
    assert cases["status"].tolist() == ["ok"] and cases["problem"].tolist() == ["fokker-planck/ou-1d"]


def test_the_committed_leaderboard_runs_still_read():
    runs = sorted((Path(__file__).parents[1] / "leaderboards").glob("*/runs/*/manifest.json"))
    assert runs, "no committed runs found"
    for manifest in runs[:2]:
        cases, results = store.read_cases(manifest.parent), store.read_results(manifest.parent)
        assert len(cases) and len(results) and not cases["case_key"].isna().any()
        assert pd.api.types.is_float_dtype(results["value"])


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomically_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        store.write_json_atomic(tmp_path / "a.json", {"x": 1})
        store.write_parquet_atomic(tmp_path / "b.parquet", store.results_frame(), store.RESULTS_SCHEMA)
        store.write_npz_atomic(tmp_path / "c.npz", {"x": np.zeros(2)})
    finally:
        os.umask(old)
    for name in ("a.json", "b.parquet", "c.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.parquet", "c.npz"]  # no temporaries
