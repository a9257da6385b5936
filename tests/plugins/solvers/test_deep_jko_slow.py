"""Deep JKO acceptance runs at the quick tier (minutes each; ``-m slow``).

Each case is solved like the runner does (quick-tier context and budget, the runner's seed) and
scored by the real :class:`wgfbench.metrics.Scorer`; printed numbers go to the report.
"""

from __future__ import annotations

import itertools
import time

import pytest
from wgfbench_plugins.solvers.deep_jko import DeepJKO

import wgfbench
from wgfbench.context import Context
from wgfbench.metrics import Scorer
from wgfbench.seeding import solver_seed

pytestmark = pytest.mark.slow

CASES = {
    # problem: largest allowed rel_error at the final snapshot
    "porous-medium/barenblatt-2d-m2": 0.15,
    "fokker-planck/ou-2d": 0.15,
    "fokker-planck/ou-10d": 0.25,
}


def run_quick(name: str):
    problem = wgfbench.get_problem(name)
    solver = DeepJKO.for_tier("quick")
    ctx = Context.create(seed=solver_seed(0, name, "deep-jko", 0), tier="quick")
    started = time.perf_counter()
    trajectory = solver.solve(problem, ctx)
    seconds = time.perf_counter() - started
    trajectory.validate(problem.times, problem.dim)
    rows = Scorer(problem, wgfbench.context.get_tier("quick"), 0, 0).score(trajectory)
    return problem, trajectory, rows, seconds


@pytest.mark.parametrize("name", list(CASES))
def test_quick_tier_accuracy_energy_decay_and_jko_split(name):
    """rel_error at the final snapshot within the bound; the energy of the fixed evaluation cloud
    (ρ0 samples pushed through the stored maps) decreases at every JKO step within two standard
    errors; on OU the distance to the exact JKO iterates (jko_rel_error, optimisation error) is
    reported next to the PDE error (optimisation + time discretisation)."""
    problem, trajectory, rows, seconds = run_quick(name)
    values = {(r.metric, r.t): r.value for r in rows}
    final = problem.final_time
    print(f"\n{name}: solve {seconds:.1f} s, {len(trajectory.steps)} JKO steps, "
          f"{seconds / len(trajectory.steps):.2f} s/step, info {trajectory.info}")  # fmt: skip
    for t in problem.times[1:]:
        line = f"  t={t}: rel_error={values[('rel_error', t)]:.4f}"
        if ("jko_rel_error", t) in values:
            line += f"  jko_rel_error={values[('jko_rel_error', t)]:.4f}"
        print(line)
    assert values[("rel_error", final)] <= CASES[name]
    energies = [(s.t, s.energy, s.energy_stderr) for s in trajectory.steps]
    for (t0, e0, s0), (t1, e1, s1) in itertools.pairwise(energies):
        assert e1 <= e0 + 2.0 * max(s0, s1), (t0, e0, t1, e1)
    if problem.jko is not None:
        assert trajectory.jko_tau == pytest.approx(problem.dt)
        assert all(("jko_rel_error", t) in values for t in problem.times[1:])
        assert values[("jko_rel_error", final)] <= CASES[name]
