"""Tiers and the per-case context handed to solvers."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from wgfbench.errors import BudgetExceeded, UnknownNameError
from wgfbench.seeding import seed_from


@dataclass(frozen=True)
class Tier:
    """A tier fixes solver hyperparameters (through each solver's presets), the scoring sizes and
    the wall-time budget of one case; never the physics. Leaderboards never mix tiers.

    Scoring sizes: ``n_reference`` exact reference points per snapshot and up to ``n_output``
    of the solver's own points for the near-linear metrics (the primaries); ``n_eval`` points
    of each for exact OT in d ≥ 2 and the energy estimators."""

    name: str
    n_eval: int
    budget_seconds: float
    description: str
    n_reference: int = 100_000
    n_output: int = 100_000


TIERS: dict[str, Tier] = {
    "smoke": Tier(
        "smoke",
        n_eval=500,
        budget_seconds=10.0,
        description="seconds per case, for CI",
        n_reference=20_000,
        n_output=20_000,
    ),
    "quick": Tier(
        "quick",
        n_eval=1000,
        budget_seconds=180.0,
        description="≤ 3 min per case on 2 CPU cores",
        n_reference=100_000,
        n_output=100_000,
    ),
    "large": Tier(
        "large",
        n_eval=4000,
        budget_seconds=3600.0,
        description="for a GPU, checkpointed per step",
        n_reference=400_000,
        n_output=400_000,
    ),
}


def get_tier(name: str) -> Tier:
    try:
        return TIERS[name]
    except KeyError:
        raise UnknownNameError("tier", name, TIERS) from None


ProgressCallback = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    pass


@dataclass
class Context:
    """Everything a solver may depend on besides the problem. A solver never picks its own device,
    dtype or seed: it uses ``device``, ``dtype`` and ``generator`` (seeded by the runner).

    ``check_budget()`` is cooperative: call it inside loops; it raises :class:`BudgetExceeded`
    once ``budget_seconds`` of wall time have passed since the context was started.
    ``artifacts`` is a directory for cached offline work (e.g. a trained operator).
    ``progress(done, total)`` reports progress of the current phase.
    """

    device: torch.device
    dtype: torch.dtype
    generator: torch.Generator
    seed: int
    cpu_generator: torch.Generator
    tier: Tier
    artifacts: Path
    budget_seconds: float
    progress: ProgressCallback = _no_progress
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("wgfbench.solver"))
    _started: float = field(default_factory=time.perf_counter, repr=False)

    @classmethod
    def create(
        cls,
        seed: int,
        tier: Tier | str = "smoke",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        artifacts: Path | str | None = None,
        budget_seconds: float | None = None,
        progress: ProgressCallback = _no_progress,
        logger: logging.Logger | None = None,
    ) -> Context:
        """A context seeded with ``seed`` for ``tier``; the budget defaults to the tier's.
        ``artifacts`` defaults to a fresh temporary directory.

        The two generators get different seeds derived from ``seed``: on a CPU context, equal
        seeds would make ``generator`` replay ``cpu_generator``'s stream, so the first noise a
        solver draws would equal the standard normals behind its initial samples."""
        tier = get_tier(tier) if isinstance(tier, str) else tier
        device = torch.device(device)
        if artifacts is None:
            artifacts = Path(tempfile.mkdtemp(prefix="wgfbench-artifacts-"))
        return cls(
            device=device,
            dtype=dtype,
            generator=make_generator(seed, device),
            seed=seed,
            cpu_generator=make_generator(seed_from("cpu-generator", seed), "cpu"),
            tier=tier,
            artifacts=Path(artifacts),
            budget_seconds=tier.budget_seconds if budget_seconds is None else budget_seconds,
            progress=progress,
            logger=logger or logging.getLogger("wgfbench.solver"),
        )

    def restart_clock(self) -> None:
        self._started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def check_budget(self) -> None:
        if self.elapsed > self.budget_seconds:
            raise BudgetExceeded(
                f"wall-time budget of {self.budget_seconds:.1f} s exceeded ({self.elapsed:.1f} s elapsed)"
            )

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal draws on the context's device and dtype, from its generator."""
        return torch.randn(*shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def to(self, x: torch.Tensor) -> torch.Tensor:
        """Move a (float64, CPU) reference tensor to the context's device and dtype."""
        return x.to(device=self.device, dtype=self.dtype)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
