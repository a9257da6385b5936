"""PWGF: the pullback metric against explicit Jacobians, CG, log-determinants, the fit, and the
parameterised flow on small runs (exact Gaussian moments for Ornstein–Uhlenbeck, energy decay,
step rejection, every family)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev
from wgfbench_plugins.solvers.pwgf import PWGF
from wgfbench_plugins.solvers.pwgf import solver as pwgf_solver
from wgfbench_plugins.solvers.pwgf.metric import PullbackMetric, conjugate_gradient
from wgfbench_plugins.solvers.pwgf.pushforward import PushForward, log_standard_normal

import wgfbench
from wgfbench.context import Context, get_tier
from wgfbench.energy import Energy, Interaction, Newtonian, Quadratic
from wgfbench.metrics import Scorer
from wgfbench.trajectory import StepRecord, Trajectory

F64 = torch.float64


def random_map(d: int, width: int = 6, steps: int = 3, seed: int = 0) -> tuple[PushForward, torch.Tensor]:
    """A small map with every block non-zero (W2 too), so no Jacobian column vanishes."""
    g = torch.Generator().manual_seed(seed)
    flow = PushForward(d, width, steps, shift=torch.zeros(d, dtype=F64), scale=torch.ones(d, dtype=F64))
    theta = 0.4 * torch.randn(flow.layout.size, generator=g, dtype=F64)
    return flow, theta


def explicit_jacobians(flow: PushForward, theta: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """J_θ(z_i) (N, d, P) by reverse mode per point (torch.func.jacrev)."""
    return torch.stack([jacrev(lambda th, zi=zi: flow.push(th, zi[None])[0])(theta) for zi in z])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_metric_apply_equals_explicit_jacobian_product(d):
    """Gη (double-backward JVP, then VJP) equals (1/N) Σ_i J_iᵀ J_i η with explicit Jacobians, and so
    do the mobility-weighted and the Kalman (precision) variants, to round-off."""
    flow, theta = random_map(d)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, d, generator=g, dtype=F64)
    eta = torch.randn(flow.layout.size, generator=g, dtype=F64)
    J = explicit_jacobians(flow, theta, z)
    w = torch.rand(7, generator=g, dtype=F64) + 0.5
    a = torch.randn(d, d, generator=g, dtype=F64)
    K = a @ a.T + torch.eye(d, dtype=F64)
    plain = torch.einsum("ndp,ndq,q->p", J, J, eta) / 7
    weighted = torch.einsum("n,ndp,ndq,q->p", w, J, J, eta) / 7
    kalman = torch.einsum("ndp,de,neq,q->p", J, K, J, eta) / 7
    for expected, metric in (
        (plain, PullbackMetric(flow.push, theta, z)),
        (weighted, PullbackMetric(flow.push, theta, z, weights=w)),
        (kalman, PullbackMetric(flow.push, theta, z, precision=K)),
    ):
        torch.testing.assert_close(metric.apply(eta), expected, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(
        PullbackMetric(flow.push, theta, z).jacobian_vector(eta), torch.einsum("ndp,p->nd", J, eta)
    )


def test_conjugate_gradient_solves_and_reports_failure():
    g = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=F64))
    A = q @ torch.diag(torch.logspace(-3, 1, 30, dtype=F64)) @ q.T
    b = torch.randn(30, generator=g, dtype=F64)
    out = conjugate_gradient(lambda v: A @ v, b, 1e-4, 1e-10, 200)
    assert out.converged and out.residual <= 1e-10
    exact = torch.linalg.solve(A + 1e-4 * torch.eye(30, dtype=F64), b)
    torch.testing.assert_close(out.x, exact, rtol=1e-7, atol=1e-7)
    true_residual = torch.linalg.vector_norm(b - (A + 1e-4 * torch.eye(30, dtype=F64)) @ out.x) / b.norm()
    assert float(true_residual) < 1e-8
    short = conjugate_gradient(lambda v: A @ v, b, 1e-4, 1e-10, 3)
    assert not short.converged and short.iterations == 3 and short.residual > 1e-10
    warm = conjugate_gradient(lambda v: A @ v, b, 1e-4, 1e-10, 200, x0=out.x)
    assert warm.iterations <= 1


@pytest.mark.parametrize("d", [1, 2, 4])
def test_exact_trace_equals_autograd_and_hutchinson_is_unbiased(d):
    flow, theta = random_map(d, width=5)
    p = flow.layout.unflatten(theta)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, d, generator=g, dtype=F64)
    _, h = flow.velocity(p, x, 0.3)
    exact = flow.divergence(p, h, None)
    jac = torch.stack([jacrev(lambda y: flow.velocity(p, y[None], 0.3)[0][0])(xi) for xi in x])
    torch.testing.assert_close(exact, torch.diagonal(jac, dim1=1, dim2=2).sum(-1))
    probes = (torch.randint(0, 2, (20000, 6, d), generator=g) * 2 - 1).to(F64)
    estimates = torch.stack([flow.divergence(p, h, probe) for probe in probes])
    se = estimates.std(0) / math.sqrt(probes.shape[0])
    assert bool(((estimates.mean(0) - exact).abs() <= 4 * se + 1e-12).all())


@pytest.mark.parametrize("d", [1, 2, 3])
def test_log_determinant_and_inverse_agree_with_the_discrete_map(d):
    """The integrated trace equals log|det ∇T| of the RK4 map (up to the RK4 error, 1e-5 with 16
    steps), and integrating backwards inverts the map and gives the same log-density."""
    flow, theta = random_map(d, steps=16)
    z = torch.randn(5, d, generator=torch.Generator().manual_seed(4), dtype=F64)
    x, ld = flow.push_with_logdet(theta, z)
    jac = torch.stack([jacrev(lambda zi: flow.push(theta, zi[None])[0])(zi) for zi in z])
    torch.testing.assert_close(ld, torch.linalg.slogdet(jac).logabsdet, rtol=0, atol=1e-5)
    log_rho = flow.log_density(theta, x)
    torch.testing.assert_close(log_rho, log_standard_normal(z) - ld, rtol=0, atol=1e-5)


def test_affine_init_pushes_to_the_gaussian_with_those_moments():
    d = 3
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    a = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]], dtype=F64)
    cov = a @ a.T
    flow = PushForward(d, 4, 8, shift=mean, scale=torch.ones(d, dtype=F64))
    theta = flow.affine_init(mean, cov, torch.Generator().manual_seed(0), 1.0)
    z = torch.randn(5, d, generator=torch.Generator().manual_seed(1), dtype=F64)
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    torch.testing.assert_close(flow.push(theta, z), z @ root.T + mean, rtol=0, atol=1e-5)


def test_pair_terms_equal_a_double_loop_and_energy_terms_add_up():
    kernel = Quadratic(1.0) + Newtonian(2)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    expected = torch.tensor(
        [0.5 * sum(float(kernel(x[i] - x[j])) for j in range(6) if j != i) / 5 for i in range(6)], dtype=F64
    )
    torch.testing.assert_close(Interaction(kernel).pair_terms(x), expected)
    energy = Energy([Interaction(kernel)])
    torch.testing.assert_close(energy.particle_terms(x, torch.zeros(6, dtype=F64)), expected)


# -- the solver --------------------------------------------------------------------------------


def run(name: str, tier: str = "smoke", seed: int = 0, **overrides) -> tuple[PWGF, Trajectory]:
    problem = wgfbench.get_problem(name)
    solver = PWGF.for_tier(tier, **overrides)
    ctx = Context.create(seed, tier, budget_seconds=1e9)
    solver.prepare(problem.view(), ctx)
    return solver, solver.solve(problem.view(), ctx)


def test_ornstein_uhlenbeck_moments_follow_the_exact_solution():
    """On ou-2d the push-forward stays Gaussian and its mean and covariance follow the exact
    OU solution: within 0.03 at every snapshot with a modest batch and Euler steps of 0.05."""
    problem = wgfbench.get_problem("fokker-planck/ou-2d")
    _, traj = run("fokker-planck/ou-2d", tier="quick", fit_iterations=50, width=8, flow_steps=2)
    for snap in traj.snapshots:
        ref = problem.reference
        mean, cov = ref.mean(snap.t), ref.cov(snap.t)
        x = snap.x
        centred = x - x.mean(0)
        assert float((x.mean(0) - mean).abs().max()) < 0.03, snap.t
        error = (centred.T @ centred / x.shape[0] - cov).abs().max()
        assert float(error) < 0.03 * float(cov.abs().max()), snap.t


@pytest.mark.parametrize("name", ["fokker-planck/ou-1d", "porous-medium/barenblatt-2d-m2"])
def test_energy_decreases_within_two_standard_errors_at_every_step(name):
    _, traj = run(name)
    assert len(traj.steps) >= 5
    for prev, cur in zip(traj.steps, traj.steps[1:], strict=False):
        se = math.hypot(prev.energy_stderr, cur.energy_stderr)
        assert cur.energy - prev.energy <= 2 * se, (cur.t, prev.energy, cur.energy, se)
    assert all(math.isfinite(s.residual) and s.iterations > 0 for s in traj.steps)


@pytest.mark.parametrize(
    "name",
    [
        "fokker-planck/ou-10d",
        "porous-medium/barenblatt-1d-m3",
        "aggregation/newtonian-2d",
        "kalman-wasserstein/linear-2d",
        "nonlinear-mobility/saturation-1d",
    ],
)
def test_every_family_runs_at_the_smoke_tier(name):
    problem = wgfbench.get_problem(name)
    solver, traj = run(name)
    traj.validate(problem.times, problem.dim)
    assert all(s.log_rho is not None for s in traj.snapshots)
    assert traj.snapshots[-1].x.shape[0] == 20_000  # the smoke tier's n_output
    assert traj.info["parameters"] == solver._fitted[1].flow.layout.size


def test_box_with_walls_is_not_supported():
    reason = PWGF.for_tier("smoke").supports(wgfbench.get_problem("fokker-planck/box-1d").view())
    assert isinstance(reason, str) and "wall" in reason


def test_a_failed_solve_is_refined_and_a_rising_step_is_halved():
    """CG limited to 1 iteration cannot reach the tolerance: each solve is refined (ε × 10) and the
    residual logged. On ou-2d (stiffest rate 2) an Euler step of 1.5 maps the slow coordinate's
    deviation by 1 - 3 = -2, raising the batch energy: the step is split until it falls."""
    _, short = run("fokker-planck/ou-1d", cg_max_iterations=1, cg_tol=1e-12, refinements=1)
    # every solve (one per accepted or rejected substep) was refined once and stayed unconverged
    assert short.info["refinements"] == short.info["unconverged"] >= short.info["n_steps"]
    assert all(s.residual > 1e-12 for s in short.steps)
    problem = wgfbench.get_problem("fokker-planck/ou-2d").view()
    solver = PWGF.for_tier("smoke")
    ctx = Context.create(0, "smoke", budget_seconds=1e9)
    solver.prepare(problem, ctx)
    fit = solver._fitted[1]
    z = ctx.randn(400, 2)
    theta, stats = solver.step(fit.flow, fit.theta, z, 1.5, problem, ctx, None)
    assert stats["halvings"] >= 1
    with torch.no_grad():
        before = float(solver.free_energy(fit.flow, fit.theta, z, problem))
        after = float(solver.free_energy(fit.flow, theta, z, problem))
    assert after < before


def test_seeded_runs_repeat_and_differ_across_seeds():
    _, a = run("fokker-planck/ou-1d", seed=3)
    _, b = run("fokker-planck/ou-1d", seed=3)
    _, c = run("fokker-planck/ou-1d", seed=4)
    assert torch.equal(a.snapshots[-1].x, b.snapshots[-1].x)
    assert not torch.equal(a.snapshots[-1].x, c.snapshots[-1].x)


def test_scorer_reports_the_logged_solve_residuals():
    problem = wgfbench.get_problem("fokker-planck/ou-1d")
    steps = [StepRecord(t=0.1, tau=0.1, energy=1.0, residual=1e-3), StepRecord(t=0.2, tau=0.1, energy=0.9)]
    rows = Scorer(problem, get_tier("smoke"), base_seed=0, repetition=0)._score_steps(steps)
    assert [(r.step, r.value) for r in rows if r.metric == "step_residual"] == [(0, 1e-3)]


def test_pwgf_passes_the_conformance_kit():
    from wgfbench.testing import check_solver

    report = check_solver(
        PWGF.for_tier("smoke"), wgfbench.get_problem("fokker-planck/ou-2d"), budget_seconds=60.0
    )
    assert report.supported and report.n_steps > 0


class Interrupted(Exception):
    """Raised by a progress callback to cut a run short after a given step."""


def test_checkpoints_only_at_the_large_tier_by_default():
    assert [PWGF.for_tier(t).config.checkpoint_every for t in ("smoke", "quick", "large")] == [0, 0, 1]


def test_an_interrupted_run_resumes_from_its_last_step_and_ends_as_an_uninterrupted_one(
    tmp_path, monkeypatch
):
    """ou-1d at the smoke tier (12 steps, snapshots after steps 1, 2, 4, 7, 12): a run cut after
    step 5 and rerun with the same seed and checkpoint directory skips the fit, computes steps
    6..12 only, and its snapshots (the earlier ones redrawn from their θ and generator states) and
    step records equal those of an uninterrupted run without checkpoints."""
    problem = wgfbench.get_problem("fokker-planck/ou-1d").view()
    _, uninterrupted = run("fokker-planck/ou-1d", seed=2)

    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise Interrupted

    solver = PWGF.for_tier("smoke", checkpoint_every=1)
    ctx = Context.create(2, "smoke", budget_seconds=1e9, checkpoints=tmp_path, progress=interrupt)
    solver.prepare(problem, ctx)
    with pytest.raises(Interrupted):
        solver.solve(problem, ctx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000005.safetensors"]
    # θ and a generator state per snapshot, not its 20 000 points
    assert (tmp_path / "step-000000005.safetensors").stat().st_size < 20_000 * 8

    def no_fit(*args, **kwargs):
        raise AssertionError("the resumed run fitted θ0 again")

    monkeypatch.setattr(pwgf_solver, "fit_initial", no_fit)
    computed: list[int] = []
    solver = PWGF.for_tier("smoke", checkpoint_every=1)
    ctx = Context.create(
        2,
        "smoke",
        budget_seconds=1e9,
        checkpoints=tmp_path,
        progress=lambda done, total: computed.append(done),
    )
    solver.prepare(problem, ctx)
    resumed = solver.solve(problem, ctx)
    assert computed == list(range(6, 13))
    assert len(resumed.snapshots) == len(uninterrupted.snapshots) == 6
    for a, b in zip(resumed.snapshots, uninterrupted.snapshots, strict=True):
        assert a.t == b.t
        torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
        torch.testing.assert_close(a.log_rho, b.log_rho, rtol=0, atol=0)
    assert [repr(r) for r in resumed.steps] == [repr(r) for r in uninterrupted.steps]
    for key in ("iterations", "unconverged", "refinements", "halvings", "fit_kl"):
        assert resumed.info[key] == uninterrupted.info[key], key
