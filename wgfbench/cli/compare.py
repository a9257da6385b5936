"""``wgfbench compare BASE HEAD``: the CI comparison report (:mod:`wgfbench.reports.compare`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wgfbench.errors import WgfbenchError
from wgfbench.reports.compare import DEFAULT_REL_TOLERANCE, METRICS, compare_runs

RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("compare")
@click.argument("base", type=RUN_DIR)
@click.argument("head", type=RUN_DIR)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the markdown report here (what a CI job posts on the pull request).",
)
@click.option(
    "--tolerance",
    "rel_tolerance",
    type=click.FloatRange(min=0),
    default=DEFAULT_REL_TOLERANCE,
    show_default=True,
    help="Relative tolerance: a median moving by less than this share of BASE's is never flagged.",
)
@click.option(
    "--abs-tolerance",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Absolute tolerance, in the metric's unit (the larger of the two applies).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(list(METRICS)),
    help="Metrics to judge (repeatable; default: all).",
)
@click.option("--quiet", is_flag=True, help="Print the one-line summary only.")
def compare_command(
    base: Path, head: Path, out: Path | None, rel_tolerance: float, abs_tolerance: float, metrics, quiet: bool
) -> None:
    """Report what changed from run BASE to run HEAD, per solver, problem and metric, telling
    regressions from seed noise. Exit status 1 when HEAD regressed (a metric's median rose by more
    than max(tolerance, the metric's noise floor, 3 × the pooled MAD over seeds) with HEAD's
    interval strictly above BASE's, or a case that was ok in BASE fails), 0 otherwise; both runs
    must be complete."""
    try:
        comparison = compare_runs(
            base, head, rel_tolerance=rel_tolerance, abs_tolerance=abs_tolerance, metrics=metrics or None
        )
    except WgfbenchError as exc:
        raise click.UsageError(str(exc)) from None
    report = comparison.to_markdown()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
    if not quiet:
        click.echo(report)
        if out is not None:
            click.echo(f"report written to {out}")
    click.echo(comparison.summary_line())
    sys.exit(1 if comparison.regressed else 0)
