"""GPU paths (``nox -s gpu`` on a machine with CUDA; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

import wgfbench
from wgfbench.context import get_tier
from wgfbench.metrics import Scorer
from wgfbench.runner import make_plan, run_plan
from wgfbench.store import read_cases
from wgfbench.testing import check_solver

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("solver", ["reference", "langevin"])
@pytest.mark.parametrize("problem", ["fokker-planck/ou-10d", "kalman-wasserstein/linear-10d"])
def test_baselines_conform_on_cuda(solver, problem):
    check_solver(wgfbench.get_solver(solver, tier="smoke"), wgfbench.get_problem(problem), device="cuda")


def test_cuda_outputs_score_like_cpu_outputs():
    problem = wgfbench.get_problem("fokker-planck/ou-2d")
    solver = wgfbench.get_solver("reference", tier="smoke")
    ctx = wgfbench.Context.create(seed=3, tier="smoke", device="cuda")
    trajectory = solver.solve(problem, ctx)
    assert trajectory.snapshots[-1].x.device.type == "cuda"
    rows = Scorer(problem, get_tier("smoke"), base_seed=0, repetition=0).score(trajectory)
    w2 = {r.t: r.value for r in rows if r.metric == "w2"}
    floor = {r.t: r.value for r in rows if r.metric == "w2_floor"}
    assert all(w2[t] <= 2 * floor[t] for t in problem.times)


def test_large_tier_langevin_runs_on_cuda_with_synchronised_timings(tmp_path):
    plan = make_plan(["langevin"], ["fokker-planck/ou-32d"], tier="large", device="cuda")
    run_plan(plan, tmp_path)
    cases = read_cases(tmp_path)
    assert (cases.status == "ok").all(), cases.error.tolist()
    assert (cases.peak_memory_mb > 0).all()
