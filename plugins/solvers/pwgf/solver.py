r"""PWGF: parameterized Wasserstein gradient flow (Jin, Liu, Wu, Ye & Zhou, arXiv 2404.19133).

The density is a push-forward :math:`\rho_\theta = T_\theta\#\lambda` of the standard Gaussian
:math:`\lambda` through a neural-ODE map (:mod:`.pushforward`), and the Wasserstein gradient flow of
:math:`\mathcal E` becomes an ODE on the parameters,

.. math:: \dot\theta = -\big(G(\theta) + \varepsilon I\big)^{-1}\nabla_\theta F(\theta),\qquad
          F(\theta) = \mathcal E(\rho_\theta),\quad
          G(\theta) = \mathbb E_z\big[J_\theta(z)^\top J_\theta(z)\big],

with the pullback metric applied matrix-free and solved by conjugate gradients (:mod:`.metric`) and
:math:`F` a Monte Carlo estimate on fresh reference points every step: internal energy through
the log-determinant, :math:`\log\rho_\theta(T_\theta z) = \log\lambda(z) - \log\det\nabla T_\theta(z)`,
potential by Monte Carlo, interaction as a U-statistic (``Energy.particle_terms``). No
spatial grid and no inner nonconvex optimisation: one gradient and one linear solve per step.

``prepare`` fits :math:`\theta_0` to the problem's :math:`\rho_0` by maximum likelihood on fresh
samples of :math:`\rho_0` (Adam; the map is started at the affine map of :math:`\rho_0`'s moments,
exact for a Gaussian) and records the fit time and the fit's KL divergence
:math:`\mathrm{KL}(\rho_0\|\rho_{\theta_0})` on held-out samples (when :math:`\rho_0` has a
density). ``solve`` then steps :math:`\theta` with forward Euler (the paper's scheme) or Heun's
second-order method (``scheme="heun"``), the snapshot intervals cut into equal steps of at most
``dt``, and hands the scorer ``n_output`` push-forward samples per snapshot with their exact
log-densities.

Per step the trajectory log (:class:`StepRecord`) holds the energy of a fixed evaluation set of
``n_eval`` points (value and standard error; the same points every step, so consecutive energies
are compared with common random numbers), the conjugate-gradient iterations and the relative
residual of the last solve. Failed solves and rising energies are handled as follows:

* a solve that does not reach ``cg_tol`` in ``cg_max_iterations`` is *refined*: it is restarted
  from its best iterate with :math:`\varepsilon` ten times larger, up to ``refinements`` times (a
  larger :math:`\varepsilon` shortens the step along the poorly determined directions of
  :math:`G`); a solve still unconverged is used (CG's best iterate) and counted in
  ``info["unconverged"]``, its residual logged;
* a step is *rejected* when the batch free energy rises (the same reference points before and
  after the step: for a small enough step it must fall, since :math:`\nabla F\cdot\dot\theta =
  -\nabla F^\top(G+\varepsilon I)^{-1}\nabla F < 0`) and retried at half the size; each accepted
  substep doubles the size again, up to the scheduled step, and the size carries over to the next
  step. Stiff transients get small explicit steps only while they last: on
  ``kalman-wasserstein/elliptic-2d`` (ρ0 at :math:`u_2\approx100`, energy 2393) the first
  direction raised the energy at every step from 0.17 down to 0.001. Below ``dt /
  2**max_halvings`` a rising but finite substep is accepted; a non-finite one fails the case. The
  count of rejections is ``info["halvings"]``.

Hyperparameters. The unofficial JAX implementation (SebasGutHdz/Parametric-Wasserstein-Flows)
solves with MINRES/CG at ε ≈ 1e-6 and tolerances around 1e-6 for tens of iterations. Here that
regime diverged: at ε = 1e-4 with a relative tolerance of 1e-3 the solve resolved the nearly
singular directions of G (hidden units while :math:`W_2\approx0`), η grew huge, steps were
rejected 111 times and the ou-2d validation error rose to 2.5; ε = 1e-3 with a relative tolerance
of 1e-2 (4–8 warm-started CG iterations) is stable. Width, RK4 steps of the map, batch, fit
iterations, scheme and ``dt`` per tier were chosen on members of the initial families of
``fokker-planck/ou-2d`` and ``porous-medium/barenblatt-2d-m2`` (draws from the seed stream
``pwgf/validation``, never the scored problems' own ρ0), by their trajectory error against the
member's exact solution (``benchmarks/pwgf.py validate``), never on the scored problems'
leaderboard numbers: on OU the time step dominates and Heun halves Euler's error at equal ``dt``
(0.031 vs 0.064), on the porous medium the fit dominates (600 fit iterations: 0.079 vs 0.112 at
300), so ``quick`` uses Heun and 600 fit iterations. The table is in ``docs/pwgf.md``. ``quick``
is sized to ≤ 3 min per case on 2 CPU cores.

Supported: every problem whose initial law can be sampled, in every dimension, for the Wasserstein,
nonlinear-mobility and Kalman–Wasserstein metrics; not problems whose box is a no-flux wall
(``problem.box.wall``, e.g. ``fokker-planck/box-1d``): the map pushes into the whole space.

Checkpoints (``checkpoint_every``; 1 at the large tier, 0 = off at smoke and quick): after every
``checkpoint_every``-th step and the last, ``ctx.save_checkpoint`` stores θ, the last direction η
(the next solve's warm start), the step size ``h``, the evaluation points, the fitted map (θ0 and
the standardisation), the counters and step records, and per snapshot its θ and the generator
state its samples were drawn from (a few numbers instead of ``n_output`` points; the snapshot is
redrawn on resume). ``prepare`` loads the newest checkpoint for the same schedule instead of
fitting, with the generators' states, and ``solve`` continues with the step after it: the resumed
trajectory equals the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor

from wgfbench.context import Checkpoint, Context
from wgfbench.errors import NonFiniteOutput
from wgfbench.problem import ProblemLike
from wgfbench.solver import Solver, SolverConfig, Support, step_ends
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

from .fit import FitResult, fit_initial
from .metric import PullbackMetric, SolveResult, conjugate_gradient
from .pushforward import PushForward, log_standard_normal

_TIME_TOL = 1e-12

_TIERS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        width=8, flow_steps=2, batch=200, fit_iterations=80, fit_batch=256, scheme="euler",
        dt_factor=4.0, max_steps=20, cg_max_iterations=20,
    ),
    "quick": dict(
        width=32, flow_steps=4, batch=1000, fit_iterations=600, fit_batch=1000, scheme="heun",
        dt_factor=1.0, max_steps=100, cg_max_iterations=100,
    ),
    "large": dict(
        width=128, flow_steps=8, batch=4000, fit_iterations=4000, fit_batch=4000, scheme="heun",
        dt_factor=0.5, max_steps=400, cg_max_iterations=400,
    ),
}  # fmt: skip


class PWGFConfig(SolverConfig):
    """Configuration of :class:`PWGF`; ``None`` fields come from the ``table`` tier (``_TIERS``).

    Map: ``width`` m (hidden units of the velocity field), ``flow_steps`` (RK4 steps of the neural
    ODE), ``init_scale`` (spread of the initial hidden weights). Fit: ``fit_iterations`` Adam steps
    of ``fit_batch`` fresh samples of ρ0 at ``fit_lr``. Flow: ``scheme`` (``euler``, the paper's,
    or ``heun``), ``dt`` (else ``problem.dt × dt_factor``, raised so that at most ``max_steps``
    steps are taken), ``batch`` reference points per step, ``trace`` (``exact`` or ``hutchinson``
    log-determinant), ``epsilon`` (Tikhonov term of G), ``cg_tol`` (relative residual),
    ``cg_max_iterations``, ``refinements`` (restarts with 10ε), ``max_halvings`` (step rejection).
    ``checkpoint_every``: save the state through ``ctx.save_checkpoint`` every that many steps and
    after the last (0: never)."""

    table: Literal["smoke", "quick", "large"] = "quick"
    width: PositiveInt | None = None
    flow_steps: PositiveInt | None = None
    init_scale: PositiveFloat = 1.0
    fit_iterations: NonNegativeInt | None = None
    fit_batch: PositiveInt | None = None
    fit_lr: PositiveFloat = 1e-2
    scheme: Literal["euler", "heun"] | None = None
    dt: PositiveFloat | None = None
    dt_factor: PositiveFloat | None = None
    max_steps: PositiveInt | None = None
    batch: PositiveInt | None = None
    trace: Literal["exact", "hutchinson"] = "exact"
    epsilon: PositiveFloat = 1e-3
    cg_tol: PositiveFloat = 1e-2
    cg_max_iterations: PositiveInt | None = None
    refinements: NonNegativeInt = 2
    max_halvings: NonNegativeInt = 20
    checkpoint_every: NonNegativeInt = 0


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one problem (config over the tier table)."""

    width: int
    flow_steps: int
    fit_iterations: int
    fit_batch: int
    dt: float
    batch: int
    cg_max_iterations: int
    scheme: str


