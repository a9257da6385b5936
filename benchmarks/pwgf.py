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
import contextlib
import dataclasses
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from wgfbench_plugins.solvers.pwgf import PWGF

import wgfbench
from wgfbench.context import Context, get_tier
from wgfbench.metrics import Scorer
from wgfbench.problem import Problem
from wgfbench.runner import git_revision, machine_info
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


def gaussian_moment_error(problem: Problem, trajectory) -> float:
    """Mean over t > 0 of the Bures–Wasserstein distance between the Gaussian with the output's
    sample mean and covariance and the exact Gaussian (OU problems): the time-stepping error
    without the scorer's sampling noise (10⁵ output points: moment noise ≈ 0.003)."""
    from wgfbench.metrics.distances import bures_w2

    values = []
    for snap in trajectory.snapshots[1:]:
        x = snap.x
        centred = x - x.mean(0)
        cov = centred.T @ centred / (x.shape[0] - 1)
        ref = problem.reference
        values.append(float(bures_w2(x.mean(0), cov, ref.mean(snap.t), ref.cov(snap.t))))
    return statistics.mean(values)


def steps(args) -> list[dict]:
    """Halve dt from the quick tier's down to 1/8 of it, Euler and Heun, one fitted θ0 per member."""
    records = []
    for name in args.problem or VALIDATION:
        problem = wgfbench.get_problem(name)
        member = members(problem, 1)[0]
        fitted = PWGF.for_tier("quick")
        ctx = Context.create(0, "quick", budget_seconds=1e9)
        fitted.prepare(member.view(), ctx)
        base = fitted.settings(member).dt
        gaussian = member.family == "fokker-planck"
        print(f"\n{member.name}: fit KL {fitted._fitted[1].kl:.4f}")
        head = f"{'scheme':<7} {'dt':>8} {'steps':>6} {'rel_error':>10} {'ratio':>6}"
        print(head + (f" {'moment BW2':>11} {'ratio':>6}" if gaussian else "") + f" {'solve [s]':>10}")
        for scheme in ("euler", "heun"):
            previous: tuple[float, float] | None = None
            for k in range(args.halvings + 1):
                dt = base / 2**k
                solver = PWGF.for_tier("quick", scheme=scheme, dt=dt, max_steps=10_000)
                solver._fitted = fitted._fitted  # the same θ0 for every step size
                started = time.perf_counter()
                trajectory = solver.solve(member.view(), Context.create(0, "quick", budget_seconds=1e9))
                seconds = time.perf_counter() - started
                error, _ = trajectory_error(member, trajectory)
                moment = gaussian_moment_error(member, trajectory) if gaussian else float("nan")
                ratio = "" if previous is None else f"{previous[0] / error:6.2f}"
                line = f"{scheme:<7} {dt:>8.4f} {trajectory.info['n_steps']:>6} {error:>10.4f} {ratio:>6}"
                if gaussian:
                    mratio = "" if previous is None else f"{previous[1] / moment:6.2f}"
                    line += f" {moment:>11.5f} {mratio:>6}"
                print(line + f" {seconds:>10.1f}", flush=True)
                previous = (error, moment)
                records.append(
                    {"problem": member.name, "scheme": scheme, "dt": dt, "steps": trajectory.info["n_steps"],
                     "trajectory_rel_error": error, "moment_bures_w2": moment, "solve_seconds": seconds}
                )  # fmt: skip
    return records


SCALING = ("fokker-planck/ou-2d", "fokker-planck/ou-10d", "fokker-planck/ou-32d")


