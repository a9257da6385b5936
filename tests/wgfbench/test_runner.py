"""The runner: plans (globs, skips, unknown names, configs), stable seeds and keys, case isolation
(exceptions, NaN, every kind of budget overrun, a process that dies), costs, resume after a kill,
no pickle."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import types
from typing import ClassVar

import numpy as np
import pandas as pd
import pydantic
import pytest
import torch
from campaign_plugins import burn

import wgfbench
from wgfbench import runner, store
from wgfbench.errors import ConfigError, UnknownNameError, WgfbenchError
from wgfbench.references import DistributionPath, Gaussian
from wgfbench.seeding import salt_digest, solver_seed
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

# ----------------------------------------------------------------------------------------------
# Toy problems: Ornstein–Uhlenbeck, ∂tρ = ∇·(ρx) + Δρ with ρ0 = N(m0, s0² I), so
# ρ(t) = N(m0 e^{-t}, (s0² e^{-2t} + 1 − e^{-2t}) I); and the pure drift ∂tρ = ∇·(ρx),
# whose solution is ρ(t) = N(m0 e^{-t}, s0² e^{-2t} I).

M0, S0 = 2.0, 0.5
TIMES = (0.0, 0.5, 1.0)


def ou_law(t: float, dim: int, diffusion: bool = True) -> Gaussian:
    var = S0**2 * math.exp(-2 * t) + (1 - math.exp(-2 * t) if diffusion else 0.0)
    return Gaussian([M0 * math.exp(-t)] * dim, var * np.eye(dim))


def quadratic_potential() -> wgfbench.Potential:
    return wgfbench.Potential(V=lambda x: 0.5 * (x**2).sum(-1), grad=lambda x: x)


def make_ou(dim: int, version: int = 1) -> wgfbench.Problem:
    return wgfbench.Problem(
        name=f"toy/ou-{dim}d",
        family="toy",
        dim=dim,
        energy=wgfbench.Energy([wgfbench.Entropy(), quadratic_potential()]),
        initial=ou_law(0.0, dim),
        times=TIMES,
        dt=0.05,
        references={"pde": DistributionPath(lambda t, d=dim: ou_law(t, d), dim=dim)},
        primary_metric="w2",
        version=version,
    )


def make_drift() -> wgfbench.Problem:
    return wgfbench.Problem(
        name="toy/drift-1d",
        family="toy",
        dim=1,
        energy=wgfbench.Energy([quadratic_potential()]),
        initial=ou_law(0.0, 1, diffusion=False),
        times=TIMES,
        dt=0.05,
        references={"pde": DistributionPath(lambda t: ou_law(t, 1, diffusion=False), dim=1)},
        primary_metric="w2",
    )


class ToyConfig(wgfbench.SolverConfig):
    n_particles: pydantic.PositiveInt = 200
    dt: pydantic.PositiveFloat = 0.05


class ExactSampler(wgfbench.Solver):
    """Draws the reference law at each snapshot time: a perfect solver."""

    name = "toy-exact"
    role = "calibration"  # reads problem.reference, so it gets the problem, not its view
    Config = ToyConfig

    def solve(self, problem, ctx):
        snaps = [
            ParticleSnapshot(
                t, ctx.to(problem.reference.sample(t, self.config.n_particles, ctx.cpu_generator))
            )
            for t in problem.times
        ]
        steps = [
            StepRecord(t=t, tau=t - s, iterations=3)
            for s, t in zip(problem.times, problem.times[1:], strict=False)
        ]
        return Trajectory(snaps, steps)


class EulerMaruyama(wgfbench.Solver):
    """Overdamped Langevin X ← X − h∇V(X) + √(2h) ξ (Euler–Maruyama), for entropy + potential."""

    name = "toy-langevin"
    Config = ToyConfig
    presets: ClassVar = {"smoke": {"n_particles": 400}}

    def supports(self, problem):
        if not isinstance(problem.energy.internal, wgfbench.Entropy):
            return "needs an entropy term (Langevin diffusion)"
        return True

    def solve(self, problem, ctx):
        x = ctx.to(problem.initial.sample(self.config.n_particles, ctx.cpu_generator))
        snaps, steps, t = [ParticleSnapshot(0.0, x.clone())], [], 0.0
        for t_next in problem.times[1:]:
            k = math.ceil((t_next - t) / self.config.dt - 1e-9)
            h = (t_next - t) / k
            for _ in range(k):
                ctx.check_budget()
                x = x - h * problem.energy.grad_V(x) + math.sqrt(2 * h) * ctx.randn(*x.shape)
                t += h
                steps.append(StepRecord(t=t, tau=h, iterations=1))
            t = t_next
            snaps.append(ParticleSnapshot(t_next, x.clone()))
        return Trajectory(snaps, steps)


class Raising(ExactSampler):
    name = "toy-raise"

    def solve(self, problem, ctx):
        raise RuntimeError("boom: the solver diverged")


class ReturnsNaN(ExactSampler):
    name = "toy-nan"

    def solve(self, problem, ctx):
        traj = super().solve(problem, ctx)
        traj.snapshots[-1].x[0, 0] = float("nan")
        return traj


class CooperativeOverrun(ExactSampler):
    """Never finishes but checks the budget: stopped by ctx.check_budget()."""

    name = "toy-loop"

    def solve(self, problem, ctx):
        while True:
            ctx.check_budget()
            burn(0.01)


class PostHocOverrun(ExactSampler):
    """Returns a valid trajectory, late, without ever checking the budget (post-hoc overrun)."""

    name = "toy-posthoc"

    def solve(self, problem, ctx):
        burn(ctx.budget_seconds * 1.3)
        return super().solve(problem, ctx)


class NeverChecks(ExactSampler):
    """Computes forever and never checks the budget: the runner stops its process."""

    name = "toy-hang"

    def solve(self, problem, ctx):
        while True:
            burn(0.1)


class Blocked(ExactSampler):
    """Blocks forever without using CPU (a deadlock): stopped at the wall-time limit."""

    name = "toy-block"

    def solve(self, problem, ctx):
        time.sleep(3600)


class Exits(ExactSampler):
    """Kills its own process, as a segfault or the out-of-memory killer would."""

    name = "toy-oskill"

    def solve(self, problem, ctx):
        os._exit(3)


FLAKY = {"fail": False}


class Flaky(ExactSampler):
    """An exact sampler that raises RuntimeError while ``FLAKY['fail']`` is set."""

    name = "toy-flaky"

    def solve(self, problem, ctx):
        if FLAKY["fail"]:
            raise RuntimeError("flaky failure")
        return super().solve(problem, ctx)


SOLVERS = (
    ExactSampler,
    EulerMaruyama,
    Raising,
    ReturnsNaN,
    CooperativeOverrun,
    PostHocOverrun,
    NeverChecks,
    Blocked,
    Exits,
    Flaky,
)


def toy_plugin(problem_factories=None, solvers=SOLVERS, name: str = "toy_plugin") -> types.ModuleType:
    module = types.ModuleType(name)
    problem_factories = problem_factories or {
        "toy/ou-1d": lambda: make_ou(1),
        "toy/ou-2d": lambda: make_ou(2),
        "toy/drift-1d": make_drift,
    }

    @wgfbench.hookimpl
    def wgfbench_register_problems(registry):
        for pname, factory in problem_factories.items():
            registry.add(factory, name=pname)

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        for cls in solvers:
            registry.add(cls)

    module.wgfbench_register_problems = wgfbench_register_problems
    module.wgfbench_register_solvers = wgfbench_register_solvers
    return module


@pytest.fixture
def host():
    return wgfbench.Host(entry_points=False, plugins=[toy_plugin()])


@pytest.fixture(autouse=True)
def _reset_flaky():
    FLAKY.update(fail=False)


TINY = wgfbench.Tier("tiny", n_eval=100, budget_seconds=10.0, description="tests: fast scoring")


@pytest.fixture(autouse=True)
def tiny_tier(monkeypatch):
    """A test tier scoring 100 points, so exact W2 is cheap; the smoke tier is used where it matters."""
    monkeypatch.setitem(wgfbench.TIERS, "tiny", TINY)
    return TINY


def run(host, tmp_path, solvers, problems, name="run", **kwargs):
    run_kwargs = {k: kwargs.pop(k) for k in ("resume", "retry_failed", "salt") if k in kwargs}
    kwargs.setdefault("tier", "tiny")
    plan = runner.make_plan(solvers, problems, host=host, **kwargs)
    return plan, runner.run_plan(plan, tmp_path / name, host=host, **run_kwargs)


# ----------------------------------------------------------------------------------------------
# Plans


def test_globs_select_names_and_unsupported_pairs_are_skipped_with_reason(host):
    plan = runner.make_plan(["toy-exact", "toy-lang*"], ["toy/*"], seeds=2, host=host)
    pairs = {(c.solver, c.problem) for c in plan.cases}
    assert pairs == {
        ("toy-exact", "toy/ou-1d"),
        ("toy-exact", "toy/ou-2d"),
        ("toy-exact", "toy/drift-1d"),
        ("toy-langevin", "toy/ou-1d"),
        ("toy-langevin", "toy/ou-2d"),
    }
    assert len(plan.cases) == 2 * len(pairs)
    assert sorted(
        c.repetition for c in plan.cases if c.solver == "toy-exact" and c.problem == "toy/ou-1d"
    ) == [0, 1]
    assert plan.skipped == [
        runner.Skip("toy-langevin", "toy/drift-1d", "needs an entropy term (Langevin diffusion)")
    ]
    # Overlapping patterns select each name once.
    assert len(runner.make_plan(["toy-exact", "toy-e*"], ["toy/ou-1d"], host=host).cases) == 1


def test_unknown_name_suggests_close_matches(host):
    with pytest.raises(UnknownNameError) as err:
        runner.make_plan(["toy-langevn"], ["toy/*"], host=host)
    assert err.value.suggestions[0] == "toy-langevin"
    assert "Did you mean 'toy-langevin'" in str(err.value)
    with pytest.raises(UnknownNameError, match="unknown problem 'toy/ou-3d'"):
        runner.make_plan(["toy-exact"], ["toy/ou-3d"], host=host)
    with pytest.raises(UnknownNameError, match="tier"):
        runner.make_plan(["toy-exact"], ["toy/*"], tier="huge", host=host)


def test_bad_config_overrides_name_the_field(host):
    with pytest.raises(ConfigError, match="n_particles"):
        runner.make_plan(
            ["toy-exact"], ["toy/ou-1d"], host=host, overrides={"toy-exact": {"n_particles": -3}}
        )
    with pytest.raises(ConfigError, match="n_particle"):
        runner.make_plan(["toy-exact"], ["toy/ou-1d"], host=host, overrides={"toy-exact": {"n_particle": 3}})
    with pytest.raises(ConfigError, match="matches no solver"):
        runner.make_plan(["toy-exact"], ["toy/ou-1d"], host=host, overrides={"toy-langevin": {"dt": 0.1}})
    with pytest.raises(ConfigError, match="seeds"):
        runner.make_plan(["toy-exact"], ["toy/ou-1d"], host=host, seeds=0)


def test_parse_override_reads_json_values():
    assert runner.parse_override("toy-langevin.dt=0.01") == ("toy-langevin", "dt", 0.01)
    assert runner.parse_override("a.b.flag=true") == ("a.b", "flag", True)
    assert runner.parse_override("s.name=euler") == ("s", "name", "euler")
    assert runner.overrides_from_options(["s.x=[1, 2]", "s.y=3"]) == {"s": {"x": [1, 2], "y": 3}}
    with pytest.raises(ConfigError, match=r"solver\.field=value"):
        runner.parse_override("dt=0.1")


def test_seeds_and_keys_derive_from_names_and_are_stable(host):
    plan = runner.make_plan(["toy-exact", "toy-langevin"], ["toy/ou-1d"], seeds=2, base_seed=7, host=host)
    case = next(c for c in plan.cases if c.solver == "toy-langevin" and c.repetition == 1)
    # Independent computation of hash(base seed, problem, solver, repetition) (BLAKE2b, 63 bits).
    digest = hashlib.blake2b(b"solver\x1f7\x1ftoy/ou-1d\x1ftoy-langevin\x1f1", digest_size=8).digest()
    assert (
        case.solver_seed()
        == int.from_bytes(digest, "little") >> 1
        == solver_seed(7, "toy/ou-1d", "toy-langevin", 1)
    )
    # Seeds and keys do not depend on what else is in the plan or on the host instance.
    alone = runner.make_plan(["toy-langevin"], ["toy/ou-1d"], seeds=2, base_seed=7, host=host).cases[1]
    other_host = wgfbench.Host(entry_points=False, plugins=[toy_plugin()])
    assert alone == case and alone.key(other_host) == case.key(host)
    keys = {c.key(host) for c in plan.cases}
    assert len(keys) == len(plan.cases) and all(len(k) == 16 for k in keys)
    # Anything that changes the numbers changes the key: config, repetition, base seed, tier, problem version.
    assert runner.make_plan(
        ["toy-langevin"],
        ["toy/ou-1d"],
        seeds=2,
        base_seed=7,
        host=host,
        overrides={"toy-langevin": {"dt": 0.1}},
    ).cases[1].key(host) != case.key(host)
    assert runner.make_plan(["toy-langevin"], ["toy/ou-1d"], seeds=2, base_seed=8, host=host).cases[1].key(
        host
    ) != case.key(host)
    assert runner.make_plan(
        ["toy-langevin"], ["toy/ou-1d"], tier="quick", seeds=2, base_seed=7, host=host
    ).cases[1].key(host) != case.key(host)
    v2 = wgfbench.Host(entry_points=False, plugins=[toy_plugin({"toy/ou-1d": lambda: make_ou(1, version=2)})])
    assert case.key(v2) != case.key(host)


# ----------------------------------------------------------------------------------------------
# Running


def test_runs_are_reproducible_and_langevin_matches_the_ou_moments(host, tmp_path):
    _, first = run(host, tmp_path, ["toy-langevin"], ["toy/ou-1d"], name="a", base_seed=3, tier="smoke")
    salt = store.read_manifest(first.run_dir)["scoring"]["salt"]
    _, second = run(
        host, tmp_path, ["toy-langevin"], ["toy/ou-1d"], name="b", base_seed=3, tier="smoke", salt=salt
    )
    assert store.read_manifest(second.run_dir)["scoring"]["reproduced"] is True
    assert first.n_ok == second.n_ok == 1
    key = first.records[0]["case_key"]
    a = np.load(store.final_snapshot_path(first.run_dir, key), allow_pickle=False)
    b = np.load(store.final_snapshot_path(second.run_dir, key), allow_pickle=False)
    np.testing.assert_array_equal(a["x"], b["x"])  # same seed, same numbers, bit for bit
    assert float(a["t"]) == 1.0 and a["x"].shape == (500, 1)  # resampled to the smoke tier's n_eval
    # N(2e^{-1}, 0.25e^{-2} + 1 − e^{-2}) at t = 1; 400 particles (smoke preset): 4-sigma bands
    # plus the O(h) Euler bias (h = 0.05).
    mean, var = M0 * math.exp(-1), S0**2 * math.exp(-2) + 1 - math.exp(-2)
    assert abs(a["x"].mean() - mean) < 4 * math.sqrt(var / 400) + 0.02
    assert abs(a["x"].var() - var) < 4 * var * math.sqrt(2 / 400) + 0.05
    ra, rb = first.results(), second.results()
    timed = ra["t"].notna()
    np.testing.assert_array_equal(
        ra.loc[timed, "value"].to_numpy(), rb.loc[rb["t"].notna(), "value"].to_numpy()
    )


def test_failures_are_isolated_and_recorded(host, tmp_path, monkeypatch):
    monkeypatch.setattr(runner.execution, "KILL_GRACE_SECONDS", 0.5)
    solvers = [
        "toy-exact",
        "toy-raise",
        "toy-nan",
        "toy-loop",
        "toy-posthoc",
        "toy-hang",
        "toy-block",
        "toy-oskill",
        "toy-langevin",
    ]
    _, result = run(host, tmp_path, solvers, ["toy/ou-1d"], budget_seconds=0.6)
    cases = result.cases().set_index("solver")
    assert set(cases.index) == set(solvers) and result.ran == len(solvers)
    assert cases.loc["toy-exact", "status"] == "ok" and cases.loc["toy-langevin", "status"] == "ok"
    assert cases.loc["toy-raise", "error_type"] == "RuntimeError"
    assert "boom" in cases.loc["toy-raise", "error"]
    assert cases.loc["toy-nan", "error_type"] == "NonFiniteOutput"
    assert cases.loc["toy-loop", "error_type"] == "BudgetExceeded"
    assert "CPU-time budget" in cases.loc["toy-loop", "error"]
    assert cases.loc["toy-posthoc", "error_type"] == "BudgetExceeded"
    assert "post-hoc" in cases.loc["toy-posthoc", "error"]
    # A solver that never checks its budget, busy or blocked, is stopped by the runner.
    for name in ("toy-hang", "toy-block"):
        assert cases.loc[name, "error_type"] == "BudgetExceeded"
        assert "stopped by the runner in solve" in cases.loc[name, "error"]
    # A solver that kills its process is one failure row; the campaign went on.
    assert cases.loc["toy-oskill", "error_type"] == "WorkerCrashed"
    assert "exited with code 3 in solve" in cases.loc["toy-oskill", "error"]
    # The cooperative overrun stopped within a few polls of its budget (CPU time, ~wall here).
    loop = cases.loc["toy-loop"]
    assert 0.6 <= loop["prepare_seconds"] + loop["solve_seconds"] < 3.0
    assert (cases.loc[["toy-exact", "toy-langevin"], "error_type"].isna()).all()
    # The full record keeps the traceback and the stage that failed.
    records = {r["solver"]: r for r in store.read_case_records(result.run_dir)}
    assert (
        "RuntimeError: boom" in records["toy-raise"]["traceback"] and records["toy-raise"]["stage"] == "solve"
    )
    assert records["toy-nan"]["stage"] == "validate"
    # Failed cases contribute no rows; ok ones do.
    results = result.results()
    assert set(results["solver"]) == {"toy-exact", "toy-langevin"}


def test_results_schema_and_cost_rows(host, tmp_path):
    _, result = run(host, tmp_path, ["toy-exact", "toy-langevin"], ["toy/ou-2d"], seeds=2)
    for frame in (result.results(), pd.read_parquet(result.run_dir / "results.parquet")):
        assert list(frame.columns) == ["run_id", "solver", "problem", "seed", "t", "step", "metric", "value"]
        assert frame["t"].dtype == np.float64 and frame["value"].dtype == np.float64
        assert frame["step"].dtype == np.int64 and frame["seed"].dtype == np.int64
    frame = result.results()
    assert set(frame["run_id"]) == {result.run_id} and set(frame["seed"]) == {0, 1}
    per_case = frame[frame["t"].isna()]
    assert (per_case["step"] == -1).all()
    costs = per_case[per_case["metric"].isin(runner.COST_METRICS)]
    assert set(costs["metric"]) == set(runner.COST_METRICS)
    assert len(costs) == 4 * len(runner.COST_METRICS)  # 2 solvers × 2 seeds, each cost once
    assert set(frame.loc[frame["t"].notna(), "t"]) <= set(TIMES)
    cases = result.cases().set_index(["solver", "seed"])
    assert list(result.cases().columns) == list(store.CASES_COLUMNS)
    for (solver, seed), group in costs.groupby(["solver", "seed"]):
        case = cases.loc[(solver, seed)]
        value = dict(zip(group["metric"], group["value"], strict=True))
        assert value["solve_seconds"] == pytest.approx(case["solve_seconds"])
        assert value["seconds_per_step"] == pytest.approx(case["solve_seconds"] / case["n_steps"])
        assert value["peak_memory_mb"] > 10 and math.isfinite(value["peak_memory_mb"])
        # toy-exact logs 2 steps of 3 iterations; Euler–Maruyama 20 steps of 1 (dt = 0.05 to t = 1).
        assert value["iterations"] == {"toy-exact": 6, "toy-langevin": 20}[solver]
        assert case["n_steps"] == {"toy-exact": 2, "toy-langevin": 20}[solver]
        assert case["score_seconds"] > 0 and case["status"] == "ok"
        assert json.loads(case["config"]) == {"n_particles": 200, "dt": 0.05}  # no preset for "tiny"
    # The scores are real: the exact sampler sits at the W2 noise floor, Euler–Maruyama near it.
    final = frame[(frame["t"] == 1.0) & frame["metric"].isin(["w2", "w2_floor"])]
    w2 = final.pivot_table(index=["solver", "seed"], columns="metric", values="value")
    assert (w2["w2"] < 3 * w2["w2_floor"]).all()
    # ... while ρ0 is far from ρ(1): W2² ≥ |m0 − m(1)|² = 2 (2 − 2e^{-1})² in 2-D.
    assert (w2["w2"] < 0.5 * math.sqrt(2) * (M0 - M0 * math.exp(-1))).all()
    # The solver seed column is the hash of the names.
    row = cases.loc[("toy-langevin", 1)]
    assert row["solver_seed"] == solver_seed(0, "toy/ou-2d", "toy-langevin", 1)


def test_manifest_records_plan_versions_and_machine(host, tmp_path):
    plan, result = run(host, tmp_path, ["toy-exact", "toy-langevin"], ["toy/drift-1d"], budget_seconds=5.0)
    manifest = store.read_manifest(result.run_dir)
    assert manifest["schema_version"] == store.SCHEMA_VERSION and manifest["run_id"] == result.run_id
    assert manifest["tier"] == "tiny" and manifest["device"] == "cpu" and manifest["dtype"] == "float64"
    assert manifest["budget_seconds"] == 5.0 and manifest["n_eval"] == TINY.n_eval
    assert manifest["completed"] and manifest["interrupted"] is False
    assert {c["key"] for c in manifest["plan"]["cases"]} == {c.key(host) for c in plan.cases}
    assert manifest["plan"]["skipped"] == [
        {
            "solver": "toy-langevin",
            "problem": "toy/drift-1d",
            "reason": "needs an entropy term (Langevin diffusion)",
        }
    ]
    versions = manifest["versions"]
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert versions["pot"] and "toy_plugin" in versions["plugins"]
    machine = manifest["machine"]
    assert (
        machine["torch_threads"] == torch.get_num_threads() and machine["cpu_count"] >= 1 and machine["host"]
    )
    assert "git_revision" in manifest


def test_resume_after_a_kill_ends_with_every_case_once(host, tmp_path):
    out = tmp_path / "run"
    plan = runner.make_plan(
        ["toy-exact", "toy-flaky"], ["toy/ou-1d", "toy/ou-2d"], seeds=2, tier="tiny", host=host
    )
    assert len(plan.cases) == 8

    def interrupt_after_three(outcome, seen=[]):  # noqa: B006 - a counter across calls
        seen.append(outcome)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the campaign's process

    with pytest.raises(KeyboardInterrupt):
        runner.run_plan(plan, out, host=host, on_outcome=interrupt_after_three)
    committed = store.committed_cases(out)
    assert 0 < len(committed) < 8
    manifest = store.read_manifest(out)
    assert manifest["interrupted"] is True and manifest["completed"] is None
    assert len(store.read_cases(out)) == len(committed)  # readable before the run finished
    first_salt = manifest["scoring"]["salt"]  # an interrupted session still reveals its salt
    assert first_salt and manifest["scoring"]["salt_sha256"] == salt_digest(first_salt)

    # Also simulate a crash between the two writes of one committed case: results part without case.json.
    victim = sorted(committed)[0]
    store.case_json_path(out, victim).unlink()
    (out / "parts" / ".leftover.tmp").write_text("half-written")

    with pytest.raises(WgfbenchError, match="--resume"):
        runner.run_plan(plan, out, host=host)
    result = runner.run_plan(plan, out, host=host, resume=True)
    assert result.reused == len(committed) - 1 and result.ran == 8 - result.reused
    cases = store.read_cases(out)
    assert len(cases) == 8 and cases["case_key"].is_unique and (cases["status"] == "ok").all()
    assert set(cases["case_key"]) == {c.key(host) for c in plan.cases}
    results = store.read_results(out)
    assert not results.duplicated(["solver", "problem", "seed", "t", "step", "metric"]).any()
    assert results.groupby(["solver", "problem", "seed"]).ngroups == 8
    assert set(results["run_id"]) == {manifest["run_id"]}
    # the resumed session scored with a fresh salt; the first one is kept, and every case says which
    scoring = store.read_manifest(out)["scoring"]
    assert scoring["salt"] != first_salt and scoring["sessions"][0]["salt"] == first_salt
    assert set(cases["score_salt_sha256"]) == {salt_digest(first_salt), scoring["salt_sha256"]}
    # A resume of a finished run runs nothing.
    again = runner.run_plan(plan, out, host=host, resume=True)
    assert again.ran == 0 and again.reused == 8 and len(store.read_cases(out)) == 8


def test_retry_failed_reruns_only_failed_cases(host, tmp_path):
    FLAKY["fail"] = True
    plan, first = run(host, tmp_path, ["toy-exact", "toy-flaky"], ["toy/ou-1d"])
    assert first.n_failed == 1 and first.n_ok == 1
    FLAKY["fail"] = False
    same = runner.run_plan(plan, first.run_dir, host=host, resume=True)
    assert same.ran == 0 and same.n_failed == 1
    retried = runner.run_plan(plan, first.run_dir, host=host, resume=True, retry_failed=True)
    assert retried.ran == 1 and retried.n_ok == 2
    cases = store.read_cases(first.run_dir)
    assert len(cases) == 2 and (cases["status"] == "ok").all()
    assert set(store.read_results(first.run_dir)["solver"]) == {"toy-exact", "toy-flaky"}


def test_resume_refuses_a_different_tier(host, tmp_path):
    _, result = run(host, tmp_path, ["toy-exact"], ["toy/ou-1d"])
    quick = runner.make_plan(["toy-exact"], ["toy/ou-1d"], tier="quick", host=host)
    with pytest.raises(ConfigError, match="tier"):
        runner.run_plan(quick, result.run_dir, host=host, resume=True)


def test_final_snapshot_is_resampled_to_n_eval_without_pickle(host, tmp_path):
    _, result = run(
        host, tmp_path, ["toy-exact"], ["toy/ou-2d"], overrides={"toy-exact": {"n_particles": 700}}
    )
    key = result.records[0]["case_key"]
    with np.load(store.final_snapshot_path(result.run_dir, key), allow_pickle=False) as data:
        x, t = data["x"], float(data["t"])
    assert x.shape == (TINY.n_eval, 2) and x.dtype == np.float64 and t == 1.0
    # 100 of the 700 exact draws of N(2e^{-1}, (0.25e^{-2} + 1 − e^{-2}) I): 5-sigma band on the mean.
    sd = math.sqrt(S0**2 * math.exp(-2) + 1 - math.exp(-2))
    assert np.abs(x.mean(0) - M0 * math.exp(-1)).max() < 5 * sd / 10


def test_each_run_draws_a_secret_salt_revealed_in_the_manifest_when_it_stops(host, tmp_path):
    peeked = tmp_path / "peeked.json"

    class PeekingManifest(ExactSampler):
        """Reads the run's manifest while it runs (its artefacts are not in the run directory, so
        it is told where the run is) and leaves what it saw in a file."""

        name = "toy-peek"

        def solve(self, problem, ctx):
            manifest = json.loads((tmp_path / "a" / store.MANIFEST).read_text())
            if not peeked.exists():
                peeked.write_text(json.dumps(manifest["scoring"]))
            return super().solve(problem, ctx)

    peek_host = wgfbench.Host(entry_points=False, plugins=[toy_plugin(solvers=(*SOLVERS, PeekingManifest))])
    _, a = run(peek_host, tmp_path, ["toy-peek"], ["toy/ou-1d"], name="a")
    _, b = run(peek_host, tmp_path, ["toy-peek"], ["toy/ou-1d"], name="b")
    scoring = store.read_manifest(a.run_dir)["scoring"]
    seen = [json.loads(peeked.read_text())]
    # while the solver ran the manifest held the salt's digest, not the salt
    assert seen[0]["salt"] is None and seen[0]["salt_sha256"] == scoring["salt_sha256"]
    assert len(scoring["salt"]) == 32 and scoring["salt"] != store.read_manifest(b.run_dir)["scoring"]["salt"]
    assert set(a.cases()["score_salt_sha256"]) == {scoring["salt_sha256"]}
    # two runs of the same plan draw different reference samples
    assert not a.results()["value"].equals(b.results()["value"])
