r"""Deep JKO (Lee, Wang & Li): Algorithm 2 with Algorithm 1 for (re)sampling.

For each JKO step :math:`n = 1..K` a potential network :math:`\phi^n_\theta` (warm-started from
:math:`\phi^{n-1}_\theta`; the first from a random initialisation) is trained with Adam on the loss
(25) (:mod:`.loss`) at particles :math:`x^n_j\sim\rho^n` carrying :math:`\log\rho^n(x^n_j)`, until
the relative change of the loss on the same batch,
:math:`|L(\theta^{(k)}) - L(\theta^{(k-1)})| / |L(\theta^{(k-1)})|`, falls below ``tol`` (after
``min_iterations``; at most ``max_iterations``). Every ``resample_every`` = C iterations
(:math:`c \bmod C = 0`, so at the start of every step) the batch is drawn afresh from
:math:`\rho^0`, with :math:`\log\rho^0` from the problem, and pushed through the stored maps
:math:`T^1..T^{n-1}` (Algorithm 1): each map moves the particles by the neural ODE and updates
:math:`\log\rho^{i+1}(x^{i+1}_j) = \log\rho^i(x^i_j) - l_j^{N_\tau}` (eq. (26)). ``resample_every = 0``
instead carries particles forward through the newest map only (O(1) pushes per step instead of
O(n)): either the batch itself, or (``pool_size`` > ``n_particles``) a pool of ``pool_size`` samples
of :math:`\rho^0` pushed through the stored maps as they are trained, from which a fresh minibatch of
``n_particles`` is drawn (``ctx.generator``) at every iteration. A fixed batch that is reused for
every iteration overfits in higher dimension: in 10-D with 300 particles the training loss kept
decreasing while the energy of independent particles grew by a factor ~10 (measured); fresh
minibatches are what the paper's resampling provides. With minibatches the stopping rule compares
an exponential average (weight 0.1) of the minibatch losses instead of the losses themselves.

Output: a fixed evaluation cloud of ``tier.n_eval`` samples of :math:`\rho^0` is pushed through
each map as it is trained; the snapshots are that cloud with its log-densities
(:class:`ParticleSnapshot` with ``log_rho``) and each :class:`StepRecord` holds
``energy.on_particles`` of the cloud (value and standard error), the iterations and the final loss.

Slips of the paper's text, and what is implemented instead (issue 4, item 4):

* the log-determinant starts at :math:`l^0 = 0` (the flow map at :math:`\tau=0` is the identity),
  not :math:`\log|\det\nabla^2\phi|` as printed in (25) and Algorithm 1;
* Algorithm 1's numerator is :math:`\rho^i(x^i_j)`, the density of the particle before map
  :math:`i+1`, not :math:`\rho^n(x_j)`;
* the velocity is :math:`v = -\nabla\phi` throughout (§3.1 writes :math:`+\nabla\phi`; (25) and
  §3.2 use :math:`-\nabla\phi`);
* the interaction term of (25) carries the ½ of (2) and (32).

Other choices: the JKO step is cut so that snapshot times are hit exactly (each interval into
equal steps of at most ``dt``); ``Trajectory.jko_tau`` is set whenever all steps are equal, so the
scorer also reports the distance to the exact JKO iterates (optimisation error) next to the
distance to the PDE solution (optimisation + time-discretisation error). The first network is
initialised with a scaled normal (see :class:`~.network.PotentialResNet`) and trained for
``first_step_factor`` × the iteration limits; the Kalman–Wasserstein velocity is
:math:`-C(0)\nabla\phi` (:mod:`.loss`).

Known limits (measured at the quick tier, loaded 2-core CPU): ``nonlinear-mobility/saturation-2d``
decreases the energy to ≈ 0.285 by t ≈ 0.3 and then stalls (E∞ = 0.221): the barrier
:math:`\rho/M(\rho)` of (24) makes motion near the cap expensive.

For the Kalman–Wasserstein metric the network input is standardised by the batch moments at the
start of each step, :math:`\hat x = C(0)^{-1/2}(x - m(0))` (stored with the map). Without it
``kalman-wasserstein/elliptic-2d`` (:math:`\rho_0` at :math:`u_2\approx100`) saturated 95 % of the
log-cosh units: :math:`\phi` was nearly piecewise linear, the cloud could not contract and the
energy only fell from 2483 to 1087 by t = 2 (124 by t ≈ 18.5); with it, 110 after the first step
and 75 at t = 2 (E∞ = 56.9), measured at the quick tier.

Checkpoints (``checkpoint_every``; 1 at the large tier, 0 = off at smoke and quick): after every
``checkpoint_every``-th JKO step and the last, the state the loop continues from goes to
``ctx.save_checkpoint`` — the network (the warm start), the stored maps when Algorithm 1 pushes
fresh batches through them (``resample_every`` > 0), the carried pool and the evaluation cloud with
their log-densities, the snapshots and step records so far, and (through the context) both
generators' states. ``solve`` draws its initial network and particles as usual, then loads the
newest checkpoint for the same schedule and continues with the step after it: the resumed
trajectory equals the uninterrupted one.
"""

