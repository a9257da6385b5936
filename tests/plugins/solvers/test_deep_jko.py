"""Deep JKO (Lee, Wang & Li): derivatives, density transport, loss terms, Algorithm 2 on tiny runs.

The acceptance runs of the quick tier (minutes each) are in ``test_deep_jko_slow.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from wgfbench_plugins.solvers.deep_jko import DeepJKO
from wgfbench_plugins.solvers.deep_jko.flow import VelocityField, push
from wgfbench_plugins.solvers.deep_jko.loss import (
    jko_loss,
    mobility_weight,
)
from wgfbench_plugins.solvers.deep_jko.network import PotentialResNet, autograd_grad_and_trace, log_cosh
from wgfbench_plugins.solvers.deep_jko.solver import jko_schedule

import wgfbench
from wgfbench.context import Context
from wgfbench.energy import Energy, Entropy, Interaction, Newtonian, PowerInternal, Quadratic
from wgfbench.problem import Mobility
from wgfbench.references import Distribution

F64 = torch.float64

TINY = {
    "table": "smoke",
    "width": 8,
    "n_particles": 64,
    "pool_size": 128,
    "max_iterations": 4,
    "min_iterations": 2,
}


def make_net(d: int, depth: int, rank: int = 0, seed: int = 0, width: int = 12) -> PotentialResNet:
    # init_scale = 1 so that the nonlinear part dominates (a stricter comparison).
    return PotentialResNet(
        d, width, depth, rank=rank, init_scale=1.0, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("d", [2, 10])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("rank", [0, 2])
def test_explicit_recurrences_equal_autograd(d, depth, rank):
    """Gradient and Hessian trace (exact, shared directions, per-particle directions) by the
    OT-Flow recurrences agree with double autograd to 1e-13 relative (round-off), also with an
    affine input standardisation x̂ = S(x - m) (chain rule in the recurrences)."""
    g = torch.Generator().manual_seed(d * 10 + depth)
    net = make_net(d, depth, rank)
    x = 2.0 * torch.randn(9, d, generator=g, dtype=F64)
    tau = 0.37
    shift, S = torch.randn(d, generator=g, dtype=F64), torch.randn(d, d, generator=g, dtype=F64)
    for normalised, directions in itertools.product(
        (False, True),
        (None, torch.randn(d, 3, generator=g, dtype=F64), torch.randn(9, d, 4, generator=g, dtype=F64)),
    ):
        if normalised:
            net.set_normalisation(shift, S)
        ge, te = net.grad_and_trace(tau, x, directions)
        ga, ta = autograd_grad_and_trace(net, tau, x, directions)
        scale = 1.0 + float(ta.detach().abs().max())
        assert torch.allclose(ge, ga.detach(), rtol=0, atol=1e-13 * (1.0 + float(ga.abs().max())))
        assert torch.allclose(te, ta.detach(), rtol=0, atol=1e-13 * scale)
    # The trace is the trace of the full Hessian from torch.func (an independent computation).
    hess = torch.func.vmap(torch.func.hessian(lambda xi: net(tau, xi[None])[0]))(x)
    assert torch.allclose(net.grad_and_trace(tau, x)[1], hess.diagonal(dim1=1, dim2=2).sum(1), atol=1e-12)


def test_log_cosh_is_stable_and_matches_definition():
    a = torch.tensor([-800.0, -3.0, 0.0, 0.5, 800.0], dtype=F64)
    expected = torch.log(torch.exp(a[1:4]) + torch.exp(-a[1:4]))
    assert torch.allclose(log_cosh(a)[1:4], expected)
    assert torch.allclose(log_cosh(a)[[0, 4]], torch.tensor([800.0, 800.0], dtype=F64) + math.log1p(0.0))


def test_hutchinson_is_unbiased():
    """Rademacher probes (scaled by 1/√k): the mean over 4000 probes is within 3 % of the exact trace."""
    net = make_net(10, 3)
    x = torch.randn(5, 10, generator=torch.Generator().manual_seed(1), dtype=F64)
    field = VelocityField(net, trace="hutchinson")
    field.draw_probes(5, 4000, torch.Generator().manual_seed(2), x)
    _, div = field(0.2, x)[:2]
    _, exact = net.grad_and_trace(0.2, x)
    assert torch.allclose(-div, exact, rtol=0.03, atol=0.03 * float(exact.abs().max()))


@pytest.mark.parametrize("scheme", ["rk4", "euler"])
def test_log_density_transport_matches_jacobian_determinant(scheme):
    """Eq. (13)/(26): the evolved l equals log|det ∇T(1, x)| of the discrete map (torch.func
    Jacobian), to O(dτ⁴) for RK4 and O(dτ) for Euler, with l⁰ = 0."""
    d = 3
    net = make_net(d, 2, seed=3)
    x = torch.randn(4, d, generator=torch.Generator().manual_seed(4), dtype=F64)
    field = VelocityField(net)
    n_steps = 8 if scheme == "rk4" else 40
    out = push(field, x, torch.zeros(4, dtype=F64), n_steps, scheme)

    def map_one(xi):
        return push(field, xi[None], torch.zeros(1, dtype=F64), n_steps, scheme).z[0]

    jac = torch.stack([torch.func.jacrev(map_one)(xi) for xi in x])
    logdet = torch.linalg.slogdet(jac).logabsdet
    tol = 1e-5 if scheme == "rk4" else 0.05 * float(logdet.abs().max()) + 1e-3
    assert torch.allclose(-out.log_rho, logdet, atol=tol), (out.log_rho, logdet)
    # A constant potential (w = 0, ∇²φ = 0): l stays at l⁰ = 0 (not log|det ∇²φ| = -inf, the
    # paper's slip), so log ρ is carried unchanged.
    with torch.no_grad():
        net.w.zero_()
    lr0 = torch.randn(4, generator=torch.Generator().manual_seed(5), dtype=F64)
    still = push(VelocityField(net), x, lr0, 1, scheme)
    assert torch.equal(still.log_rho, lr0) and torch.equal(still.z, x)


def test_euler_push_is_the_papers_recursion():
    """Forward Euler with N_τ = 2 reproduces the recursion under (25) written out by hand."""
    net = make_net(2, 2, seed=5)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    lr0 = torch.randn(6, generator=torch.Generator().manual_seed(7), dtype=F64)
    out = push(VelocityField(net), x, lr0, 2, "euler")
    z, l, kin = x, torch.zeros(6, dtype=F64), torch.zeros(6, dtype=F64)
    for k in range(2):
        g, tr = net.grad_and_trace(k / 2, z)
        kin = kin + 0.5 * (g**2).sum(1)
        z, l = z - 0.5 * g, l - 0.5 * tr
    assert (
        torch.allclose(out.z, z) and torch.allclose(out.log_rho, lr0 - l) and torch.allclose(out.kinetic, kin)
    )


def test_interaction_u_statistic_and_energy_terms_match_the_host_estimators():
    """The differentiable pair terms equal Interaction.per_sample (½·U-statistic) and the terminal
    energy mean equals Energy.on_particles, for entropy/power internal energies and a Newtonian
    kernel (singular at 0: the diagonal must be masked)."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(50, 2, generator=g, dtype=F64)
    log_rho = torch.randn(50, generator=g, dtype=F64) - 2.0
    for kernel in (Quadratic(), Quadratic() + Newtonian(2)):
        inter = Interaction(kernel)
        assert torch.allclose(inter.pair_terms(x), inter.per_sample(x))
        for internal in (Entropy(), PowerInternal(2.0)):
            energy = Energy([internal, inter])
            value = float(energy.particle_terms(x, log_rho).mean())
            assert value == pytest.approx(energy.on_particles(x, log_rho).value, rel=1e-12)
    xg = x.clone().requires_grad_(True)
    Interaction(Quadratic() + Newtonian(2)).pair_terms(xg).sum().backward()
    assert torch.isfinite(xg.grad).all()


