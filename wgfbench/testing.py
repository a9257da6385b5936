r"""The conformance kit: check any problem or solver plugin against the wgfbench contracts.

Use it from a plugin's own test suite::

    from wgfbench.testing import check_problem, check_solver

    def test_my_problem():
        check_problem(make_my_problem())

    def test_my_solver_on_ou():
        check_solver(MySolver.for_tier("smoke"), wgfbench.get_problem("fokker-planck/ou-2d"))

Each check raises :class:`AssertionError` with a message that names the plugin and what failed,
and returns a small report (what was checked, with the statistics behind it) when all pass.

Statistical checks compare two independent samples (or a sample and closed-form moments) with
deliberately loose, multiplicity-aware thresholds: moment differences in units of their standard
error (:math:`|z|\le` ``law_z``, default 6) and per-coordinate two-sample Kolmogorov–Smirnov tests
at a Bonferroni-corrected level (default :math:`10^{-6}`). All draws use fixed seeds, so a check
passes or fails deterministically; a correct plugin fails only with negligible probability over
the choice of seed.
"""

from __future__ import annotations

import itertools
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from scipy import stats
from torch import Tensor

from wgfbench.context import TIERS, Context, get_tier, make_generator
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.errors import BudgetExceeded, NonFiniteOutput
from wgfbench.problem import Problem, primary_metrics, solver_scope
from wgfbench.references import (
    Distribution,
    DistributionPath,
    Gaussian,
    JKOIterates,
    Reference,
    jko_step_count,
)
from wgfbench.solver import Solver, SolverConfig, problem_as_seen_by
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Trajectory

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._+-]*$")
"""Problem names: ``family/id`` in lower case (letters, digits, ``.``, ``_``, ``-``)."""

REFERENCE_KINDS = ("exact", "stationary", "numerical")
OUTSIDE_BOX_TOLERANCE = 1e-3
"""Largest share of reference samples allowed outside ``problem.box`` (Gaussians are cut at ±7σ)."""


# ----------------------------------------------------------------------------------------------
# Reports


@dataclass
class ProblemReport:
    """What :func:`check_problem` verified: the names of the passed checks and the statistics
    behind them (largest moment z-scores, smallest KS p-values, energy z-scores)."""

    problem: str
    n: int
    checks: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    def passed(self, name: str, **values: float) -> None:
        self.checks.append(name)
        for key, value in values.items():
            self.stats[f"{name}.{key}"] = float(value)


@dataclass
class SolverReport:
    """What :func:`check_solver` verified for one (solver, problem, tier, device) case."""

    solver: str
    problem: str
    tier: str
    device: str
    seed: int
    supported: bool
    reason: str | None = None
    prepare_seconds: float = math.nan
    solve_seconds: float = math.nan
    n_snapshots: int = 0
    n_steps: int = 0
    checks: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Statistics shared by the checks


def _fail(prefix: str, message: str) -> AssertionError:
    return AssertionError(f"{prefix}: {message}")


def moment_z_scores(x: Tensor, y: Tensor) -> tuple[float, float]:
    r"""Largest :math:`|z|` of the differences of the means and of the covariance entries of two
    independent samples ``x`` (n, d) and ``y`` (m, d): :math:`z = (\hat\mu_x-\hat\mu_y)/
    \sqrt{\hat\sigma_x^2/n+\hat\sigma_y^2/m}`, the covariance entries as means of the products
    :math:`(x_a-\bar x_a)(x_b-\bar x_b)`. Returns ``(max |z| of means, max |z| of covariances)``."""
    x, y = x.to(torch.float64), y.to(torch.float64)

    def mean_and_var(samples: Tensor) -> tuple[Tensor, Tensor]:
        return samples.mean(0), samples.var(0) / samples.shape[0]

    def products(samples: Tensor) -> Tensor:
        c = samples - samples.mean(0)
        rows, cols = torch.triu_indices(c.shape[1], c.shape[1])
        return c[:, rows] * c[:, cols]

    z_mean = _z(*mean_and_var(x), *mean_and_var(y))
    z_cov = _z(*mean_and_var(products(x)), *mean_and_var(products(y)))
    return z_mean, z_cov


def _z(m1: Tensor, v1: Tensor, m2: Tensor, v2: Tensor) -> float:
    scale = torch.maximum(m1.abs(), m2.abs()).clamp_min(1.0)
    se = (v1 + v2).sqrt() + 1e-12 * scale
    return float(((m1 - m2).abs() / se).max())