from __future__ import annotations

import copy
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
from wgfbench.problem import Problem
from wgfbench.solver import Solver, SolverConfig, Support, step_ends
from wgfbench.trajectory import ParticleSnapshot, StepRecord, Trajectory

from .flow import VelocityField, push
from .loss import jko_loss, mobility_weight
from .network import PotentialResNet

_TIME_TOL = 1e-12

# Hyperparameters per tier and problem family. "large" is the paper's §4 (Lee, Wang & Li):
# KL/Fokker–Planck 2-D: N_τ = 1, Δt = 0.025, 3 layers × 64, batch 1000, lr 1e-5, 10 000 iterations;
# 10-D: Δt = 0.2, same otherwise; porous medium 2-D: N_τ = 2, Δt = 1e-3, 3 × 128, batch 1000,
# lr 1e-5, 10 000 iterations; 6-D/10-D: Δt = 5e-4, lr 1e-6, 20 000 iterations (the iteration counts
# are read as per-JKO-step caps of Algorithm 2's loop). The paper gives no settings for §4.3/§4.4
# beyond the model; there we use the 2-D KL network with N_τ = 2, Δt = 0.01 (nonlinear mobility)
# and Δt = 0.05 (Kalman–Wasserstein). "quick" (≤ 3 min per case on 2 CPU cores): 2 layers × 32,
# minibatches of 300 from a carried pool of 4000, Adam lr 5e-3, 10–40 iterations per step (160 for
# the first), RK4 with N_τ = 1, Δt = problem.dt (2.5 × problem.dt = 0.025 for the porous medium)
# and at most 40 JKO steps. "smoke": 2 × 16, a fixed batch of 100, 2–5 iterations per step,
# Δt = 4 × problem.dt, at most 20 steps.
_BASE: dict[str, dict[str, Any]] = {
    "smoke": dict(
        width=16,
        depth=2,
        n_particles=100,
        lr=1e-2,
        max_iterations=5,
        min_iterations=2,
        tol=1e-4,
        n_inner=1,
        scheme="rk4",
        resample_every=0,
        pool_size=0,
        first_step_factor=4,
        dt_factor=4.0,
        max_steps=20,
    ),
    "quick": dict(
        width=32,
        depth=2,
        n_particles=300,
        lr=5e-3,
        max_iterations=40,
        min_iterations=10,
        tol=1e-4,
        n_inner=1,
        scheme="rk4",
        resample_every=0,
        pool_size=4000,
        first_step_factor=4,
        dt_factor=1.0,
        max_steps=40,
    ),
    "large": dict(
        width=64,
        depth=3,
        n_particles=1000,
        lr=1e-5,
        max_iterations=10000,
        min_iterations=100,
        tol=1e-7,
        n_inner=1,
        scheme="rk4",
        resample_every=100,
        pool_size=0,
        first_step_factor=1,
        dt=0.025,
    ),
}
_FAMILY: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {},
    "quick": {
        "porous-medium": dict(dt_factor=2.5, n_inner=1),
        # With lr 5e-3 and N_τ = 1 the saturation-2d energy rose again after t ≈ 0.4 (0.28 → 0.46);
        # with these it settles at ≈ 0.285 (E∞ = 0.221), measured.
        "nonlinear-mobility": dict(n_inner=2, lr=2e-3),
    },
    "large": {
        "fokker-planck": dict(dt=0.025, n_inner=1),
        "fokker-planck/ou-10d": dict(dt=0.2),
        "fokker-planck/four-wells-10d": dict(dt=0.2),
        "porous-medium": dict(width=128, n_inner=2, dt=1e-3),
        "porous-medium/barenblatt-6d-m2": dict(dt=5e-4, lr=1e-6, max_iterations=20000),
        "porous-medium/barenblatt-10d-m2": dict(dt=5e-4, lr=1e-6, max_iterations=20000),
        "nonlinear-mobility": dict(n_inner=2, dt=0.01),
        "kalman-wasserstein": dict(dt=0.05),
    },
}
SUPPORTED_FAMILIES = (
    "fokker-planck",
    "porous-medium",
    "aggregation",
    "kalman-wasserstein",
    "nonlinear-mobility",
)


