"""Scoring quantities shared across solvers: in memory for one run (:class:`ScoreCache`) and on
disk across runs (:class:`FloorCache`).

Only quantities that do not depend on a solver are cached: reference draws and their sorted
projections (memory, salted, per run), noise floors and the :math:`\\rho_0` distances that
normalise ``rel_error`` (disk: they are expectations over public draws, the same in every run).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch

from wgfbench.problem import Problem

logger = logging.getLogger(__name__)

CacheKey = tuple[str, int, int, int, float, int, str, str]

MAX_CACHE_BYTES = 3 * 2**30
"""Memory :class:`ScoreCache` keeps in arrays before it drops the least recently used ones (a 10⁵
point reference draw's sorted projections on 64 directions take 51 MB)."""

FLOOR_SCHEME = 3
"""Version of the floor definition; part of every disk-cache file name, so changing how floors
are computed never reuses old values."""

CACHE_DIR_ENV = "WGFBENCH_CACHE_DIR"


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 64


class ScoreCache:
    """Reference draws, their sorted projections and moments shared by every solver of a run.

    Keys are ``(problem name, version, base_seed, repetition, t, n, what, salt)``; values only
    depend on that key (never on a solver). Values are kept up to ``max_bytes`` in total, the
    least recently used dropped first (they are recomputed, deterministically, if asked again).
    Thread-safe: concurrent scorers may compute an entry twice but never see a partial one.
    ``hits``/``misses`` count lookups, for tests and reports.
    """

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self._store: OrderedDict[CacheKey, Any] = OrderedDict()
        self._sizes: dict[CacheKey, int] = {}
        self._lock = threading.Lock()
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        problem: Problem, base_seed: int, repetition: int, t: float, n: int, what: str, salt: str = ""
    ) -> CacheKey:
        """The key of one cached quantity: (name, version, base_seed, repetition, t, n, what, salt)."""
        return (
            problem.name,
            int(problem.version),
            int(base_seed),
            int(repetition),
            float(t),
            int(n),
            what,
            str(salt),
        )

    def get_or_compute(self, key: CacheKey, compute: Callable[[], Any]) -> Any:
        """The cached value for ``key``, computing and storing it on first use."""
        with self._lock:
            if key in self._store:
                self.hits += 1
                self._store.move_to_end(key)
                return self._store[key]
            self.misses += 1
        value = compute()
        size = _nbytes(value)
        with self._lock:
            if key in self._store:
                return self._store[key]
            self._store[key] = value
            self._sizes[key] = size
            self.nbytes += size
            while self.nbytes > self.max_bytes and len(self._store) > 1:
                old, _ = self._store.popitem(last=False)
                self.nbytes -= self._sizes.pop(old)
            return value

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
            self._sizes.clear()
            self.nbytes = 0


def default_cache_dir() -> Path:
    """``$WGFBENCH_CACHE_DIR``, else the user's cache directory (``platformdirs``:
    ``~/.cache/wgfbench`` on Linux)."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("wgfbench"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _lock(fh: Any) -> None:
    """An exclusive advisory lock on ``fh`` until it is closed (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


class FloorCache:
    """Noise floors and :math:`\\rho_0` distances on disk, across runs.

    One JSON file per problem and version, ``floors/<problem>--v<version>--s<FLOOR_SCHEME>.json``,
    mapping a key string (time, sizes, metric, draw role, output kind) to a float. Values are
    expectations over public draws, so any run may reuse them and none is ever charged to a
    solver. Writes hold an exclusive lock on a sidecar ``.lock`` file, merge with what another
    process wrote meanwhile and replace the file atomically (created with the user's umask); a
    damaged file is reported and rebuilt, never fatal.
    ``enabled=False`` (``--no-cache``) computes everything and writes nothing.
    """

    def __init__(self, directory: Path | str | None = None, enabled: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.enabled = enabled
        self._memory: dict[tuple[str, int], dict[str, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def path(self, problem: Problem) -> Path:
        slug = problem.name.replace("/", "__")
        return self.directory / "floors" / f"{slug}--v{int(problem.version)}--s{FLOOR_SCHEME}.json"

    def _read(self, path: Path) -> dict[str, float]:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return {str(k): float(v) for k, v in data.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as err:
            logger.warning("floor cache %s unreadable (%s); recomputing its floors", path, err)
            return {}

    def _entries(self, problem: Problem) -> dict[str, float]:
        key = (problem.name, int(problem.version))
        if key not in self._memory:
            self._memory[key] = self._read(self.path(problem)) if self.enabled else {}
        return self._memory[key]

    def get_or_compute(self, problem: Problem, key: str, compute: Callable[[], float]) -> float:
        with self._lock:
            entries = self._entries(problem)
            if key in entries:
                self.hits += 1
                return entries[key]
            self.misses += 1
        value = float(compute())
        with self._lock:
            entries[key] = value
            if self.enabled:
                self._write(problem, {key: value})
        return value

    def _write(self, problem: Problem, new: dict[str, float]) -> None:
        path = self.path(problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "a") as lock:
                _lock(lock)  # processes sharing the directory merge instead of overwriting
                merged = {**self._read(path), **self._entries(problem), **new}
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".floors-", suffix=".json")
                with os.fdopen(fd, "w") as fh:
                    json.dump(merged, fh, indent=0, sort_keys=True)
                os.chmod(tmp, 0o666 & ~_umask())
                os.replace(tmp, path)
        except OSError as err:
            logger.warning("floor cache %s not written (%s); floors stay in memory", path, err)

    def __len__(self) -> int:
        return sum(len(v) for v in self._memory.values())