def test_mobility_weight_is_rho_over_M_and_capped():
    weight = mobility_weight(Mobility(kind="nonlinear", M=lambda r: r * (1 - r)))
    rho = torch.tensor([0.1, 0.5, 0.9, 1.0, 1.5], dtype=F64)
    w = weight(rho.log())
    assert torch.allclose(w[:3], 1.0 / (1.0 - rho[:3]))
    assert (w[3:] == 1e6).all()
    assert mobility_weight(Mobility()) is None


def test_loss_of_a_zero_field_is_twice_dt_times_the_energy():
    """With w = 0 the potential is constant: no motion, zero kinetic term, L = 2Δt E(ρⁿ)."""
    problem = wgfbench.get_problem("fokker-planck/ou-2d")
    net = make_net(2, 2)
    with torch.no_grad():
        net.w.zero_()
    x = problem.initial.sample(100, torch.Generator().manual_seed(0))
    lr = problem.initial.log_density(x)
    value = jko_loss(VelocityField(net), x, lr, problem.energy, 0.05, 2, "rk4")
    assert value.kinetic == 0.0
    assert float(value.loss) == pytest.approx(0.1 * problem.energy.on_particles(x, lr).value, rel=1e-12)


def test_jko_schedule_hits_snapshot_times():
    ends = jko_schedule((0.0, 0.1, 0.25, 0.5), 0.05)
    assert len(ends) == 10 and ends[1] == 0.1 and ends[4] == 0.25 and ends[-1] == 0.5
    assert all(b > a for a, b in zip([0.0, *ends], ends, strict=False))
    ends = jko_schedule((0.0, 0.13), 0.05)
    assert ends == pytest.approx([0.13 / 3, 0.26 / 3, 0.13])