def scaling(args) -> list[dict]:
    """pwgf and deep-jko at the quick tier on OU in d = 2, 10, 32: whole cases (prepare + solve),
    scored by the quick tier's scorer, side by side in this process."""
    from wgfbench_plugins.solvers.deep_jko import DeepJKO

    print(f"torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, float64")
    head = (
        f"{'problem':<24} {'solver':<9} {'prepare [s]':>11} {'solve [s]':>10} {'steps':>6} "
        f"{'s/step':>8} {'solve s per unit t':>19} {'traj rel_error':>15}"
    )
    print(head, flush=True)
    records = []
    for name in args.problem or SCALING:
        problem = wgfbench.get_problem(name)
        for label, cls in (("pwgf", PWGF), ("deep-jko", DeepJKO)):
            solver = cls.for_tier("quick")
            per_step: list[float] = []
            last = [0.0]

            def progress(done: int, total: int, per_step=per_step, last=last) -> None:
                now = time.perf_counter()
                per_step.append(now - last[0])
                last[0] = now

            ctx = Context.create(0, "quick", budget_seconds=1e9, progress=progress)
            started = time.perf_counter()
            solver.prepare(problem.view(), ctx)
            prepared = time.perf_counter()
            last[0] = prepared
            trajectory = solver.solve(problem.view(), ctx)
            solved = time.perf_counter()
            rows = Scorer(problem, get_tier("quick"), base_seed=0, repetition=0).score(trajectory)
            errors = [r.value for r in rows if r.metric == "rel_error" and r.t > 0]
            record = {
                "problem": name, "solver": label, "dim": problem.dim,
                "prepare_seconds": prepared - started, "solve_seconds": solved - prepared,
                "steps": len(trajectory.steps), "median_step_seconds": statistics.median(per_step[1:]),
                "solve_seconds_per_unit_time": (solved - prepared) / problem.final_time,
                "total_seconds_per_unit_time": (solved - started) / problem.final_time,
                "trajectory_rel_error": statistics.mean(errors),
            }  # fmt: skip
            records.append(record)
            print(
                f"{name:<24} {label:<9} {record['prepare_seconds']:>11.1f} {record['solve_seconds']:>10.1f} "
                f"{record['steps']:>6} {record['median_step_seconds']:>8.3f} "
                f"{record['solve_seconds_per_unit_time']:>19.1f} {record['trajectory_rel_error']:>15.4f}",
                flush=True,
            )
    print("\nRatios deep-jko / pwgf (cost per unit of simulated time, solve only and prepare + solve):")
    for name in args.problem or SCALING:
        by = {r["solver"]: r for r in records if r["problem"] == name}
        solve_ratio = (
            by["deep-jko"]["solve_seconds_per_unit_time"] / by["pwgf"]["solve_seconds_per_unit_time"]
        )
        total_ratio = (
            by["deep-jko"]["total_seconds_per_unit_time"] / by["pwgf"]["total_seconds_per_unit_time"]
        )
        err = by["pwgf"]["trajectory_rel_error"] / by["deep-jko"]["trajectory_rel_error"]
        print(
            f"{name:<24} solve {solve_ratio:5.2f}x  total {total_ratio:5.2f}x  error pwgf/deep-jko {err:5.2f}"
        )
    return records


def manifest(command: list[str]) -> dict:
    """Command, machine, versions and git revision, recorded as the runner records them."""
    return {
        "command": command,
        "machine": machine_info("cpu"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "wgfbench": wgfbench.__version__,
        "git_revision": git_revision(),
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
    st = sub.add_parser("steps")
    st.add_argument("--problem", action="append")
    st.add_argument("--halvings", type=int, default=3)
    sc = sub.add_parser("scaling")
    sc.add_argument("--problem", action="append")
    for p in (v, st, sc):
        p.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    capture = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, capture)):
        records = {"validate": validate, "steps": steps, "scaling": scaling}[args.command](args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.command}.json").write_text(json.dumps(records, indent=1, default=str))
        (args.out / f"{args.command}.txt").write_text(capture.getvalue())
        path = args.out / "manifest.json"
        runs = json.loads(path.read_text()) if path.exists() else {}
        runs[args.command] = manifest(["python", *sys.argv])
        path.write_text(json.dumps(runs, indent=1))


class Tee(io.TextIOBase):
    """Write to several streams (the terminal and the captured table)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


if __name__ == "__main__":
    main()
