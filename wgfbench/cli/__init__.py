"""The ``wgfbench`` command line: ``list``, ``show``, ``leaderboard``, ``resolution``, ``floors`` and
``reference`` here; ``run`` and ``rerun`` (campaigns and their progress display) in
:mod:`wgfbench.cli.run`; ``compare`` in :mod:`wgfbench.cli.compare`; ``readme`` in
:mod:`wgfbench.cli.readme`; ``new-plugin`` in :mod:`wgfbench.cli.scaffold`. Commands only parse
options and call the library (reports, runner, scaffold).

Exit codes: 0 when the command did its job (a run in which some cases failed *did* its job:
failures are results), 2 on a usage error (unknown names — with close matches —, bad configs
naming the field, a run directory that is not one), 130 when interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import wgfbench
from wgfbench import store
from wgfbench.context import TIERS
from wgfbench.errors import WgfbenchError
from wgfbench.host import Host, default_host
from wgfbench.metrics.cache import FloorCache
from wgfbench.rundir import RunDir
from wgfbench.runner import Plan, default_run_dir, make_plan, run_plan

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _console() -> Console:
    """A console for tables; when the output is not a terminal (a pipe, a file, a CI log) it is
    160 columns wide unless ``$COLUMNS`` says otherwise, so that names are never truncated."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=160)
    return console


def _plugin_label(plugin: str, distribution: str | None, version: str | None) -> str:
    return f"{plugin} ({distribution} {version})" if distribution else f"{plugin} (not installed)"


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(wgfbench.__version__, prog_name="wgfbench")
def main() -> None:
    """wgfbench: benchmark Wasserstein-gradient-flow solvers against trusted references.

    \b
    wgfbench list                      solvers and problems, with the plugins providing them
    wgfbench run -s PAT -p PAT         run a campaign into a run directory
    wgfbench show RUN                  a run's manifest, cases and final metrics
    wgfbench leaderboard RUN... --out  ranked tables, figures and one HTML report
    wgfbench compare BASE HEAD         what a branch changed, regressions told from noise
    wgfbench new-plugin NAME           a working plugin skeleton with its conformance tests
    wgfbench resolution / floors       what exact samples score; the floor cache
    wgfbench readme [--check]          the README's generated result tables
    """


# ----------------------------------------------------------------------------------------------
# list


def _solver_rows(host: Host) -> list[dict[str, Any]]:
    rows = []
    for name in host.solvers:
        entry = host.solvers.entry(name)
        cls = entry.item
        rows.append(
            {
                "name": name,
                "plugin": entry.plugin.name,
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
                "config_schema": cls.Config.model_json_schema(),
                "presets": {tier: dict(values) for tier, values in sorted(cls.presets.items())},
                "has_citation": bool(cls.citation),
            }
        )
    return rows


def _problem_rows(host: Host) -> list[dict[str, Any]]:
    rows = []
    for name in host.problems:
        entry = host.problems.entry(name)
        row: dict[str, Any] = {
            "name": name,
            "plugin": entry.plugin.name,
            "distribution": entry.plugin.distribution,
            "version": entry.plugin.version,
            "family": None,
            "dim": None,
            "reference": None,
            "primary_metric": None,
            "problem_version": None,
            "box": None,
            "error": None,
        }
        try:
            problem = wgfbench.get_problem(name, host)
            row.update(
                family=problem.family,
                dim=problem.dim,
                reference=problem.reference.kind,
                primary_metric=problem.primary_metric,
                problem_version=problem.version,
                jko_reference="jko" in problem.references,
                box=None if problem.box is None else "wall" if problem.box.wall else "window",
            )
        except Exception as exc:  # a broken factory is listed, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


