"""Harness benchmark: how much of a campaign's wall time goes to scoring, and what one score costs.

Prints, side by side from one invocation:

1. for one or more campaign run directories (default: the README demo, ``runs/demo-smoke``),
   the share of case wall time spent scoring versus preparing and solving: the median over
   cases of score / (prepare + solve + score) and the share of the summed times, per role and
   per solver (target: the median *solver* case under 20 % at the quick tier, with cached floors);
2. the median time of one exact ``w2`` (two ``ot.emd2`` solves, as for a score and its floor) at
   each tier's ``n_eval``, and of one near-linear primary (``sliced_w2`` on the scorer's 64
   directions, ``radial_w2``) between ``n_output`` output points and a pre-sorted ``n_reference``
   draw, in d = 2 and d = 10.

``--table FILE`` writes part 1 as a markdown table (with the runs it was computed from and the
command): it is a pure function of the committed ``cases.parquet`` files, so a test recomputes it.
``--timings FILE`` writes part 2 as a markdown table with the machine, versions and load average
(``--no-timings`` skips part 2). The README shows both files verbatim between its
``generated:`` markers (``wgfbench readme`` copies them there).

Usage: ``nox -s bench`` or
``python benchmarks/harness.py [RUN_DIR ...] [--repeats N] [--table FILE] [--timings FILE] [--no-timings]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import wgfbench
from wgfbench import store
from wgfbench.context import TIERS
from wgfbench.metrics import quantile_w2_sq, sliced_projections, w2
from wgfbench.metrics.distances import SortedSample

DEMO = Path("runs/demo-smoke")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


ROLE_LABELS = {
    "solver": "solvers (role `solver`)",
    "calibration": "calibration (`reference`)",
    "baseline": "trivial baselines (`frozen`, `equilibrium`)",
}


def ok_cases(run_dirs: list[Path]) -> tuple[pd.DataFrame, int]:
    """The ok cases of ``run_dirs`` with their wall time and score share, and the number of cases."""
    cases = pd.concat([store.read_cases(run_dir) for run_dir in run_dirs], ignore_index=True)
    ok = cases[cases.status == "ok"].copy()
    ok["wall"] = ok.prepare_seconds + ok.solve_seconds + ok.score_seconds
    ok["share"] = ok.score_seconds / ok.wall
    return ok, len(cases)


def _groups(ok: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [
        *((f"role {role}", g) for role, g in ok.groupby("role")),
        *ok.groupby("solver"),
        ("ALL", ok),
    ]


def scoring_table(run_dirs: list[Path]) -> str:
    """Part 1 as markdown: one row per role, per solver and for all cases, with the run list."""
    ok, total = ok_cases(run_dirs)
    lines = [
        "| rows | cases | prepare s (sum) | solve s (sum) | score s (sum) | median case: score share "
        "| score share of the summed time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    solvers = set(ok.solver[ok.role == "solver"])
    for label, group in _groups(ok):
        if not label.startswith("role ") and label != "ALL" and label not in solvers:
            continue  # the calibration and baseline rows are their roles' rows
        if label.startswith("role "):
            role = label.removeprefix("role ")
            label = ROLE_LABELS.get(role, f"role `{role}`")
            if role == "solver":
                label = f"**{label}**"
        elif label == "ALL":
            label = "**all**"
        else:
            label = f"`{label}`"
        median = f"{group.share.median():.1%}"
        if label.startswith("**solvers"):
            median = f"**{median}**"
        lines.append(
            f"| {label} | {len(group)} | {group.prepare_seconds.sum():.0f} | {group.solve_seconds.sum():.0f} "
            f"| {group.score_seconds.sum():.0f} | {median} "
            f"| {group.score_seconds.sum() / group.wall.sum():.1%} |".replace("%", " %")
        )
    runs = ", ".join(f"`{run_dir.as_posix()}`" for run_dir in run_dirs)
    paths = [r.as_posix() for r in run_dirs]
    command = shlex.join(["python", "benchmarks/harness.py", *paths, "--table", "FILE", "--no-timings"])
    lines += [
        "",
        f"Runs: {runs}. {len(ok)} ok cases of {total}, tier {ok.tier.iloc[0]}; a case's time is "
        "prepare + solve + score, in wall seconds as its record holds them. Computed from the runs' "
        f"`cases.parquet` by `{command}` (a test recomputes it).",
    ]
    return "\n".join(lines) + "\n"


def scoring_share(run_dirs: list[Path]) -> None:
    ok, total = ok_cases(run_dirs)
    names = ", ".join(str(r) for r in run_dirs)
    print(f"\nScoring vs solving, {names} ({len(ok)} ok cases of {total}, tier {ok.tier.iloc[0]})")
    header = f"{'rows':<22}{'cases':>6}{'prepare s':>11}{'solve s':>10}{'score s':>10}"
    print(f"{header}{'median case share':>19}{'share of sums':>15}")
    for label, group in _groups(ok):
        print(
            f"{label:<22}{len(group):>6}{group.prepare_seconds.sum():>11.1f}{group.solve_seconds.sum():>10.1f}"
            f"{group.score_seconds.sum():>10.1f}{group.share.median():>18.1%}"
            f"{group.score_seconds.sum() / group.wall.sum():>15.1%}"
        )


def w2_timings(repeats: int) -> dict[tuple[str, int], float]:
    print(f"\nOne exact w2 + its floor (two ot.emd2 solves) at n_eval, median of {repeats}")
    print(f"{'tier':<8}{'n_eval':>8}{'d':>5}{'median s':>11}")
    gen = torch.Generator().manual_seed(0)
    medians = {}
    for tier in TIERS.values():
        for d in (2, 10):
            times = []
            for _ in range(repeats):
                x, y, z = (torch.randn(tier.n_eval, d, generator=gen, dtype=torch.float64) for _ in range(3))
                start = time.perf_counter()
                w2(x, y)
                w2(y, z)
                times.append(time.perf_counter() - start)
            medians[tier.name, d] = statistics.median(times)
            print(f"{tier.name:<8}{tier.n_eval:>8}{d:>5}{medians[tier.name, d]:>11.3f}")
    return medians


def near_linear_timings(repeats: int) -> dict[tuple[str, int], tuple[float, float]]:
    print(f"\nOne near-linear primary against a pre-sorted reference draw, median of {repeats}")
    print(f"{'tier':<8}{'n_output':>10}{'n_reference':>13}{'d':>5}{'sliced_w2 s':>13}{'radial_w2 s':>13}")
    gen = torch.Generator().manual_seed(1)
    medians = {}
    for tier in TIERS.values():
        for d in (2, 10):
            theta = sliced_projections("bench", d).numpy()
            y = torch.randn(tier.n_reference, d, generator=gen, dtype=torch.float64).numpy()
            projected, radii = SortedSample.of(theta @ y.T), SortedSample.of(np.linalg.norm(y, axis=1))
            sliced, radial = [], []
            for _ in range(repeats):
                x = torch.randn(tier.n_output, d, generator=gen, dtype=torch.float64).numpy()
                start = time.perf_counter()
                quantile_w2_sq(theta @ x.T, projected)
                sliced.append(time.perf_counter() - start)
                start = time.perf_counter()
                quantile_w2_sq(np.linalg.norm(x, axis=1), radii)
                radial.append(time.perf_counter() - start)
            medians[tier.name, d] = (statistics.median(sliced), statistics.median(radial))
            print(
                f"{tier.name:<8}{tier.n_output:>10}{tier.n_reference:>13}{d:>5}"
                f"{medians[tier.name, d][0]:>13.3f}{medians[tier.name, d][1]:>13.3f}"
            )
    return medians


def timings_table(exact, near_linear, repeats: int, load: tuple[float, float]) -> str:
    """Part 2 as markdown: one column per tier, d = 2 / 10 in each cell, with machine and load."""
    tiers = list(TIERS.values())

    def cell(values) -> str:
        return " / ".join(f"{v:.3g}" for v in values) + " s"

    lines = [
        "| | " + " | ".join(f"{t.name}" for t in tiers) + " |",
        "|---|" + "---:|" * len(tiers),
        "| exact `w2` + floor at `n_eval`, d = 2 / 10 | "
        + " | ".join(cell(exact[t.name, d] for d in (2, 10)) for t in tiers)
        + " |",
        "| `sliced_w2` (64 directions) at `n_output` vs a pre-sorted `n_reference` draw, d = 2 / 10 | "
        + " | ".join(cell(near_linear[t.name, d][0] for d in (2, 10)) for t in tiers)
        + " |",
        "| `radial_w2` at `n_output` vs a pre-sorted `n_reference` draw, d = 2 / 10 | "
        + " | ".join(cell(near_linear[t.name, d][1] for d in (2, 10)) for t in tiers)
        + " |",
        "",
        f"Medians of {repeats} calls; `n_eval` = "
        + ", ".join(f"{t.n_eval}" for t in tiers)
        + ", `n_output` = `n_reference` = "
        + ", ".join(f"{t.n_output}" for t in tiers)
        + f" ({', '.join(t.name for t in tiers)}). {cpu_model()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}, python "
        f"{platform.python_version()}, wgfbench {wgfbench.__version__}; load average (1 min) "
        f"{load[0]:.1f} before, {load[1]:.1f} after. Written by "
        f"`{shlex.join(['python', *sys.argv])}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, default=[DEMO])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--table", type=Path, help="write the scoring-share table (markdown) here")
    parser.add_argument("--timings", type=Path, help="write the per-call cost table (markdown) here")
    parser.add_argument("--no-timings", action="store_true", help="skip the per-call timings")
    args = parser.parse_args(argv)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for run_dir in args.run_dirs:
        if not (run_dir / "manifest.json").exists():
            sys.exit(f"{run_dir} is not a run directory: run `nox -s bench` (or `nox -s demo`) first")
    scoring_share(args.run_dirs)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(scoring_table(args.run_dirs), encoding="utf-8")
        print(f"wrote {args.table}")
    if args.no_timings:
        return
    before = os.getloadavg()[0]
    exact = w2_timings(args.repeats)
    near_linear = near_linear_timings(args.repeats)
    if args.timings:
        args.timings.parent.mkdir(parents=True, exist_ok=True)
        table = timings_table(exact, near_linear, args.repeats, (before, os.getloadavg()[0]))
        args.timings.write_text(table, encoding="utf-8")
        print(f"wrote {args.timings}")


if __name__ == "__main__":
    main()