def test_registered_with_tier_tables():
    problem = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    smoke, quick, large = (wgfbench.get_solver("deep-jko", t) for t in ("smoke", "quick", "large"))
    assert isinstance(quick, DeepJKO)
    assert quick.settings(problem).dt == pytest.approx(0.025)
    # At most 40 quick steps: barenblatt-10d runs to t = 2, so Δt = 2/40 instead of 0.025.
    assert quick.settings(wgfbench.get_problem("porous-medium/barenblatt-10d-m2")).dt == pytest.approx(0.05)
    # Large: the paper's §4.2 (3 layers × 128, N_τ = 2, Δt = 1e-3, batch 1000, lr 1e-5).
    s = large.settings(problem)
    assert (s.width, s.depth, s.n_inner, s.dt, s.n_particles, s.lr) == (128, 3, 2, 1e-3, 1000, 1e-5)
    s10 = large.settings(wgfbench.get_problem("porous-medium/barenblatt-10d-m2"))
    assert (s10.dt, s10.lr, s10.max_iterations) == (5e-4, 1e-6, 20000)
    assert smoke.settings(problem).n_particles < quick.settings(problem).n_particles
    assert wgfbench.get_solver("deep-jko", "quick", width=7).settings(problem).width == 7
    with pytest.raises(wgfbench.ConfigError, match="scheme"):
        DeepJKO({"scheme": "midpoint"})


def test_supports_gives_reasons():
    solver = DeepJKO()
    ou = wgfbench.get_problem("fokker-planck/ou-2d")
    assert solver.supports(ou) is True
    assert solver.supports(wgfbench.get_problem("kalman-wasserstein/linear-2d")) is True
    assert solver.supports(wgfbench.get_problem("aggregation/newtonian-2d")) is True

    class SamplesOnly(Distribution):
        dim = 2

        def sample(self, n, generator):
            return torch.randn(n, 2, generator=generator, dtype=F64)

        @property
        def has_density(self):
            return False

    no_density = dataclasses.replace(ou, initial=SamplesOnly())
    assert "log rho_0" in solver.supports(no_density)
    box = dataclasses.replace(ou, box=wgfbench.problem.Box.cube(2.5, 2, centre=-2.0, wall=True))
    assert "walls" in solver.supports(box)  # ρ0 = N((-2, 0), ·) reaches the walls of [-4.5, 0.5]²
    other = dataclasses.replace(ou, name="other/x", family="other")
    assert "other" in solver.supports(other)
    with pytest.raises(ValueError, match="does not support"):
        solver.solve(no_density, Context.create(seed=0))


