"""Harness benchmark: how much of a campaign's wall time goes to scoring, and what one W2 costs.

Prints, side by side from one invocation:

1. for a campaign run directory (default: the README demo, ``runs/demo-smoke``), the share
   of case wall time spent scoring versus preparing and solving, overall and per solver
   (target: scoring under 20 %);
2. the median time of one ``w2`` + ``w2_floor`` evaluation (two exact ``ot.emd2`` solves) at
   each tier's ``n_eval``, in d = 2 and d = 10.

Usage: ``nox -s bench`` or ``python benchmarks/harness.py [RUN_DIR] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from wgfbench import store
from wgfbench.context import TIERS
from wgfbench.metrics import w2

DEMO = Path("runs/demo-smoke")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def scoring_share(run_dir: Path) -> None:
    cases = store.read_cases(run_dir)
    ok = cases[cases.status == "ok"].copy()
    ok["wall"] = ok.prepare_seconds + ok.solve_seconds + ok.score_seconds
    print(f"\nScoring vs solving, {run_dir} ({len(ok)} ok cases of {len(cases)}, tier {ok.tier.iloc[0]})")
    print(f"{'solver':<14}{'cases':>6}{'prepare s':>11}{'solve s':>10}{'score s':>10}{'score share':>13}")
    for solver, group in [*ok.groupby("solver"), ("ALL", ok)]:
        total = group.wall.sum()
        print(
            f"{solver:<14}{len(group):>6}{group.prepare_seconds.sum():>11.2f}{group.solve_seconds.sum():>10.2f}"
            f"{group.score_seconds.sum():>10.2f}{group.score_seconds.sum() / total:>12.1%}"
        )


def w2_timings(repeats: int) -> None:
    print(f"\nOne w2 + w2_floor (two exact ot.emd2 solves), median of {repeats}")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, default=DEMO)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if not (args.run_dir / "manifest.json").exists():
        sys.exit(f"{args.run_dir} is not a run directory: run `nox -s bench` (or `nox -s demo`) first")
    scoring_share(args.run_dir)
    w2_timings(args.repeats)


if __name__ == "__main__":
    main()
