"""Must hold (scoring integrity): solvers never see the answers, replayed draws do not win, trivial
and mass-inventing outputs never rank above real solvers.

The end-to-end checks run the real runner and scorer at the smoke tier on problems of all five
families: the trivial baselines ``frozen`` and ``equilibrium`` and a grid solver that adds 10 % mass
(fv-jko's output × 1.1) against ``fv-jko`` and ``deep-jko``; a solver that replays the scorer's
draws by the old public seed formula, and one that reaches into the scorer's memory.
"""

from __future__ import annotations

import gc
import sys
import types
from collections import deque
from typing import Any

import pandas as pd
import torch
from wgfbench_plugins.solvers.fv_jko import FVJKO

import wgfbench
from wgfbench.metrics import ScoreCache, Scorer
from wgfbench.problem import ProblemView
from wgfbench.references import JKOIterates, Reference
from wgfbench.reports.leaderboard import build_leaderboard, display_table
from wgfbench.runner import make_plan, run_plan
from wgfbench.seeding import seed_from
from wgfbench.store import read_case_records, read_cases, read_manifest, read_results
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Trajectory

# ----------------------------------------------------------------------------------------------
# What can be reached from an object


def _module_dict_ids() -> set[int]:
    return {id(vars(m)) for m in list(sys.modules.values()) if m is not None and hasattr(m, "__dict__")}


def reachable(*roots: Any, limit: int = 200_000) -> list[Any]:
    """Every object reachable from ``roots`` through references, except modules, classes and module
    globals (a function's ``__globals__``): those lead to the whole interpreter, the registry
    included, which :func:`wgfbench.get_problem` guards separately."""
    skip = _module_dict_ids()
    seen: set[int] = set()
    out: list[Any] = []
    queue = deque(roots)
    while queue and len(out) < limit:
        obj = queue.popleft()
        if id(obj) in seen or id(obj) in skip or isinstance(obj, types.ModuleType | type):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, types.FunctionType):
            queue.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
            queue.extend(obj.__defaults__ or ())
            queue.extend((obj.__kwdefaults__ or {}).values())
            continue
        queue.extend(gc.get_referents(obj))
    return out


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


FORBIDDEN = (Reference, JKOIterates, Scorer, ScoreCache)


def test_a_problem_view_reaches_no_reference_of_any_problem():
    host = wgfbench.default_host()
    for name in host.problems:
        problem = wgfbench.get_problem(name, host)
        view = problem.view()
        assert isinstance(view, ProblemView)
        for attribute in ("references", "reference", "jko", "stationary", "primary_metric"):
            assert not hasattr(view, attribute), (name, attribute)
        found = [type(o).__name__ for o in reachable(view) if isinstance(o, FORBIDDEN)]
        assert not found, f"{name}: a solver can reach {found} from its problem view"
        if view.initial_family is not None:
            member = view.initial_family.draw(torch.Generator().manual_seed(0))
            assert isinstance(member, wgfbench.Distribution) and member.dim == problem.dim


# ----------------------------------------------------------------------------------------------
# Probes run as solvers through the real runner


class Probe(wgfbench.Solver):
    """Reports in its trajectory's ``info`` (what comes back from the case's process) what a solver
    is handed, what the registry gives it, which forbidden objects it can reach and every reachable
    string the length of a scoring salt; returns rho_0 samples."""

    name = "zz-probe"

    def solve(self, problem, ctx):
        reached = reachable(problem, ctx)
        info = {
            "problem": type(problem).__name__,
            "registry": type(wgfbench.get_problem(problem.name)).__name__,
            "forbidden": [type(o).__name__ for o in reached if isinstance(o, FORBIDDEN)],
            "salt_like": sorted({o for o in reached if isinstance(o, str) and len(o) == 32}),
        }
        x = problem.initial.sample(ctx.tier.n_eval, ctx.cpu_generator)
        return Trajectory([ParticleSnapshot(t, ctx.to(x)) for t in problem.times], info=info)


class OldFormulaReplay(wgfbench.Solver):
    """Regenerates the scorer's reference draw by the seed formula of earlier releases
    (hash(role, base seed, problem, repetition, t)), through the problem registry."""

    name = "zz-old-formula"

    def solve(self, problem, ctx):
        full = wgfbench.get_problem(problem.name)
        snapshots = []
        for t in problem.times:
            gen = torch.Generator().manual_seed(seed_from("reference", 0, problem.name, 0, repr(float(t))))
            reference = getattr(full, "reference", None)
            x = reference.sample(t, ctx.tier.n_eval, gen) if reference is not None else None
            if x is None:  # the registry handed out a view: fall back to rho_0
                x = problem.initial.sample(ctx.tier.n_eval, gen)
            snapshots.append(ParticleSnapshot(t, ctx.to(x)))
        return Trajectory(snapshots)


class MemoryReplay(wgfbench.Solver):
    """Finds the runner's score cache in the interpreter's memory and returns its reference draws:
    the route no API can close in-process, which the suspect flag must catch."""

    name = "zz-memory"

    def solve(self, problem, ctx):
        caches = [o for o in gc.get_objects() if isinstance(o, ScoreCache)]
        draws = {}
        for cache in caches:
            for key in cache.keys():
                name, _, _, rep, t, _, what, salt = key
                salted = bool(salt)  # the scoring draw, not a public floor draw
                if name == problem.name and rep == 0 and what == "reference:draw" and salted:
                    draws[t] = cache.get_or_compute(key, lambda: None)
        snapshots = []
        for t in problem.times:
            x = draws.get(float(t))
            if x is None:
                x = problem.initial.sample(ctx.tier.n_eval, ctx.cpu_generator)
            snapshots.append(ParticleSnapshot(t, ctx.to(x)))
        return Trajectory(snapshots)


