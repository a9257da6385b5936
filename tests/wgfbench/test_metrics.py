"""Tests of wgfbench.metrics: distances against closed forms, the noise floors of docs/problems.md, and
the Scorer on a small 2-D Ornstein–Uhlenbeck problem built here from the contracts."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import ot
import pytest
import torch

from wgfbench.context import TIERS, Tier, make_generator
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.metrics import (
    METRICS,
    OptimalTransportError,
    ScoreCache,
    Scorer,
    bures_w2,
    radial_w2,
    resample,
    sliced_projections,
    sliced_w2,
    w2,
)
from wgfbench.metrics.cache import FloorCache
from wgfbench.metrics.registry import BUILTIN_METRICS, Metric, MetricRegistry
from wgfbench.problem import Box, Problem
from wgfbench.references import DistributionPath, Gaussian, JKOIterates, Stationary
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, StepRecord, Trajectory

F64 = torch.float64
SMOKE = TIERS["smoke"]  # n_eval = 500
SMALL = Tier(
    "test", n_eval=300, budget_seconds=10.0, description="fast scorer tests", n_reference=3000, n_output=3000
)


def gen(seed: int) -> torch.Generator:
    return make_generator(seed)


# ----------------------------------------------------------------------------------------------
# A 2-D OU problem: V = ½(x−μ)ᵀA(x−μ), A = diag(1, 2), ρ0 = N(m0, diag(s0)) (docs/problems.md, Fokker–Planck)

A = torch.tensor([1.0, 2.0], dtype=F64)
MU = torch.tensor([0.0, 0.0], dtype=F64)
M0 = torch.tensor([3.0, -2.0], dtype=F64)
S0 = torch.tensor([0.5, 0.3], dtype=F64)
TIMES = (0.0, 0.25, 0.5, 1.0)


def ou_law(t: float) -> Gaussian:
    e = torch.exp(-A * t)
    return Gaussian(MU + e * (M0 - MU), torch.diag(e**2 * S0 + (1 - e**2) / A))


def gaussian_free_energy(g: Gaussian) -> float:
    """½tr(AΣ) + ½(m−μ)ᵀA(m−μ) − ½log((2πe)^d det Σ) (docs/problems.md)."""
    S, m = g.cov(), g.mean()
    return float(
        0.5 * (A * torch.diag(S)).sum()
        + 0.5 * (A * (m - MU) ** 2).sum()
        - 0.5 * torch.logdet(2 * math.pi * math.e * S)
    )


class OUJKO(JKOIterates):
    """Exact per-axis JKO iterates: m ← μ + (m−μ)/(1+τa), σ ← cσ (docs/problems.md)."""

    def for_step(self, tau: float) -> DistributionPath:
        def at(t: float) -> Gaussian:
            k = round(t / tau)
            m, var = M0.clone(), S0.clone()
            for _ in range(k):
                m = MU + (m - MU) / (1 + tau * A)
                c = (1 + torch.sqrt(1 + 4 * (1 + tau * A) * tau / var)) / (2 * (1 + tau * A))
                var = c**2 * var
            return Gaussian(m, torch.diag(var))

        return DistributionPath(at, dim=2)


class CountingPath(DistributionPath):
    """An exact OU reference that counts its sample calls (to check caching)."""

    def __init__(self, **kwargs):
        super().__init__(ou_law, dim=2, **kwargs)
        self.sample_calls = 0

    def sample(self, t, n, generator):
        self.sample_calls += 1
        return super().sample(t, n, generator)


def ou_energy() -> Energy:
    return Energy([Entropy(), Potential(lambda x: 0.5 * ((x - MU) ** 2 * A).sum(-1), lambda x: (x - MU) * A)])


def ou_problem(
    primary: str = "bures_w2", reference=None, jko: bool = False, name: str = "test/ou-2d"
) -> Problem:
    reference = reference or DistributionPath(ou_law, dim=2, energy=lambda t: gaussian_free_energy(ou_law(t)))
    references = {"pde": reference, **({"jko": OUJKO()} if jko else {})}
    return Problem(
        name=name,
        family="test",
        dim=2,
        energy=ou_energy(),
        initial=ou_law(0.0),
        times=TIMES,
        dt=0.01,
        references=references,
        primary_metric=primary,
        box=Box.cube(8.0, 2),
    )


def exact_trajectory(law_at, seed: int, n: int = 800, log_rho: bool = False, times=TIMES) -> Trajectory:
    g = gen(seed)
    snaps = []
    for t in times:
        law = law_at(t)
        x = law.sample(n, g)
        snaps.append(ParticleSnapshot(t, x, log_rho=law.log_density(x) if log_rho else None))
    return Trajectory(snaps)


def by_metric(rows, metric: str) -> dict[int, float]:
    return {r.step: r.value for r in rows if r.metric == metric}


# ----------------------------------------------------------------------------------------------
# Low-level distances


def test_w2_matches_closed_form_gaussian_in_1d():
    # W2(N(0,1), N(1,4)) = sqrt((0−1)² + (1−2)²) = √2
    x = torch.randn(1500, 1, generator=gen(0), dtype=F64)
    y = 1.0 + 2.0 * torch.randn(1500, 1, generator=gen(1), dtype=F64)
    assert w2(x, y) == pytest.approx(math.sqrt(2.0), abs=0.04)


def test_w2_equals_sorted_quantile_w2_in_1d():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(700), rng.gamma(2.0, size=700)
    exact = math.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    assert w2(x, y) == pytest.approx(exact, rel=1e-10)
    # unequal sizes and weights: POT's exact 1-D quantile formula
    z = rng.normal(size=450)
    wz = rng.random(450)
    expected = math.sqrt(ot.wasserstein_1d(x, z, None, wz / wz.sum(), p=2))
    assert w2(x, z, b=wz) == pytest.approx(expected, rel=1e-8)


@pytest.mark.filterwarnings("ignore:numItermax reached")
def test_w2_raises_when_emd_does_not_converge():
    x = torch.randn(200, 2, generator=gen(4), dtype=F64)
    y = torch.randn(200, 2, generator=gen(5), dtype=F64)
    with pytest.raises(OptimalTransportError, match="did not converge"):
        w2(x, y, num_iter_max=10)
    assert math.isfinite(w2(x, y))  # the default cap converges


def test_w2_same_law_floor_matches_problems_md():
    # docs/problems.md, "Scoring pitfalls": W2² floor ≈ 0.038 (d=2, n=1000) and ≈ 4.17 (d=10,
    # n=1000) for N(0, I)
    for d, expected, tol in ((2, 0.038, 0.012), (10, 4.17, 0.4)):
        x = torch.randn(1000, d, generator=gen(10 + d), dtype=F64)
        y = torch.randn(1000, d, generator=gen(20 + d), dtype=F64)
        assert w2(x, y) ** 2 == pytest.approx(expected, abs=tol)


def test_bures_w2_matches_closed_forms_and_pot():
    # 1-D: W2² = (m1−m2)² + (σ1−σ2)²
    assert bures_w2([0.5], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(math.sqrt(1.5**2 + 1.5**2), rel=1e-12)
    # commuting (diagonal): W2² = |Δm|² + Σ(√a − √b)²
    a, b = np.array([1.0, 2.0, 0.3]), np.array([0.5, 3.0, 0.3])
    expected = math.sqrt(1.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert bures_w2(np.zeros(3), np.diag(a), np.array([1.0, 0, 0]), np.diag(b)) == pytest.approx(
        expected, rel=1e-12
    )
    # general SPD: agrees with POT (which returns W2, not W2²)
    rng = np.random.default_rng(7)
    for _ in range(5):
        B1, B2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
        S1, S2 = B1 @ B1.T + 0.1 * np.eye(4), B2 @ B2.T + 0.1 * np.eye(4)
        m1, m2 = rng.normal(size=4), rng.normal(size=4)
        pot = float(ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2))
        assert bures_w2(m1, S1, m2, S2) == pytest.approx(pot, rel=1e-9)
        assert bures_w2(m1, S1, m1, S1) == pytest.approx(0.0, abs=1e-6)


def test_bures_w2_is_finite_and_continuous_for_singular_covariance():
    v = np.array([[1.0], [2.0], [-1.0]])
    S1, S2 = v @ v.T, np.diag([1.0, 0.5, 2.0])  # S1 has rank 1: POT's sqrtm gives NaN here
    value = bures_w2(np.zeros(3), S1, np.zeros(3), S2)
    regularised = bures_w2(np.zeros(3), S1 + 1e-10 * np.eye(3), np.zeros(3), S2)
    assert math.isfinite(value) and value == pytest.approx(regularised, abs=1e-4)


def test_radial_w2_zero_for_identical_and_matches_rayleigh_scaling():
    x = torch.randn(20000, 2, generator=gen(30), dtype=F64)
    centre = torch.tensor([0.0, 0.0], dtype=F64)
    assert radial_w2(x, x, centre) == 0.0
    # a rotation about the centre leaves the law of |X − c| unchanged
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)
    assert radial_w2(x, x @ rot.T, centre) == pytest.approx(0.0, abs=1e-12)
    # |X| for N(0, s²I) in 2-D is s·Rayleigh: W2 = |s − 1| √E|X|² = |s − 1| √2
    y = 1.5 * torch.randn(20000, 2, generator=gen(31), dtype=F64)
    assert radial_w2(x, y, centre) == pytest.approx(0.5 * math.sqrt(2.0), rel=0.03)
    shifted = radial_w2(x + 1.0, x + 1.0, centre)  # identical laws, off-centre
    assert shifted == 0.0 and radial_w2(x + 0.3, x, centre) > 0.05


def test_sliced_projections_fixed_per_problem_and_dimension():
    p1 = sliced_projections("fokker-planck/ou-2d", 2, 64)
    assert p1.shape == (64, 2) and p1.dtype == F64
    assert torch.allclose(torch.linalg.vector_norm(p1, dim=1), torch.ones(64, dtype=F64))
    assert torch.equal(p1, sliced_projections("fokker-planck/ou-2d", 2, 64))
    assert not torch.allclose(p1, sliced_projections("fokker-planck/ou-rotated-2d", 2, 64))
    assert sliced_projections("fokker-planck/ou-2d", 3, 64).shape == (64, 3)


def test_sliced_w2_in_1d_equals_w2_and_matches_gaussian_shift():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(600, 1)), rng.exponential(size=(600, 1))
    assert sliced_w2(x, y, np.array([[1.0], [-1.0]])) == pytest.approx(w2(x, y), rel=1e-10)
    # same law shifted by m in d dims: SW2² = mean_l (θ_l·m)², E = |m|²/d
    d = 3
    theta = sliced_projections("test/shift", d, 256)
    z = torch.randn(4000, d, generator=gen(40), dtype=F64)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    expected = math.sqrt(float(((theta @ m) ** 2).mean()))
    assert sliced_w2(z, z + m, theta) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(float(m.norm()) / math.sqrt(d), rel=0.15)


def test_resample_rules():
    x = torch.arange(20, dtype=F64).reshape(10, 2)
    # N ≥ n: a subset without replacement
    sub = resample(ParticleSnapshot(0.0, x), 6, gen(0))
    assert sub.shape == (6, 2) and sub.dtype == F64 and torch.unique(sub, dim=0).shape[0] == 6
    assert all((x == row).all(dim=1).any() for row in sub)
    assert torch.equal(sub, resample(ParticleSnapshot(0.0, x), 6, gen(0)))  # deterministic
    # N < n: with replacement
    rep = resample(ParticleSnapshot(0.0, x), 50, gen(1))
    assert rep.shape == (50, 2) and torch.unique(rep, dim=0).shape[0] <= 10
    # weights: multinomial, zero-weight particles never drawn, frequencies follow the weights
    w = torch.zeros(10, dtype=F64)
    w[2], w[7] = 1.0, 3.0
    picked = resample(ParticleSnapshot(0.0, x, weights=w), 8000, gen(2))
    share_7 = float((picked[:, 0] == 14.0).double().mean())
    assert set(picked[:, 0].tolist()) == {4.0, 14.0} and share_7 == pytest.approx(0.75, abs=0.02)
    # grid: samples inside the box, cell frequencies follow the mass
    rho = torch.tensor([[1.0, 3.0]], dtype=F64)  # 1×2 cells on [0,1]×[0,2]
    grid = GridSnapshot(0.0, Box((0.0, 0.0), (1.0, 2.0)), rho / 2.0)
    pts = resample(grid, 8000, gen(3))
    assert pts.shape == (8000, 2) and (pts >= 0).all() and (pts[:, 0] <= 1).all() and (pts[:, 1] <= 2).all()
    assert float((pts[:, 1] > 1).double().mean()) == pytest.approx(0.75, abs=0.02)


# ----------------------------------------------------------------------------------------------
# The scorer


def test_catalogue_units_say_w2():
    for name in ("w2", "w2_floor", "sliced_w2", "bures_w2", "radial_w2", "jko_w2"):
        assert METRICS[name].unit == "W2" and "not squared" in METRICS[name].description


def test_scorer_exact_samples_sit_on_the_floor():
    problem = ou_problem("bures_w2")
    rows = Scorer(problem, SMOKE, base_seed=0, repetition=0).score(exact_trajectory(ou_law, seed=1))
    assert {r.metric for r in rows} <= set(METRICS)
    for row in rows:  # per-case rows (ranking score, flags) have t = NaN and step = -1
        assert (row.t == TIMES[row.step] if row.step >= 0 else math.isnan(row.t)) and math.isfinite(row.value)
    w2s, floors = by_metric(rows, "w2"), by_metric(rows, "w2_floor")
    assert set(w2s) == set(range(len(TIMES)))
    for step in w2s:
        assert 0.6 * floors[step] < w2s[step] < 1.6 * floors[step]
        assert floors[step] ** 2 < 0.06  # d = 2, n = 500
    rel = by_metric(rows, "rel_error")
    assert set(rel) == {1, 2, 3} and max(rel.values()) < 0.15
    assert max(by_metric(rows, "mean_error").values()) < 0.15
    assert max(by_metric(rows, "cov_error").values()) < 0.3
    # same estimator on output and exact samples: the energy error is noise, the exact energy is known
    for step, err in by_metric(rows, "energy_error").items():
        assert abs(err) < 0.5
        assert by_metric(rows, "energy_exact")[step] == pytest.approx(
            gaussian_free_energy(ou_law(TIMES[step]))
        )
    assert "radial_w2" not in {r.metric for r in rows} and "kl" not in {r.metric for r in rows}


def test_scorer_rho0_unchanged_gives_rel_error_one():
    stuck = exact_trajectory(lambda t: ou_law(0.0), seed=2)
    cache = ScoreCache()  # same problem name and references: the draws are shared
    for primary in ("w2", "bures_w2", "sliced_w2"):
        rel = by_metric(Scorer(ou_problem(primary), SMALL, 0, 0, cache).score(stuck), "rel_error")
        assert set(rel) == {1, 2, 3}
        assert all(v == pytest.approx(1.0, abs=0.15) for v in rel.values()), (primary, rel)


def test_scorer_with_log_rho_uses_particle_energy_and_kl():
    problem = ou_problem("w2")
    rows = Scorer(problem, SMALL, 0, 0).score(exact_trajectory(ou_law, seed=3, log_rho=True))
    kl = by_metric(rows, "kl")
    assert set(kl) == set(range(len(TIMES))) and all(abs(v) < 1e-12 for v in kl.values())
    # on_particles is unbiased: energy and energy_ref both near the closed form
    for step, value in by_metric(rows, "energy").items():
        exact = gaussian_free_energy(ou_law(TIMES[step]))
        assert value == pytest.approx(exact, abs=0.5)
        assert by_metric(rows, "energy_ref")[step] == pytest.approx(exact, abs=0.5)


def test_scorer_is_deterministic_and_independent_of_the_particle_count():
    problem = ou_problem("w2")
    traj = exact_trajectory(ou_law, seed=4, n=200)  # fewer particles than n_eval: resampled with repeats
    a, b = Scorer(problem, SMALL, 0, 0).score(traj), Scorer(problem, SMALL, 0, 0).score(traj)
    assert a == b
    other_seed = Scorer(problem, SMALL, 1, 0).score(traj)
    assert by_metric(a, "w2") != by_metric(other_seed, "w2")  # another scoring draw
    assert by_metric(a, "w2_floor") == by_metric(other_seed, "w2_floor")  # an expectation: public draws
    energies = by_metric(a, "energy")
    assert len(energies) == len(TIMES) and all(math.isfinite(v) for v in energies.values())


def test_cache_reuses_reference_draws_and_floors_across_trajectories():
    reference = CountingPath()
    problem = ou_problem("w2", reference=reference)
    cache, floors = ScoreCache(), FloorCache(enabled=False)
    first = Scorer(problem, SMALL, 0, 0, cache, floors=floors).score(exact_trajectory(ou_law, seed=5))
    calls, size, misses, floor_misses = reference.sample_calls, len(cache), cache.misses, floors.misses
    assert calls > 0 and size > 0 and floor_misses > 0
    # another "solver" on the same case: nothing is drawn or computed again
    second = Scorer(problem, SMALL, 0, 0, cache, floors=floors).score(
        exact_trajectory(lambda t: ou_law(0.0), seed=6)
    )
    assert reference.sample_calls == calls and len(cache) == size and cache.misses == misses
    assert floors.misses == floor_misses and cache.hits > 0 and floors.hits > 0
    assert by_metric(first, "w2_floor") == by_metric(second, "w2_floor")
    # another repetition is a different scoring draw, but the same (public) floors
    Scorer(problem, SMALL, 0, 1, cache, floors=floors).score(exact_trajectory(ou_law, seed=7))
    assert reference.sample_calls > calls and len(cache) > size and floors.misses == floor_misses


def test_floor_cache_persists_on_disk_and_no_cache_writes_nothing(tmp_path):
    problem = ou_problem("w2")
    traj = exact_trajectory(ou_law, seed=8)
    rows = Scorer(problem, SMALL, 0, 0, floors=FloorCache(tmp_path)).score(traj)
    files = list((tmp_path / "floors").glob("*.json"))
    assert len(files) == 1 and "test__ou-2d" in files[0].name
    again = FloorCache(tmp_path)  # a later run reads them: nothing recomputed
    rows2 = Scorer(problem, SMALL, 0, 0, floors=again, salt="other").score(traj)
    assert again.misses == 0 and again.hits > 0
    assert by_metric(rows, "w2_floor") == by_metric(rows2, "w2_floor")
    off = tmp_path / "off"
    Scorer(problem, SMALL, 0, 0, floors=FloorCache(off, enabled=False)).score(traj)
    assert not off.exists()
    files[0].write_text("{not json")  # a damaged cache file is rebuilt, never fatal
    damaged = FloorCache(tmp_path)
    assert by_metric(Scorer(problem, SMALL, 0, 0, floors=damaged).score(traj), "w2_floor") == by_metric(
        rows, "w2_floor"
    )
    assert damaged.misses > 0 and json.loads(files[0].read_text())


def test_score_cache_drops_least_recently_used_arrays_beyond_its_budget():
    cache = ScoreCache(max_bytes=3 * 800)
    problem = ou_problem("w2")
    for i in range(5):
        cache.get_or_compute(
            ScoreCache.key(problem, 0, 0, 0.0, 100, f"x{i}"), lambda: torch.zeros(100, dtype=torch.float64)
        )
    assert len(cache) == 3 and cache.nbytes <= 3 * 800
    assert ScoreCache.key(problem, 0, 0, 0.0, 100, "x4") in cache
    assert ScoreCache.key(problem, 0, 0, 0.0, 100, "x0") not in cache


def test_jko_scores_against_exact_jko_iterates():
    problem = ou_problem("bures_w2", jko=True)
    tau = 0.25
    jko_ref = OUJKO().for_step(tau)
    traj = exact_trajectory(jko_ref.at, seed=8)
    traj.jko_tau = tau
    rows = Scorer(problem, SMOKE, 0, 0).score(traj)
    jko_rel, jko_bures = by_metric(rows, "jko_rel_error"), by_metric(rows, "jko_bures_w2")
    assert set(jko_rel) == {1, 2, 3} and set(jko_bures) == {0, 1, 2, 3}
    assert max(jko_rel.values()) < 0.15
    # the JKO iterates lag the PDE solution by O(τ): exact Bures gaps 0.140, 0.186, 0.178 at t > 0
    bures = by_metric(rows, "bures_w2")
    gaps = [bures_w2(jko_ref.mean(t), jko_ref.cov(t), ou_law(t).mean(), ou_law(t).cov()) for t in TIMES[1:]]
    assert sum(gaps) == pytest.approx(0.504, abs=0.01)
    assert sum(jko_bures[s] for s in (1, 2, 3)) < 0.35
    assert sum(bures[s] for s in (1, 2, 3)) - sum(jko_bures[s] for s in (1, 2, 3)) > 0.2
    # no fixed step: no jko rows
    traj.jko_tau = None
    assert not any(r.metric.startswith("jko_") for r in Scorer(problem, SMALL, 0, 0).score(traj))


def stationary_problem(primary: str) -> Problem:
    law_inf = Gaussian(MU, torch.diag(1.0 / A))
    return Problem(
        name=f"test/ou-stationary-{primary}",
        family="test",
        dim=2,
        energy=ou_energy(),
        initial=ou_law(0.0),
        times=(0.0, 0.5, 1.5, 4.0),
        dt=0.01,
        references={"pde": Stationary(law_inf, energy_inf=gaussian_free_energy(law_inf))},
        primary_metric=primary,
    )


def test_stationary_reference_scores_distributions_only_at_the_final_snapshot():
    problem = stationary_problem("energy_gap")
    traj = exact_trajectory(ou_law, seed=9, times=problem.times)
    rows = Scorer(problem, SMOKE, 0, 0).score(traj)
    last = len(problem.times) - 1
    for metric in ("w2", "w2_floor", "sliced_w2", "bures_w2", "mean_error", "cov_error", "energy_exact"):
        assert set(by_metric(rows, metric)) == {last}, metric
    # the gap to ρ∞ and its rel_error exist at the final snapshot only: earlier, the flow is not at
    # ρ∞, and a small gap there would reward converging too fast
    gap = by_metric(rows, "energy_gap")
    assert set(gap) == {last} and abs(gap[last]) < 0.3
    assert "energy_error" not in {r.metric for r in rows}
    rel = by_metric(rows, "rel_error")
    assert set(rel) == {last} and abs(rel[last]) < 0.05
    # the energy itself is a diagnostic at every snapshot: it falls as the exact path relaxes
    energy = by_metric(rows, "energy")
    assert set(energy) == set(range(len(problem.times))) and energy[0] - energy[last] > 5.0
    # the ranking score is the end state alone, and says so
    case = by_metric(rows, "trajectory_error")
    assert case == {-1: rel[last]} and by_metric(rows, "end_state_only") == {-1: 1.0}
    # an output at ρ∞ from the start scores the same: nothing else is known to rank it on
    jumps = exact_trajectory(
        lambda t: ou_law(0.0) if t == 0 else Gaussian(MU, torch.diag(1.0 / A)), seed=19, times=problem.times
    )
    assert abs(by_metric(Scorer(problem, SMOKE, 0, 0).score(jumps), "rel_error")[last]) < 0.05
    # a distribution primary: rel_error only at the final snapshot
    rel_w2 = by_metric(Scorer(stationary_problem("w2"), SMOKE, 0, 0).score(traj), "rel_error")
    assert set(rel_w2) == {last} and rel_w2[last] < 0.2


def grid_of(law: Gaussian, box: Box, n: int, scale: float = 1.0) -> torch.Tensor:
    axes = [
        torch.linspace(lo, hi, n + 1, dtype=F64)[:-1] + 0.5 * (hi - lo) / n
        for lo, hi in zip(box.low, box.high, strict=True)
    ]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)
    rho = torch.exp(law.log_density(centres)).reshape(n, n)
    cell = math.prod((hi - lo) / n for lo, hi in zip(box.low, box.high, strict=True))
    return scale * rho / (rho.sum() * cell)


def test_grid_snapshots_are_resampled_and_get_mass_and_positivity():
    problem = ou_problem("w2")
    box = Box((-4.0, -6.0), (6.0, 4.0))
    snaps = [GridSnapshot(t, box, grid_of(ou_law(t), box, 60)) for t in TIMES]
    snaps[2] = GridSnapshot(TIMES[2], box, grid_of(ou_law(TIMES[2]), box, 60, scale=1.1))
    snaps[3].rho[0, 0] = -0.01
    rows = Scorer(problem, SMOKE, 0, 0).score(Trajectory(snaps))
    mass, low = by_metric(rows, "mass_error"), by_metric(rows, "min_density")
    assert set(mass) == set(low) == set(range(len(TIMES)))
    assert mass[0] < 1e-12 and mass[2] == pytest.approx(0.1, rel=1e-9)
    assert low[0] >= 0.0 and low[3] == pytest.approx(-0.01)
    cell = 10.0 * 10.0 / 60**2
    negative = by_metric(rows, "negative_mass")
    assert negative[3] == pytest.approx(0.01 * cell) and negative[0] == 0.0
    w2s, floors = by_metric(rows, "w2"), by_metric(rows, "w2_floor")
    for step in w2s:  # the floor discretises the reference on the same grid
        assert 0.6 * floors[step] < w2s[step] < 1.6 * floors[step]
    # resampling normalises the invented mass away, so rel_error charges it explicitly
    rel, penalty = by_metric(rows, "rel_error"), by_metric(rows, "mass_penalty")
    assert penalty[2] == pytest.approx(0.1, rel=1e-9) and rel[2] > 0.1
    assert rel[1] < 0.3 and rel[3] < 0.3
    assert by_metric(rows, "flag_mass") == {-1: 1.0}
    assert by_metric(rows, "mass_violation")[-1] == pytest.approx(0.1, rel=1e-9)
    l1 = by_metric(rows, "l1_error")  # cell-centre values of the exact density: L1 error 0 …
    assert l1[0] < 1e-4 and l1[1] < 1e-4  # (midpoint-rule mass of the grid, renormalised)
    assert l1[2] == pytest.approx(0.1, rel=1e-2)  # … except the 10 % excess mass
    # the energy of a grid output uses log rho of the cells: it matches the exact energy closely
    energy, exact = by_metric(rows, "energy"), by_metric(rows, "energy_exact")
    assert abs(energy[1] - exact[1]) < 0.15


def test_per_step_log_gives_step_energy_and_dissipation():
    problem = ou_problem("w2")
    traj = exact_trajectory(ou_law, seed=10)
    energies = [3.0, 2.0, 2.5, math.nan, 1.0]
    traj.steps = [StepRecord(t=0.1 * (i + 1), tau=0.1, energy=e) for i, e in enumerate(energies)]
    cache = ScoreCache()
    rows = Scorer(problem, SMALL, 0, 0, cache).score(traj)
    steps = [(r.t, r.step, r.value) for r in rows if r.metric == "step_energy"]
    assert steps == [(0.1, 0, 3.0), (0.2, 1, 2.0), (0.30000000000000004, 2, 2.5), (0.5, 4, 1.0)]
    (diss,) = [r for r in rows if r.metric == "dissipation"]
    assert diss.step == -1 and math.isnan(diss.t) and diss.value == pytest.approx(1 / 3)
    # the rise of 0.5 is within two combined standard errors (2·√(0.3² + 0.3²) ≈ 0.85)
    traj.steps = [
        StepRecord(t=0.1 * (i + 1), tau=0.1, energy=e, energy_stderr=0.3) for i, e in enumerate(energies)
    ]
    assert by_metric(Scorer(problem, SMALL, 0, 0, cache).score(traj), "dissipation") == {-1: 0.0}
    traj.steps = traj.steps[:1]
    assert "dissipation" not in {r.metric for r in Scorer(problem, SMALL, 0, 0, cache).score(traj)}


def test_non_finite_values_are_dropped_with_a_warning(caplog):
    reference = DistributionPath(ou_law, dim=2, energy=lambda t: math.nan)
    problem = ou_problem("w2", reference=reference)
    with caplog.at_level(logging.WARNING, logger="wgfbench.metrics"):
        rows = Scorer(problem, SMALL, 0, 0).score(exact_trajectory(ou_law, seed=11))
    assert "energy_exact" not in {r.metric for r in rows}
    assert "non-finite energy_exact" in caplog.text


def test_weighted_particles_are_scored_after_multinomial_resampling():
    # importance-weighted particles from a wider proposal represent the OU law at each t
    snaps = []
    g = gen(12)
    for t in TIMES:
        target = ou_law(t)
        proposal = Gaussian(target.mean(), 2.0 * target.cov())
        x = proposal.sample(4000, g)
        w = torch.exp(target.log_density(x) - proposal.log_density(x))
        snaps.append(ParticleSnapshot(t, x, weights=w))
    rows = Scorer(ou_problem("bures_w2"), SMOKE, 0, 0).score(Trajectory(snaps))
    assert max(by_metric(rows, "rel_error").values()) < 0.15
    # resampled with repeats and without log_rho: no k-NN energy is claimed
    assert "energy" not in {r.metric for r in rows}


def test_a_grid_that_keeps_its_mass_is_not_flagged():
    problem = ou_problem("w2")
    box = Box((-4.0, -6.0), (6.0, 4.0))
    rows = Scorer(problem, SMALL, 0, 0).score(
        Trajectory([GridSnapshot(t, box, grid_of(ou_law(t), box, 60)) for t in TIMES])
    )
    assert by_metric(rows, "flag_mass") == {-1: 0.0} and by_metric(rows, "mass_violation")[-1] < 1e-12


def test_trajectory_error_weighs_every_snapshot_equally():
    problem = ou_problem("bures_w2")
    rows = Scorer(problem, SMALL, 0, 0).score(exact_trajectory(ou_law, seed=21))
    rel = by_metric(rows, "rel_error")
    assert by_metric(rows, "trajectory_error")[-1] == pytest.approx(np.mean([rel[k] for k in (1, 2, 3)]))
    assert by_metric(rows, "end_state_only") == {-1: 0.0}
    # jumping to ρ∞ at t > 0 is right only at the end: the trajectory error sees the skipped transient
    law_inf = Gaussian(MU, torch.diag(1.0 / A))
    jumps = exact_trajectory(lambda t: ou_law(0.0) if t == 0 else law_inf, seed=22)
    jump_rows = Scorer(problem, SMALL, 0, 0).score(jumps)
    assert by_metric(jump_rows, "trajectory_error")[-1] > 5 * by_metric(rows, "trajectory_error")[-1]


def test_copying_the_scoring_draw_is_flagged_and_exact_samples_are_not():
    problem = ou_problem("sliced_w2")
    cache = ScoreCache()
    exact = Scorer(problem, SMALL, 0, 0, cache, salt="s1").score(exact_trajectory(ou_law, seed=23))
    assert by_metric(exact, "flag_suspect") == {-1: 0.0} and 0.5 < by_metric(exact, "floor_ratio")[-1] < 2
    draws = {
        key[4]: cache.get_or_compute(key, lambda: None)
        for key in cache.keys()
        if key[6] == "reference:draw" and key[7] == "s1"
    }
    copied = Trajectory([ParticleSnapshot(t, draws[t]) for t in TIMES])
    rows = Scorer(problem, SMALL, 0, 0, cache, salt="s1").score(copied)
    assert by_metric(rows, "flag_suspect") == {-1: 1.0} and by_metric(rows, "floor_ratio")[-1] < 1e-6
    # under another salt the same points are an independent exact draw: nothing to flag
    other = Scorer(problem, SMALL, 0, 0, ScoreCache(), salt="s2").score(copied)
    assert by_metric(other, "flag_suspect") == {-1: 0.0}


def test_mass_outside_the_support_is_a_value_not_a_warning(caplog):
    import wgfbench

    problem = wgfbench.get_problem("porous-medium/barenblatt-1d-m2")  # compact support
    reference, g = problem.reference, gen(31)
    snaps = []
    for k, t in enumerate(problem.times):
        x = reference.sample(t, 600, g)
        if k == len(problem.times) - 1:  # a quarter of the last snapshot far outside the support
            x[:150] += 50.0
        log_rho = reference.log_density(t, x - (50.0 if k == len(problem.times) - 1 else 0.0) * (x > 25))
        snaps.append(ParticleSnapshot(t, x, log_rho=log_rho))
    with caplog.at_level(logging.WARNING, logger="wgfbench.metrics"):
        rows = Scorer(problem, SMALL, 0, 0).score(Trajectory(snaps))
    last = len(problem.times) - 1
    outside, kl = by_metric(rows, "mass_outside_support"), by_metric(rows, "kl")
    assert outside[0] == 0.0 and 0.15 < outside[last] < 0.35
    assert kl[last] == math.inf and all(abs(kl[k]) < 1e-9 for k in range(last))
    assert "kl" not in caplog.text


def test_w2_refuses_sizes_that_would_not_fit_in_memory():
    x = torch.zeros(50_000, 2, dtype=F64)  # 50k × 50k: 37 GiB of cost matrix and plan
    with pytest.raises(ValueError, match=r"needs about 37\.3 GiB.*sliced_w2"):
        w2(x, x)


def test_degenerate_outputs_are_scored_not_crashed():
    """One particle, or all particles at one point, are legitimate (bad) outputs: bures_w2 uses
    a zero covariance and symkl is +inf for the collapsed law, and the case is scored."""
    problem = ou_problem("bures_w2")
    for n in (1, 10):
        traj = Trajectory([ParticleSnapshot(t, torch.zeros(n, 2, dtype=F64) + 0.3) for t in TIMES])
        rows = Scorer(problem, SMALL, 0, 0).score(traj)
        bures = by_metric(rows, "bures_w2")
        assert set(bures) == set(range(len(TIMES))) and all(math.isfinite(v) for v in bures.values())
        assert all(v == math.inf for v in by_metric(rows, "symkl").values())
        assert by_metric(rows, "trajectory_error")[-1] > 0.5


def test_a_failing_secondary_metric_is_skipped_with_a_warning(caplog):
    def broken(ctx):
        raise RuntimeError("boom")

    registry = MetricRegistry((*BUILTIN_METRICS, Metric("zz_broken", "1", "always fails", broken)))
    rows = Scorer(ou_problem("bures_w2"), SMALL, 0, 0, metrics=registry).score(
        exact_trajectory(ou_law, seed=9)
    )
    assert "zz_broken" not in {r.metric for r in rows} and "trajectory_error" in {r.metric for r in rows}
    assert "metric zz_broken failed: RuntimeError: boom" in caplog.text
