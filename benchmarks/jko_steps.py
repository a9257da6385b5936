"""Classical JKO step benchmark: fv-jko and entropic-jko side by side on the porous medium equation.

For each grid (64² and 128² in 2-D, 32³ in 3-D) both schemes start from the same discretised
Barenblatt profile (m = 2, absolute time t0 = 0.1) and take ``--steps`` JKO steps of the same
τ = 0.01. Printed per (grid, scheme): the median wall time of one step, the Newton iterations and
linear solves per step (fv-jko) or Sinkhorn iterations per step (entropic-jko), and the relative
L1 error against the exact Barenblatt profile at the cell centres after the last step (the same
τ for both, so the difference is the schemes' spatial error and the entropic blur).

Target (issue 3): median ≤ 1 s per 128² porous-medium fv-jko step on a 2-core CPU.

Usage: ``nox -s bench_jko`` or ``python benchmarks/jko_steps.py [--steps N] [--device cuda] [--out DIR]``.
Run it alone on the machine: concurrent load slows small BLAS calls by orders of magnitude.
``--out DIR`` writes ``table.md`` (the markdown table the README shows, between its
``generated: jko-steps`` markers; ``wgfbench readme`` copies it there) and ``manifest.json``
(command, machine, versions, git revision, load average); ``--note TEXT`` adds a line under the
table (e.g. that the machine was busy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from harness import cpu_model
from wgfbench_plugins.problems.porous_medium import Barenblatt
from wgfbench_plugins.solvers.entropic_jko import EntropicJKO, EntropicJKOStep
from wgfbench_plugins.solvers.fv_jko import FVJKOScheme, floor_density

import wgfbench
from wgfbench.energy import Energy, PowerInternal
from wgfbench.grid import Grid, GridEnergy
from wgfbench.problem import Box
from wgfbench.runner import git_revision, machine_info

T0, M, TAU = 0.1, 2, 0.01
SIZES = ((2, 64), (2, 128), (3, 32))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(d: int, n: int, steps: int, device: torch.device):
    reference = Barenblatt(d, M, T0)
    box = Box.cube(1.25 * reference.support_radius(steps * TAU), d)
    grid = Grid.with_cells(box, n)
    energy = GridEnergy(Energy([PowerInternal(float(M))]), grid, device=device)
    rho0 = floor_density(grid.discretise(reference.at(0.0).log_density), grid, 1e-10).to(device)
    exact = grid.discretise(reference.at(steps * TAU).log_density).to(device)
    return grid, energy, rho0, exact


def l1(rho: torch.Tensor, exact: torch.Tensor) -> float:
    return float((rho - exact).abs().sum() / exact.sum())


def run_fv(grid, energy, rho, exact, steps, device):
    backend = "torch" if device.type == "cuda" or grid.dim == 3 else "scipy"
    scheme = FVJKOScheme(grid, energy, backend=backend)
    times, newton, solves = [], [], []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        rho, stats = scheme.step(rho, TAU)
        sync(device)
        times.append(time.perf_counter() - start)
        newton.append(stats.newton_iterations)
        solves.append(stats.linear_solves)
    counts = f"Newton {statistics.mean(newton):.1f}, solves {statistics.mean(solves):.1f}"
    linear = "SuperLU" if backend == "scipy" else "torch CG"
    per_step = f"{statistics.mean(newton):.1f} Newton iterations, {statistics.mean(solves):.1f} linear solves"
    return f"fv-jko ({linear})", times, counts, per_step, l1(rho, exact)


def run_entropic(grid, energy, rho, exact, steps, device):
    solver = EntropicJKO(EntropicJKO.Config(**EntropicJKO.presets["quick"]))
    gamma = solver.gamma_for(grid, TAU)
    scheme = EntropicJKOStep(grid, energy, TAU, gamma, tol=solver.config.tol, device=device)
    times, iterations = [], []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        rho, its = scheme.step(rho)
        sync(device)
        times.append(time.perf_counter() - start)
        iterations.append(its)
    counts = f"Sinkhorn {statistics.mean(iterations):.0f}, γ/4τ {gamma / (4 * TAU):.2f}"
    per_step = f"{statistics.mean(iterations):.0f} Sinkhorn iterations (blur γ/4τ = {gamma / (4 * TAU):.2g})"
    return "entropic-jko", times, counts, per_step, l1(rho, exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write table.md and manifest.json to this directory")
    parser.add_argument("--note", default="", help="a line written under the table (e.g. the load)")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()
    title = (
        f"JKO steps on the porous medium (m = {M}, Barenblatt from t0 = {T0}), τ = {TAU}, {args.steps} steps"
    )
    machine = (
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, python {platform.python_version()}, device {device}"
    )
    print(title)
    print(f"machine: {machine}")
    print(
        f"{'grid':<8}{'scheme':<22}{'median s/step':>14}{'max s/step':>12}  "
        f"{'counts per step':<32}{'L1 error':>10}"
    )
    fv_128 = math.nan
    rows = []
    for d, n in SIZES:
        grid_name = f"{n}^{d}"
        for run in (run_fv, run_entropic):
            grid, energy, rho0, exact = setup(d, n, args.steps, device)
            name, times, counts, per_step, error = run(grid, energy, rho0, exact, args.steps, device)
            median = statistics.median(times)
            if run is run_fv and (d, n) == (2, 128):
                fv_128 = median
            print(f"{grid_name:<8}{name:<22}{median:>14.3f}{max(times):>12.3f}  {counts:<32}{error:>10.2e}")
            rows.append((f"{n}{'²' if d == 2 else '³'}", name, median, max(times), per_step, error))
    verdict = "meets" if fv_128 <= 1.0 else "misses"
    print(f"\nfv-jko 128² porous-medium step: median {fv_128:.3f} s ({verdict} the 1 s target)")
    if args.out:
        write_outputs(args, title, machine, rows, fv_128, verdict, load_before)


def write_outputs(args, title, machine, rows, fv_128, verdict, load_before) -> None:
    """``table.md`` (what the README shows) and ``manifest.json`` in ``args.out``."""
    load_after = os.getloadavg()
    argv = list(sys.argv)
    if "--note" in argv:  # the note is printed under the table; the command shows the rest
        del argv[argv.index("--note") : argv.index("--note") + 2]
    command = shlex.join(["python", *argv])
    lines = [
        "| grid | scheme | median s/step | max s/step | per step | L1 error |",
        "|---|---|---:|---:|---|---:|",
        *(
            f"| {grid} | {name} | {median:.3f} | {slowest:.3f} | {per_step} | {error:.1e} |"
            for grid, name, median, slowest, per_step, error in rows
        ),
        "",
        f"{title}; {machine}. The fv-jko 128² step: median {fv_128:.3f} s ({verdict} the 1 s target). "
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after. "
        f"Written by `{command}` (`{(args.out / 'manifest.json').as_posix()}`).",
    ]
    if args.note:
        lines += ["", args.note]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = {
        "command": command,
        "git_revision": git_revision(),
        "machine": machine_info(args.device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "wgfbench": wgfbench.__version__,
        },
        "env": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "steps": args.steps,
        "note": args.note,
        "argv": sys.argv,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
