"""Scoring quantities shared across solvers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from wgfbench.problem import Problem

# ----------------------------------------------------------------------------------------------
# Cache shared across solvers

CacheKey = tuple[str, int, int, int, float, int, str, str]


class ScoreCache:
    """Reference draws, floors and :math:`\\rho_0` baselines shared by every solver of a run.

    Keys are ``(problem name, version, base_seed, repetition, t, n_eval, what, salt)``; values are
    tensors or floats that only depend on that key (never on a solver), so a campaign computes
    each floor once per (problem, t, repetition, n_eval). Thread-safe: concurrent scorers may
    compute the same entry twice (deterministically) but never see a partial one.
    ``hits``/``misses`` count lookups, for tests and reports.
    """

    def __init__(self) -> None:
        self._store: dict[CacheKey, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        problem: Problem, base_seed: int, repetition: int, t: float, n_eval: int, what: str, salt: str = ""
    ) -> CacheKey:
        """The key of one cached quantity: (name, version, base_seed, repetition, t, n_eval, what,
        salt)."""
        return (
            problem.name,
            int(problem.version),
            int(base_seed),
            int(repetition),
            float(t),
            int(n_eval),
            what,
            str(salt),
        )

    def get_or_compute(self, key: CacheKey, compute: Callable[[], Any]) -> Any:
        """The cached value for ``key``, computing and storing it on first use."""
        with self._lock:
            if key in self._store:
                self.hits += 1
                return self._store[key]
            self.misses += 1
        value = compute()
        with self._lock:
            return self._store.setdefault(key, value)

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def keys(self) -> list[CacheKey]:
        with self._lock:
            return list(self._store)

    def clear(self) -> None:
        with self._lock:
            self._store.clear()
