"""Tiers and the per-case context handed to solvers."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

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
"""The tiers by name: ``smoke`` (seconds per case, CI), ``quick`` (≤ 3 min per case on 2 CPU
cores) and ``large`` (a GPU, checkpointed). A solver's ``presets`` are keyed by these names."""


def get_tier(name: str) -> Tier:
    """The :class:`Tier` called ``name``; :class:`~wgfbench.errors.UnknownNameError` (with the
    closest tier names) when there is none."""
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
    once ``budget_seconds`` have passed on the context's ``clock`` since it was started. The clock
    is wall time by default; the campaign runner gives each case :func:`cpu_clock` (the case
    process's CPU time per torch thread), so a healthy case is not failed because other processes
    share the machine, and stops a case that overruns it (see :mod:`wgfbench.runner`).
    ``artifacts`` is a directory for cached offline work (e.g. a trained operator).
    ``progress(done, total)`` reports progress of the current phase.

    ``checkpoints`` is the case's own checkpoint directory (``None``: checkpointing off). A long
    solver calls :meth:`save_checkpoint` after each completed time step and :meth:`load_checkpoint`
    at the start of ``solve``, after its initial random draws, to continue an interrupted case
    from its last completed step with the same random stream.
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
    clock: Callable[[], float] = time.perf_counter
    checkpoints: Path | None = None
    _started: float = field(default=math.nan, repr=False)

    def __post_init__(self) -> None:
        if math.isnan(self._started):
            self._started = self.clock()

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
        clock: Callable[[], float] | None = None,
        checkpoints: Path | str | None = None,
    ) -> Context:
        """A context seeded with ``seed`` for ``tier``; the budget defaults to the tier's.
        ``artifacts`` defaults to a fresh temporary directory; ``clock`` (seconds, monotone) to
        wall time; ``checkpoints`` (the case's checkpoint directory, created at the first save) to
        none, which turns checkpointing off.

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
            clock=clock or time.perf_counter,
            checkpoints=None if checkpoints is None else Path(checkpoints),
        )

    def restart_clock(self) -> None:
        self._started = self.clock()

    @property
    def elapsed(self) -> float:
        """Seconds on the context's clock since it was started."""
        return self.clock() - self._started

    def check_budget(self) -> None:
        if self.elapsed > self.budget_seconds:
            kind = "CPU-time" if self.clock is not time.perf_counter else "wall-time"
            raise BudgetExceeded(
                f"{kind} budget of {self.budget_seconds:.1f} s exceeded ({self.elapsed:.1f} s elapsed)"
            )

    def randn(self, *shape: int) -> torch.Tensor:
        r"""``shape`` standard normal draws :math:`\xi\sim\mathcal N(0, 1)` on the context's device
        and dtype, from ``generator`` (e.g. the noise of a Langevin step: ``ctx.randn(n, d)``)."""
        return torch.randn(*shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def rand(self, *shape: int) -> torch.Tensor:
        """``shape`` uniform draws on :math:`[0, 1)` on the context's device and dtype, from
        ``generator``."""
        return torch.rand(*shape, generator=self.generator, device=self.device, dtype=self.dtype)

    def to(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the context's device and dtype. Problem laws compute in float64 on the CPU:
        ``ctx.to(problem.initial.sample(n, ctx.cpu_generator))`` draws a solver's initial particles
        reproducibly on any device."""
        return x.to(device=self.device, dtype=self.dtype)

    # -- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(
        self, step: int, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None
    ) -> None:
        """Store the solver's state after ``step`` completed time steps, from which it continues
        with the next (no-op when ``checkpoints`` is None).

        ``tensors`` (names not starting with ``context.``) and the JSON-serialisable ``meta`` go
        into one safetensors file (never pickle) with the states of ``generator`` and
        ``cpu_generator``, so that a resumed case draws the same random numbers as an
        uninterrupted one. The file is written to a temporary name in the same directory, synced
        and renamed over (``os.replace``): a crash leaves the previous checkpoint or the new one,
        never a partial file. Older checkpoints are deleted once the new one is in place."""
        if self.checkpoints is None:
            return
        if step < 0:
            raise ValueError(f"checkpoint step must be non-negative, got {step}")
        reserved = [name for name in tensors if name.startswith(_RESERVED)]
        if reserved:
            raise ValueError(f"checkpoint tensor names starting with {_RESERVED!r} are reserved: {reserved}")
        header = {
            "format": _CHECKPOINT_FORMAT,
            "step": int(step),
            "seed": self.seed,
            "meta": dict(meta or {}),
        }
        # Copies on the CPU: safetensors refuses tensors that share memory (a solver's carried
        # batch may alias its pool), and the device's tensors must be read back anyway.
        payload = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
        payload[_RESERVED + "generator"] = self.generator.get_state()
        payload[_RESERVED + "cpu_generator"] = self.cpu_generator.get_state()
        directory = self.checkpoints
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"step-{int(step):09d}.safetensors"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX, suffix=".tmp")
        os.close(fd)
        try:
            save_file(payload, tmp, metadata={_META_KEY: json.dumps(header)})
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)
        for old in directory.iterdir():
            stale = old.name.startswith(_TMP_PREFIX) or _CHECKPOINT_NAME.fullmatch(old.name)
            if stale and old != target:
                old.unlink(missing_ok=True)

    def load_checkpoint(self, expect: Mapping[str, Any] | None = None) -> Checkpoint | None:
        """The newest checkpoint in ``checkpoints``, its tensors on ``device``, with ``generator``
        and ``cpu_generator`` set to the states saved with it; ``None`` when checkpointing is off
        or there is none.

        A file that cannot be read (truncated, not safetensors, no or malformed header, generator
        states that do not fit) is skipped with a warning naming it, and so is one written for
        another seed or whose ``meta`` differs from ``expect`` on any of its keys (the solver's
        schedule, say; values compared after a JSON round trip); the next older one is tried. A
        damaged checkpoint costs recomputation, never the case, and a skipped one leaves the
        generators untouched. Call it after the solver's initial random draws: the generators
        then continue from where the saved run left them."""
        if self.checkpoints is None or not self.checkpoints.is_dir():
            return None
        found = []
        for path in self.checkpoints.iterdir():
            match = _CHECKPOINT_NAME.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        wanted = json.loads(json.dumps(dict(expect or {})))
        for step, path in sorted(found, reverse=True):
            try:
                checkpoint = self._read_checkpoint(path, step, wanted)
            except _Mismatch as err:
                warnings.warn(f"ignoring checkpoint {path}: {err}", RuntimeWarning, stacklevel=2)
            except Exception as err:  # any failure to read means a damaged file
                warnings.warn(f"ignoring damaged checkpoint {path}: {err}", RuntimeWarning, stacklevel=2)
            else:
                return checkpoint
        return None

    def _read_checkpoint(self, path: Path, step: int, wanted: dict[str, Any]) -> Checkpoint:
        """Read ``path`` and restore the generators. Raises :class:`_Mismatch` for another seed's
        or case's checkpoint and anything else on damage, leaving the generators untouched."""
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {})[_META_KEY])
            if header.get("format") != _CHECKPOINT_FORMAT or header.get("step") != step:
                raise ValueError(f"unexpected header {header!r} for step {step}")
            meta = header["meta"]
            if not isinstance(meta, dict):
                raise ValueError(f"checkpoint meta is a {type(meta).__name__}, not a mapping")
            if header.get("seed") != self.seed:
                raise _Mismatch(f"it was written for seed {header.get('seed')}, not {self.seed}")
            differ = sorted(key for key, value in wanted.items() if meta.get(key) != value)
            if differ:
                raise _Mismatch(f"it was written for another {', '.join(differ)}")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        states = (tensors.pop(_RESERVED + "generator"), tensors.pop(_RESERVED + "cpu_generator"))
        moved = {name: t.to(self.device) for name, t in tensors.items()}
        before = (self.generator.get_state(), self.cpu_generator.get_state())
        try:
            self.generator.set_state(states[0])
            self.cpu_generator.set_state(states[1])
        except BaseException:
            self.generator.set_state(before[0])
            self.cpu_generator.set_state(before[1])
            raise
        return Checkpoint(step=step, tensors=moved, meta=meta)


class _Mismatch(Exception):
    """A readable checkpoint that belongs to another seed or case."""


_RESERVED = "context."
_META_KEY = "wgfbench.checkpoint"
_CHECKPOINT_FORMAT = 1
_CHECKPOINT_NAME = re.compile(r"step-(\d+)\.safetensors")
_TMP_PREFIX = ".step-"


@dataclass(frozen=True)
class Checkpoint:
    """A solver's state after time step ``step``: its ``tensors`` (on the context's device) and
    ``meta`` (what it passed to :meth:`Context.save_checkpoint`, through JSON)."""

    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def cpu_clock() -> float:
    """CPU seconds of this process (all threads, user + system) per torch intra-op thread.

    With one thread it is the process's CPU time, which other processes on the machine do not
    inflate; with ``n`` busy threads it runs at about the rate of wall time, as a budget expects.
    """
    return time.process_time() / max(1, torch.get_num_threads())


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``: draws from it are reproducible,
    unlike torch's global RNG. For a solver's own extra streams (training batches, an initial
    family's members), seed it from a fixed label, e.g. ``make_generator(seed_from("my-solver/
    train", config.train_seed))``, never from global state."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