@main.command("list")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Rich tables for people, JSON for scripts.",
)
@click.option(
    "--kind",
    type=click.Choice(["all", "solvers", "problems"]),
    default="all",
    show_default=True,
    help="List only solvers or only problems.",
)
def list_command(fmt: str, kind: str) -> None:
    """List every solver and problem with the plugin (entry point, distribution, version) that
    provided it; problems show family, dimension, reference kind and primary metric. Plugins that
    failed to load are listed with their error."""
    host = default_host()
    payload: dict[str, Any] = {}
    if kind in ("all", "solvers"):
        payload["solvers"] = _solver_rows(host)
    if kind in ("all", "problems"):
        payload["problems"] = _problem_rows(host)
    payload["failures"] = [{"plugin": f.plugin, "stage": f.stage, "error": f.error} for f in host.failures]
    if fmt == "json":
        click.echo(json.dumps(payload, indent=2))
        return
    console = _console()
    if "solvers" in payload:
        table = Table(title=f"Solvers ({len(payload['solvers'])})", title_justify="left")
        table.add_column("solver", no_wrap=True)
        table.add_column("plugin (distribution version)", overflow="fold")
        table.add_column("tier presets", overflow="fold")
        for r in payload["solvers"]:
            table.add_row(
                r["name"],
                _plugin_label(r["plugin"], r["distribution"], r["version"]),
                ", ".join(r["presets"]) or "—",
            )
        console.print(table)
    if "problems" in payload:
        table = Table(title=f"Problems ({len(payload['problems'])})", title_justify="left")
        table.add_column("problem", no_wrap=True)
        table.add_column("family", overflow="fold")
        table.add_column("dim", justify="right")
        table.add_column("reference", overflow="fold")
        table.add_column("primary metric", overflow="fold")
        table.add_column("box", overflow="fold")
        table.add_column("plugin (distribution version)", overflow="fold")
        for r in payload["problems"]:
            label = _plugin_label(r["plugin"], r["distribution"], r["version"])
            if r["error"]:
                table.add_row(
                    r["name"], "[red]failed to build: " + escape(r["error"]) + "[/red]", "", "", "", "", label
                )
            else:
                table.add_row(
                    r["name"],
                    r["family"],
                    str(r["dim"]),
                    r["reference"],
                    r["primary_metric"],
                    r["box"] or "—",
                    label,
                )
        console.print(table)
    if payload["failures"]:
        table = Table(title="Plugins that failed to load", title_justify="left", style="red")
        for col in ("plugin", "stage", "error"):
            table.add_column(col, overflow="fold")
        for f in payload["failures"]:
            table.add_row(escape(f["plugin"]), f["stage"], escape(f["error"]))
        console.print(table)


# ----------------------------------------------------------------------------------------------
# run


def _print_plan(console: Console, plan: Plan, out: Path) -> None:
    budget = plan.budget
    console.print(
        f"[bold]Plan[/bold]: {len(plan.cases)} case(s), tier [cyan]{plan.tier}[/cyan] "
        f"(budget {budget:g} s per case), {plan.seeds} seed(s), base seed {plan.base_seed}, "
        f"device {plan.device}, {plan.dtype} → {out}"
    )
    if plan.cases:
        table = Table(box=box.SIMPLE)
        table.add_column("problem")
        table.add_column("solver")
        table.add_column("seeds", justify="right")
        table.add_column("overrides")
        grouped: dict[tuple[str, str], list[Any]] = {}
        for c in plan.cases:
            grouped.setdefault((c.problem, c.solver), []).append(c)
        for (problem, solver), cases in grouped.items():
            ovr = ", ".join(f"{k}={v}" for k, v in cases[0].overrides.to_dict().items())
            table.add_row(problem, solver, str(len(cases)), ovr or "—")
        console.print(table)
    if plan.skipped:
        table = Table(title="Skipped pairs", title_justify="left", box=box.SIMPLE)
        table.add_column("solver", no_wrap=True)
        table.add_column("problems")
        table.add_column("reason")
        for solver, reason, names in _grouped_skips([(s.solver, s.problem, s.reason) for s in plan.skipped]):
            table.add_row(escape(solver), escape(", ".join(names)), escape(reason))
        console.print(table)


