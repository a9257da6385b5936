"""What a solver returns: snapshots at the problem's times and a per-step log."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from wgfbench.errors import NonFiniteOutput
from wgfbench.grid import Grid
from wgfbench.problem import Box


@dataclass
class ParticleSnapshot:
    """Particles ``x`` (n, d) at time ``t``, optionally with ``log_rho`` (n,) and ``weights`` (n,)."""

    t: float
    x: Tensor
    log_rho: Tensor | None = None
    weights: Tensor | None = None

    def tensors(self) -> dict[str, Tensor]:
        named = {"x": self.x, "log_rho": self.log_rho, "weights": self.weights}
        return {k: v for k, v in named.items() if v is not None}


@dataclass
class GridSnapshot:
    """Cell averages ``rho`` (shape ``n_1 × … × n_d``) of a density on a uniform grid over ``box``."""

    t: float
    box: Box
    rho: Tensor

    @property
    def cell_volume(self) -> float:
        return math.prod(
            (h - l) / n for l, h, n in zip(self.box.low, self.box.high, self.rho.shape, strict=True)
        )

    @property
    def mass(self) -> float:
        r""":math:`\sum_K |K|\,\rho_K`, negative cells included."""
        return float(self.rho.sum()) * self.cell_volume

    @property
    def negative_mass(self) -> float:
        r""":math:`\sum_K |K|\,\max(-\rho_K, 0)`: mass lost to negative cells (0 for a positive density)."""
        return float((-self.rho.detach()).clamp_min(0).sum()) * self.cell_volume

    def tensors(self) -> dict[str, Tensor]:
        return {"rho": self.rho}

    @property
    def grid(self) -> Grid:
        return Grid(self.box, tuple(self.rho.shape))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Samples of the piecewise-constant density: a cell by its mass, then uniform within it."""
        return self.sample_with_log_rho(n, generator)[0]

    def sample_with_log_rho(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        r"""``n`` samples as :meth:`sample` (CPU float64, shape (n, d)) and the log of the
        piecewise-constant density at them, :math:`\log\rho_K` of their cell (shape (n,))."""
        rho = self.rho.detach().to("cpu", torch.float64).clamp_min(0)
        flat = rho.reshape(-1)
        idx = torch.multinomial(flat / flat.sum(), n, replacement=True, generator=generator)
        cells = torch.stack(torch.unravel_index(idx, rho.shape), dim=1).to(torch.float64)
        low = torch.tensor(self.box.low, dtype=torch.float64)
        width = (torch.tensor(self.box.high, dtype=torch.float64) - low) / torch.tensor(rho.shape)
        jitter = torch.rand(n, rho.dim(), generator=generator, dtype=torch.float64)
        return low + (cells + jitter) * width, torch.log(flat[idx])


Snapshot = ParticleSnapshot | GridSnapshot


@dataclass
class StepRecord:
    """One time step of a solver: time reached ``t``, step ``tau``, an energy estimate with its
    standard error (NaN when not computed), inner iterations, the final loss and, for solvers
    with an inner linear solve, its relative residual (NaN when none)."""

    t: float
    tau: float
    energy: float = math.nan
    energy_stderr: float = math.nan
    iterations: int = 0
    loss: float = math.nan
    residual: float = math.nan


@dataclass
class Trajectory:
    """Snapshots at the problem's times plus a per-step log.

    ``jko_tau`` is the fixed JKO step when the solver used one; only then are snapshots also
    scored against the problem's exact JKO iterates.
    """

    snapshots: Sequence[Snapshot]
    steps: list[StepRecord] = field(default_factory=list)
    jko_tau: float | None = None
    info: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(float(s.t) for s in self.snapshots)

    def validate(self, times: Sequence[float], dim: int) -> None:
        """Check snapshot times and shapes against the problem; NaN/inf raises :class:`NonFiniteOutput`."""
        if len(self.snapshots) != len(times) or any(
            abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in zip(self.times, times, strict=False)
        ):
            raise ValueError(f"snapshot times {self.times} do not match the problem's times {tuple(times)}")
        for snap in self.snapshots:
            if isinstance(snap, ParticleSnapshot):
                n = snap.x.shape[0]
                if snap.x.ndim != 2 or snap.x.shape[1] != dim:
                    raise ValueError(
                        f"t={snap.t}: particles must have shape (n, {dim}), got {tuple(snap.x.shape)}"
                    )
                for name, tensor in (("log_rho", snap.log_rho), ("weights", snap.weights)):
                    if tensor is not None and tensor.shape != (n,):
                        raise ValueError(
                            f"t={snap.t}: {name} must have shape ({n},), got {tuple(tensor.shape)}"
                        )
            elif snap.rho.ndim != dim:
                raise ValueError(f"t={snap.t}: grid density must have {dim} axes, got {snap.rho.ndim}")
            for name, tensor in snap.tensors().items():
                if not torch.isfinite(tensor).all():
                    raise NonFiniteOutput(f"non-finite values in {name} at t={snap.t}")
