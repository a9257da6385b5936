"""``python -m wgfbench`` runs the command-line interface."""

from wgfbench.cli import main

main()
