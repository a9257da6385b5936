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

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from scipy import stats
from torch import Tensor

from wgfbench.context import TIERS, Context, cpu_clock, get_tier, make_generator
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.errors import BudgetExceeded, NonFiniteOutput
from wgfbench.problem import Problem, solver_scope
from wgfbench.references import (
    Distribution,
    DistributionPath,
    Gaussian,
    JKOIterates,
    Reference,
    jko_step_count,
)
from wgfbench.solver import Solver, problem_as_seen_by
from wgfbench.trajectory import GridSnapshot, ParticleSnapshot, Trajectory

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
    -\tfrac12\log((2\pi e)^d\det\Sigma)` (the Gaussian solution of the Ornstein–Uhlenbeck flow).
    ``a``, ``mu``, ``m0``: length d; ``cov0``: (d, d). Name ``testing/ou-{d}d`` unless given;
    primary metric ``bures_w2``.
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


@dataclass(frozen=True)
class ProblemOptions:
    """Settings shared by the sections of :func:`check_problem`: ``n`` samples per draw, the base
    ``seed`` of every draw, the largest accepted moment/energy z-score ``law_z`` and the
    Bonferroni-corrected Kolmogorov–Smirnov level ``ks_alpha``."""

    n: int = 1000
    seed: int = 0
    law_z: float = 6.0
    ks_alpha: float = 1e-6


class NotApplicable(Exception):
    """Raised by a check section that does not apply to the plugin checked (a problem without JKO
    iterates, a solver run without CUDA): the conformance suite reports it as a skip with this
    reason, :func:`check_problem` and :func:`check_solver` pass over it."""


def problem_prefix(problem: Any) -> str:
    return f"check_problem[{getattr(problem, 'name', repr(problem))}]"


def _contract(prefix: str, rule: Callable[[Any], None], subject: Any) -> None:
    """Apply one :mod:`wgfbench.contract` rule function, as an :class:`AssertionError` naming the
    plugin."""
    from wgfbench.contract import ContractError

    try:
        rule(subject)
    except ContractError as exc:
        raise _fail(prefix, str(exc)) from exc


def check_problem_identity(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """Every construction rule of the contract (:func:`wgfbench.contract.check_problem`: the name
    ``family/id`` in lower case and its family, dim, version, times, ``dt`` at most the smallest
    snapshot gap, a typed energy, the initial law's dimension, mobility, box, the reference roles,
    the primary metric), checked again on the object as it is now."""
    from wgfbench import contract

    prefix = problem_prefix(problem)
    if not isinstance(problem, Problem):
        raise _fail(prefix, f"expected a wgfbench.Problem, got {type(problem).__name__}")
    _contract(prefix, contract.check_problem, problem)
    report.passed("identity")


def check_problem_initial(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """ρ0 samples with shape (n, d), float64, on the CPU, finite, seed-reproducible and different
    for different seeds; ``log_density`` finite on its own samples; moments agree with
    ``mean()``/``cov()``; samples inside ``box``; ``energy.grad_V`` finite on them."""
    prefix, d, n = problem_prefix(problem), problem.dim, opts.n
    initial = problem.initial
    if not isinstance(initial, Distribution) or initial.dim != d:
        raise _fail(prefix, f"initial must be a Distribution of dimension {d}")
    x0 = _check_draws(prefix, "initial", lambda g: initial.sample(n, g), n, d, opts.seed)
    if initial.has_density:
        _check_log_density(prefix, "initial", initial.log_density, x0)
    _check_moments(prefix, "initial", x0, initial.mean(), initial.cov(), d, opts.law_z)
    if problem.box is not None:
        _check_box(prefix, "initial", problem.box, x0)
    grad = problem.energy.grad_V(x0)
    if tuple(grad.shape) != (n, d) or not torch.isfinite(grad).all():
        raise _fail(prefix, f"energy.grad_V on initial samples must be finite with shape ({n}, {d})")
    report.passed("initial")


def check_problem_reference(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """The reference at every snapshot time: a known kind; samples as for ρ0; ``log_density``
    finite on its samples; moments agree with ``mean(t)``/``cov(t)``; ``energy.on_samples``
    finite and, with a density and a closed-form ``energy(t)``, the unbiased particle estimate
    agrees with it; samples inside ``box``."""
    prefix, d, n, law_z = problem_prefix(problem), problem.dim, opts.n, opts.law_z
    reference = problem.reference
    if reference.kind not in REFERENCE_KINDS:
        raise _fail(prefix, f"reference kind {reference.kind!r} not in {REFERENCE_KINDS}")
    worst_mean = worst_cov = worst_energy = 0.0
    times = problem.times
    for k, t in enumerate(times):
        what = f"reference at t={t:g}"
        x = _check_draws(
            prefix, what, lambda g, t=t: reference.sample(t, n, g), n, d, opts.seed + 7919 * (k + 1)
        )
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


def check_problem_initial_matches_reference(
    problem: Problem, report: ProblemReport, opts: ProblemOptions
) -> None:
    """For ``exact`` references: ρ0 and the reference at ``t = 0`` are the same law (moments and
    per-coordinate two-sample KS)."""
    prefix, n = problem_prefix(problem), opts.n
    reference = problem.reference
    if reference.kind != "exact":
        raise NotApplicable(f"the reference is {reference.kind!r}, not 'exact'")
    x0 = problem.initial.sample(n, make_generator(opts.seed))
    x_ref0 = reference.sample(0.0, n, make_generator(opts.seed + 104729))
    z_mean, z_cov = moment_z_scores(x0, x_ref0)
    p_ks = marginal_ks_pvalue(x0, x_ref0)
    if z_mean > opts.law_z or z_cov > opts.law_z or p_ks < opts.ks_alpha:
        raise _fail(
            prefix,
            "initial and reference at t=0 differ in law (mean |z| = "
            f"{z_mean:.1f}, covariance |z| = {z_cov:.1f}, marginal KS p = {p_ks:.2g}; limits "
            f"{opts.law_z} and {opts.ks_alpha:g})",
        )
    report.passed("initial_matches_reference", mean_z=z_mean, cov_z=z_cov, ks_p=p_ks)


def check_problem_primary_metric(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """The primary metric can be computed: ``radial_w2`` needs ``reference.radial_centre``,
    ``bures_w2`` needs ``mean(t)`` and ``cov(t)`` at every scored time."""
    prefix, d = problem_prefix(problem), problem.dim
    reference = problem.reference
    if problem.primary_metric == "radial_w2":
        centre = reference.radial_centre
        if centre is None or tuple(torch.as_tensor(centre).shape) != (d,):
            raise _fail(prefix, f"primary metric radial_w2 needs reference.radial_centre of shape ({d},)")
    if problem.primary_metric == "bures_w2":
        scored = [problem.times[-1]] if reference.kind == "stationary" else list(problem.times)
        for t in scored:
            if reference.mean(t) is None or reference.cov(t) is None:
                raise _fail(prefix, f"primary metric bures_w2 needs reference.mean(t) and cov(t) (t={t:g})")
    report.passed("primary_metric")


def check_problem_jko(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """Exact JKO iterates (``references["jko"]``, where given) sample on the ``τ = dt`` grid with
    moments that agree with their closed forms."""
    prefix, d, n = problem_prefix(problem), problem.dim, opts.n
    jko = problem.jko
    if jko is None:
        raise NotApplicable("the problem has no exact JKO iterates (references['jko'])")
    if not isinstance(jko, JKOIterates):
        raise _fail(prefix, "references['jko'] must be JKOIterates")
    iterates = jko.for_step(problem.dt)
    if not isinstance(iterates, Reference) or iterates.dim != d:
        raise _fail(prefix, f"jko.for_step(dt) must return a Reference of dimension {d}")
    on_grid = []
    for t in problem.times:
        try:
            jko_step_count(t, problem.dt)
        except ValueError:
            continue
        on_grid.append(t)
        what = f"jko iterate at t={t:g}"
        x = _check_draws(prefix, what, lambda g, t=t: iterates.sample(t, n, g), n, d, opts.seed + 31)
        _check_moments(prefix, what, x, iterates.mean(t), iterates.cov(t), d, opts.law_z)
    report.passed("jko", n_times=len(on_grid))


def check_problem_initial_family(problem: Problem, report: ProblemReport, opts: ProblemOptions) -> None:
    """An initial family (where given) draws members and their references reproducibly."""
    prefix, d, n, seed = problem_prefix(problem), problem.dim, opts.n, opts.seed
    family = problem.initial_family
    if family is None:
        raise NotApplicable("the problem has no initial_family")
    member, member_ref = family.draw(make_generator(seed))
    member_again, _ = family.draw(make_generator(seed))
    if not isinstance(member, Distribution) or member.dim != d or member_ref.dim != d:
        raise _fail(prefix, f"initial_family.draw must return (Distribution, Reference) of dimension {d}")
    xm = _check_draws(prefix, "initial family member", lambda g: member.sample(n, g), n, d, seed)
    if not torch.equal(xm, member_again.sample(n, make_generator(seed))):
        raise _fail(prefix, "initial_family.draw is not reproducible with the same seed")
    _check_draws(
        prefix, "initial family reference", lambda g: member_ref.sample(problem.times[-1], n, g), n, d, seed
    )
    report.passed("initial_family")


PROBLEM_CHECKS: dict[str, Callable[[Problem, ProblemReport, ProblemOptions], None]] = {
    "identity": check_problem_identity,
    "initial": check_problem_initial,
    "reference": check_problem_reference,
    "initial_matches_reference": check_problem_initial_matches_reference,
    "primary_metric": check_problem_primary_metric,
    "jko": check_problem_jko,
    "initial_family": check_problem_initial_family,
}
"""The sections of :func:`check_problem` in the order it runs them; the conformance suite runs
each as its own test."""


def check_problem(
    problem: Problem, n: int = 1000, seed: int = 0, law_z: float = 6.0, ks_alpha: float = 1e-6
) -> ProblemReport:
    r"""Check a :class:`~wgfbench.Problem` against the contract; raise :class:`AssertionError` on
    the first failure, naming the problem and what failed.

    Checks (the sections of :data:`PROBLEM_CHECKS`): the name (``family/id``, lower case),
    family, version, dim, times (start at 0, increase), ``dt`` (positive, at most the smallest gap
    between snapshot times), ``box`` (right dimension, holds the reference samples), primary
    metric and mobility; the initial law and the reference at every snapshot time sample with
    shape (n, d), float64, on the CPU, finite, seed-reproducible, different for different seeds;
    ``log_density`` finite on the law's own samples where it has one; sample moments agree with
    ``mean(t)``/``cov(t)`` where given; for ``exact`` references, ``initial`` and the reference at
    ``t=0`` agree in law (moments and per-coordinate KS); ``energy.on_samples`` is finite and,
    where the reference has a density and a closed-form ``energy(t)``, the unbiased particle
    estimate :math:`\mathbb E[U(\rho)/\rho + V + \tfrac12W*\rho]` agrees with it; the primary
    metric is applicable (``radial_w2`` needs ``radial_centre``, ``bures_w2`` needs
    ``mean``/``cov``); the JKO iterates (if any) sample on the τ-grid; an initial family (if any)
    draws reproducibly.

    ``n``: samples per draw. ``seed``: base seed of every draw. ``law_z``: largest accepted
    moment/energy z-score. ``ks_alpha``: Bonferroni-corrected KS level. Returns a
    :class:`ProblemReport`.
    """
    opts = ProblemOptions(n=n, seed=seed, law_z=law_z, ks_alpha=ks_alpha)
    report = ProblemReport(problem=getattr(problem, "name", repr(problem)), n=n)
    for section in PROBLEM_CHECKS.values():
        try:
            section(problem, report, opts)
        except NotApplicable:
            continue
    return report


# ----------------------------------------------------------------------------------------------
# check_solver: a run, and the checks of a run


def _snapshot_tensors(trajectory: Trajectory) -> list[tuple[float, str, Tensor]]:
    return [(snap.t, key, value) for snap in trajectory.snapshots for key, value in snap.tensors().items()]


SPIED_METHODS = ("sample", "log_density", "mean", "cov", "energy", "at", "for_step")
"""The methods of a problem's references that :func:`run_solver` watches while a solver runs."""


@contextlib.contextmanager
def _watch_references(problem: Problem, reads: list[str]) -> Iterator[None]:
    """Record in ``reads`` every call of a public method of ``problem``'s reference objects while
    the block runs (an instance attribute shadows the class's method, removed afterwards). A
    solver sees a :class:`~wgfbench.ProblemView`, so any call is a route around it."""
    patched: list[tuple[Any, str]] = []

    def spy(role: str, obj: Any, method: str) -> Callable[..., Any]:
        original = getattr(obj, method)

        def recorded(*args: Any, **kwargs: Any) -> Any:
            reads.append(f"references[{role!r}].{method}")
            return original(*args, **kwargs)

        return recorded

    try:
        for role, reference in problem.references.items():
            for method in SPIED_METHODS:
                if not callable(getattr(type(reference), method, None)) or method in vars(reference):
                    continue
                try:
                    object.__setattr__(reference, method, spy(role, reference, method))
                except (AttributeError, TypeError):  # __slots__: this one cannot be watched
                    continue
                patched.append((reference, method))
        yield
    finally:
        for reference, method in patched:
            object.__delattr__(reference, method)


@dataclass
class SolverRun:
    """One ``prepare`` + ``solve`` of a solver on a problem, as the runner does it: the trajectory
    (``None`` when the run failed), the phases' wall times, the CPU time it used on the budget's
    clock (:func:`wgfbench.context.cpu_clock`, as the runner counts it, so a busy machine does not
    fail a healthy solver), the budget it ran under, the failure (an :class:`AssertionError`
    naming it) and the reference methods the solver called (it must call none)."""

    solver: str
    problem: str
    tier: str
    device: str
    seed: int
    budget_seconds: float
    trajectory: Trajectory | None = None
    prepare_seconds: float = math.nan
    solve_seconds: float = math.nan
    cpu_seconds: float = math.nan
    error: AssertionError | None = None
    reference_reads: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"check_solver[{self.solver} on {self.problem}, tier {self.tier}, {self.device}]"

    @property
    def elapsed(self) -> float:
        return self.prepare_seconds + self.solve_seconds

    def result(self) -> Trajectory:
        """The trajectory, or the run's failure raised again."""
        if self.error is not None:
            raise self.error
        if not isinstance(self.trajectory, Trajectory):
            raise _fail(
                self.prefix,
                f"solve() must return a wgfbench.Trajectory, got {type(self.trajectory).__name__}",
            )
        return self.trajectory


def solver_prefix(solver: Any, problem: Any, tier: str, device: str | torch.device) -> str:
    name = getattr(solver, "name", type(solver).__name__)
    return f"check_solver[{name} on {getattr(problem, 'name', repr(problem))}, tier {tier}, {device}]"


def run_solver(
    solver: Solver,
    problem: Problem,
    tier: str = "smoke",
    device: str | torch.device = "cpu",
    seed: int = 0,
    budget_seconds: float | None = None,
    artifacts: Path | None = None,
) -> SolverRun:
    """``prepare`` and ``solve`` as the runner calls them, with ``Context.create(seed, tier,
    device)``: solvers get a private copy of the problem's view (no references; ``get_problem``
    hands out views too) and the calls of the problem's reference methods are recorded; baseline
    and calibration rows get the problem. Never raises for a failing solver: the failure is kept
    in :attr:`SolverRun.error`."""
    tier_spec = get_tier(tier)
    device = torch.device(device)
    run = SolverRun(
        solver=getattr(solver, "name", type(solver).__name__),
        problem=problem.name,
        tier=tier_spec.name,
        device=str(device),
        seed=seed,
        budget_seconds=tier_spec.budget_seconds if budget_seconds is None else budget_seconds,
    )
    with contextlib.ExitStack() as stack:
        if artifacts is None:
            artifacts = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wgfbench-check-")))
        artifacts.mkdir(parents=True, exist_ok=True)
        ctx = Context.create(
            seed,
            tier=tier_spec,
            device=device,
            budget_seconds=budget_seconds,
            artifacts=artifacts,
            clock=cpu_clock,  # the runner's clock: a busy machine does not fail a healthy solver
        )
        seen = problem_as_seen_by(solver, problem)
        watch = solver.role == "solver"
        try:
            with _watch_references(problem, run.reference_reads) if watch else contextlib.nullcontext():
                start, cpu_start = time.perf_counter(), cpu_clock()
                with solver_scope(solver.role):
                    solver.prepare(seen, ctx)
                    prepared = time.perf_counter()
                    run.trajectory = solver.solve(seen, ctx)
                solved = time.perf_counter()
            run.prepare_seconds, run.solve_seconds = prepared - start, solved - prepared
            run.cpu_seconds = cpu_clock() - cpu_start
        except BudgetExceeded as exc:
            run.error = _fail(run.prefix, f"ran over the tier budget: {exc}")
            run.error.__cause__ = exc
        except NonFiniteOutput as exc:
            run.error = _fail(run.prefix, f"produced non-finite values: {exc}")
            run.error.__cause__ = exc
        except Exception as exc:
            run.error = _fail(run.prefix, f"prepare/solve raised {type(exc).__name__}: {exc}")
            run.error.__cause__ = exc
    return run


def check_solver_class(solver: Solver, prefix: str | None = None) -> None:
    """The class contract: a :class:`~wgfbench.Solver` instance whose class keeps the registration
    rules of :func:`wgfbench.contract.check_solver_class` (name, role, a
    :class:`~wgfbench.SolverConfig` ``Config``, presets only for known tiers and valid) and the
    kit-only rule :func:`wgfbench.contract.check_citation` (a BibTeX ``citation``); its config
    is a ``Config`` and every tier builds one."""
    from wgfbench import contract

    prefix = prefix or f"check_solver[{getattr(solver, 'name', type(solver).__name__)}]"
    if not isinstance(solver, Solver):
        raise _fail(prefix, f"expected a wgfbench.Solver instance, got {type(solver).__name__}")
    cls = type(solver)
    _contract(prefix, contract.check_solver_class, cls)
    _contract(prefix, contract.check_citation, cls)
    if not isinstance(solver.config, cls.Config):
        raise _fail(prefix, f"solver.config must be a {cls.Config.__name__}")
    for name in TIERS:
        try:
            cls.for_tier(name)
        except Exception as exc:
            raise _fail(prefix, f"the {name!r} preset does not build a valid config: {exc}") from exc


def check_solver_supports(solver: Solver, problem: Problem, prefix: str) -> str | None:
    """``supports`` (called on the view, as in a run) returns ``True`` or a non-empty reason;
    returns ``None`` when supported, else the reason."""
    with solver_scope(solver.role):
        support = solver.supports(problem_as_seen_by(solver, problem))
    if support is True:
        return None
    if not (isinstance(support, str) and support) and support is not False:
        raise _fail(prefix, f"supports() must return True or a reason string, got {support!r}")
    return support if isinstance(support, str) and support else "not supported"


def check_run_budget(run: SolverRun) -> None:
    """``prepare`` + ``solve`` finished within the budget, counted like the runner counts it (CPU
    seconds per torch thread: :func:`wgfbench.context.cpu_clock`); a solver that never calls
    ``ctx.check_budget()`` is caught here."""
    run.result()
    if run.cpu_seconds > run.budget_seconds:
        raise _fail(
            run.prefix,
            f"used {run.cpu_seconds:.2f} CPU s per thread ({run.elapsed:.2f} s of wall time), over the "
            f"budget of {run.budget_seconds:.1f} s",
        )


def check_run_shapes(run: SolverRun, problem: Problem) -> None:
    """One snapshot per ``problem.times``, at those times; particles (n ≥ 1, d) of a floating
    dtype with ``log_rho``/``weights`` of shape (n,); grid densities with d axes on a box of
    dimension d. Finiteness is :func:`check_run_finite`'s."""
    trajectory, prefix, dim = run.result(), run.prefix, problem.dim
    times = problem.times
    if len(trajectory.snapshots) != len(times) or any(
        abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(trajectory.times, times, strict=False)
    ):
        raise _fail(
            prefix,
            f"invalid trajectory: snapshot times {trajectory.times} do not match the problem's times "
            f"{tuple(times)}",
        )
    for snap in trajectory.snapshots:
        if isinstance(snap, ParticleSnapshot):
            n = snap.x.shape[0] if snap.x.ndim else 0
            if snap.x.ndim != 2 or snap.x.shape[1] != dim:
                raise _fail(
                    prefix,
                    f"invalid trajectory: t={snap.t}: particles must have shape (n, {dim}), "
                    f"got {tuple(snap.x.shape)}",
                )
            if not snap.x.is_floating_point():
                raise _fail(prefix, f"t={snap.t:g}: particles must be floating point, got {snap.x.dtype}")
            if n < 1:
                raise _fail(prefix, f"t={snap.t:g}: no particles")
            for name, tensor in (("log_rho", snap.log_rho), ("weights", snap.weights)):
                if tensor is not None and tuple(tensor.shape) != (n,):
                    raise _fail(
                        prefix,
                        f"invalid trajectory: t={snap.t}: {name} must have shape ({n},), "
                        f"got {tuple(tensor.shape)}",
                    )
        elif isinstance(snap, GridSnapshot):
            if snap.rho.ndim != dim:
                raise _fail(
                    prefix,
                    f"invalid trajectory: t={snap.t}: grid density must have {dim} axes, got {snap.rho.ndim}",
                )
            if snap.box.dim != problem.dim:
                raise _fail(
                    prefix, f"t={snap.t:g}: grid box has dimension {snap.box.dim}, expected {problem.dim}"
                )
        else:
            raise _fail(prefix, f"t={snap.t:g}: snapshot of unknown type {type(snap).__name__}")


def check_run_finite(run: SolverRun) -> None:
    """Every snapshot tensor is finite, and no step-log energy is infinite (NaN means "not
    computed")."""
    trajectory, prefix = run.result(), run.prefix
    for snap in trajectory.snapshots:
        for name, tensor in snap.tensors().items():
            if not torch.isfinite(tensor).all():
                raise _fail(prefix, f"non-finite output: non-finite values in {name} at t={snap.t}")
    for k, step in enumerate(trajectory.steps):
        if math.isinf(step.energy) or math.isinf(step.energy_stderr):
            raise _fail(prefix, f"step log entry {k}: infinite energy (use NaN when not computed)")


def check_run_mass(run: SolverRun, mass_tol: float = 1e-6, problem: Problem | None = None) -> None:
    """Unit mass: particle weights non-negative and summing to 1; grid densities non-negative
    with mass 1 (± ``mass_tol``); on a ``problem`` posed inside no-flux walls (``box.wall``),
    every particle inside the box (the mass never leaves it)."""
    trajectory, prefix = run.result(), run.prefix
    walls = problem.box if problem is not None and problem.box is not None and problem.box.wall else None
    for snap in trajectory.snapshots:
        if isinstance(snap, ParticleSnapshot) and walls is not None:
            x = snap.x.detach().cpu().double()
            low, high = torch.tensor(walls.low, dtype=x.dtype), torch.tensor(walls.high, dtype=x.dtype)
            slack = 1e-9 * (high - low)
            outside = int(((x < low - slack) | (x > high + slack)).any(dim=1).sum())
            if outside:
                raise _fail(
                    prefix,
                    f"t={snap.t:g}: {outside} of {x.shape[0]} particles lie outside the no-flux walls "
                    f"of problem.box {walls} (reflect them, or decline walled problems in supports)",
                )
        if isinstance(snap, ParticleSnapshot) and snap.weights is not None:
            if (snap.weights < 0).any():
                raise _fail(prefix, f"t={snap.t:g}: negative particle weights")
            total = float(snap.weights.sum())
            if abs(total - 1.0) > mass_tol:
                raise _fail(prefix, f"t={snap.t:g}: particle weights sum to {total:.8g}, not 1")
        elif isinstance(snap, GridSnapshot):
            if (snap.rho < 0).any():
                raise _fail(
                    prefix,
                    f"t={snap.t:g}: grid density has negative values (min {float(snap.rho.min()):.3g})",
                )
            if abs(snap.mass - 1.0) > mass_tol:
                raise _fail(prefix, f"t={snap.t:g}: grid mass is {snap.mass:.8g}, not 1")


def check_run_steps(run: SolverRun, problem: Problem) -> None:
    """The step log is ordered in time within ``[0, final_time]`` with finite non-negative steps
    and iteration counts; a ``jko_tau`` is positive and divides every snapshot time."""
    trajectory, prefix = run.result(), run.prefix
    t_final = problem.final_time
    previous = 0.0
    for k, step in enumerate(trajectory.steps):
        if not (-1e-12 <= step.t <= t_final * (1 + 1e-9) + 1e-12) or step.t < previous - 1e-12:
            raise _fail(prefix, f"step log entry {k}: t={step.t} is out of order or outside [0, {t_final}]")
        if not (math.isfinite(step.tau) and step.tau >= 0):
            raise _fail(prefix, f"step log entry {k}: tau={step.tau} must be finite and >= 0")
        if step.iterations < 0:
            raise _fail(prefix, f"step log entry {k}: negative iteration count")
        previous = step.t
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


def check_run_no_reference_access(run: SolverRun) -> None:
    """The solver called no method of the problem's references (it is handed a
    :class:`~wgfbench.ProblemView`; a call means it reached them another way)."""
    if run.reference_reads:
        reads = ", ".join(sorted(set(run.reference_reads)))
        raise _fail(
            run.prefix,
            f"the solver read the problem's references while it ran ({reads}); a solver gets a "
            "wgfbench.ProblemView and must never reach the references",
        )


def _same_values(a: Tensor, b: Tensor) -> bool:
    """Equal values, NaN where the other has NaN (finiteness is :func:`check_run_finite`'s)."""
    if torch.equal(a, b):
        return True
    if a.shape != b.shape or not a.is_floating_point():
        return False
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


def check_runs_identical(first: SolverRun, second: SolverRun) -> None:
    """Two runs with the same seed gave bitwise identical snapshots (times, shapes, values)."""
    a_snaps, b_snaps = _snapshot_tensors(first.result()), _snapshot_tensors(second.result())
    prefix = first.prefix
    if [(t, k, tuple(v.shape)) for t, k, v in a_snaps] != [(t, k, tuple(v.shape)) for t, k, v in b_snaps]:
        raise _fail(prefix, "not reproducible: the same seed gave snapshots of different times or shapes")
    for (t, key, a), (_, _, b) in zip(a_snaps, b_snaps, strict=True):
        if not _same_values(a, b):
            diff = float((a.double() - b.double()).abs().max())
            raise _fail(
                prefix,
                f"not reproducible: the same seed gave different {key!r} at t={t:g} "
                f"(max |diff| {diff:.3g}); "
                "draw only from ctx.generator / ctx.cpu_generator, never from global RNGs",
            )


def check_runs_agree_in_law(
    cpu: SolverRun, other: SolverRun, law_z: float = 6.0, ks_alpha: float = 1e-6, grid_l1: float = 1e-6
) -> dict[str, float]:
    """A run on another device (CUDA) against the CPU run with the same seed: the same snapshot
    times and kinds; particle snapshots agree in law (moment z-scores at most ``law_z``,
    per-coordinate two-sample KS p at least ``ks_alpha``; the devices' random streams differ, so
    the samples do); grid densities agree to ``grid_l1`` in L1 (cell mass). Returns the worst
    statistics."""
    a, b = cpu.result(), other.result()
    prefix = other.prefix
    if len(a.snapshots) != len(b.snapshots):
        raise _fail(prefix, f"{len(b.snapshots)} snapshots on {other.device}, {len(a.snapshots)} on cpu")
    worst = {"mean_z": 0.0, "cov_z": 0.0, "ks_p": 1.0, "grid_l1": 0.0}
    for sa, sb in zip(a.snapshots, b.snapshots, strict=True):
        if type(sa) is not type(sb):
            raise _fail(
                prefix, f"t={sa.t:g}: a {type(sb).__name__} on {other.device}, {type(sa).__name__} on cpu"
            )
        if isinstance(sa, ParticleSnapshot):
            xa, xb = sa.x.detach().cpu().double(), sb.x.detach().cpu().double()
            if sa.weights is not None or sb.weights is not None or xa.shape[0] < 20 or xb.shape[0] < 20:
                continue  # weighted or tiny outputs: no two-sample test here
            if torch.equal(xa, xb):
                continue
            z_mean, z_cov = moment_z_scores(xa, xb)
            p = marginal_ks_pvalue(xa, xb)
            worst["mean_z"], worst["cov_z"] = max(worst["mean_z"], z_mean), max(worst["cov_z"], z_cov)
            worst["ks_p"] = min(worst["ks_p"], p)
            if z_mean > law_z or z_cov > law_z or p < ks_alpha:
                raise _fail(
                    prefix,
                    f"t={sa.t:g}: the {other.device} output differs in law from the cpu output "
                    f"(mean |z| = {z_mean:.1f}, covariance |z| = {z_cov:.1f}, marginal KS p = {p:.2g})",
                )
        else:
            ra, rb = sa.rho.detach().cpu().double(), sb.rho.detach().cpu().double()
            if ra.shape != rb.shape:
                raise _fail(
                    prefix, f"t={sa.t:g}: grid of shape {tuple(rb.shape)} vs {tuple(ra.shape)} on cpu"
                )
            cell = sa.mass / float(ra.sum()) if float(ra.sum()) else 1.0
            l1 = float((ra - rb).abs().sum()) * cell
            worst["grid_l1"] = max(worst["grid_l1"], l1)
            if l1 > grid_l1:
                raise _fail(
                    prefix, f"t={sa.t:g}: the {other.device} density differs from cpu by {l1:.3g} in L1"
                )
    return worst


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
    finish within the budget (the tier's, or ``budget_seconds``) without raising; the solver
    (role ``"solver"``) never calls a method of the problem's references; the trajectory has one
    snapshot per ``problem.times`` of the right shapes, with finite values; particle weights are
    non-negative and sum to 1; grid densities are non-negative with unit mass (±``mass_tol``);
    the step log is ordered in time with non-negative steps; a ``jko_tau`` divides every snapshot
    time; and, with ``check_determinism``, a second run with the same seed gives identical output.
    Returns a :class:`SolverReport`.
    """
    tier_spec = get_tier(tier)
    device = torch.device(device)
    prefix = solver_prefix(solver, problem, tier_spec.name, device)
    check_solver_class(solver, prefix)
    report = SolverReport(
        solver=solver.name,
        problem=problem.name,
        tier=tier_spec.name,
        device=str(device),
        seed=seed,
        supported=True,
    )
    report.checks.append("class")
    reason = check_solver_supports(solver, problem, prefix)
    if reason is not None:
        if require_support:
            raise _fail(prefix, f"the solver does not support this problem: {reason}")
        report.supported, report.reason = False, reason
        return report
    report.checks.append("supports")

    def run() -> SolverRun:
        return run_solver(solver, problem, tier_spec.name, device, seed, budget_seconds)

    first = run()
    trajectory = first.result()
    report.prepare_seconds, report.solve_seconds = first.prepare_seconds, first.solve_seconds
    check_run_budget(first)
    report.checks.append("budget")
    check_run_no_reference_access(first)
    report.checks.append("no_reference_access")
    check_run_shapes(first, problem)
    check_run_finite(first)
    report.checks.append("validate")
    check_run_mass(first, mass_tol, problem)
    report.checks.append("snapshots")
    check_run_steps(first, problem)
    report.checks.append("steps")
    if trajectory.jko_tau is not None:
        report.checks.append("jko_tau")
    if check_determinism:
        check_runs_identical(first, run())
        report.checks.append("deterministic")
    report.n_snapshots = len(trajectory.snapshots)
    report.n_steps = len(trajectory.steps)
    report.info = dict(trajectory.info)
    return report


__all__ = [
    "PROBLEM_CHECKS",
    "NotApplicable",
    "ProblemOptions",
    "ProblemReport",
    "SolverReport",
    "SolverRun",
    "check_problem",
    "check_run_budget",
    "check_run_finite",
    "check_run_mass",
    "check_run_no_reference_access",
    "check_run_shapes",
    "check_run_steps",
    "check_runs_agree_in_law",
    "check_runs_identical",
    "check_solver",
    "check_solver_class",
    "check_solver_supports",
    "marginal_ks_pvalue",
    "moment_z_scores",
    "moment_z_scores_exact",
    "ornstein_uhlenbeck_problem",
    "run_solver",
]
