"""``wgfbench new-plugin NAME``: write a working plugin project (:mod:`wgfbench.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import click

from wgfbench.scaffold import KINDS, NAME_RULE, ScaffoldError, create_plugin, package_name

HELP = (
    "Create the plugin project DIR/NAME: a pyproject.toml with the `wgfbench` entry point NAME, a "
    "package with the hooks (an Euler–Maruyama solver named NAME and/or the exact 1-D OU problem "
    "NAME/ou-1d) and tests that run the conformance suite. Refuses to overwrite an existing "
    f"directory.\n\nNAME: {NAME_RULE}."
)


@click.command("new-plugin", help=HELP)
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="both",
    show_default=True,
    help="What the plugin provides: an Euler–Maruyama solver, an exact 1-D OU problem, or both.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the project directory NAME.",
)
def new_plugin_command(name: str, kind: str, directory: Path) -> None:
    """``wgfbench new-plugin NAME [--kind solver|problem|both] [--dir DIR]`` (see :data:`HELP`)."""
    try:
        root = create_plugin(name, kind, directory)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"created {root} (package {package_name(name)}, kind {kind})")
    click.echo("next:")
    click.echo(f'  pip install -e "{root}[test]"')
    click.echo("  wgfbench list")
    click.echo(f"  pytest {root}")


__all__ = ["new_plugin_command"]
