"""wgfbench's built-in plugins (import package ``wgfbench_plugins``).

They register through the ``wgfbench`` entry-point group exactly as a third-party plugin does:
``problems/<family>.py`` for problem families, ``solvers/<solver>`` for solvers.
"""
