"""``wgfbench run`` and ``wgfbench rerun``: campaigns from options, from a TOML file or from a
run's manifest, with the progress display (the runner only reports events)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wgfbench import store
from wgfbench.cli import _console, _print_plan, main
from wgfbench.context import TIERS
from wgfbench.errors import WgfbenchError
from wgfbench.host import default_host
from wgfbench.metrics.cache import FloorCache
from wgfbench.rundir import Manifest, RunDir
from wgfbench.runner import (
    DTYPES,
    EXECUTORS,
    CampaignSpec,
    CaseEvents,
    CaseOutcome,
    CaseTask,
    RunResult,
    default_run_dir,
    load_campaign,
    make_executor,
    make_plan,
    overrides_from_options,
    parse_campaign,
    run_plan,
)
from wgfbench.runner.spec import tier_out

PLAN_OPTIONS: dict[str, str] = {
    "solvers": "--solver",
    "problems": "--problem",
    "seeds": "--seeds",
    "tier": "--tier",
    "device": "--device",
    "dtype": "--dtype",
    "base_seed": "--base-seed",
    "budget": "--budget",
    "sets": "--set",
}
"""Options that describe the plan (parameter → flag): a campaign file holds them instead."""


def status_line(record: dict[str, Any]) -> str:
    """One rich-markup line per finished case (user text escaped)."""
    head = escape(f"{record['solver']} × {record['problem']} seed {record['seed']}")
    if record["status"] == "ok":
        return (
            f"[green]ok[/green]     {head}  prepare {record['prepare_seconds']:.3f} s, "
            f"solve {record['solve_seconds']:.3f} s, score {record['score_seconds']:.3f} s"
        )
    first = (str(record["error"]).strip().splitlines() or [""])[0]
    return f"[red]failed[/red] {head}  " + escape(f"(in {record['stage']}) {record['error_type']}: {first}")


class CampaignDisplay:
    """A progress bar over the cases, a bar for the running case (local executor) and a status
    line per finished case, on a rich console."""

    def __init__(self, console: Console, total: int, bar: bool):
        self.console = console
        self.progress = (
            Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            if bar
            else None
        )
        self.total = total

    def __enter__(self) -> CampaignDisplay:
        if self.progress is not None:
            self.progress.start()
            self.overall = self.progress.add_task("cases", total=self.total)
            self.inner = self.progress.add_task("", total=None, visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def events(self) -> CaseEvents:
        if self.progress is None:
            return CaseEvents()
        return CaseEvents(started=self._started, progress=self._progress)

    def _started(self, task: CaseTask) -> None:
        case = task.case
        label = escape(f"  {case.solver} × {case.problem} #{case.repetition}")
        self.progress.update(self.inner, description=label, completed=0, total=None, visible=True)  # type: ignore[union-attr]

    def _progress(self, task: CaseTask, done: int, total: int) -> None:
        self.progress.update(self.inner, completed=done, total=total)  # type: ignore[union-attr]

    def outcome(self, outcome: CaseOutcome) -> None:
        self.console.print(status_line(outcome.record), highlight=False)
        if self.progress is not None:
            self.progress.advance(self.overall)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler's cancel, ``kill``) stops a campaign as Ctrl-C does: finished cases
    stay on disk and the run is resumable."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def with_executor_options(
    spec: CampaignSpec, kind: str | None, workers: int | None, scheduler: str | None
) -> CampaignSpec:
    """``spec`` with the executor options given on the command line applied over its own: only
    what was given changes (workers and scheduler exclude each other; a slurm table stays only
    while the kind is slurm)."""
    if kind is None and workers is None and scheduler is None:
        return spec
    executor = spec.executor.model_dump(mode="json")
    if workers is not None:
        executor.update(workers=workers, scheduler=None)
    if scheduler is not None:
        executor.update(scheduler=scheduler, workers=None)
    executor["kind"] = kind or ("dask" if (workers or scheduler) else executor["kind"])
    if executor["kind"] != "slurm":
        executor["slurm"] = None
    if executor["kind"] == "local":
        executor.update(workers=None if executor["workers"] == 1 else executor["workers"])
    return parse_campaign({**spec.to_plain(), "executor": executor}, "command line")


def run_campaign(
    spec: CampaignSpec,
    out: Path | None,
    *,
    resume: bool,
    retry_failed: bool,
    salt: str | None,
    no_cache: bool,
    dry_run: bool,
    bar: bool,
    command: Sequence[str],
) -> list[RunResult]:
    """Plan, print and run ``spec`` tier by tier (``out/<tier>`` when it has several)."""
    console = _console()
    host = default_host()
    if resume and out is None and spec.out is None:
        raise click.UsageError("--resume needs --out DIR (the run to continue) or the campaign file's `out`")
    out = Path(out if out is not None else (spec.out or default_run_dir("-".join(spec.tiers))))
    try:
        plans = [
            make_plan(
                spec.solvers,
                spec.problems,
                seeds=spec.seeds,
                tier=tier,
                base_seed=spec.base_seed,
                device=spec.device,
                dtype=spec.dtype,
                overrides=spec.overrides,
                budget_seconds=spec.budget,
                host=host,
            )
            for tier in spec.tiers
        ]
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    for plan in plans:
        _print_plan(console, plan, tier_out(spec, plan.tier, out))
    if not any(plan.cases for plan in plans):
        raise click.UsageError("nothing to run: every selected (solver, problem) pair is skipped")
    if dry_run:
        return []
    results = []
    floors = FloorCache(enabled=not no_cache)
    # A host built from the installed plugins is rebuilt in case processes started from a clean
    # forkserver: they inherit nothing of the campaign's process (its scoring salt included). A
    # host made in-process (tests, notebooks) reaches them by fork instead.
    rebuildable = host.entry_points and host.distributions is None and not list(host.plugins)
    for plan in plans:
        run_dir = tier_out(spec, plan.tier, out)
        try:
            executor = make_executor(
                spec.executor.kind,
                scheduler=spec.executor.scheduler,
                workers=spec.executor.workers,
                host_factory=default_host if rebuildable or spec.executor.kind != "local" else None,
                floors=floors,
                slurm=spec.executor.slurm,
            )
            with _sigterm_interrupts(), CampaignDisplay(console, len(plan.cases), bar) as display:
                result = run_plan(
                    plan,
                    run_dir,
                    resume=resume,
                    retry_failed=retry_failed,
                    host=host,
                    executor=executor,
                    events=display.events(),
                    on_outcome=display.outcome,
                    command=command,
                    salt=salt,
                    spec=spec.model_copy(update={"tiers": [plan.tier]}).to_plain(),
                )
        except KeyboardInterrupt:
            try:
                done = len(store.committed_cases(run_dir))
            except WgfbenchError:
                done = 0
            console.print(
                f"[yellow]Interrupted.[/yellow] {done} case(s) are committed in {run_dir}; continue with the "
                f"same command plus --resume --out {run_dir}"
            )
            sys.exit(130)
        except WgfbenchError as exc:
            raise click.UsageError(str(exc)) from None
        style = "green" if result.n_failed == 0 else "yellow"
        console.print(
            f"[{style}]Done[/{style}]: {result.n_ok} ok, {result.n_failed} failed, {len(result.skipped)} "
            f"pair(s) skipped; {result.ran} ran now, {result.reused} kept from before. Run directory: "
            f"{run_dir}\nInspect with: wgfbench show {run_dir}"
        )
        if result.n_ok:  # the run's leaderboard: summary and the compact problem × solver matrix
            from wgfbench.reports.console import print_run_leaderboard

            print_run_leaderboard(run_dir, console)
        results.append(result)
    return results


@main.command("run")
@click.argument("campaign", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-s", "--solver", "solvers", multiple=True, metavar="PAT", help="Solver name or glob (repeatable)."
)
@click.option(
    "-p",
    "--problem",
    "problems",
    multiple=True,
    metavar="PAT",
    help="Problem name or glob (repeatable), e.g. 'fokker-planck/*'.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Repetitions 0..N-1.")
@click.option(
    "--tier",
    type=click.Choice(list(TIERS)),
    default="smoke",
    show_default=True,
    help="Fixes solver presets, the scoring sizes (n_output, n_reference, n_eval) and the per-case budget.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="float64", show_default=True)
@click.option(
    "--base-seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Hashed with problem, solver and repetition into each solver's seed.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Per-case budget (prepare + solve) in CPU seconds per torch thread; default: the tier's.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SOLVER.FIELD=VALUE",
    help="Override a solver config field (repeatable); VALUE is read as JSON when it parses.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: the campaign file's `out`, else runs/<UTC timestamp>-<tier>).",
)
@click.option(
    "--executor",
    type=click.Choice(list(EXECUTORS)),
    default=None,
    help="local (default: one case at a time, each in its own process) or dask.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Dask: start a local cluster of N workers."
)
@click.option(
    "--scheduler", default=None, metavar="ADDRESS", help="Dask: an existing scheduler (tcp://host:port)."
)
@click.option("--resume", is_flag=True, help="Continue the run in --out: committed cases are kept.")
@click.option("--retry-failed", is_flag=True, help="With --resume, rerun the cases that failed.")
@click.option(
    "--reproduce-salt",
    "salt",
    default=None,
    metavar="HEX",
    help="Score with this scoring salt (from an earlier run's manifest.json, scoring.salt) to reproduce "
    "its numbers exactly. Such a run is marked as reproduced: its salt was not secret.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Compute noise floors and rho_0 distances afresh instead of reading and writing the on-disk "
    "cache (the user's cache directory, or $WGFBENCH_CACHE_DIR).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar (status lines are still printed).")
@click.pass_context
def run_command(
    ctx: click.Context,
    campaign: Path | None,
    solvers: Sequence[str],
    problems: Sequence[str],
    seeds: int,
    tier: str,
    device: str,
    dtype: str,
    base_seed: int,
    budget: float | None,
    sets: Sequence[str],
    out: Path | None,
    executor: str | None,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
    retry_failed: bool,
    salt: str | None,
    no_cache: bool,
    dry_run: bool,
    no_progress: bool,
) -> None:
    """Run a campaign: solvers × problems × seeds at a tier, into a run directory.

    The campaign is either a TOML file (CAMPAIGN; see docs/campaigns.md) or the options
    -s/-p/--seeds/--tier/--set/... Prints the plan (cases, and skipped pairs with the reason), runs
    it with a progress bar and a status line per case, and a summary. Every case runs in a process
    of its own, on this machine (--executor local) or on a Dask cluster (--executor dask --workers N,
    or --scheduler ADDRESS). Exits 0 when the run completed, even if some cases failed (failures
    are results, with their error in cases.parquet); 2 on a usage error; 130 when interrupted.
    """
    if retry_failed and not resume:
        raise click.UsageError("--retry-failed needs --resume")
    if resume and out is None and campaign is None:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    typed = click.core.ParameterSource.COMMANDLINE
    given = [flag for name, flag in PLAN_OPTIONS.items() if ctx.get_parameter_source(name) is typed]
    try:
        if campaign is not None:
            if given:
                flags = ", ".join(given)
                raise click.UsageError(
                    f"the campaign file {campaign} holds the plan: edit it instead of passing {flags}"
                )
            spec = load_campaign(campaign)
        else:
            if not solvers or not problems:
                raise click.UsageError("give a campaign FILE, or at least one --solver and one --problem")
            spec = parse_campaign(
                {
                    "solvers": list(solvers),
                    "problems": list(problems),
                    "seeds": seeds,
                    "tiers": [tier],
                    "base_seed": base_seed,
                    "device": device,
                    "dtype": dtype,
                    "budget": budget,
                    "set": overrides_from_options(sets),
                },
                "command line",
            )
        spec = with_executor_options(spec, executor, workers, scheduler)
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    run_campaign(
        spec,
        out,
        resume=resume,
        retry_failed=retry_failed,
        salt=salt,
        no_cache=no_cache,
        dry_run=dry_run,
        bar=not no_progress,
        command=["wgfbench", *sys.argv[1:]],
    )


def spec_from_manifest(manifest: Manifest, run: Path) -> CampaignSpec:
    """The campaign that made a run: its recorded ``spec`` or, for runs written before campaign
    specs were recorded, one rebuilt from the plan (solvers, problems, overrides, seeds, tier)."""
    if manifest.spec:
        return parse_campaign(manifest.spec, f"{run}/manifest.json spec")
    cases, skipped = manifest.plan_cases(), manifest.plan_skipped()
    if not cases:
        raise WgfbenchError(f"{run}: its manifest records no plan to rerun")
    overrides: dict[str, dict[str, Any]] = {}
    for c in cases:
        if c.get("overrides"):
            overrides.setdefault(c["solver"], {}).update(c["overrides"])
    rows = cases + skipped
    return parse_campaign(
        {
            "solvers": sorted({c["solver"] for c in rows}),
            "problems": sorted({c["problem"] for c in rows}),
            "seeds": manifest.seeds,
            "tiers": [manifest.tier],
            "base_seed": manifest.base_seed,
            "device": manifest.device,
            "dtype": manifest.dtype,
            "budget": manifest.budget_seconds,
            "set": overrides,
        },
        f"{run}/manifest.json",
    )


@main.command("rerun")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="New run directory (default: RUN-rerun-<UTC timestamp> beside RUN).",
)
@click.option(
    "--same-salt",
    is_flag=True,
    help="Score with RUN's revealed scoring salt, so unchanged cases reproduce its numbers exactly.",
)
@click.option("--executor", type=click.Choice(list(EXECUTORS)), default=None)
@click.option("--workers", type=click.IntRange(min=1), default=None)
@click.option("--scheduler", default=None, metavar="ADDRESS")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@click.option("--no-progress", is_flag=True)
def rerun_command(
    run: Path,
    out: Path | None,
    same_salt: bool,
    executor: str | None,
    workers: int | None,
    scheduler: str | None,
    dry_run: bool,
    no_progress: bool,
) -> None:
    """Reproduce a run from its manifest: the same campaign (solvers, problems, seeds, tier,
    overrides, base seed, device, dtype, budget) into a new run directory."""
    try:
        manifest = RunDir(run).manifest
        spec = spec_from_manifest(manifest, run)
        spec = spec.model_copy(update={"tiers": [manifest.tier], "out": None})
        spec = with_executor_options(spec, executor, workers, scheduler)
        salt = None
        if same_salt:
            salt = manifest.scoring.salt
            if not salt:
                raise WgfbenchError(
                    f"{run} has no revealed scoring salt (its last session did not stop cleanly)"
                )
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    out = out or run.parent / f"{run.name}-rerun-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    run_campaign(
        spec,
        out,
        resume=False,
        retry_failed=False,
        salt=salt,
        no_cache=False,
        dry_run=dry_run,
        bar=not no_progress,
        command=["wgfbench", *sys.argv[1:]],
    )