class DeepJKOConfig(SolverConfig):
    """Configuration of :class:`DeepJKO`. Fields left ``None`` come from the per-family table of
    the ``table`` tier (module constants ``_BASE``/``_FAMILY``); set them to override.

    ``width`` m, ``depth`` L (hidden layers), ``rank`` of the optional OT-Flow quadratic part,
    ``n_particles`` (batch N), ``lr`` (Adam), ``max_iterations``/``min_iterations``/``tol`` (stopping
    rule per JKO step), ``n_inner`` N_τ, ``scheme`` (``rk4``/``euler``), ``dt`` (JKO step; else
    ``problem.dt × dt_factor``), ``resample_every`` C (0: carry particles forward), ``pool_size``
    (carried pool for minibatches; 0: none), ``derivatives``
    (``explicit`` recurrences or ``autograd``), ``trace`` (``exact``/``hutchinson`` with
    ``probes``), ``first_step_factor`` (iteration multiplier of the first, cold-started step),
    ``max_steps`` (cap on the number of JKO steps: Δt ≥ final time / max_steps),
    ``checkpoint_every`` (save the state through ``ctx.save_checkpoint`` every that many JKO steps
    and after the last; 0: never).
    """

    table: Literal["smoke", "quick", "large"] = "quick"
    width: PositiveInt | None = None
    depth: PositiveInt | None = None
    rank: NonNegativeInt = 0
    n_particles: PositiveInt | None = None
    lr: PositiveFloat | None = None
    max_iterations: PositiveInt | None = None
    min_iterations: NonNegativeInt | None = None
    tol: PositiveFloat | None = None
    n_inner: PositiveInt | None = None
    scheme: Literal["rk4", "euler"] | None = None
    dt: PositiveFloat | None = None
    dt_factor: PositiveFloat | None = None
    resample_every: NonNegativeInt | None = None
    pool_size: NonNegativeInt | None = None
    max_steps: PositiveInt | None = None
    first_step_factor: PositiveInt | None = None
    derivatives: Literal["explicit", "autograd"] = "explicit"
    trace: Literal["exact", "hutchinson"] = "exact"
    probes: PositiveInt = 4
    init_scale: PositiveFloat = 0.1
    checkpoint_every: NonNegativeInt = 0


