"""Executors side by side: the same CPU-bound smoke campaign with the local executor and with 1 and
2 single-threaded Dask workers (scoring in the workers), in one process, one after another.

    OMP_NUM_THREADS=1 python benchmarks/campaign.py [--repeats 3] [--out DIR]

Each configuration first runs a two-case warm-up campaign (it starts the cluster, its workers and
their forkservers: fixed costs, reported apart), then the timed campaign ``--repeats`` times into
fresh run directories, with one scoring salt throughout. Printed: median wall time per
configuration, the speed-up of 2 Dask workers over 1, and the Dask overhead per case, (median Dask
wall with 1 worker − median local wall) / number of cases, as a share of the local executor's
median case time. Targets (issue 12): ≥ 1.7× for 2 workers over 1 on a 2-core machine, overhead
under 5 % of a smoke case.

``--out DIR`` writes ``campaign.txt`` (the printed table), ``campaign.json`` and ``manifest.json``
(command, machine, versions, git revision).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask
from distributed import LocalCluster

import wgfbench
from wgfbench.host import default_host
from wgfbench.runner import DaskExecutor, LocalExecutor, git_revision, machine_info, make_plan, run_plan
from wgfbench.runner.executors import CLUSTER_CONFIG

SOLVERS = ("langevin", "fv-jko", "quantile-jko")
PROBLEMS = ("fokker-planck/*",)
SALT = "be" * 16


def campaign(seeds: int):
    return make_plan(list(SOLVERS), list(PROBLEMS), seeds=seeds, tier="smoke")


def timed(plan, executor_factory, root: Path, name: str) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    result = run_plan(plan, root / name, executor=executor_factory(), salt=SALT)
    wall = time.perf_counter() - t0
    failed = [r for r in result.records if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} case(s) failed, e.g. {failed[0]['error']}")
    return wall, result.records


def measure(args: argparse.Namespace) -> dict:
    plan = campaign(args.seeds)
    warm = make_plan(["frozen"], ["fokker-planck/ou-1d", "fokker-planck/ou-2d"], tier="smoke")
    n = len(plan.cases)
    print(
        f"campaign: {', '.join(SOLVERS)} × {', '.join(PROBLEMS)} × {args.seeds} seed(s), "
        f"smoke tier: {n} cases"
    )
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="wgfbench-bench-") as tmp:
        root = Path(tmp)
        configs: list[tuple[str, int | None]] = [("local", None), ("dask", 1), ("dask", 2)]
        for kind, workers in configs:
            label = "local" if kind == "local" else f"dask × {workers}"
            t0 = time.perf_counter()
            cluster = None
            with contextlib.ExitStack() as stack:
                if kind == "dask":
                    stack.enter_context(dask.config.set(CLUSTER_CONFIG))
                    cluster = stack.enter_context(
                        LocalCluster(
                            n_workers=workers,
                            threads_per_worker=1,
                            processes=True,
                            host="127.0.0.1",
                            dashboard_address=None,
                        )
                    )

                    def factory(address=cluster.scheduler_address):
                        return DaskExecutor(scheduler=address, host_factory=default_host)

                else:
                    # as the CLI runs it: cases from a clean forkserver; one score cache across repeats
                    shared = LocalExecutor(host_factory=default_host)

                    def factory(executor=shared):
                        return executor

                timed(warm, factory, root, f"{kind}-{workers}-warm")
                startup = time.perf_counter() - t0
                walls, case_seconds, in_case = [], [], []
                for r in range(args.repeats):
                    wall, records = timed(plan, factory, root, f"{kind}-{workers}-{r}")
                    walls.append(wall)
                    in_case.append(
                        sum(x["prepare_seconds"] + x["solve_seconds"] + x["score_seconds"] for x in records)
                    )
                    case_seconds.extend(
                        x["prepare_seconds"] + x["solve_seconds"] + x["score_seconds"] for x in records
                    )
            rows[label] = {
                "startup_seconds": startup,
                "walls": walls,
                "median_wall": statistics.median(walls),
                "median_case_seconds": statistics.median(case_seconds),
                "median_in_case_total": statistics.median(in_case),
            }
            print(
                f"{label:>9}: median wall {rows[label]['median_wall']:7.2f} s over {args.repeats} run(s) "
                f"({', '.join(f'{w:.2f}' for w in walls)}); "
                f"median case {rows[label]['median_case_seconds']:.3f} s, "
                f"in cases (prepare + solve + score) {rows[label]['median_in_case_total']:.1f} s; "
                f"start-up and warm-up {startup:.1f} s"
            )
    local, one, two = rows["local"], rows["dask × 1"], rows["dask × 2"]
    speedup = one["median_wall"] / two["median_wall"]
    per_case = (one["median_wall"] - local["median_wall"]) / n
    share = per_case / (local["median_wall"] / n)
    print(f"speed-up, 2 Dask workers over 1: {speedup:.2f}× (target ≥ 1.7× on 2 cores)")
    print(
        f"Dask overhead per case: {per_case * 1e3:+.1f} ms = {share:+.1%} of a local case's wall time "
        f"({local['median_wall'] / n:.3f} s; target < 5 %)"
    )
    return {
        "cases": n,
        "rows": rows,
        "speedup_2_over_1": speedup,
        "overhead_per_case": per_case,
        "overhead_share": share,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    capture = io.StringIO()
    with contextlib.redirect_stdout(Tee(sys.stdout, capture)):
        record = measure(args)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "campaign.json").write_text(json.dumps(record, indent=1))
        (args.out / "campaign.txt").write_text(capture.getvalue())
        manifest = {
            "command": " ".join(["python", *sys.argv]),
            "git_revision": git_revision(),
            "machine": machine_info("cpu"),
            "python": platform.python_version(),
            "wgfbench": wgfbench.__version__,
        }
        (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))


class Tee(io.TextIOBase):
    """Write to several streams (the terminal and the captured table)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)


if __name__ == "__main__":
    main()
