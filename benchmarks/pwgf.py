"""PWGF benchmarks: validation on initial-family members, step convergence and cost vs dimension.

Subcommands (run alone, one thread: ``OMP_NUM_THREADS=1 python benchmarks/pwgf.py ...``):

``validate``
    The tuning harness behind the solver's hyperparameters: PWGF with ``--set FIELD=VALUE``
    overrides on ``--members`` members of each problem's initial family, drawn from the seed
    stream ``pwgf/validation`` (never the scored problem's own ρ0), scored against each member's
    exact reference. Prints the trajectory-mean ``rel_error`` per member and the median.
``steps``
    Convergence in the time step: the same fitted θ0 stepped with dt, dt/2, dt/4, dt/8 (Euler and
    Heun) on a family member, trajectory-mean ``rel_error`` and its ratio to the next finer step,
    until the parameterisation and sampling error dominates.
``scaling``
    Time per step and per unit of simulated time of ``pwgf`` beside ``deep-jko`` on
    ``fokker-planck/ou-{2,10,32}d`` at the quick tier, with their trajectory errors, measured side
    by side in one process.

``--out DIR`` writes ``<subcommand>.txt`` (the printed table) and ``<subcommand>.json`` next to a
``manifest.json`` (command, machine, versions, git revision).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from wgfbench_plugins.solvers.pwgf import PWGF

import wgfbench
from wgfbench.context import Context, get_tier
from wgfbench.metrics import Scorer
from wgfbench.problem import Problem
from wgfbench.seeding import seed_from

VALIDATION = ("fokker-planck/ou-2d", "porous-medium/barenblatt-2d-m2")


def members(problem: Problem, count: int, stream: str = "pwgf/validation") -> list[Problem]:
    """``count`` members of the problem's initial family from ``stream``, each a problem with its
    own initial law and exact reference (the scored problem's ρ0 is never among them)."""
    gen = torch.Generator().manual_seed(seed_from(stream, problem.name))
    out = []
    for k in range(count):
        initial, reference = problem.initial_family.draw(gen)
        out.append(
            dataclasses.replace(
                problem,
                name=f"{problem.name}~member{k}",
                initial=initial,
                references={"pde": reference},
                box=None,  # the box frames the problem's own ρ0, not a member's (no walls here)
            )
        )
    return out


def trajectory_error(problem: Problem, trajectory) -> tuple[float, dict[float, float]]:
    """Mean over t > 0 of the smoke-tier scorer's ``rel_error``, and the per-time values."""
    rows = Scorer(problem, get_tier("smoke"), base_seed=0, repetition=0).score(trajectory)
    per_t = {r.t: r.value for r in rows if r.metric == "rel_error" and r.t > 0}
    return statistics.mean(per_t.values()), per_t


def run_pwgf(problem: Problem, overrides: dict, seed: int = 0):
    solver = PWGF.for_tier("quick", **overrides)
    ctx = Context.create(seed, "quick", budget_seconds=1e9)
    started = time.perf_counter()
    solver.prepare(problem.view(), ctx)
    fitted = time.perf_counter()
    trajectory = solver.solve(problem.view(), ctx)
    return solver, trajectory, fitted - started, time.perf_counter() - fitted


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def validate(args) -> list[dict]:
    overrides = parse_overrides(args.set)
    records = []
    for name in args.problem or VALIDATION:
        problem = wgfbench.get_problem(name)
        errors = []
        for member in members(problem, args.members):
            _, trajectory, fit_s, solve_s = run_pwgf(member, overrides)
            error, per_t = trajectory_error(member, trajectory)
            errors.append(error)
            info = trajectory.info
            records.append(
                {"problem": member.name, "overrides": overrides, "trajectory_rel_error": error,
                 "per_t": per_t, "fit_seconds": fit_s, "solve_seconds": solve_s, "info": info}
            )  # fmt: skip
            print(
                f"{member.name:<44} traj {error:.4f}  fit {fit_s:5.1f} s (KL {info['fit_kl']:.4f})"
                f"  solve {solve_s:5.1f} s  steps {info['n_steps']}  CG {info['iterations']}"
                f"  unconverged {info['unconverged']}  halvings {info['halvings']}",
                flush=True,
            )
        print(f"{name:<44} median traj rel_error {statistics.median(errors):.4f}  ({overrides})", flush=True)
    return records


def manifest(command: list[str]) -> dict:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        revision, dirty = "unknown", True
    return {
        "command": command,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "wgfbench": wgfbench.__version__,
        "git_revision": revision,
        "git_dirty": dirty,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--members", type=int, default=3)
    v.add_argument("--problem", action="append")
    v.add_argument("--set", action="append", default=[])
    for p in (v,):
        p.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    records = {"validate": validate}[args.command](args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.command}.json").write_text(json.dumps(records, indent=1, default=str))
        (args.out / "manifest.json").write_text(json.dumps(manifest(sys.argv), indent=1))


if __name__ == "__main__":
    main()