@dataclass
class Direction:
    """:math:`\\eta = (G+\\varepsilon I)^{-1}\\nabla F` at θ on one batch, with the batch energy F."""

    eta: Tensor
    free_energy: float
    solve: SolveResult
    refinements: int


class PWGF(Solver):
    """Parameterized Wasserstein gradient flow (module docstring)."""

    name = "pwgf"
    Config = PWGFConfig
    citation = r"""@article{jin2024pwgf,
  title   = {Parameterized {W}asserstein Gradient Flow},
  author  = {Jin, Yijie and Liu, Shu and Wu, Hao and Ye, Xiaojing and Zhou, Haomin},
  journal = {arXiv preprint arXiv:2404.19133}, year = {2024}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"table": "smoke"},
        "quick": {"table": "quick"},
        "large": {"table": "large", "checkpoint_every": 1},
    }

    config: PWGFConfig

    def __init__(self, config=None):
        super().__init__(config)
        self._fitted: tuple[str, FitResult] | None = None
        self._resumed: tuple[str, Checkpoint] | None = None

    # -- configuration -------------------------------------------------------------------------

    def supports(self, problem: ProblemLike) -> Support:
        if problem.box is not None and problem.box.wall:
            return (
                "the problem is posed on its box with no-flux walls (problem.box.wall): the "
                "push-forward map moves mass in the whole space and cannot respect walls"
            )
        return True

    def resolved_settings(self, problem: ProblemLike) -> dict[str, Any]:
        """The config and the table's settings resolved for ``problem`` (recorded with each case and
        hashed into its key, so editing a table entry reruns exactly the cases it affects)."""
        return {**self.config.model_dump(mode="json"), "resolved": dataclasses.asdict(self.settings(problem))}

    def settings(self, problem: ProblemLike) -> Settings:
        merged = dict(_TIERS[self.config.table])
        merged.update({k: v for k, v in self.config.model_dump().items() if v is not None})
        dt = merged.get("dt") or problem.dt * merged["dt_factor"]
        dt = max(dt, problem.final_time / merged["max_steps"])
        return Settings(
            width=merged["width"],
            flow_steps=merged["flow_steps"],
            fit_iterations=merged["fit_iterations"],
            fit_batch=merged["fit_batch"],
            dt=float(dt),
            batch=merged["batch"],
            cg_max_iterations=merged["cg_max_iterations"],
            scheme=merged["scheme"],
        )

    # -- prepare: fit θ0 ----------------------------------------------------------------------

    def prepare(self, problem: ProblemLike, ctx: Context) -> None:
        """Fit :math:`\\theta_0` to :math:`\\rho_0` (maximum likelihood, :mod:`.fit`), or take
        the fitted map from the case's newest checkpoint, which ``solve`` then resumes."""
        s = self.settings(problem)
        cfg = self.config
        self._resumed = None
        if cfg.checkpoint_every:
            checkpoint = ctx.load_checkpoint(expect={"ends": step_ends(problem.times, s.dt)})
            if checkpoint is not None:
                t, fit = checkpoint.tensors, checkpoint.meta["fit"]
                flow = PushForward(problem.dim, s.width, s.flow_steps, t["flow.shift"], t["flow.scale"])
                self._fitted = (problem.name, FitResult(flow, t["theta0"], **fit))
                self._resumed = (problem.name, checkpoint)
                ctx.logger.info("pwgf: resuming after step %d from a checkpoint", checkpoint.step)
                return
        fitted = fit_initial(
            problem, s.width, s.flow_steps, s.fit_iterations, s.fit_batch, cfg.fit_lr, cfg.init_scale, ctx
        )
        self._fitted = (problem.name, fitted)

    def _fit(self, problem: ProblemLike, ctx: Context) -> FitResult:
        if self._fitted is None or self._fitted[0] != problem.name:
            self.prepare(problem, ctx)
        assert self._fitted is not None
        return self._fitted[1]

    # -- one step of the parameterised flow ---------------------------------------------------

    def _reference(self, n: int, dim: int, ctx: Context) -> Tensor:
        return ctx.randn(n, dim)

    def free_energy(self, flow: PushForward, theta: Tensor, z: Tensor, problem: ProblemLike) -> Tensor:
        """Batch estimate of :math:`F(\\theta)` on reference points ``z`` (differentiable)."""
        x, ld = flow.push_with_logdet(theta, z)
        return problem.energy.particle_terms(x, log_standard_normal(z) - ld).mean()

    def direction(
        self,
        flow: PushForward,
        theta: Tensor,
        z: Tensor,
        problem: ProblemLike,
        ctx: Context,
        warm: Tensor | None,
    ) -> Direction:
        """:math:`\\eta = (G+\\varepsilon I)^{-1}\\nabla_\\theta F` on the batch ``z``, refined on
        failure (module docstring)."""
        cfg = self.config
        s = self.settings(problem)
        theta = theta.detach().requires_grad_(True)
        probe = None
        if cfg.trace == "hutchinson":
            probe = torch.randint(0, 2, z.shape, generator=ctx.generator, device=z.device).to(z.dtype) * 2 - 1
        x, ld = flow.push_with_logdet(theta, z, probe)
        log_rho = log_standard_normal(z) - ld
        value = problem.energy.particle_terms(x, log_rho).mean()
        (grad,) = torch.autograd.grad(value, theta)
        theta = theta.detach()
        weights, precision = None, None
        mobility = problem.mobility
        if mobility.kind == "nonlinear":
            rho = log_rho.detach().exp()
            m = mobility.M(rho)  # type: ignore[misc]
            # κ = ρ/M(ρ), capped where M ≤ 0 (ρ at or above a saturation cap), as in deep-jko.
            capped = (rho / m.clamp_min(1e-300)).clamp_max(1e6)
            weights = torch.where(m > 0, capped, torch.full_like(rho, 1e6))
        elif mobility.kind == "kalman":
            xd = x.detach()
            centred = xd - xd.mean(0)
            precision = torch.linalg.inv(centred.T @ centred / (xd.shape[0] - 1))
        metric = PullbackMetric(flow.push, theta, z, weights, precision)
        epsilon = cfg.epsilon
        result = conjugate_gradient(metric.apply, grad, epsilon, cfg.cg_tol, s.cg_max_iterations, warm)
        refinements = 0
        while not result.converged and refinements < cfg.refinements:
            refinements += 1
            epsilon *= 10.0
            result = conjugate_gradient(
                metric.apply, grad, epsilon, cfg.cg_tol, s.cg_max_iterations, result.x
            )
        if warm is not None and not float(grad @ result.x) > 0:
            # A warm start can leave CG at a non-descent direction; from zero every CG iterate has
            # ∇F·η > 0, so a small enough step lowers F.
            return self.direction(flow, theta, z, problem, ctx, None)
        if not torch.isfinite(result.x).all():
            raise NonFiniteOutput("pwgf: non-finite parameter velocity from the metric solve")
        return Direction(result.x, float(value.detach()), result, refinements)

    def attempt(
        self,
        flow: PushForward,
        theta: Tensor,
        z: Tensor,
        h: float,
        problem: ProblemLike,
        ctx: Context,
        warm: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any], bool]:
        """One Euler or Heun step of size ``h`` on batch ``z``: the candidate θ, the step's solve
        statistics (``after``: the batch free energy at the candidate), and whether it is accepted
        (the batch free energy did not rise)."""
        first = self.direction(flow, theta, z, problem, ctx, warm)
        stats = {
            "iterations": first.solve.iterations,
            "residual": first.solve.residual,
            "unconverged": int(not first.solve.converged),
            "refinements": first.refinements,
            "eta": first.eta,
        }
        if self.settings(problem).scheme == "heun":
            predictor = theta - h * first.eta
            second = self.direction(flow, predictor, z, problem, ctx, first.eta)
            candidate = theta - 0.5 * h * (first.eta + second.eta)
            stats["iterations"] += second.solve.iterations
            stats["residual"] = max(first.solve.residual, second.solve.residual)
            stats["unconverged"] += int(not second.solve.converged)
            stats["refinements"] += second.refinements
        else:
            candidate = theta - h * first.eta
        with torch.no_grad():
            after = float(self.free_energy(flow, candidate, z, problem))
        accepted = math.isfinite(after) and (
            after <= first.free_energy or not math.isfinite(first.free_energy)
        )
        stats["after"] = after
        return candidate, stats, accepted

    def step(
        self,
        flow: PushForward,
        theta: Tensor,
        z: Tensor,
        tau: float,
        problem: ProblemLike,
        ctx: Context,
        warm: Tensor | None,
        h: float | None = None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """θ advanced by ``tau`` on batch ``z`` in substeps of at most the current size ``h``
        (≤ ``tau``; default ``tau``): a rejected substep is retried at half the size, an accepted
        one doubles it again up to ``tau`` (module docstring). Returns θ and the statistics, with
        ``h`` the size to start the next step at. Below ``tau / 2**max_halvings`` a rising but finite
        substep is accepted, a non-finite one raises :class:`NonFiniteOutput`."""
        h = tau if h is None else min(h, tau)
        h_min = tau * 2.0**-self.config.max_halvings
        totals = {"iterations": 0, "residual": 0.0, "unconverged": 0, "refinements": 0, "halvings": 0}
        remaining = tau
        while remaining > 1e-12 * tau:
            ctx.check_budget()
            size = min(h, remaining)
            candidate, stats, accepted = self.attempt(flow, theta, z, size, problem, ctx, warm)
            for key in ("iterations", "unconverged", "refinements"):
                totals[key] += stats[key]
            totals["residual"] = max(totals["residual"], stats["residual"])
            if not accepted and size > h_min:
                totals["halvings"] += 1
                h = 0.5 * size
                warm = None  # a cold start at the same θ: the warm one may be what failed
                continue
            if not accepted and not math.isfinite(stats["after"]):
                raise NonFiniteOutput(
                    f"pwgf: non-finite energy after a step of {size:g} at the smallest size"
                )
            theta, warm = candidate, stats["eta"]
            remaining -= size
            if accepted and size >= h:
                h = min(2.0 * h, tau)
        return theta, {**totals, "eta": warm, "h": h}

    # -- solve ----------------------------------------------------------------------------------

    def _save(
        self,
        ctx: Context,
        done: int,
        fit: FitResult,
        marks: list[tuple[float, Tensor, Tensor]],
        tensors: dict[str, Tensor],
        meta: dict[str, Any],
    ) -> None:
        """Checkpoint after ``done`` steps: the loop's ``tensors`` and ``meta`` with the fitted map
        and, per snapshot, its time, θ and generator state (``marks``; module docstring)."""
        tensors = {**tensors, "theta0": fit.theta, "flow.shift": fit.flow.shift, "flow.scale": fit.flow.scale}
        for i, (_, theta, state) in enumerate(marks):
            tensors[f"snapshots.{i}.theta"], tensors[f"snapshots.{i}.generator"] = theta, state
        meta = {
            **meta,
            "snapshot_times": [mark[0] for mark in marks],
            "fit": {"seconds": fit.seconds, "loss": fit.loss, "kl": fit.kl, "kl_stderr": fit.kl_stderr},
        }
        ctx.save_checkpoint(done, tensors, meta)

    def solve(self, problem: ProblemLike, ctx: Context) -> Trajectory:
        """Fit (if ``prepare`` did not), then step θ from 0 to the final time, or from the step
        after the checkpoint ``prepare`` loaded (module docstring)."""
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"pwgf does not support {problem.name}: {reason}")
        s = self.settings(problem)
        cfg = self.config
        fit = self._fit(problem, ctx)
        resumed = self._resumed[1] if self._resumed is not None and self._resumed[0] == problem.name else None
        self._resumed = None
        flow, theta = fit.flow, fit.theta.clone()
        d = problem.dim
        ends = step_ends(problem.times, s.dt)
        # Per snapshot: its time, θ and the state of the generator its samples are drawn from,
        # enough to redraw it exactly (what a checkpoint stores instead of n_output points).
        marks: list[tuple[float, Tensor, Tensor]] = []

        def snapshot(t: float, theta: Tensor, generator: torch.Generator) -> ParticleSnapshot:
            marks.append((t, theta, generator.get_state()))
            z = torch.randn(ctx.tier.n_output, d, generator=generator, device=ctx.device, dtype=ctx.dtype)
            x, lr = flow.sample(theta, z)
            if not (torch.isfinite(x).all() and torch.isfinite(lr).all()):
                raise NonFiniteOutput(f"pwgf: non-finite samples at t={t:g}")
            return ParticleSnapshot(t=t, x=x, log_rho=lr)

        totals = {"iterations": 0, "unconverged": 0, "refinements": 0, "halvings": 0}
        warm: Tensor | None = None
        h: float | None = None
        start, spent = 0, 0.0
        if resumed is None:
            z_eval = self._reference(ctx.tier.n_eval, d, ctx)
            snapshots = [snapshot(0.0, theta, ctx.generator)]
            steps: list[StepRecord] = []
        else:
            tensors, meta = resumed.tensors, resumed.meta
            start, spent = resumed.step, meta["step_seconds"]
            theta, warm, z_eval, h = tensors["theta"], tensors.get("eta"), tensors["z_eval"], meta["h"]
            # The snapshots so far, redrawn from their θ and generator states.
            totals = {key: int(value) for key, value in meta["totals"].items()}
            steps = [StepRecord(**record) for record in meta["steps"]]
            snapshots = []
            for i, ts in enumerate(meta["snapshot_times"]):
                replay = torch.Generator(device=ctx.device)
                replay.set_state(tensors[f"snapshots.{i}.generator"].cpu())
                snapshots.append(snapshot(ts, tensors[f"snapshots.{i}.theta"], replay))
        started = time.perf_counter() - spent
        t = ends[start - 1] if start else 0.0
        for n in range(start, len(ends)):
            t_end = ends[n]
            ctx.check_budget()
            tau = t_end - t
            z = self._reference(s.batch, d, ctx)
            theta, stats = self.step(flow, theta, z, tau, problem, ctx, warm, h)
            warm, h = stats["eta"], stats["h"]
            for key in totals:
                totals[key] += stats[key]
            t = t_end
            with torch.no_grad():
                x, ld = flow.push_with_logdet(theta, z_eval)
                estimate = problem.energy.on_particles(x, log_standard_normal(z_eval) - ld)
            if not math.isfinite(estimate.value):
                raise NonFiniteOutput(f"pwgf: non-finite energy after step {n + 1} (t={t:g})")
            steps.append(
                StepRecord(
                    t=t, tau=tau, energy=estimate.value, energy_stderr=estimate.stderr,
                    iterations=stats["iterations"], residual=stats["residual"],
                )
            )  # fmt: skip
            if any(abs(t - ts) <= _TIME_TOL * max(1.0, ts) for ts in problem.times[1:]):
                snapshots.append(snapshot(t, theta, ctx.generator))
            if cfg.checkpoint_every and ((n + 1) % cfg.checkpoint_every == 0 or n + 1 == len(ends)):
                loop = {"theta": theta, "z_eval": z_eval, **({} if warm is None else {"eta": warm})}
                counters = {
                    "ends": ends, "h": h, "totals": totals, "step_seconds": time.perf_counter() - started,
                    "steps": [dataclasses.asdict(record) for record in steps],
                }  # fmt: skip
                self._save(ctx, n + 1, fit, marks, loop, counters)
            ctx.progress(n + 1, len(ends))
        taus = [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)]
        info: dict[str, float | int | str] = {
            "scheme": f"pwgf/{s.scheme}/{self.config.trace}",
            "n_steps": len(ends),
            "dt": s.dt,
            "width": s.width,
            "flow_steps": s.flow_steps,
            "parameters": flow.layout.size,
            "batch": s.batch,
            "fit_seconds": fit.seconds,
            "fit_kl": fit.kl,
            "fit_kl_stderr": fit.kl_stderr,
            "seconds_per_step": (time.perf_counter() - started) / max(1, len(ends)),
            "max_tau": max(taus),
            **{k: int(v) for k, v in totals.items()},
        }
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=None, info=info)