@dataclass(frozen=True)
class Settings:
    """Resolved hyperparameters for one problem (config over family table over tier base)."""

    width: int
    depth: int
    rank: int
    n_particles: int
    lr: float
    max_iterations: int
    min_iterations: int
    tol: float
    n_inner: int
    scheme: str
    dt: float
    resample_every: int
    pool_size: int
    first_step_factor: int


@dataclass
class StoredMap:
    """One trained JKO map: network parameters and, for Kalman–Wasserstein, the frozen C(0)^{1/2}."""

    state: dict[str, Tensor]
    precond_root: Tensor | None


jko_schedule = step_ends  # the name deep-jko's tests and benchmarks use


class DeepJKO(Solver):
    """Deep JKO: neural-ODE particle JKO with densities along trajectories (module docstring)."""

    name = "deep-jko"
    Config = DeepJKOConfig
    citation = r"""@article{lee2024deep,
  title   = {Deep {JKO}: Time-Implicit Particle Methods for General Nonlinear Gradient Flows},
  author  = {Lee, Wonjun and Wang, Li and Li, Wuchen},
  journal = {Journal of Computational Physics},
  volume  = {514}, pages = {113187}, year = {2024}
}
@inproceedings{onken2021otflow,
  title     = {{OT-Flow}: Fast and Accurate Continuous Normalizing Flows via Optimal Transport},
  author    = {Onken, Derek and Wu Fung, Samy and Li, Xingjian and Ruthotto, Lars},
  booktitle = {AAAI Conference on Artificial Intelligence}, volume = {35}, pages = {9223--9232}, year = {2021}
}"""
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"table": "smoke"},
        "quick": {"table": "quick"},
        "large": {"table": "large", "checkpoint_every": 1},
    }

    config: DeepJKOConfig

    def supports(self, problem: Problem) -> Support:
        if problem.family not in SUPPORTED_FAMILIES:
            return (
                f"deep-jko covers the paper's families {', '.join(SUPPORTED_FAMILIES)}; "
                f"not {problem.family!r}"
            )
        if not problem.initial.has_density:
            return "deep-jko carries densities along trajectories and needs log rho_0 of the initial law"
        if problem.box is not None and problem.box.wall:
            return (
                "the problem is posed on its box with no-flux walls (problem.box.wall): the "
                "neural-ODE particles move in the whole space and cannot respect walls"
            )
        return True

    def resolved_settings(self, problem: Problem) -> dict[str, Any]:
        """The config and the table's settings resolved for ``problem`` (recorded with each case and
        hashed into its key, so editing a table entry reruns exactly the cases it affects)."""
        return {**self.config.model_dump(mode="json"), "resolved": dataclasses.asdict(self.settings(problem))}

    def settings(self, problem: Problem) -> Settings:
        """Config fields over the family table (most specific: problem name, then family) over the
        tier base of ``config.table``."""
        table = self.config.table
        merged: dict[str, Any] = dict(_BASE[table])
        merged.update(_FAMILY[table].get(problem.family, {}))
        merged.update(_FAMILY[table].get(problem.name, {}))
        explicit = {k: v for k, v in self.config.model_dump().items() if v is not None}
        if "dt_factor" in explicit and "dt" not in explicit:
            merged.pop("dt", None)
        merged.update(explicit)
        dt = merged.get("dt") or problem.dt * merged["dt_factor"]
        if merged.get("max_steps"):
            # A cap on the number of JKO steps (tier cost): Δt ≥ final time / max_steps.
            dt = max(dt, problem.final_time / merged["max_steps"])
        return Settings(
            width=merged["width"],
            depth=merged["depth"],
            rank=merged["rank"],
            n_particles=merged["n_particles"],
            lr=merged["lr"],
            max_iterations=merged["max_iterations"],
            min_iterations=merged["min_iterations"],
            tol=merged["tol"],
            n_inner=merged["n_inner"],
            scheme=merged["scheme"],
            dt=float(dt),
            resample_every=merged["resample_every"],
            pool_size=merged["pool_size"],
            first_step_factor=merged["first_step_factor"],
        )

    # ------------------------------------------------------------------------------------------

    def _field(self, net: PotentialResNet, precond_root: Tensor | None, training: bool) -> VelocityField:
        trace = self.config.trace if training else "exact"
        return VelocityField(
            net=net,
            derivatives=self.config.derivatives if training else "explicit",
            trace=trace,
            precond_root=precond_root,
        )

    def _push_through(
        self, maps: list[StoredMap], net: PotentialResNet, x: Tensor, log_rho: Tensor, s: Settings, mobility
    ) -> tuple[Tensor, Tensor]:
        """Algorithm 1: push ``x`` (N, d) with ``log_rho`` (N,) through the stored maps in order."""
        work = copy.deepcopy(net)
        weight = mobility_weight(mobility)
        with torch.no_grad():
            for stored in maps:
                work.load_state_dict(stored.state)
                out = push(
                    self._field(work, stored.precond_root, False), x, log_rho, s.n_inner, s.scheme, weight
                )
                x, log_rho = out.z, out.log_rho
        return x, log_rho

    def _sample_initial(self, problem: Problem, n: int, ctx: Context) -> tuple[Tensor, Tensor]:
        x = problem.initial.sample(n, ctx.cpu_generator)
        return ctx.to(x), ctx.to(problem.initial.log_density(x))

    def _save(
        self,
        ctx: Context,
        done: int,
        ends: list[float],
        net: PotentialResNet,
        maps: list[StoredMap],
        particles: dict[str, Tensor],
        snapshots: list[ParticleSnapshot],
        steps: list[StepRecord],
        counters: dict[str, Any],
    ) -> None:
        """Checkpoint the loop's state after ``done`` JKO steps (module docstring)."""
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        for i, stored in enumerate(maps):
            tensors.update({f"maps.{i}.{k}": v for k, v in stored.state.items()})
            if stored.precond_root is not None:
                tensors[f"maps.{i}.precond_root"] = stored.precond_root
        tensors.update(particles)
        for i, snap in enumerate(snapshots):
            assert snap.log_rho is not None
            tensors[f"snapshots.{i}.x"], tensors[f"snapshots.{i}.log_rho"] = snap.x, snap.log_rho
        meta = {
            "ends": ends,
            "maps": len(maps),
            "snapshot_times": [snap.t for snap in snapshots],
            "steps": [dataclasses.asdict(record) for record in steps],
            **counters,
        }
        ctx.save_checkpoint(done, tensors, meta)

    def _restore(
        self, checkpoint: Checkpoint, net: PotentialResNet
    ) -> tuple[list[StoredMap], dict[str, Tensor], list[ParticleSnapshot], list[StepRecord]]:
        """Load the network from ``checkpoint`` (written by :meth:`_save`) and return the stored
        maps, the particles (evaluation cloud and pool with their log-densities, by name), the
        snapshots and the steps."""
        tensors, meta = checkpoint.tensors, checkpoint.meta

        def block(prefix: str) -> dict[str, Tensor]:
            return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}

        net.load_state_dict(block("net."))
        maps = []
        for i in range(meta["maps"]):
            state = block(f"maps.{i}.")
            maps.append(StoredMap(state=state, precond_root=state.pop("precond_root", None)))
        particles = {k: tensors[k] for k in ("x_eval", "lr_eval", "x_pool", "lr_pool")}
        snapshots = [
            ParticleSnapshot(t=t, x=tensors[f"snapshots.{i}.x"], log_rho=tensors[f"snapshots.{i}.log_rho"])
            for i, t in enumerate(meta["snapshot_times"])
        ]
        return maps, particles, snapshots, [StepRecord(**record) for record in meta["steps"]]

    def solve(self, problem: Problem, ctx: Context) -> Trajectory:
        """Algorithm 2 from ``problem.initial`` to ``problem.times[-1]`` (module docstring)."""
        reason = self.supports(problem)
        if reason is not True:
            raise ValueError(f"deep-jko does not support {problem.name}: {reason}")
        s = self.settings(problem)
        cfg = self.config
        d = problem.dim
        energy, mobility = problem.energy, problem.mobility
        kalman = mobility.kind == "kalman"
        weight = mobility_weight(mobility)
        net = PotentialResNet(
            d, s.width, s.depth, rank=s.rank, init_scale=cfg.init_scale,
            generator=ctx.generator, device=ctx.device, dtype=ctx.dtype,
        )  # fmt: skip
        ends = jko_schedule(problem.times, s.dt)
        taus = [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)]
        uniform = max(taus) - min(taus) <= 1e-9 * max(taus)

        x_eval, lr_eval = self._sample_initial(problem, ctx.tier.n_eval, ctx)
        minibatch = s.resample_every == 0 and s.pool_size > s.n_particles
        # Carried particles: the pool (minibatches drawn from it) or the batch itself.
        x_pool, lr_pool = self._sample_initial(problem, s.pool_size if minibatch else s.n_particles, ctx)
        x_batch, lr_batch = x_pool, lr_pool
        snapshots = [ParticleSnapshot(t=0.0, x=x_eval.clone(), log_rho=lr_eval.clone())]
        steps: list[StepRecord] = []
        maps: list[StoredMap] = []
        total_iterations, train_seconds = 0, 0.0
        start = 0
        resumed = ctx.load_checkpoint(expect={"ends": ends}) if cfg.checkpoint_every else None
        if resumed is not None:
            start = resumed.step
            maps, particles, snapshots, steps = self._restore(resumed, net)
            x_eval, lr_eval = particles["x_eval"], particles["lr_eval"]
            x_pool, lr_pool = particles["x_pool"], particles["lr_pool"]
            x_batch, lr_batch = x_pool, lr_pool
            total_iterations, train_seconds = resumed.meta["iterations"], resumed.meta["train_seconds"]
            ctx.logger.info("deep-jko: resumed after JKO step %d of %d", start, len(ends))
        t = ends[start - 1] if start else 0.0
        for n in range(start, len(ends)):
            t_end, tau = ends[n], taus[n]
            factor = s.first_step_factor if n == 0 else 1
            max_it, min_it = s.max_iterations * factor, s.min_iterations * factor
            optimiser = torch.optim.Adam(net.parameters(), lr=s.lr)
            precond_root: Tensor | None = None
            previous: float | None = None
            loss_value = math.nan
            started = time.perf_counter()
            iterations = 0
            for c in range(max_it):
                ctx.check_budget()
                if s.resample_every > 0 and c % s.resample_every == 0:
                    x0, l0 = self._sample_initial(problem, s.n_particles, ctx)
                    x_batch, lr_batch = self._push_through(maps, net, x0, l0, s, mobility)
                    previous = None
                if kalman and (precond_root is None or (s.resample_every > 0 and c % s.resample_every == 0)):
                    source = x_pool if minibatch else x_batch
                    centred = source - source.mean(0)
                    cov = centred.T @ centred / source.shape[0]
                    first = precond_root is None
                    precond_root = torch.linalg.cholesky(cov)
                    if first:
                        # Standardise the network input by the same moments, x̂ = C(0)^{-1/2}(x - m):
                        # the elliptic posterior sits at u₂ ≈ 100, where the raw input saturated 95 %
                        # of the log-cosh units (φ then nearly piecewise linear: no contraction, no
                        # entropy change; energy 2483 → 1087 at t = 2 instead of → 75, measured).
                        eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
                        inv_root = torch.linalg.solve_triangular(precond_root, eye, upper=False)
                        net.set_normalisation(source.mean(0), inv_root)
                if minibatch:
                    idx = torch.randperm(s.pool_size, generator=ctx.generator, device=ctx.device)
                    x_batch, lr_batch = x_pool[idx[: s.n_particles]], lr_pool[idx[: s.n_particles]]
                field = self._field(net, precond_root, True)
                if cfg.trace == "hutchinson":
                    field.draw_probes(x_batch.shape[0], cfg.probes, ctx.generator, x_batch)
                optimiser.zero_grad(set_to_none=True)
                value = jko_loss(field, x_batch, lr_batch, energy, tau, s.n_inner, s.scheme, weight)  # type: ignore[arg-type]
                if not torch.isfinite(value.loss):
                    raise NonFiniteOutput(f"deep-jko: non-finite loss at JKO step {n + 1}, iteration {c}")
                value.loss.backward()
                optimiser.step()
                iterations = c + 1
                loss_value = float(value.loss.detach())
                # Minibatches: the rule compares an exponential average of the losses (weight 0.1);
                # a fixed batch compares the losses themselves (the paper's rule).
                current = (
                    loss_value if not minibatch or previous is None else 0.9 * previous + 0.1 * loss_value
                )
                if previous is not None and iterations >= min_it:
                    if abs(current - previous) <= s.tol * abs(previous):
                        break
                previous = current
            train_seconds += time.perf_counter() - started
            total_iterations += iterations
            stored = StoredMap(
                state={k: v.detach().clone() for k, v in net.state_dict().items()},
                precond_root=None if precond_root is None else precond_root.clone(),
            )
            maps.append(stored)
            # Carry the batch and the evaluation cloud through the new map (exact trace, no grad).
            with torch.no_grad():
                if s.resample_every == 0:
                    out = push(
                        self._field(net, stored.precond_root, False),
                        x_pool,
                        lr_pool,
                        s.n_inner,
                        s.scheme,
                        weight,
                    )  # type: ignore[arg-type]
                    x_pool, lr_pool = out.z, out.log_rho
                    x_batch, lr_batch = x_pool, lr_pool
                out = push(
                    self._field(net, stored.precond_root, False), x_eval, lr_eval, s.n_inner, s.scheme, weight
                )  # type: ignore[arg-type]
                x_eval, lr_eval = out.z, out.log_rho
            if not (torch.isfinite(x_eval).all() and torch.isfinite(lr_eval).all()):
                raise NonFiniteOutput(f"deep-jko: non-finite particles after JKO step {n + 1}")
            t = t_end
            estimate = energy.on_particles(x_eval, lr_eval)
            steps.append(
                StepRecord(
                    t=t, tau=tau, energy=estimate.value, energy_stderr=estimate.stderr,
                    iterations=iterations, loss=loss_value,
                )
            )  # fmt: skip
            if any(abs(t - ts) <= _TIME_TOL * max(1.0, ts) for ts in problem.times[1:]):
                snapshots.append(ParticleSnapshot(t=t, x=x_eval.clone(), log_rho=lr_eval.clone()))
            if cfg.checkpoint_every and ((n + 1) % cfg.checkpoint_every == 0 or n + 1 == len(ends)):
                # Algorithm 1 pushes fresh batches through the stored maps; otherwise only the
                # network (the warm start) is needed.
                self._save(
                    ctx, n + 1, ends, net, maps if s.resample_every > 0 else [],
                    dict(x_eval=x_eval, lr_eval=lr_eval, x_pool=x_pool, lr_pool=lr_pool),
                    snapshots, steps, {"iterations": total_iterations, "train_seconds": train_seconds},
                )  # fmt: skip
            ctx.progress(n + 1, len(ends))
        info: dict[str, float | int | str] = {
            "scheme": f"deep-jko/{s.scheme}/{cfg.derivatives}/{cfg.trace}",
            "n_steps": len(ends),
            "dt": s.dt,
            "width": s.width,
            "depth": s.depth,
            "n_particles": s.n_particles,
            "n_inner": s.n_inner,
            "iterations": total_iterations,
            "seconds_per_step": train_seconds / len(ends),
        }
        return Trajectory(snapshots=snapshots, steps=steps, jko_tau=taus[0] if uniform else None, info=info)