def _grouped_skips(skips: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, list[str]]]:
    """``(solver, problem, reason)`` triples grouped as ``(solver, reason, problems)``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for solver, problem, reason in skips:
        groups.setdefault((solver, reason), []).append(problem)
    return [(solver, reason, names) for (solver, reason), names in groups.items()]


# ----------------------------------------------------------------------------------------------
# resolution and floors


def _run_reference(
    problems: Sequence[str], tier: str, seeds: int, out: Path, no_cache: bool, console: Console
) -> Plan:
    try:
        plan = make_plan(["reference"], list(problems), seeds=seeds, tier=tier)
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    from wgfbench.cli.run import CampaignDisplay

    floors = FloorCache(enabled=not no_cache)
    console.print(f"Scoring {len(plan.cases)} reference case(s); floor cache: {floors.directory}")
    with CampaignDisplay(console, len(plan.cases), bar=True) as display:
        run_plan(
            plan,
            out,
            events=display.events(),
            on_outcome=display.outcome,
            command=["wgfbench", *sys.argv[1:]],
            floors=floors,
        )
    return plan


@main.command("resolution")
@click.option("-p", "--problem", "problems", multiple=True, default=("*",), show_default=True, metavar="PAT")
@click.option("--tier", type=click.Choice(list(TIERS)), default="quick", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the run and the table (resolution-<tier>.md, .csv); default: a new run dir.",
)
@click.option("--no-cache", is_flag=True, help="Recompute floors instead of using the on-disk cache.")
@click.option(
    "--from-run",
    "from_run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Build the table from the `reference` rows of an existing run (e.g. a campaign) instead of "
    "running them; --tier must match the run's.",
)
def resolution_command(
    problems: Sequence[str], tier: str, seeds: int, out: Path | None, no_cache: bool, from_run: Path | None
) -> None:
    """Measure the resolution of a tier: the exact `reference` row's final rel_error per problem.

    Runs `reference` (fresh exact samples) on the selected problems with --seeds repetitions (or
    reads them from --from-run), prints the table (median over seeds) and writes it as markdown and
    CSV in --out. Running also fills the floor cache for those problems.
    """
    from wgfbench.reports.resolution import resolution_table, to_markdown

    console = _console()
    out = out if out is not None else default_run_dir(f"resolution-{tier}")
    if from_run is not None:
        run_tier = RunDir(from_run).manifest.tier
        if run_tier != tier:
            raise click.UsageError(f"{from_run} is tier {run_tier!r}, not {tier!r}: pass --tier {run_tier}")
        run_dir = from_run
    else:
        run_dir = out / "run"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise click.UsageError(f"{run_dir} is not empty: choose a new --out")
        _run_reference(problems, tier, seeds, run_dir, no_cache, console)
    out.mkdir(parents=True, exist_ok=True)
    ran = set(store.read_cases(run_dir).problem)
    table = resolution_table(run_dir, {name: wgfbench.get_problem(name) for name in sorted(ran)})
    spec = TIERS[tier]
    sizes = f"n_output {spec.n_output}, n_reference {spec.n_reference}, n_eval {spec.n_eval}"
    markdown = to_markdown(table, tier, "wgfbench " + " ".join(sys.argv[1:]), sizes)
    (out / f"resolution-{tier}.md").write_text(markdown)
    table.to_csv(out / f"resolution-{tier}.csv", index=False)
    console.print(markdown, highlight=False, markup=False)
    console.print(f"Written: {out / f'resolution-{tier}.md'}, {out / f'resolution-{tier}.csv'}")


@main.command("floors")
@click.option("-p", "--problem", "problems", multiple=True, default=("*",), show_default=True, metavar="PAT")
@click.option("--tier", type=click.Choice(list(TIERS)), default="quick", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True)
def floors_command(problems: Sequence[str], tier: str, seeds: int) -> None:
    """Prebuild the on-disk cache of noise floors and rho_0 distances for a tier.

    Scores exact samples of the tier's output size on every selected problem, which computes and
    stores the floors every later run reads (outputs of other sizes, e.g. a particle solver's own
    N, add theirs on first use). The cache is the user's cache directory (or $WGFBENCH_CACHE_DIR).
    """
    import tempfile

    console = _console()
    with tempfile.TemporaryDirectory(prefix="wgfbench-floors-") as tmp:
        _run_reference(problems, tier, seeds, Path(tmp) / "run", False, console)
    console.print(f"Floors cached in {FloorCache().directory / 'floors'}")


# ----------------------------------------------------------------------------------------------
# show


@main.command("show")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--metric", "metrics", multiple=True, help="Metrics to show at the final time (repeatable).")
@click.option(
    "--figure",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also save the final snapshots beside reference draws to this image file.",
)
def show_command(run: Path, metrics: Sequence[str], figure: Path | None) -> None:
    """Summarise a run directory: manifest, one line per case (status, error, timings) and the key
    metrics at the final time."""
    from wgfbench.reports.show import show_run

    try:
        show_run(RunDir(run), _console(), list(metrics) or None, figure)
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None


# ----------------------------------------------------------------------------------------------
# leaderboard


@main.command("leaderboard")
@click.argument(
    "runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write markdown, HTML (self-contained), CSV and figures here.",
)
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Rewrite the generated problem × solver table between the leaderboard-table markers of this "
    "markdown file (the README's reference-campaign table).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Also print every per-problem table and the failures (the written files always have them).",
)
def leaderboard_command(runs: Sequence[Path], out: Path | None, readme: Path | None, full: bool) -> None:
    """Rank solvers per problem by the trajectory error (rel_error averaged over every snapshot),
    with the final-time error, excess over the floor, energy error, energy rises, wall time and
    peak memory, across one or more runs of the same tier; trivial baselines and flags included.
    Prints the summary and a problem × solver matrix; --out writes every table and figure."""
    from wgfbench.reports.leaderboard import build_leaderboard, replace_readme_table

    try:
        board = build_leaderboard(list(runs), out)
        if readme is not None:
            readme.write_text(
                replace_readme_table(readme.read_text("utf-8"), board.to_readme_table()), "utf-8"
            )
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    console = _console()
    board.to_console(console, full=full)
    if readme is not None:
        console.print(f"table rewritten in {readme}", markup=False, highlight=False)


@main.group("reference")
def reference_group() -> None:
    """Numerical references: rebuild or verify the stored high-resolution data of a problem."""


def _numerical_references(name: str) -> dict[str, Any]:
    from wgfbench.numerical import GridPath, ParticlePath

    try:
        problem = wgfbench.get_problem(name)
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    found = {
        role: ref for role, ref in problem.references.items() if isinstance(ref, (GridPath, ParticlePath))
    }
    if not found:
        raise click.UsageError(f"{name} has no numerical reference")
    return found


@reference_group.command("build")
@click.argument("problem")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of the problem's own data file (needs a source checkout or editable install).",
)
def reference_build_command(problem: str, out: Path | None) -> None:
    """Recompute PROBLEM's numerical reference with its pinned solver settings and store it
    (.npz, no pickle, with provenance); prints the content hash to pin in the problem's code."""
    from wgfbench.numerical import ParticlePath, save_grid_data, save_particle_data

    console = _console()
    for role, ref in _numerical_references(problem).items():
        target = out or Path(str(ref.source))
        console.print(f"building the {role!r} reference of {problem} …")
        save = save_particle_data if isinstance(ref, ParticlePath) else save_grid_data
        digest = save(target, ref.build())
        status = "matches the pinned hash" if digest == ref.sha256 else "differs from the pinned hash"
        console.print(f"wrote {target}\ncontent sha256 {digest} ({status}: {ref.sha256})")