def moment_z_scores_exact(x: Tensor, mean: Tensor | None, cov: Tensor | None) -> tuple[float, float]:
    r"""Largest :math:`|z|` of the sample mean and covariance of ``x`` (n, d) against closed-form
    ``mean`` (d,) and ``cov`` (d, d) (either may be ``None``: its score is then 0). Standard
    errors: :math:`\sqrt{\Sigma_{aa}/n}` for the mean, the sample standard deviation of the
    products :math:`(x_a-m_a)(x_b-m_b)` over :math:`\sqrt n` for the covariance."""
    x = x.to(torch.float64)
    n = x.shape[0]
    z_mean = z_cov = 0.0
    if mean is not None:
        m = mean.to(torch.float64)
        var = cov.diagonal().to(torch.float64) if cov is not None else x.var(0)
        se = (var / n).sqrt() + 1e-12 * m.abs().clamp_min(1.0)
        z_mean = float(((x.mean(0) - m).abs() / se).max())
    if cov is not None:
        centre = mean.to(torch.float64) if mean is not None else x.mean(0)
        c = x - centre
        rows, cols = torch.triu_indices(x.shape[1], x.shape[1])
        prods = c[:, rows] * c[:, cols]
        target = cov.to(torch.float64)[rows, cols]
        se = prods.std(0) / math.sqrt(n) + 1e-12 * target.abs().clamp_min(1.0)
        z_cov = float(((prods.mean(0) - target).abs() / se).max())
    return z_mean, z_cov


def marginal_ks_pvalue(x: Tensor, y: Tensor) -> float:
    """The smallest two-sample Kolmogorov–Smirnov p-value over the coordinates of ``x`` (n, d)
    and ``y`` (m, d), multiplied by d (Bonferroni; capped at 1)."""
    xs, ys = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    p = min(float(stats.ks_2samp(xs[:, k], ys[:, k]).pvalue) for k in range(xs.shape[1]))
    return min(1.0, p * xs.shape[1])


# ----------------------------------------------------------------------------------------------
# A small exact problem for plugin tests


def ornstein_uhlenbeck_problem(
    a: Sequence[float],
    mu: Sequence[float],
    m0: Sequence[float],
    cov0: Sequence[Sequence[float]],
    times: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    dt: float = 0.05,
    name: str | None = None,
) -> Problem:
    r"""A self-contained Fokker–Planck problem with an exact Gaussian reference, for solver tests
    that must not depend on the built-in problem plugins.

    :math:`V(x)=\tfrac12(x-\mu)^\top A(x-\mu)` with :math:`A=\mathrm{diag}(a)`, energy
    :math:`\int\rho\log\rho+\int V\rho`, :math:`\rho_0=\mathcal N(m_0,\Sigma_0)`. The solution
    of :math:`\partial_t\rho=\nabla\cdot(\rho\nabla V)+\Delta\rho` is Gaussian with
    :math:`m(t)=\mu+e^{-At}(m_0-\mu)`, :math:`\Sigma(t)=e^{-At}\Sigma_0e^{-At}+A^{-1}(I-e^{-2At})`
    and free energy :math:`\tfrac12\mathrm{tr}(A\Sigma)+\tfrac12(m-\mu)^\top A(m-\mu)
    -\tfrac12\log((2\pi e)^d\det\Sigma)` (PROBLEMS.md, "Fokker–Planck"). ``a``, ``mu``, ``m0``:
    length d; ``cov0``: (d, d). Name ``testing/ou-{d}d`` unless given; primary metric ``bures_w2``.
    """
    A_diag = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    if not (A_diag > 0).all():
        raise ValueError("the OU stiffnesses a must be positive")
    d = A_diag.numel()
    mu_t = torch.as_tensor(mu, dtype=torch.float64).reshape(d)
    m0_t = torch.as_tensor(m0, dtype=torch.float64).reshape(d)
    cov0_t = torch.as_tensor(cov0, dtype=torch.float64).reshape(d, d)

    def mean(t: float) -> Tensor:
        return mu_t + torch.exp(-A_diag * t) * (m0_t - mu_t)

    def cov(t: float) -> Tensor:
        decay = torch.exp(-A_diag * t)
        return decay[:, None] * cov0_t * decay[None, :] + torch.diag(-torch.expm1(-2 * A_diag * t) / A_diag)

    def free_energy(t: float) -> float:
        m, S = mean(t), cov(t)
        entropy = 0.5 * (d * math.log(2 * math.pi * math.e) + float(torch.linalg.slogdet(S)[1]))
        return float(0.5 * (A_diag * S.diagonal()).sum() + 0.5 * (A_diag * (m - mu_t) ** 2).sum()) - entropy

    def V(x: Tensor) -> Tensor:
        return 0.5 * (A_diag.to(x) * (x - mu_t.to(x)) ** 2).sum(-1)

    def grad_V(x: Tensor) -> Tensor:
        return A_diag.to(x) * (x - mu_t.to(x))

    return Problem(
        name=name or f"testing/ou-{d}d",
        family=(name or "testing/").split("/")[0],
        dim=d,
        energy=Energy([Entropy(), Potential(V, grad=grad_V)]),
        initial=Gaussian(m0_t, cov0_t),
        times=tuple(times),
        dt=dt,
        references={"pde": DistributionPath(lambda t: Gaussian(mean(t), cov(t)), d, energy=free_energy)},
        primary_metric="bures_w2",
        description="Ornstein–Uhlenbeck flow with diagonal stiffness (wgfbench.testing toy problem)",
    )


