"""Imported once by the forkserver that starts case processes on Dask workers and for CUDA cases:
building the default host here imports torch, wgfbench and every installed plugin a single time, so
each forked case process starts with them loaded (a fraction of a second instead of seconds)."""

from wgfbench.host import default_host
from wgfbench.runner import execution  # noqa: F401  (the child's entry point)

default_host()
