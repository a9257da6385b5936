"""Learn-to-Evolve benchmark: generalisation of the three training arms, and cost per JKO step.

Prints, side by side from one invocation (one thread):

1. **Arms on held-out densities.** For each family problem (Fokker–Planck, porous medium,
   aggregation, in 1-D and 2-D) the quick tier's operator is trained three ways at equal Adam
   steps: ``learn-to-evolve`` (the alternation), ``initial-only`` (the ablation) and ``supervised``
   (``fv-jko`` trajectories). Each is rolled out from densities no arm trained on: the problem's
   own initial condition and ``--members`` further family members from a held-out seed stream,
   each scored by the problem's primary metric against its own exact reference (``rel_error`` at
   every snapshot, smoke-tier scoring sizes). Reported: the median over the held-out densities
   at every snapshot, the trajectory mean, and which arm wins.
2. **Cost per step** on ``fokker-planck/ou-2d`` and ``porous-medium/barenblatt-2d-m2`` at the quick
   tier: the trained operator's step (one cloud of the quick solve size), a ``deep-jko`` step
   (median of the later steps; ``benchmarks/deep_jko.py``'s measurement) and an ``fv-jko`` step,
   the ratios, and the break-even number of evolved trajectories at which training is repaid
   against ``deep-jko``: training seconds / (steps per trajectory × (deep-jko − operator) seconds
   per step).

``--no-explicit-base`` trains the network without the explicit Lagrangian step as its base, so that
it learns the whole step, as in the paper's setting; ``--arms`` picks the arms.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/learn_to_evolve.py [--members 5] [--arms ...]
[--no-explicit-base] [--no-arms] [--no-steps] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from wgfbench_plugins.solvers.fv_jko import FVJKO
from wgfbench_plugins.solvers.learn_to_evolve import LearnToEvolve

import wgfbench
from wgfbench.context import Context, get_tier
from wgfbench.metrics.scorer import Scorer
from wgfbench.problem import Problem
from wgfbench.seeding import seed_from

PROBLEMS = (
    "fokker-planck/ou-1d",
    "fokker-planck/ou-2d",
    "porous-medium/barenblatt-1d-m2",
    "porous-medium/barenblatt-2d-m2",
    "aggregation/quantile-1d",
    "aggregation/quadratic-2d",
)
ARMS = ("learn-to-evolve", "initial-only", "supervised")
STEP_PROBLEMS = ("fokker-planck/ou-2d", "porous-medium/barenblatt-2d-m2")


def held_out(problem: Problem, members: int) -> list[tuple[str, Problem]]:
    """The problem itself and ``members`` family members from a seed stream training never uses
    (``learn-to-evolve/held-out``), each as a problem with its own initial law and reference."""
    out = [("own", problem)]
    gen = torch.Generator().manual_seed(seed_from("learn-to-evolve/held-out", problem.name))
    for k in range(members):
        initial, reference = problem.initial_family.draw(gen)
        refs = {"pde": reference}
        member = dataclasses.replace(
            problem, name=f"{problem.name}~member{k}", initial=initial, references=refs
        )
        out.append((f"member{k}", member))
    return out


def rel_errors(problem: Problem, trajectory) -> dict[float, float]:
    rows = Scorer(problem, get_tier("smoke"), base_seed=0, repetition=0).score(trajectory)
    return {r.t: r.value for r in rows if r.metric == "rel_error"}


def arms_table(members: int, arms: tuple[str, ...] = ARMS, explicit_base: bool = True) -> list[dict]:
    records = []
    for name in PROBLEMS:
        problem = wgfbench.get_problem(name)
        targets = held_out(problem, members)
        for arm in arms:
            solver = LearnToEvolve.for_tier("quick", arm=arm, cache=False, explicit_base=explicit_base)
            ctx = Context.create(0, "quick", budget_seconds=1e9)
            operator, description = solver.train(problem.view(), ctx)
            solver._operator, solver._info = operator, {"steps_seen": description["training"]["steps_seen"]}
            per_t: dict[float, list[float]] = {}
            for _label, target in targets:
                trajectory = solver.solve(target.view(), Context.create(0, "quick", budget_seconds=1e9))
                for t, v in rel_errors(target, trajectory).items():
                    per_t.setdefault(t, []).append(v)
            medians = {t: statistics.median(v) for t, v in sorted(per_t.items())}
            record = {
                "problem": name,
                "arm": arm,
                "explicit_base": explicit_base,
                "training_seconds": description["training"]["training_seconds"],
                "adam_steps": description["training"]["adam_steps"],
                "held_out": len(targets),
                "median_rel_error": medians,
                "trajectory": statistics.mean(medians.values()),
            }
            records.append(record)
            cells = " ".join(f"{v:6.3f}" for v in medians.values())
            print(
                f"{name:<32} {arm:<16} {record['training_seconds']:>7.1f} s  traj {record['trajectory']:6.3f}"
                f"  per t: {cells}",
                flush=True,
            )
    print("\nWinner per problem (trajectory mean of the median rel_error over held-out densities):")
    for name in PROBLEMS:
        rows = {r["arm"]: r["trajectory"] for r in records if r["problem"] == name}
        cells = "  ".join(f"{arm} {value:.3f}" for arm, value in rows.items())
        ratio = rows["initial-only"] / rows["learn-to-evolve"]
        print(f"{name:<32} {cells}   ablation / L2E = {ratio:.2f}")
    return records


def operator_step_seconds(name: str, repeats: int = 20) -> tuple[float, float, int]:
    """(median seconds of one operator step at the quick solve size, training seconds, steps per
    trajectory)."""
    problem = wgfbench.get_problem(name)
    solver = LearnToEvolve.for_tier("quick", cache=False)
    ctx = Context.create(0, "quick", budget_seconds=1e9)
    solver.prepare(problem.view(), ctx)
    operator = solver._operator
    from wgfbench_plugins.solvers.learn_to_evolve.cloud import lattice_cloud

    cloud = lattice_cloud(problem.initial.log_density, problem.box, solver.lattice(problem, solve=True))
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            cloud, _ = operator(cloud)
            times.append(time.perf_counter() - started)
    steps = round(problem.final_time / operator.tau)
    return statistics.median(times), float(solver._info["training_seconds"]), steps


def fv_step_seconds(name: str, steps: int = 6) -> float:
    problem = wgfbench.get_problem(name)
    solver = FVJKO.for_tier("quick")
    short = dataclasses.replace(problem, times=(0.0, steps * problem.dt))
    started = time.perf_counter()
    solver.solve(short, Context.create(0, "quick", budget_seconds=1e9))
    return (time.perf_counter() - started) / steps


def steps_table() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    from deep_jko import step_times  # the Deep JKO benchmark's own measurement

    print(
        f"\n{'problem':<32} {'L2E step [ms]':>14} {'deep-jko [s]':>13} {'fv-jko [s]':>11} "
        f"{'deep/L2E':>9} {'fv/L2E':>7} {'train [s]':>10} {'break-even':>11}"
    )
    records = []
    for name in STEP_PROBLEMS:
        op, train, steps = operator_step_seconds(name)
        _first, deep, _its = step_times(name, 4)
        fv = fv_step_seconds(name)
        breakeven = train / (steps * (deep - op))
        records.append(
            {
                "problem": name,
                "operator_step": op,
                "deep_jko_step": deep,
                "fv_jko_step": fv,
                "training_seconds": train,
                "steps": steps,
                "break_even_trajectories": breakeven,
            }
        )
        print(
            f"{name:<32} {1e3 * op:>14.2f} {deep:>13.2f} {fv:>11.3f} {deep / op:>8.0f}x {fv / op:>6.1f}x "
            f"{train:>10.1f} {breakeven:>11.2f}"
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--no-arms", action="store_true")
    parser.add_argument("--no-steps", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--arms", nargs="+", choices=ARMS, default=list(ARMS), help="training arms to compare (default: all)"
    )
    parser.add_argument(
        "--no-explicit-base",
        action="store_true",
        help="train without the explicit Lagrangian base step: the network learns the whole step",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {platform.processor() or ''}, threads=1, float64"
    )
    out = {}
    if not args.no_arms:
        base = "without" if args.no_explicit_base else "with"
        print(
            f"\nHeld-out densities (problem's own + members), median rel_error per snapshot "
            f"({base} the explicit base):"
        )
        out["arms"] = arms_table(args.members, tuple(args.arms), not args.no_explicit_base)
    if not args.no_steps:
        out["steps"] = steps_table()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