def _plugin(*solvers: type[wgfbench.Solver]) -> types.ModuleType:
    module = types.ModuleType("integrity_probes")

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        for cls in solvers:
            registry.add(cls)

    module.wgfbench_register_solvers = wgfbench_register_solvers
    return module


def _host(*solvers: type[wgfbench.Solver]) -> wgfbench.Host:
    return wgfbench.Host(distributions={"wgfbench"}, plugins=[_plugin(*solvers)])


def test_solvers_in_a_run_see_a_view_and_no_reference_sampler_or_scoring_seed(tmp_path):
    host = _host(Probe)
    plan = make_plan(["reference", "zz-probe"], ["fokker-planck/ou-1d"], tier="smoke", host=host)
    run_plan(plan, tmp_path, host=host)
    seen = next(r for r in read_case_records(tmp_path) if r["solver"] == "zz-probe")["info"]
    assert seen["problem"] == ProblemView.__name__
    assert seen["registry"] == ProblemView.__name__, "get_problem is a back door during solve"
    assert not seen["forbidden"], f"reachable from (problem, ctx): {seen['forbidden']}"
    salt = read_manifest(tmp_path)["scoring"]["salt"]
    assert salt and len(salt) == 32
    assert salt not in seen["salt_like"]
    assert (read_cases(tmp_path).status == "ok").all()


def test_replaying_the_scorer_never_beats_independent_exact_samples(tmp_path):
    host = _host(OldFormulaReplay, MemoryReplay)
    problems = ["fokker-planck/mixture-2d", "aggregation/newtonian-2d"]
    plan = make_plan(
        ["reference", "zz-old-formula", "zz-memory"], problems, tier="smoke", host=host, budget_seconds=120.0
    )
    run_plan(plan, tmp_path, host=host)
    results = read_results(tmp_path)
    per_case = results[results.t.isna()].pivot_table(
        index=["problem", "solver"], columns="metric", values="value"
    )
    for problem in problems:
        exact, old, memory = (
            per_case.loc[(problem, s)] for s in ("reference", "zz-old-formula", "zz-memory")
        )
        # the salt makes the old formula's draw independent of the scoring draw: exact samples
        assert old.floor_ratio > 0.5 and old.flag_suspect == 0, old
        assert exact.floor_ratio > 0.5 and exact.flag_suspect == 0, exact
        # the copied draw scores ~0 and is caught
        assert memory.floor_ratio < 1e-6 and memory.flag_suspect == 1, memory
    board = build_leaderboard([tmp_path])
    for problem in problems:
        table = board.per_problem[problem].set_index("solver")
        assert pd.isna(table.loc["zz-memory", "rank"]) and table.loc["zz-memory", "suspect_seeds"] == 1
    assert "SUSPECT" in board.to_markdown()


# ----------------------------------------------------------------------------------------------
# Trivial and mass-inventing outputs against real solvers


class MassInventing(FVJKO):
    """fv-jko whose every snapshot carries 10 % more mass (a plausible bug)."""

    name = "zz-mass"

    def solve(self, problem, ctx):
        trajectory = super().solve(problem, ctx)
        snapshots = [
            GridSnapshot(s.t, s.box, 1.1 * s.rho) if isinstance(s, GridSnapshot) else s
            for s in trajectory.snapshots
        ]
        return Trajectory(snapshots, trajectory.steps, trajectory.jko_tau, trajectory.info)


FAMILY_PROBLEMS = [
    "fokker-planck/box-1d",
    "porous-medium/barenblatt-1d-m2",
    "aggregation/quantile-1d",
    "kalman-wasserstein/linear-2d",
    "nonlinear-mobility/saturation-1d",
]


def test_trivial_and_mass_inventing_outputs_rank_below_real_solvers(tmp_path):
    host = _host(MassInventing)
    solvers = ["frozen", "equilibrium", "zz-mass", "fv-jko", "deep-jko"]
    # a generous budget: the check is about ranks, not about how busy the test machine is
    plan = make_plan(solvers, FAMILY_PROBLEMS, tier="smoke", host=host, budget_seconds=120.0)
    run_plan(plan, tmp_path, host=host)
    cases = read_cases(tmp_path)
    assert (cases.status == "ok").all(), cases.loc[cases.status != "ok", ["solver", "problem", "error"]]
    board = build_leaderboard([tmp_path])
    trivial = {"frozen", "equilibrium", "zz-mass"}
    for problem in FAMILY_PROBLEMS:
        table = board.per_problem[problem].set_index("solver")
        assert not table["end_state_only"].any(), f"{problem} has no time-resolved reference"
        real = [s for s in ("fv-jko", "deep-jko") if s in table.index]
        assert real, problem
        shown = display_table(board.per_problem[problem]).to_string()
        for solver in real:
            for other in trivial & set(table.index):
                # ranks above = has a rank, and a strictly better one (overlapping intervals tie);
                # the mass-inventing row keeps no rank
                rank, other_rank = table.loc[solver, "rank"], table.loc[other, "rank"]
                assert pd.isna(other_rank) or other_rank >= rank, (
                    f"{problem}: {other} above {solver}\n{shown}"
                )
        if "zz-mass" in table.index:
            mass = table.loc["zz-mass"]
            assert mass["mass_flag_seeds"] == 1 and pd.isna(mass["rank"]), problem
            # the penalty is in the score as well: 0.1 more than fv-jko's at every snapshot
            assert mass["trajectory_error_median"] > table.loc["fv-jko", "trajectory_error_median"] + 0.09
    assert "mass violated" in board.to_markdown()
