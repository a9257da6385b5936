"""Harness benchmark: how much of a campaign's wall time goes to scoring, and what one score costs.

Prints, side by side from one invocation:

1. for one or more campaign run directories (default: the README demo, ``runs/demo-smoke``),
   the share of case wall time spent scoring versus preparing and solving: the median over
   cases of score / (prepare + solve + score) and the share of the summed times, per role and
   per solver (target: the median *solver* case under 20 % at the quick tier, with cached floors);
2. the median time of one exact ``w2`` (two ``ot.emd2`` solves, as for a score and its floor) at
   each tier's ``n_eval``, and of one near-linear primary (``sliced_w2`` on 128 directions,
   ``radial_w2``) between ``n_output`` output points and a pre-sorted ``n_reference`` draw, in
   d = 2 and d = 10.

Usage: ``nox -s bench`` or ``python benchmarks/harness.py [RUN_DIR ...] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

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


def scoring_share(run_dirs: list[Path]) -> None:
    cases = pd.concat([store.read_cases(run_dir) for run_dir in run_dirs], ignore_index=True)
    ok = cases[cases.status == "ok"].copy()
    ok["wall"] = ok.prepare_seconds + ok.solve_seconds + ok.score_seconds
    ok["share"] = ok.score_seconds / ok.wall
    names = ", ".join(str(r) for r in run_dirs)
    print(f"\nScoring vs solving, {names} ({len(ok)} ok cases of {len(cases)}, tier {ok.tier.iloc[0]})")
    header = f"{'rows':<22}{'cases':>6}{'prepare s':>11}{'solve s':>10}{'score s':>10}"
    print(f"{header}{'median case share':>19}{'share of sums':>15}")
    groups = [
        *((f"role {role}", g) for role, g in ok.groupby("role")),
        *ok.groupby("solver"),
        ("ALL", ok),
    ]
    for label, group in groups:
        print(
            f"{label:<22}{len(group):>6}{group.prepare_seconds.sum():>11.1f}{group.solve_seconds.sum():>10.1f}"
            f"{group.score_seconds.sum():>10.1f}{group.share.median():>18.1%}"
            f"{group.score_seconds.sum() / group.wall.sum():>15.1%}"
        )


def w2_timings(repeats: int) -> None:
    print(f"\nOne exact w2 + its floor (two ot.emd2 solves) at n_eval, median of {repeats}")
    print(f"{'tier':<8}{'n_eval':>8}{'d':>5}{'median s':>11}")
    gen = torch.Generator().manual_seed(0)
    for tier in TIERS.values():
        for d in (2, 10):
            times = []
            for _ in range(repeats):
                x, y, z = (torch.randn(tier.n_eval, d, generator=gen, dtype=torch.float64) for _ in range(3))
                start = time.perf_counter()
                w2(x, y)
                w2(y, z)
                times.append(time.perf_counter() - start)
            print(f"{tier.name:<8}{tier.n_eval:>8}{d:>5}{statistics.median(times):>11.3f}")


def near_linear_timings(repeats: int) -> None:
    print(f"\nOne near-linear primary against a pre-sorted reference draw, median of {repeats}")
    print(f"{'tier':<8}{'n_output':>10}{'n_reference':>13}{'d':>5}{'sliced_w2 s':>13}{'radial_w2 s':>13}")
    gen = torch.Generator().manual_seed(1)
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
            print(
                f"{tier.name:<8}{tier.n_output:>10}{tier.n_reference:>13}{d:>5}"
                f"{statistics.median(sliced):>13.3f}{statistics.median(radial):>13.3f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, default=[DEMO])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for run_dir in args.run_dirs:
        if not (run_dir / "manifest.json").exists():
            sys.exit(f"{run_dir} is not a run directory: run `nox -s bench` (or `nox -s demo`) first")
    scoring_share(args.run_dirs)
    w2_timings(args.repeats)
    near_linear_timings(args.repeats)


if __name__ == "__main__":
    main()