# ----------------------------------------------------------------------------------------------
# check_problem


def _check_draws(
    prefix: str, what: str, draw: Callable[[torch.Generator], Tensor], n: int, dim: int, seed: int
) -> Tensor:
    """Shape (n, dim), float64, CPU, finite, reproducible with the same seed, different otherwise."""
    try:
        x = draw(make_generator(seed))
    except Exception as exc:
        raise _fail(prefix, f"{what}: sampling raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(x, Tensor):
        raise _fail(prefix, f"{what}: sample must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != (n, dim):
        raise _fail(prefix, f"{what}: sample has shape {tuple(x.shape)}, expected ({n}, {dim})")
    if x.dtype != torch.float64:
        raise _fail(prefix, f"{what}: sample has dtype {x.dtype}, expected torch.float64")
    if x.device.type != "cpu":
        raise _fail(prefix, f"{what}: sample lives on {x.device}, problem laws must compute on the CPU")
    if not torch.isfinite(x).all():
        raise _fail(prefix, f"{what}: sample has {int((~torch.isfinite(x)).sum())} non-finite entries")
    again = draw(make_generator(seed))
    if not torch.equal(x, again):
        raise _fail(
            prefix,
            f"{what}: not reproducible: two draws with the same seed differ (it must draw only from "
            "the generator it is given, never from torch's global RNG)",
        )
    other = draw(make_generator(seed + 1))
    if torch.equal(x, other):
        raise _fail(prefix, f"{what}: draws with different seeds are identical (the generator is ignored)")
    return x


def _check_log_density(prefix: str, what: str, log_density: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    try:
        log_rho = log_density(x)
    except Exception as exc:
        raise _fail(prefix, f"{what}: log_density raised {type(exc).__name__}: {exc}") from exc
    if tuple(log_rho.shape) != (x.shape[0],):
        raise _fail(prefix, f"{what}: log_density has shape {tuple(log_rho.shape)}, expected ({x.shape[0]},)")
    bad = int((~torch.isfinite(log_rho)).sum())
    if bad:
        raise _fail(prefix, f"{what}: log_density is non-finite at {bad} of its own {x.shape[0]} samples")
    return log_rho


def _check_moments(
    prefix: str, what: str, x: Tensor, mean: Tensor | None, cov: Tensor | None, dim: int, law_z: float
) -> tuple[float, float]:
    if mean is not None and tuple(mean.shape) != (dim,):
        raise _fail(prefix, f"{what}: mean() has shape {tuple(mean.shape)}, expected ({dim},)")
    if cov is not None:
        if tuple(cov.shape) != (dim, dim):
            raise _fail(prefix, f"{what}: cov() has shape {tuple(cov.shape)}, expected ({dim}, {dim})")
        if not torch.allclose(cov, cov.T, rtol=1e-8, atol=1e-12):
            raise _fail(prefix, f"{what}: cov() is not symmetric")
        if float(torch.linalg.eigvalsh(0.5 * (cov + cov.T)).min()) < -1e-10 * float(cov.abs().max()):
            raise _fail(prefix, f"{what}: cov() is not positive semi-definite")
    z_mean, z_cov = moment_z_scores_exact(x, mean, cov)
    if z_mean > law_z:
        raise _fail(prefix, f"{what}: sample mean disagrees with mean() (max |z| = {z_mean:.1f} > {law_z})")
    if z_cov > law_z:
        raise _fail(
            prefix, f"{what}: sample covariance disagrees with cov() (max |z| = {z_cov:.1f} > {law_z})"
        )
    return z_mean, z_cov


def _check_energy(
    prefix: str,
    what: str,
    energy: Energy,
    x: Tensor,
    log_rho: Tensor | None,
    exact: float | None,
    law_z: float,
) -> float:
    """``energy.on_samples`` finite; with log-densities and a closed-form energy, the unbiased
    particle estimate agrees with it. Returns that estimate's |z| (0 when not applicable)."""
    try:
        estimate = energy.on_samples(x)
    except Exception as exc:
        raise _fail(prefix, f"{what}: energy.on_samples raised {type(exc).__name__}: {exc}") from exc
    if not (math.isfinite(estimate.value) and math.isfinite(estimate.stderr)):
        raise _fail(prefix, f"{what}: energy.on_samples is not finite ({estimate.value} ± {estimate.stderr})")
    if log_rho is None or exact is None:
        return 0.0
    on_particles = energy.on_particles(x, log_rho)
    if not math.isfinite(on_particles.value):
        raise _fail(prefix, f"{what}: energy.on_particles is not finite on exact samples")
    z = abs(on_particles.value - exact) / (on_particles.stderr + 1e-10 * max(1.0, abs(exact)))
    if z > law_z:
        raise _fail(
            prefix,
            f"{what}: reference energy(t) = {exact:.6g} disagrees with the particle estimate "
            f"{on_particles.value:.6g} ± {on_particles.stderr:.2g} from its own samples and log-density "
            f"(|z| = {z:.1f} > {law_z})",
        )
    return z


def _check_box(prefix: str, what: str, box, x: Tensor) -> float:
    low = torch.tensor(box.low, dtype=x.dtype)
    high = torch.tensor(box.high, dtype=x.dtype)
    outside = float(((x < low) | (x > high)).any(dim=1).double().mean())
    if outside > OUTSIDE_BOX_TOLERANCE:
        raise _fail(prefix, f"{what}: {outside:.2%} of the samples lie outside problem.box {box}")
    return outside


def check_problem(
    problem: Problem, n: int = 1000, seed: int = 0, law_z: float = 6.0, ks_alpha: float = 1e-6
) -> ProblemReport:
    r"""Check a :class:`~wgfbench.Problem` against the contract; raise :class:`AssertionError` on
    the first failure, naming the problem and what failed.

    Checks: the name (``family/id``, lower case), family, version, dim, times (start at 0,
    increase), ``dt`` (positive, at most the smallest gap between snapshot times), ``box`` (right
    dimension, holds the reference samples), primary metric and mobility; the initial law and the
    reference at every snapshot time sample with shape (n, d), float64, on the CPU, finite,
    seed-reproducible, different for different seeds; ``log_density`` finite on the law's own
    samples where it has one; sample moments agree with ``mean(t)``/``cov(t)`` where given;
    for ``exact`` references, ``initial`` and the reference at ``t=0`` agree in law (moments and
    per-coordinate KS); ``energy.on_samples`` is finite and, where the reference has a density and
    a closed-form ``energy(t)``, the unbiased particle estimate :math:`\mathbb E[U(\rho)/\rho + V +
    \tfrac12W*\rho]` agrees with it; the primary metric is applicable (``radial_w2`` needs
    ``radial_centre``, ``bures_w2`` needs ``mean``/``cov``); the JKO iterates (if any) sample on
    the τ-grid; an initial family (if any) draws reproducibly.

    ``n``: samples per draw. ``seed``: base seed of every draw. ``law_z``: largest accepted
    moment/energy z-score. ``ks_alpha``: Bonferroni-corrected KS level. Returns a
    :class:`ProblemReport`.
    """
    name = getattr(problem, "name", repr(problem))
    prefix = f"check_problem[{name}]"
    if not isinstance(problem, Problem):
        raise _fail(prefix, f"expected a wgfbench.Problem, got {type(problem).__name__}")
    report = ProblemReport(problem=name, n=n)
    d = problem.dim

    # Identity and schedule.
    if not NAME_PATTERN.match(problem.name):
        raise _fail(prefix, "the name must be 'family/id' in lower case (letters, digits, '.', '_', '-')")
    if problem.name.split("/")[0] != problem.family:
        raise _fail(prefix, f"the name must start with the family {problem.family!r}")
    if not (isinstance(problem.version, int) and problem.version >= 1):
        raise _fail(prefix, f"version must be an integer >= 1, got {problem.version!r}")
    if not (isinstance(d, int) and d >= 1):
        raise _fail(prefix, f"dim must be a positive integer, got {d!r}")
    times = problem.times
    if times[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(times)):
        raise _fail(prefix, f"times must start at 0 and increase, got {times}")
    if not all(math.isfinite(t) for t in times):
        raise _fail(prefix, f"times must be finite, got {times}")
    if len(times) < 2:
        raise _fail(prefix, "times needs at least one snapshot after t = 0")
    min_gap = min(b - a for a, b in itertools.pairwise(times))
    if not (math.isfinite(problem.dt) and 0 < problem.dt <= min_gap * (1 + 1e-9)):
        raise _fail(
            prefix, f"dt = {problem.dt} must be positive and at most the smallest snapshot gap {min_gap}"
        )
    if problem.primary_metric not in primary_metrics():
        raise _fail(prefix, f"primary_metric {problem.primary_metric!r} not in {primary_metrics()}")
    if problem.mobility.kind not in ("wasserstein", "nonlinear", "kalman"):
        raise _fail(prefix, f"unknown mobility {problem.mobility.kind!r}")
    if problem.box is not None and problem.box.dim != d:
        raise _fail(prefix, f"box has dimension {problem.box.dim}, expected {d}")
    if not isinstance(problem.energy, Energy):
        raise _fail(prefix, f"energy must be a wgfbench.Energy, got {type(problem.energy).__name__}")
    report.passed("identity")

    # Initial law.
    initial = problem.initial
    if not isinstance(initial, Distribution) or initial.dim != d:
        raise _fail(prefix, f"initial must be a Distribution of dimension {d}")
    x0 = _check_draws(prefix, "initial", lambda g: initial.sample(n, g), n, d, seed)
    if initial.has_density:
        _check_log_density(prefix, "initial", initial.log_density, x0)
    _check_moments(prefix, "initial", x0, initial.mean(), initial.cov(), d, law_z)
    if problem.box is not None:
        _check_box(prefix, "initial", problem.box, x0)
    grad = problem.energy.grad_V(x0)
    if tuple(grad.shape) != (n, d) or not torch.isfinite(grad).all():
        raise _fail(prefix, f"energy.grad_V on initial samples must be finite with shape ({n}, {d})")
    report.passed("initial")

    # Reference at every snapshot time.
    reference = problem.reference
    if reference.kind not in REFERENCE_KINDS:
        raise _fail(prefix, f"reference kind {reference.kind!r} not in {REFERENCE_KINDS}")
    worst_mean = worst_cov = worst_energy = 0.0
    for k, t in enumerate(times):
        what = f"reference at t={t:g}"
        x = _check_draws(prefix, what, lambda g, t=t: reference.sample(t, n, g), n, d, seed + 7919 * (k + 1))
        log_rho = None
        if reference.has_density:
            log_rho = _check_log_density(prefix, what, lambda y, t=t: reference.log_density(t, y), x)
        z_mean, z_cov = _check_moments(prefix, what, x, reference.mean(t), reference.cov(t), d, law_z)
        worst_mean, worst_cov = max(worst_mean, z_mean), max(worst_cov, z_cov)
        worst_energy = max(
            worst_energy, _check_energy(prefix, what, problem.energy, x, log_rho, reference.energy(t), law_z)
        )
        if problem.box is not None and (reference.kind != "stationary" or k == len(times) - 1):
            _check_box(prefix, what, problem.box, x)
    report.passed("reference", max_mean_z=worst_mean, max_cov_z=worst_cov, max_energy_z=worst_energy)

    # ρ0 and the reference at t = 0 are the same law (exact references).
    if reference.kind == "exact":
        x_ref0 = reference.sample(0.0, n, make_generator(seed + 104729))
        z_mean, z_cov = moment_z_scores(x0, x_ref0)
        p_ks = marginal_ks_pvalue(x0, x_ref0)
        if z_mean > law_z or z_cov > law_z or p_ks < ks_alpha:
            raise _fail(
                prefix,
                "initial and reference at t=0 differ in law (mean |z| = "
                f"{z_mean:.1f}, covariance |z| = {z_cov:.1f}, marginal KS p = {p_ks:.2g}; limits "
                f"{law_z} and {ks_alpha:g})",
            )
        report.passed("initial_matches_reference", mean_z=z_mean, cov_z=z_cov, ks_p=p_ks)

    # The primary metric can be computed.
    if problem.primary_metric == "radial_w2":
        centre = reference.radial_centre
        if centre is None or tuple(torch.as_tensor(centre).shape) != (d,):
            raise _fail(prefix, f"primary metric radial_w2 needs reference.radial_centre of shape ({d},)")
    if problem.primary_metric == "bures_w2":
        scored = [times[-1]] if reference.kind == "stationary" else list(times)
        for t in scored:
            if reference.mean(t) is None or reference.cov(t) is None:
                raise _fail(prefix, f"primary metric bures_w2 needs reference.mean(t) and cov(t) (t={t:g})")
    report.passed("primary_metric")

    # Exact JKO iterates on the τ = dt grid.
    jko = problem.jko
    if jko is not None:
        if not isinstance(jko, JKOIterates):
            raise _fail(prefix, "references['jko'] must be JKOIterates")
        iterates = jko.for_step(problem.dt)
        if not isinstance(iterates, Reference) or iterates.dim != d:
            raise _fail(prefix, f"jko.for_step(dt) must return a Reference of dimension {d}")
        on_grid = []
        for t in times:
            try:
                jko_step_count(t, problem.dt)
            except ValueError:
                continue
            on_grid.append(t)
            what = f"jko iterate at t={t:g}"
            x = _check_draws(prefix, what, lambda g, t=t: iterates.sample(t, n, g), n, d, seed + 31)
            _check_moments(prefix, what, x, iterates.mean(t), iterates.cov(t), d, law_z)
        report.passed("jko", n_times=len(on_grid))

    # Initial family draws reproducibly.
    family = problem.initial_family
    if family is not None:
        member, member_ref = family.draw(make_generator(seed))
        member_again, _ = family.draw(make_generator(seed))
        if not isinstance(member, Distribution) or member.dim != d or member_ref.dim != d:
            raise _fail(prefix, f"initial_family.draw must return (Distribution, Reference) of dimension {d}")
        xm = _check_draws(prefix, "initial family member", lambda g: member.sample(n, g), n, d, seed)
        if not torch.equal(xm, member_again.sample(n, make_generator(seed))):
            raise _fail(prefix, "initial_family.draw is not reproducible with the same seed")
        _check_draws(
            prefix, "initial family reference", lambda g: member_ref.sample(times[-1], n, g), n, d, seed
        )
        report.passed("initial_family")
    return report


# ----------------------------------------------------------------------------------------------
# check_solver


def _snapshot_tensors(trajectory: Trajectory) -> list[tuple[float, str, Tensor]]:
    return [(snap.t, key, value) for snap in trajectory.snapshots for key, value in snap.tensors().items()]


def _run_case(solver: Solver, problem: Problem, ctx: Context, prefix: str) -> tuple[Trajectory, float, float]:
    """``prepare`` and ``solve`` as the runner calls them: solvers get the problem's view (no
    references; ``get_problem`` hands out views too), baseline and calibration rows the problem."""
    seen = problem_as_seen_by(solver, problem)
    try:
        start = time.perf_counter()
        with solver_scope(solver.role):
            solver.prepare(seen, ctx)
            prepared = time.perf_counter()
            trajectory = solver.solve(seen, ctx)
        solved = time.perf_counter()
    except BudgetExceeded as exc:
        raise _fail(prefix, f"ran over the tier budget: {exc}") from exc
    except NonFiniteOutput as exc:
        raise _fail(prefix, f"produced non-finite values: {exc}") from exc
    except Exception as exc:
        raise _fail(prefix, f"prepare/solve raised {type(exc).__name__}: {exc}") from exc
    return trajectory, prepared - start, solved - prepared


def check_solver(
    solver: Solver,
    problem: Problem,
    tier: str = "smoke",
    device: str | torch.device = "cpu",
    seed: int = 0,
    check_determinism: bool = True,
    budget_seconds: float | None = None,
    require_support: bool = True,
    mass_tol: float = 1e-6,
) -> SolverReport:
    """Run ``solver`` on ``problem`` as the runner would and check the result against the contract;
    raise :class:`AssertionError` on the first failure, naming the solver, the problem and what failed.

    Checks: the class contract (``name``, BibTeX ``citation``, a :class:`SolverConfig`, presets
    only for known tiers and valid for each of them); ``supports(problem)`` is ``True`` or a
    reason (an unsupported pair fails unless ``require_support=False``, which returns a report
    with ``supported=False``); ``prepare`` + ``solve`` with ``Context.create(seed, tier, device)``
    finish within the budget (the tier's, or ``budget_seconds``) without raising; the trajectory
    validates against ``problem.times`` and ``problem.dim`` with finite values; particle weights
    are non-negative and sum to 1; grid densities are non-negative with unit mass (±``mass_tol``);
    the step log is ordered in time with non-negative steps; a ``jko_tau`` divides every snapshot
    time; and, with ``check_determinism``, a second run with the same seed gives identical output.
    Returns a :class:`SolverReport`.
    """
    solver_name = getattr(solver, "name", type(solver).__name__)
    problem_name = getattr(problem, "name", repr(problem))
    tier_spec = get_tier(tier)
    device = torch.device(device)
    prefix = f"check_solver[{solver_name} on {problem_name}, tier {tier_spec.name}, {device}]"

    # Class contract.
    if not isinstance(solver, Solver):
        raise _fail(prefix, f"expected a wgfbench.Solver instance, got {type(solver).__name__}")
    cls = type(solver)
    if not (isinstance(getattr(cls, "name", None), str) and cls.name):
        raise _fail(prefix, "the solver class needs a non-empty string `name`")
    if not (isinstance(cls.citation, str) and "@" in cls.citation and "{" in cls.citation):
        raise _fail(prefix, "the solver class needs a BibTeX `citation` (an @entry{...})")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, SolverConfig)):
        raise _fail(prefix, "`Config` must subclass wgfbench.SolverConfig")
    if not isinstance(solver.config, cls.Config):
        raise _fail(prefix, f"solver.config must be a {cls.Config.__name__}")
    unknown = set(cls.presets) - set(TIERS)
    if unknown:
        raise _fail(prefix, f"presets for unknown tiers {sorted(unknown)}; known: {list(TIERS)}")
    for name in TIERS:
        try:
            cls.for_tier(name)
        except Exception as exc:
            raise _fail(prefix, f"the {name!r} preset does not build a valid config: {exc}") from exc

    report = SolverReport(
        solver=solver_name,
        problem=problem_name,
        tier=tier_spec.name,
        device=str(device),
        seed=seed,
        supported=True,
    )
    report.checks.append("class")
    with solver_scope(solver.role):
        support = solver.supports(problem_as_seen_by(solver, problem))
    if support is not True:
        if not (isinstance(support, str) and support) and support is not False:
            raise _fail(prefix, f"supports() must return True or a reason string, got {support!r}")
        reason = support if isinstance(support, str) and support else "not supported"
        if require_support:
            raise _fail(prefix, f"the solver does not support this problem: {reason}")
        report.supported, report.reason = False, reason
        return report
    report.checks.append("supports")

    artifacts = tempfile.TemporaryDirectory(prefix="wgfbench-check-")

    def make_context(run: str) -> Context:
        (Path(artifacts.name) / run).mkdir(exist_ok=True)
        return Context.create(
            seed,
            tier=tier_spec,
            device=device,
            budget_seconds=budget_seconds,
            artifacts=Path(artifacts.name) / run,
        )

    with artifacts:
        return _check_run(solver, problem, report, make_context, prefix, check_determinism, mass_tol)


def _check_run(
    solver: Solver,
    problem: Problem,
    report: SolverReport,
    make_context: Callable[[str], Context],
    prefix: str,
    check_determinism: bool,
    mass_tol: float,
) -> SolverReport:
    """The run-time half of :func:`check_solver` (inside its temporary artifacts directory)."""
    ctx = make_context("first")
    trajectory, report.prepare_seconds, report.solve_seconds = _run_case(solver, problem, ctx, prefix)
    elapsed = report.prepare_seconds + report.solve_seconds
    if elapsed > ctx.budget_seconds:
        raise _fail(prefix, f"took {elapsed:.2f} s, over the budget of {ctx.budget_seconds:.1f} s")
    report.checks.append("budget")

    if not isinstance(trajectory, Trajectory):
        raise _fail(prefix, f"solve() must return a wgfbench.Trajectory, got {type(trajectory).__name__}")
    try:
        trajectory.validate(problem.times, problem.dim)
    except NonFiniteOutput as exc:
        raise _fail(prefix, f"non-finite output: {exc}") from exc
    except ValueError as exc:
        raise _fail(prefix, f"invalid trajectory: {exc}") from exc
    report.checks.append("validate")

    for snap in trajectory.snapshots:
        if isinstance(snap, ParticleSnapshot):
            if not snap.x.is_floating_point():
                raise _fail(prefix, f"t={snap.t:g}: particles must be floating point, got {snap.x.dtype}")
            if snap.x.shape[0] < 1:
                raise _fail(prefix, f"t={snap.t:g}: no particles")
            if snap.weights is not None:
                if (snap.weights < 0).any():
                    raise _fail(prefix, f"t={snap.t:g}: negative particle weights")
                total = float(snap.weights.sum())
                if abs(total - 1.0) > mass_tol:
                    raise _fail(prefix, f"t={snap.t:g}: particle weights sum to {total:.8g}, not 1")
        elif isinstance(snap, GridSnapshot):
            if snap.box.dim != problem.dim:
                raise _fail(
                    prefix, f"t={snap.t:g}: grid box has dimension {snap.box.dim}, expected {problem.dim}"
                )
            if (snap.rho < 0).any():
                raise _fail(
                    prefix,
                    f"t={snap.t:g}: grid density has negative values (min {float(snap.rho.min()):.3g})",
                )
            if abs(snap.mass - 1.0) > mass_tol:
                raise _fail(prefix, f"t={snap.t:g}: grid mass is {snap.mass:.8g}, not 1")
        else:
            raise _fail(prefix, f"t={snap.t:g}: snapshot of unknown type {type(snap).__name__}")
    report.checks.append("snapshots")

    t_final = problem.final_time
    previous = 0.0
    for k, step in enumerate(trajectory.steps):
        if not (-1e-12 <= step.t <= t_final * (1 + 1e-9) + 1e-12) or step.t < previous - 1e-12:
            raise _fail(prefix, f"step log entry {k}: t={step.t} is out of order or outside [0, {t_final}]")
        if not (math.isfinite(step.tau) and step.tau >= 0):
            raise _fail(prefix, f"step log entry {k}: tau={step.tau} must be finite and >= 0")
        if math.isinf(step.energy) or math.isinf(step.energy_stderr):
            raise _fail(prefix, f"step log entry {k}: infinite energy (use NaN when not computed)")
        if step.iterations < 0:
            raise _fail(prefix, f"step log entry {k}: negative iteration count")
        previous = step.t
    report.checks.append("steps")

    if trajectory.jko_tau is not None:
        if not trajectory.jko_tau > 0:
            raise _fail(prefix, f"jko_tau must be positive, got {trajectory.jko_tau}")
        for t in problem.times:
            try:
                jko_step_count(t, trajectory.jko_tau)
            except ValueError as exc:
                raise _fail(
                    prefix, f"jko_tau={trajectory.jko_tau} does not divide snapshot time {t}"
                ) from exc
        report.checks.append("jko_tau")

    if check_determinism:
        again, _, _ = _run_case(solver, problem, make_context("second"), prefix)
        first, second = _snapshot_tensors(trajectory), _snapshot_tensors(again)
        if [(t, k, tuple(v.shape)) for t, k, v in first] != [(t, k, tuple(v.shape)) for t, k, v in second]:
            raise _fail(prefix, "not reproducible: the same seed gave snapshots of different times or shapes")
        for (t, key, a), (_, _, b) in zip(first, second, strict=True):
            if not torch.equal(a, b):
                diff = float((a.double() - b.double()).abs().max())
                raise _fail(
                    prefix,
                    f"not reproducible: the same seed gave different {key!r} at t={t:g} "
                    f"(max |diff| {diff:.3g}); "
                    "draw only from ctx.generator / ctx.cpu_generator, never from global RNGs",
                )
        report.checks.append("deterministic")

    report.n_snapshots = len(trajectory.snapshots)
    report.n_steps = len(trajectory.steps)
    report.info = dict(trajectory.info)
    return report


__all__ = [
    "ProblemReport",
    "SolverReport",
    "check_problem",
    "check_solver",
    "marginal_ks_pvalue",
    "moment_z_scores",
    "moment_z_scores_exact",
    "ornstein_uhlenbeck_problem",
]
