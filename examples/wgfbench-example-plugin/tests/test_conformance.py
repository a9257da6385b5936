"""The example plugin's own tests: wgfbench's conformance suite, one test per check.

Run from this directory (with the plugin installed next to wgfbench): ``pytest``. The suite
classes come from ``wgfbench.testing``; naming the solver (and the problems) is all it takes.
"""

from __future__ import annotations

from wgfbench_example_plugin import HeunLangevin, make_ou_shifted_1d

from wgfbench.testing import ProblemConformance, SolverConformance, default_problems


class TestHeunLangevin(SolverConformance):
    solver = HeunLangevin
    # The plugin's problem and the kit's exact Ornstein–Uhlenbeck problems (1-D and 2-D).
    problems = (make_ou_shifted_1d, *default_problems())


class TestOuShifted1d(ProblemConformance):
    problems = (make_ou_shifted_1d,)
