r"""Training the JKO operator: the Learn-to-Evolve alternation and its two comparison arms.

Feng, Wang, Needell & Lai, *Learn to Evolve: Self-supervised Neural JKO Operator for Wasserstein
Gradient Flow*, arXiv:2601.05583 (2026). Only the abstract is public; what it fixes is the loss
(the JKO objective itself at :math:`G_\theta(\rho)`, no numerically solved trajectory) and the
alternation (roll the current operator forward from the pool without gradient, add the generated
states, update :math:`\theta` on the pool). The schedule below is this implementation's:

* the pool starts as the :math:`K` training densities (``members``);
* ``rounds`` rounds; each does ``steps_per_round`` Adam steps on minibatches of ``batch`` states
  drawn uniformly from the pool, minimising the mean of
  :math:`J_\tau(T_\theta[\rho];\rho) - \mathcal E(\rho)` (:mod:`.objective`; the constant only
  centres the logged loss);
* after every round but the last, the trajectory fronts (initially the :math:`K` densities) are
  advanced ``rollout_steps`` JKO steps by the current operator under ``torch.no_grad`` and every
  generated state joins the pool. States reach step :math:`(\text{rounds}-1)\cdot
  \text{rollout\_steps}`; :attr:`TrainingLog.steps_seen` counts the steps the operator was
  trained to take, one more;
* the learning rate follows a cosine decay from ``lr`` to ``lr/20`` over all Adam steps, and
  gradients are clipped to norm ``clip``; a minibatch with a non-finite loss is skipped and
  counted;
* a generated state that folded (:func:`_healthy`) ends its trajectory instead of joining the pool:
  a folded state's energy dwarfs every other and would take over the minibatches (measured:
  porous-medium training diverged to a loss of 10²⁰ without this guard).

Arms (``arm``), all with the same network, the same number of Adam steps and the same batch
size, so that they compare at equal optimisation cost:

* ``learn-to-evolve``: the alternation above;
* ``initial-only``: the ablation: the pool stays the :math:`K` initial densities;
* ``supervised``: the upper reference for what self-supervision costs: the pool is the
  ``fv-jko`` trajectories (:class:`~wgfbench_plugins.solvers.fv_jko.FVJKOScheme`, same grid,
  same :math:`\tau`) of the :math:`K` densities over the same horizon, and the loss is the
  mass-weighted relative squared error of the pushed log-density against the classical one at the
  moved particles, :math:`\sum_k m_k(\log\rho'_k - \log\rho_{n+1}(y_k))^2 / \sum_k m_k(\log\rho_n(x_k)
  - \log\rho_{n+1}(x_k))^2` (:math:`\rho_{n+1}` read bilinearly from the grid), the classical
  solves charged to training time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from wgfbench_plugins.solvers.fv_jko import FVJKOScheme, NewtonFailure, floor_density
from wgfbench_plugins.solvers.learn_to_evolve.cloud import Cloud, Stencil
from wgfbench_plugins.solvers.learn_to_evolve.objective import cloud_energy, jko_objective
from wgfbench_plugins.solvers.learn_to_evolve.operator import TransportOperator

from wgfbench.grid import Grid

ARMS = ("learn-to-evolve", "initial-only", "supervised")
FOLD_LIMIT = 2.0
"""A generated state whose peak density is more than this many times its predecessor's is a fold
(:func:`_healthy`) and is not added to the pool."""


@dataclass(frozen=True)
class Schedule:
    """How long and on what the operator trains (module docstring)."""

    rounds: int
    steps_per_round: int
    rollout_steps: int
    batch: int
    lr: float
    clip: float = 1.0

    @property
    def adam_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def horizon(self) -> int:
        """Steps of the deepest pool state."""
        return (self.rounds - 1) * self.rollout_steps


@dataclass
class TrainingLog:
    """What training did: per-round mean loss and pool size, totals and the wall time."""

    arm: str
    rounds: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    adam_steps: int = 0
    steps_seen: int = 1
    classical_seconds: float = 0.0
    skipped_steps: int = 0
    dropped_states: int = 0

    def summary(self) -> dict[str, float | int | str]:
        last = self.rounds[-1] if self.rounds else {}
        return {
            "arm": self.arm,
            "training_seconds": round(self.seconds, 3),
            "adam_steps": self.adam_steps,
            "steps_seen": self.steps_seen,
            "pool_size": int(last.get("pool", 0)),
            "final_loss": float(last.get("loss", math.nan)),
            "classical_seconds": round(self.classical_seconds, 3),
            "skipped_steps": self.skipped_steps,
            "dropped_states": self.dropped_states,
        }


def grid_cloud(rho: Tensor, grid: Grid) -> Cloud:
    """Grid densities (B, *shape), positive, as clouds on the cell centres (midpoint quadrature)."""
    B = rho.shape[0]
    x = grid.centres(rho.dtype, rho.device).reshape(1, -1, grid.dim).expand(B, -1, -1)
    mass = rho.reshape(B, -1) * grid.cell_volume
    mass = mass / mass.sum(dim=1, keepdim=True)
    return Cloud(x.contiguous(), torch.log(mass / grid.cell_volume), mass)


def classical_trajectories(
    operator: TransportOperator, initial: Cloud, n_steps: int, check_budget: Callable[[], None]
) -> tuple[Tensor, Tensor]:
    """Pairs :math:`(\rho_n, \rho_{n+1})` (grid densities) of ``fv-jko`` trajectories, on the
    operator's grid and step, of the training densities ``initial`` read on that grid, over
    ``n_steps`` steps (a failed Newton solve is retried as two half steps, then four …)."""
    grid, tau = operator.grid, operator.tau
    scheme = FVJKOScheme(grid, operator.energy, None, backend="scipy", tol=1e-9, max_newton=60)
    starts = grid_density(initial, grid)
    inputs, outputs = [], []
    for k in range(starts.shape[0]):
        rho = floor_density(starts[k].detach().cpu().to(torch.float64), grid, 1e-10)
        for _ in range(n_steps):
            check_budget()
            pieces, nxt = 1, None
            while nxt is None:
                try:
                    nxt = rho
                    for _ in range(pieces):
                        nxt, _stats = scheme.step(nxt, tau / pieces)
                except NewtonFailure:
                    pieces, nxt = 2 * pieces, None
                    if pieces > 64:
                        raise
            inputs.append(rho)
            outputs.append(nxt)
            rho = nxt
    device = initial.x.device
    return torch.stack(inputs).to(device), torch.stack(outputs).to(device)


def grid_density(cloud: Cloud, grid: Grid) -> Tensor:
    """A cloud read on a grid: its log-density at the cell centres when the particles sit on them
    (lattice clouds), else its deposited masses."""
    centres = grid.centres(cloud.x.dtype, cloud.x.device).reshape(1, -1, grid.dim)
    if cloud.x.shape[1] == centres.shape[1] and torch.allclose(cloud.x, centres.expand_as(cloud.x)):
        rho = torch.exp(cloud.log_rho) * (cloud.mass > 0)
        rho = rho / (rho.sum(dim=1, keepdim=True) * grid.cell_volume)
        return rho.reshape(cloud.batch, *grid.shape)
    return Stencil(cloud.x, grid).deposit(cloud.mass)


def _healthy(new: Cloud, old: Cloud, log: TrainingLog) -> tuple[Cloud, Cloud]:
    """The members of a generated batch that are usable training states, with their predecessors:
    finite, and not folded: no particle's density more than :data:`FOLD_LIMIT` times the largest
    density of its predecessor (a JKO step of these flows changes the peak density by a few per
    cent; a fold multiplies it by up to :math:`1/` :data:`~.operator.FOLD_DET`). Dropped members
    are counted; their trajectories end there."""
    finite = torch.isfinite(new.x).flatten(1).all(dim=1) & torch.isfinite(new.log_rho).all(dim=1)

    def top(cloud: Cloud) -> Tensor:
        return torch.where(cloud.mass > 0, cloud.log_rho, torch.full_like(cloud.log_rho, -math.inf)).amax(
            dim=1
        )

    keep = finite & (top(new) < top(old) + math.log(FOLD_LIMIT))
    log.dropped_states += int((~keep).sum())
    index = keep.nonzero().flatten().tolist()
    return new.select(index), old.select(index)


def _supervised_loss(operator: TransportOperator, rho: Tensor, target: Tensor) -> Tensor:
    grid = operator.grid
    cloud = grid_cloud(rho, grid)
    moved, _ = operator(cloud)
    log_target = torch.log(target)[:, None]
    at_new, _ = Stencil(moved.x, grid).interpolate(log_target)
    change = (cloud.mass * (torch.log(target.reshape(target.shape[0], -1)) - cloud.log_rho) ** 2).sum(dim=1)
    error = (cloud.mass * (moved.log_rho - at_new[..., 0]) ** 2).sum(dim=1)
    return (error / change.clamp_min(1e-30)).mean()


def train_operator(
    operator: TransportOperator,
    initial: Cloud,
    schedule: Schedule,
    arm: str,
    generator: torch.Generator,
    check_budget: Callable[[], None] = lambda: None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> TrainingLog:
    """Train ``operator.network`` in place on the training densities ``initial`` (a cloud of K
    members) (module docstring) and return the log."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; known: {', '.join(ARMS)}")
    started = time.perf_counter()
    log = TrainingLog(arm=arm, adam_steps=schedule.adam_steps)
    energy, tau = operator.energy, operator.tau
    if arm == "supervised":
        t0 = time.perf_counter()
        inputs, targets = classical_trajectories(operator, initial, schedule.horizon + 1, check_budget)
        log.classical_seconds = time.perf_counter() - t0
        size = inputs.shape[0]
    else:
        pool = initial.detach()
        size = pool.batch
    log.steps_seen = 1 if arm == "initial-only" else schedule.horizon + 1
    network = operator.network
    optimiser = torch.optim.Adam(network.parameters(), lr=schedule.lr)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=max(1, schedule.adam_steps), eta_min=schedule.lr / 20
    )
    fronts = initial.detach()
    done = 0
    for round_ in range(schedule.rounds):
        losses = []
        for _ in range(schedule.steps_per_round):
            check_budget()
            idx = torch.randint(size, (min(schedule.batch, size),), generator=generator, device="cpu")
            if arm == "supervised":
                loss = _supervised_loss(operator, inputs[idx], targets[idx])
            else:
                batch = pool.select(idx)
                moved, cost = operator(batch)
                loss = (jko_objective(moved, cost, energy, tau) - cloud_energy(batch, energy)).mean()
            if not torch.isfinite(loss):  # a degenerate minibatch (a folded state): skip it
                log.skipped_steps += 1
                done += 1
                continue
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), schedule.clip)
            optimiser.step()
            lr_schedule.step()
            losses.append(loss.item())
            done += 1
            progress(done, schedule.adam_steps)
        if arm == "learn-to-evolve" and round_ < schedule.rounds - 1:
            with torch.no_grad():
                for _ in range(schedule.rollout_steps):
                    if fronts.batch == 0:
                        break
                    fronts, _ = _healthy(operator(fronts)[0], fronts, log)
                    pool = Cloud.cat([pool, fronts])
            size = pool.batch
        log.rounds.append(
            {
                "round": round_,
                "loss": sum(losses) / len(losses),
                "pool": size,
                "seconds": time.perf_counter() - started,
            }
        )
    log.seconds = time.perf_counter() - started
    return log