@reference_group.command("verify")
@click.argument("problem")
@click.option("--tolerance", type=float, default=1e-10, show_default=True)
def reference_verify_command(problem: str, tolerance: float) -> None:
    """Check the stored data's hash, recompute it, and report the largest difference (exit 1
    when it exceeds --tolerance)."""
    from wgfbench.numerical import ParticlePath, max_difference, particle_max_difference

    console = _console()
    worst = 0.0
    for role, ref in _numerical_references(problem).items():
        try:
            stored = ref.data
        except WgfbenchError as exc:
            raise click.ClickException(str(exc)) from None
        console.print(f"{problem} [{role}]: stored data matches its hash; recomputing …")
        difference = particle_max_difference if isinstance(ref, ParticlePath) else max_difference
        diff = difference(stored, ref.build())
        worst = max(worst, diff)
        console.print(f"largest |difference| to the stored data: {diff:.3e} (tolerance {tolerance:g})")
    if not worst <= tolerance:
        sys.exit(1)


from wgfbench.cli import run as _run_commands  # noqa: E402,F401  (registers `run` and `rerun`)
from wgfbench.cli.compare import compare_command  # noqa: E402
from wgfbench.cli.readme import readme_command  # noqa: E402

main.add_command(readme_command)
main.add_command(compare_command)

from wgfbench.cli.scaffold import new_plugin_command  # noqa: E402

main.add_command(new_plugin_command)

if __name__ == "__main__":  # pragma: no cover
    main()
