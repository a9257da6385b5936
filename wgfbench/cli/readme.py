"""``wgfbench readme``: rewrite the README's generated blocks from their committed files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wgfbench.errors import WgfbenchError
from wgfbench.reports.readme import render, stale_blocks


@click.command("readme")
@click.argument(
    "path", type=click.Path(dir_okay=False, path_type=Path), default=Path("README.md"), required=False
)
@click.option("--check", is_flag=True, help="Change nothing; exit 1 listing the blocks that differ.")
def readme_command(path: Path, check: bool) -> None:
    """Copy each committed table into its block of PATH (default README.md).

    A block runs from a line '<!-- generated: NAME (from FILE; ...) -->' to a line
    '<!-- generated:end -->'; its content is FILE (relative to PATH's folder) verbatim. The
    leaderboard table is written by `wgfbench leaderboard --readme` instead."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    root = path.parent
    try:
        if check:
            stale = stale_blocks(text, root)
            if stale:
                click.echo(f"{path}: blocks that differ from their files: {', '.join(stale)}")
                click.echo("run `wgfbench readme` to rewrite them")
                sys.exit(1)
            click.echo(f"{path}: every generated block matches its file")
            return
        new = render(text, root)
    except WgfbenchError as exc:
        raise click.ClickException(str(exc)) from None
    if new != text:
        path.write_text(new, encoding="utf-8")
        click.echo(f"{path}: generated blocks rewritten")
    else:
        click.echo(f"{path}: generated blocks already up to date")
