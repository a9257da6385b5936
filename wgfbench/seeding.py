"""Seeds derived by hashing names, so that reruns and resumed runs draw the same numbers."""

from __future__ import annotations

import hashlib
import os
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


def reference_seed(
    base_seed: int, problem: str, repetition: int, t: float, role: str = "reference", salt: str = ""
) -> int:
    """The seed of a scoring draw: hash(base seed, problem, repetition, t, role, salt), never the
    solver, so every solver of a run is scored against the same reference sample.

    ``salt`` is the run's scoring salt (:func:`new_scoring_salt`): drawn from the OS at the start
    of a run, kept from solvers while they run and written to the manifest when the run stops, so
    a run is reproducible from its manifest but no solver can regenerate the draw it is scored
    against from public names. The empty salt gives the unsalted seeds of direct scorer use."""
    return seed_from(role, base_seed, problem, repetition, repr(float(t)), salt)


def new_scoring_salt() -> str:
    """A fresh scoring salt: 128 bits from ``os.urandom``, hex-encoded."""
    return os.urandom(16).hex()


def salt_digest(salt: str) -> str:
    """SHA-256 of a salt (hex): recorded while the salt itself is still secret."""
    return hashlib.sha256(salt.encode()).hexdigest()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (for third-party code that uses them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is what old code reads
    torch.manual_seed(seed)