def test_tiny_run_is_deterministic_valid_and_carries_log_densities():
    """Same seed → identical snapshots and losses; another seed differs. Snapshots carry log ρ,
    steps are uniform so jko_tau is set, one StepRecord per JKO step."""
    problem = dataclasses.replace(wgfbench.get_problem("fokker-planck/ou-2d"), times=(0.0, 0.1, 0.2))
    solver = DeepJKO(TINY)
    runs = [solver.solve(problem, Context.create(seed=s)) for s in (3, 3, 4)]
    first, second, third = runs
    first.validate(problem.times, problem.dim)
    assert first.jko_tau == pytest.approx(0.1) and len(first.steps) == 2
    for a, b, c in zip(first.snapshots, second.snapshots, third.snapshots, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.log_rho, b.log_rho)
        assert a.t == 0.0 or not torch.equal(a.x, c.x)
    assert [s.loss for s in first.steps] == [s.loss for s in second.steps]
    assert all(math.isfinite(s.energy) and s.energy_stderr > 0 for s in first.steps)
    # At t = 0 the log-densities are those of ρ0; later they came through the maps (changed).
    x0 = first.snapshots[0]
    assert torch.allclose(x0.log_rho, problem.initial.log_density(x0.x))
    assert not torch.allclose(first.snapshots[-1].log_rho, problem.initial.log_density(first.snapshots[-1].x))


@pytest.mark.parametrize(
    "name", ["porous-medium/barenblatt-2d-m2", "aggregation/quadratic-2d", "kalman-wasserstein/linear-2d"]
)
def test_tiny_runs_on_other_families(name):
    problem = wgfbench.get_problem(name)
    problem = dataclasses.replace(problem, times=problem.times[:2])
    trajectory = DeepJKO(TINY).solve(problem, Context.create(seed=0))
    trajectory.validate(problem.times, problem.dim)
    assert trajectory.steps[-1].energy < trajectory.steps[0].energy + 3 * trajectory.steps[0].energy_stderr


def test_nonlinear_mobility_run_keeps_density_below_one():
    """Mobility ρ(1−ρ) with W = |x|² (Deep JKO §4.3 shape): the barrier ρ/M keeps ρ < 1 at the
    particles after a few steps of contraction."""
    from wgfbench.energy import PowerLaw

    base = wgfbench.get_problem("porous-medium/barenblatt-2d-m2")
    problem = dataclasses.replace(
        base,
        name="nonlinear-mobility/test",
        family="nonlinear-mobility",
        energy=Energy([Interaction(PowerLaw(2.0, 2.0))]),
        mobility=Mobility(kind="nonlinear", M=lambda r: r * (1 - r)),
        times=(0.0, 0.05, 0.1),
    )
    assert float(problem.initial.log_density(problem.initial.sample(500, torch.Generator())).max()) < 0
    trajectory = DeepJKO({**TINY, "dt": 0.05}).solve(problem, Context.create(seed=0))
    trajectory.validate(problem.times, problem.dim)
    assert float(trajectory.snapshots[-1].log_rho.max()) < 0.0
    spread = [float(s.x.var(0).sum()) for s in trajectory.snapshots]
    assert spread[-1] < spread[0]


def test_float32_context_is_honoured():
    problem = dataclasses.replace(wgfbench.get_problem("fokker-planck/ou-2d"), times=(0.0, 0.1))
    trajectory = DeepJKO(TINY).solve(problem, Context.create(seed=0, dtype=torch.float32))
    assert all(s.x.dtype == torch.float32 and s.log_rho.dtype == torch.float32 for s in trajectory.snapshots)


