"""``learn-to-evolve``: the self-supervised neural JKO operator of Feng, Wang, Needell & Lai (2026).

:mod:`.solver` (the plugin and its documented choices), :mod:`.operator` (the network and the
transport map), :mod:`.cloud` (particle states with log-densities), :mod:`.objective` (the JKO
objective), :mod:`.training` (the Learn-to-Evolve alternation and its comparison arms),
:mod:`.artefact` (the trained operator on disk).
"""

from wgfbench_plugins.solvers.learn_to_evolve.solver import (
    LearnToEvolve,
    LearnToEvolveConfig,
    wgfbench_register_solvers,
)

__all__ = ["LearnToEvolve", "LearnToEvolveConfig", "wgfbench_register_solvers"]
