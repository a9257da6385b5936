"""Seeds derived by hashing names, so that reruns and resumed runs draw the same numbers."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_from(*parts: object) -> int:
    """A 63-bit seed from the BLAKE2b hash of ``parts`` (their ``str``), stable across platforms."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def solver_seed(base_seed: int, problem: str, solver: str, repetition: int) -> int:
    """The seed a solver gets for one case: hash(base seed, problem, solver, repetition)."""
    return seed_from("solver", base_seed, problem, solver, repetition)


def reference_seed(base_seed: int, problem: str, repetition: int, t: float, role: str = "reference") -> int:
    """The seed of a scoring draw: hash(base seed, problem, repetition, t, role), never the solver,
    so every solver is scored against the same reference sample."""
    return seed_from(role, base_seed, problem, repetition, repr(float(t)))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (for third-party code that uses them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what old code reads
    torch.manual_seed(seed)