def test_conformance_kit_at_the_smoke_tier():
    """The contract kit (class contract, budget, validation, jko_tau dividing the snapshot times,
    determinism by a rerun) on ou-2d at the smoke preset, cut to t ≤ 0.5 to keep the test short.
    The smoke step (4 × problem.dt = 0.2) gives steps 0.1, 0.15, 0.125, 0.125: not all equal, so
    no jko_tau. The budget is raised to 60 s so that a loaded CI machine does not fail it."""
    from wgfbench.testing import check_solver

    problem = wgfbench.get_problem("fokker-planck/ou-2d")
    problem = dataclasses.replace(problem, times=tuple(t for t in problem.times if t <= 0.5))
    report = check_solver(DeepJKO.for_tier("smoke"), problem, budget_seconds=60.0)
    assert "deterministic" in report.checks, report.checks
    assert report.n_steps == 4


@pytest.mark.parametrize("overrides", [{"resample_every": 2, "pool_size": 0}, {"pool_size": 0}])
def test_algorithm_1_resampling_and_fixed_batch_paths(overrides):
    """resample_every = C > 0: fresh ρ0 batches pushed through all stored maps (Algorithm 1) every
    C iterations; pool_size = 0: one batch carried forward. Both run, validate and are deterministic."""
    problem = dataclasses.replace(wgfbench.get_problem("porous-medium/barenblatt-2d-m2"), times=(0.0, 0.1))
    solver = DeepJKO({**TINY, "dt": 0.025, **overrides})
    first = solver.solve(problem, Context.create(seed=1))
    second = solver.solve(problem, Context.create(seed=1))
    first.validate(problem.times, problem.dim)
    assert len(first.steps) == 4 and all(math.isfinite(s.loss) for s in first.steps)
    assert torch.equal(first.snapshots[-1].x, second.snapshots[-1].x)


class Interrupted(Exception):
    """Raised by a progress callback to cut a run short after a given JKO step."""


def interrupt_after(k: int):
    def progress(done: int, total: int) -> None:
        if done == k:
            raise Interrupted(done)

    return progress


def test_checkpoints_only_at_the_large_tier_by_default():
    assert [DeepJKO.for_tier(t).config.checkpoint_every for t in ("smoke", "quick", "large")] == [0, 0, 1]


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("fokker-planck/ou-2d", {}),
        ("fokker-planck/ou-2d", {"resample_every": 2, "pool_size": 0}),
        ("kalman-wasserstein/linear-2d", {"resample_every": 2, "pool_size": 0}),
    ],
    ids=["minibatch-pool", "algorithm-1", "kalman-algorithm-1"],
)
def test_an_interrupted_run_resumes_from_its_last_step_and_ends_as_an_uninterrupted_one(
    tmp_path, name, overrides
):
    """Six JKO steps of 0.05, snapshots every second step: a run cut after step 3 and rerun with the
    same seed and checkpoint directory computes steps 4..6 only, and its snapshots, log-densities
    and step records equal those of an uninterrupted run without checkpoints. Every data path:
    minibatches from a carried pool (randperm from the restored generator), Algorithm 1's fresh
    batches pushed through the stored maps, and those maps with the Kalman–Wasserstein C(0)^{1/2}
    and input standardisation."""
    problem = dataclasses.replace(wgfbench.get_problem(name), times=(0.0, 0.1, 0.2, 0.3))
    config = {**TINY, "dt": 0.05, **overrides}
    uninterrupted = DeepJKO(config).solve(problem, Context.create(seed=5))
    solver = DeepJKO({**config, "checkpoint_every": 1})
    with pytest.raises(Interrupted):
        solver.solve(problem, Context.create(seed=5, checkpoints=tmp_path, progress=interrupt_after(3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000003.safetensors"]
    computed: list[int] = []
    resumed = solver.solve(
        problem,
        Context.create(seed=5, checkpoints=tmp_path, progress=lambda done, total: computed.append(done)),
    )
    assert computed == [4, 5, 6]
    assert len(resumed.snapshots) == len(uninterrupted.snapshots) == 4
    for a, b in zip(resumed.snapshots, uninterrupted.snapshots, strict=True):
        assert a.t == b.t
        torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
        torch.testing.assert_close(a.log_rho, b.log_rho, rtol=0, atol=0)
    assert [repr(r) for r in resumed.steps] == [repr(r) for r in uninterrupted.steps]  # NaN residuals
    assert resumed.info["iterations"] == uninterrupted.info["iterations"]
