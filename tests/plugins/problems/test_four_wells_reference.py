"""The numerical reference of fokker-planck/four-wells-2d (a stored fv-jko run) against independent checks."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from wgfbench_plugins.problems.fokker_planck import FOUR_WELLS_REFERENCE_SOLVER, make_four_wells_2d

import wgfbench
from wgfbench.context import Context
from wgfbench.numerical import GridPath, max_difference

PROBLEM = "fokker-planck/four-wells-2d"


@pytest.fixture(scope="module")
def problem():
    return wgfbench.get_problem(PROBLEM)


def kl_to_q(problem, snapshot) -> float:
    """KL(ρ_h | q) = Σ|K| ρ_K log(ρ_K / q(x_K)) on the reference grid (q is the exact target)."""
    grid = snapshot.grid
    log_q = (
        problem.references["stationary"].log_density(0.0, grid.centres().reshape(-1, 2)).reshape(grid.shape)
    )
    rho = snapshot.rho
    return float((torch.xlogy(rho, rho) - rho * log_q).sum() * grid.cell_volume)


def test_stored_reference_loads_with_its_hash_and_provenance(problem):
    reference = problem.reference
    assert isinstance(reference, GridPath) and reference.kind == "numerical"
    assert reference.times == problem.times
    record = json.loads(reference.provenance)
    assert record["solver"] == "fv-jko" and record["content_sha256"] == reference.sha256
    assert record["config"]["cells_2d"] == FOUR_WELLS_REFERENCE_SOLVER["cells_2d"]
    assert record["config"]["tau"] == FOUR_WELLS_REFERENCE_SOLVER["tau"]
    assert record["command"] == f"wgfbench reference build {PROBLEM}"
    for t in problem.times:
        snap = reference.snapshot(t)
        assert snap.rho.shape == (192, 192) and float(snap.rho.min()) > 0
        assert snap.mass == pytest.approx(1.0, abs=1e-12)


def test_reference_relaxes_to_the_exact_stationary_state(problem):
    # KL(ρ(t)|q) is the free energy up to its exact minimum 0: it decreases and vanishes at t = 2.
    kls = [kl_to_q(problem, problem.reference.snapshot(t)) for t in problem.times]
    assert all(b < a for a, b in itertools.pairwise(kls)), kls
    assert 6.0 < kls[0] < 7.5 and kls[-1] < 1e-4, kls


def test_reference_agrees_with_an_independent_scheme(problem):
    # entropic JKO (Peyré) on a coarser grid: a different discretisation of the same flow.
    solver = wgfbench.get_solver("entropic-jko", "smoke", cells=(64, 64, 12), gamma=0.01)
    trajectory = solver.solve(problem, Context.create(seed=0, budget_seconds=math.inf))  # untimed
    for t, snap in zip(problem.times, trajectory.snapshots, strict=True):
        if t == 0:
            continue
        ref = problem.reference.snapshot(t)
        # average the fine reference onto the coarse grid (192 = 3 × 64)
        coarse = ref.rho.reshape(64, 3, 64, 3).mean(dim=(1, 3))
        distance = float((snap.rho - coarse).abs().sum() / coarse.sum())
        initial = problem.reference.snapshot(0.0).rho.reshape(64, 3, 64, 3).mean(dim=(1, 3))
        motion = float((initial - coarse).abs().sum() / coarse.sum())
        assert distance < 0.1 * motion, (t, distance, motion)


@pytest.mark.slow
def test_rebuilding_the_reference_reproduces_it_to_1e_10(problem):
    # the documented command's build function, rerun: same platform, same numbers
    rebuilt = problem.reference.build()
    assert max_difference(problem.reference.data, rebuilt) <= 1e-10


def test_without_the_numerical_reference_the_problem_scores_the_energy_gap():
    bare = make_four_wells_2d(numerical=False)
    assert bare.reference.kind == "stationary" and bare.primary_metric == "energy_gap"
    assert math.isclose(bare.reference.energy(0.0), 0.0)
