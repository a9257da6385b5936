"""Deep JKO benchmark: explicit OT-Flow recurrences vs autograd, and time per JKO step.

Prints, side by side from one invocation:

1. the median wall time of one training iteration (loss (25) with RK4, N_τ = 1, backward, Adam
   step) at the quick tier's network (width 32, depth 2, 300 particles) on
   ``fokker-planck/ou-{d}d``-like Fokker–Planck energies in d = 2, 10, 30, with the Hessian trace
   and gradient by the explicit recurrences and by autograd, and their ratio (target ≥ 3× at
   d ≥ 10);
2. (unless ``--no-steps``) the time per JKO step of the quick tier on
   ``fokker-planck/ou-2d`` and ``porous-medium/barenblatt-2d-m2`` over the first ``--steps`` steps
   (the first, cold-started step trains ``first_step_factor`` times longer and is reported apart).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/deep_jko.py [--repeats N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch
from wgfbench_plugins.solvers.deep_jko import DeepJKO
from wgfbench_plugins.solvers.deep_jko.flow import VelocityField
from wgfbench_plugins.solvers.deep_jko.loss import jko_loss
from wgfbench_plugins.solvers.deep_jko.network import PotentialResNet

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.references import Gaussian


def iteration_time(d: int, derivatives: str, repeats: int, width: int = 32, n: int = 300) -> float:
    """Median seconds of one training iteration (forward RK4 push, loss, backward, Adam step)."""
    g = torch.Generator().manual_seed(d)
    energy = Energy([Entropy(), Potential(lambda x: 0.5 * (x**2).sum(-1), grad=lambda x: x)])
    initial = Gaussian(torch.full((d,), 1.0, dtype=torch.float64), torch.eye(d, dtype=torch.float64))
    net = PotentialResNet(d, width, 2, generator=g)
    x = initial.sample(n, g)
    log_rho = initial.log_density(x)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    field = VelocityField(net, derivatives=derivatives)  # type: ignore[arg-type]
    times = []
    for k in range(repeats + 2):
        started = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        jko_loss(field, x, log_rho, energy, 0.05, 1, "rk4").loss.backward()
        optimiser.step()
        if k >= 2:  # warm-up
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_times(name: str, steps: int) -> tuple[float, float, float]:
    """(first-step seconds, median seconds of the later steps, iterations per later step) of the
    quick tier on ``name``, truncated to its first ``steps`` JKO steps."""
    problem = wgfbench.get_problem(name)
    solver = DeepJKO.for_tier("quick")
    dt = solver.settings(problem).dt
    problem = dataclasses.replace(problem, times=(0.0, steps * dt))
    per_step: list[float] = []
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        per_step.append(now - last[0])
        last[0] = now

    ctx = Context.create(seed=0, tier="quick", progress=progress, budget_seconds=1e9)
    last[0] = time.perf_counter()
    trajectory = solver.solve(problem, ctx)
    later = per_step[1:]
    iterations = statistics.median(s.iterations for s in trajectory.steps[1:])
    return per_step[0], statistics.median(later), iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--no-steps", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.machine()}, threads={torch.get_num_threads()}, float64")
    print("\nOne training iteration (width 32, depth 2, 300 particles, RK4 N_tau = 1, exact trace):")
    print(f"{'d':>4} {'explicit [ms]':>14} {'autograd [ms]':>14} {'speed-up':>9}")
    for d in (2, 10, 30):
        explicit = iteration_time(d, "explicit", args.repeats)
        auto = iteration_time(d, "autograd", max(3, args.repeats // 2))
        print(f"{d:>4} {1e3 * explicit:>14.1f} {1e3 * auto:>14.1f} {auto / explicit:>8.1f}x")
    if args.no_steps:
        return
    print(f"\nQuick tier, time per JKO step (first {args.steps} steps):")
    print(f"{'problem':<34} {'first [s]':>10} {'later [s]':>10} {'iterations':>11}")
    for name in ("fokker-planck/ou-2d", "porous-medium/barenblatt-2d-m2"):
        first, later, its = step_times(name, args.steps)
        print(f"{name:<34} {first:>10.2f} {later:>10.2f} {its:>11.0f}")


if __name__ == "__main__":
    main()
