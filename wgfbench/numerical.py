r"""Numerical references: a high-resolution run of a trusted grid solver, stored as data.

Where no closed form exists (``fokker-planck/four-wells-2d``), the reference :math:`\rho(t)` at
the problem's snapshot times is a grid density computed once by a classical solver at high
resolution and shipped with the problem plugin. :class:`GridPath` is that reference:

* **stored compactly**: one ``.npz`` (``allow_pickle=False``) with ``times`` (T,), ``rho``
  (T, n_1, …, n_d) float64 cell densities, the box ``low``/``high`` and a JSON ``provenance``
  (solver, configuration, resolution, τ, library versions, platform, command, date);
* **verified by hash on load**: the SHA-256 of the array contents (:func:`content_hash`, not of
  the zip container, whose bytes depend on timestamps) must equal the hash pinned in the
  problem's code, else :class:`ReferenceDataError` says how to rebuild;
* **loaded lazily**: nothing is read until a sample or density is asked for;
* **reproducible**: ``wgfbench reference build PROBLEM`` re-runs the pinned ``build`` function;
  ``wgfbench reference verify PROBLEM`` re-runs it and reports the largest difference to the
  stored data (≤ 1e-10 on the platform that built it).

As a law, a grid density is piecewise constant: samples pick a cell by its mass and a uniform
point in it; the log-density of a point is that of its cell (``-inf`` outside the box).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from wgfbench.errors import WgfbenchError
from wgfbench.problem import Box
from wgfbench.references import Reference, ReferenceKind
from wgfbench.trajectory import GridSnapshot

DTYPE = torch.float64


class ReferenceDataError(WgfbenchError):
    """Stored reference data is missing, malformed or does not match its pinned hash."""


@dataclass(frozen=True)
class GridData:
    """The arrays of a numerical reference: ``rho[i]`` is the cell density at ``times[i]``."""

    times: np.ndarray
    rho: np.ndarray
    box: Box
    provenance: dict

    def __post_init__(self) -> None:
        if self.rho.ndim != self.box.dim + 1 or self.rho.shape[0] != self.times.shape[0]:
            raise ReferenceDataError(
                f"rho of shape {self.rho.shape} does not fit {self.times.shape[0]} times in {self.box.dim}-D"
            )


def content_hash(times: np.ndarray, rho: np.ndarray, box: Box) -> str:
    """SHA-256 of the float64 contents (little-endian bytes of times, box and rho, with the shape)."""
    h = hashlib.sha256()
    h.update(repr(tuple(rho.shape)).encode())
    for array in (times, np.asarray(box.low), np.asarray(box.high), rho):
        h.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return h.hexdigest()


def save_grid_data(path: Path, data: GridData) -> str:
    """Write ``data`` as a compressed ``.npz`` (no pickle); returns its :func:`content_hash`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = content_hash(data.times, data.rho, data.box)
    provenance = dict(data.provenance, content_sha256=digest)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        times=np.asarray(data.times, dtype=np.float64),
        rho=np.asarray(data.rho, dtype=np.float64),
        low=np.asarray(data.box.low, dtype=np.float64),
        high=np.asarray(data.box.high, dtype=np.float64),
        provenance=np.array(json.dumps(provenance, sort_keys=True)),
    )
    tmp.replace(path)
    return digest


def load_grid_data(source: Path | Traversable, sha256: str | None) -> GridData:
    """Read a stored reference; when ``sha256`` is given, the contents must hash to it."""
    try:
        with source.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            times, rho = npz["times"], npz["rho"]
            box = Box(tuple(npz["low"].tolist()), tuple(npz["high"].tolist()))
            provenance = json.loads(str(npz["provenance"]))
    except FileNotFoundError as err:
        raise ReferenceDataError(f"reference data not found: {source}") from err
    except (KeyError, ValueError, OSError) as err:
        raise ReferenceDataError(f"malformed reference data {source}: {err}") from err
    if sha256 is not None and (got := content_hash(times, rho, box)) != sha256:
        raise ReferenceDataError(f"reference data {source} has content hash {got}, expected {sha256}")
    return GridData(times, rho, box, provenance)


def provenance(solver: str, config: dict, command: str, **extra) -> dict:
    """The provenance record of a numerical reference: who computed it, how, with what."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "solver": solver,
        "config": config,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "python": sys.version.split()[0],
            **{d: version(d) for d in ("wgfbench", "torch", "numpy", "scipy")},
        },
        "platform": platform.platform(),
        "machine": platform.machine(),
        **extra,
    }


class GridPath(Reference):
    r"""A ``numerical`` reference: stored grid densities at the problem's snapshot times.

    ``source`` is the ``.npz`` (a path, or an ``importlib.resources`` file of the plugin package),
    ``sha256`` the pinned :func:`content_hash`, ``build`` the function that recomputes the data
    (used by ``wgfbench reference build/verify``; it returns a :class:`GridData`).
    Only the stored times can be asked for (``KeyError`` otherwise).
    """

    kind: ClassVar[ReferenceKind] = "numerical"

    def __init__(
        self,
        dim: int,
        source: Path | Traversable,
        sha256: str,
        build: Callable[[], GridData],
        radial_centre: Tensor | None = None,
    ):
        self.dim, self.source, self.sha256, self.build = dim, source, sha256, build
        self.radial_centre = radial_centre
        self._data: GridData | None = None

    @property
    def data(self) -> GridData:
        if self._data is None:
            self._data = load_grid_data(self.source, self.sha256)
            if self._data.box.dim != self.dim:
                raise ReferenceDataError(f"{self.source} is {self._data.box.dim}-D, expected {self.dim}-D")
        return self._data

    @property
    def provenance(self) -> str:  # type: ignore[override]
        return json.dumps(self.data.provenance, sort_keys=True)

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(float(t) for t in self.data.times)

    def snapshot(self, t: float) -> GridSnapshot:
        """The stored grid density at ``t`` (which must be one of the stored times)."""
        times = self.data.times
        i = int(np.argmin(np.abs(times - t)))
        if not math.isclose(float(times[i]), float(t), rel_tol=1e-9, abs_tol=1e-12):
            raise KeyError(f"the numerical reference stores t in {self.times}, not t={t}")
        return GridSnapshot(float(times[i]), self.data.box, torch.from_numpy(self.data.rho[i]))

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        return self.snapshot(t).sample(n, generator)

    def log_density(self, t: float, x: Tensor) -> Tensor:
        snap = self.snapshot(t)
        grid = snap.grid
        x = x.to(DTYPE)
        low, high = torch.tensor(grid.box.low, dtype=DTYPE), torch.tensor(grid.box.high, dtype=DTYPE)
        inside = ((x >= low) & (x <= high)).all(dim=1)
        log_rho = torch.log(snap.rho.reshape(-1)[grid.locate(x)])
        return torch.where(inside, log_rho, torch.full_like(log_rho, -math.inf))

    def mean(self, t: float) -> Tensor:
        snap = self.snapshot(t)
        w = snap.rho.reshape(-1) / snap.rho.sum()
        return w @ snap.grid.centres().reshape(-1, self.dim)

    def cov(self, t: float) -> Tensor:
        """Covariance of the piecewise-constant density (cell centres plus the within-cell
        uniform variance :math:`h_i^2/12` on the diagonal)."""
        snap = self.snapshot(t)
        w = snap.rho.reshape(-1) / snap.rho.sum()
        x = snap.grid.centres().reshape(-1, self.dim)
        centred = x - w @ x
        within = torch.diag(torch.tensor(snap.grid.h, dtype=DTYPE) ** 2 / 12)
        return (centred * w[:, None]).T @ centred + within


@dataclass(frozen=True)
class ParticleData:
    """The arrays of a particle reference: ``x[i]`` (N, d) are the stored particles at ``times[i]``
    (float32 or float64; the hash is of the stored dtype)."""

    times: np.ndarray
    x: np.ndarray
    provenance: dict

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.x.shape[0] != self.times.shape[0] or self.x.shape[1] == 0:
            raise ReferenceDataError(
                f"particles of shape {self.x.shape} do not fit {self.times.shape[0]} times as (T, N, d)"
            )
        if self.x.dtype not in (np.float32, np.float64):
            raise ReferenceDataError(f"particles must be float32 or float64, not {self.x.dtype}")


def particle_content_hash(times: np.ndarray, x: np.ndarray) -> str:
    """SHA-256 of the stored contents: the shape and dtype of ``x``, the little-endian float64 bytes
    of ``times`` and the little-endian bytes of ``x`` in its stored dtype (float32 data are hashed as
    stored, not widened)."""
    h = hashlib.sha256()
    h.update(repr((tuple(x.shape), np.dtype(x.dtype).name)).encode())
    h.update(np.ascontiguousarray(times, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(x, dtype=np.dtype(x.dtype).newbyteorder("<")).tobytes())
    return h.hexdigest()


def save_particle_data(path: Path, data: ParticleData) -> str:
    """Write ``data`` as a compressed ``.npz`` (no pickle); returns its :func:`particle_content_hash`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = particle_content_hash(data.times, data.x)
    provenance = dict(data.provenance, content_sha256=digest)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        times=np.asarray(data.times, dtype=np.float64),
        x=data.x,
        provenance=np.array(json.dumps(provenance, sort_keys=True)),
    )
    tmp.replace(path)
    return digest


def load_particle_data(source: Path | Traversable, sha256: str | None) -> ParticleData:
    """Read stored particles; when ``sha256`` is given, the contents must hash to it."""
    try:
        with source.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            times, x = npz["times"], npz["x"]
            provenance = json.loads(str(npz["provenance"]))
    except FileNotFoundError as err:
        raise ReferenceDataError(f"reference data not found: {source}") from err
    except (KeyError, ValueError, OSError) as err:
        raise ReferenceDataError(f"malformed reference data {source}: {err}") from err
    if sha256 is not None and (got := particle_content_hash(times, x)) != sha256:
        raise ReferenceDataError(f"reference data {source} has content hash {got}, expected {sha256}")
    return ParticleData(times, x, provenance)


def particle_max_difference(a: ParticleData, b: ParticleData) -> float:
    """Largest absolute difference of two particle builds, particle by particle (inf when their
    times, shapes or dtypes differ)."""
    if a.x.shape != b.x.shape or a.x.dtype != b.x.dtype or not np.array_equal(a.times, b.times):
        return math.inf
    return float(np.max(np.abs(a.x.astype(np.float64) - b.x.astype(np.float64))))


class ParticlePath(Reference):
    r"""A ``numerical`` reference stored as particles: the empirical laws
    :math:`\mu_N(t) = \frac1N\sum_j\delta_{X_j(t)}` of a many-particle run of a trusted particle
    solver at the problem's snapshot times.

    For flows whose law is multi-scale (a narrow bulk beside a wide, thin tail) a particle cloud is
    more faithful than a density on a uniform grid, which either blurs the bulk or cannot afford the
    box. The reference law at ``t`` *is* :math:`\mu_N(t)`; it approximates :math:`\rho(t)` with a
    sampling error of order :math:`N^{-1/2}` (up to logarithms in 2-D), far below the noise of
    scoring with ``n ≪ N`` points.

    * ``sample(t, n)``: ``n`` of the ``N`` stored particles, drawn **without** replacement when
      ``n ≤ N`` (distinct particles of the run, as close to independent draws from :math:`\rho(t)` as
      the run gives) and with replacement when ``n > N`` (i.i.d. draws from :math:`\mu_N(t)`). No
      kernel jitter is added: a bandwidth would be too wide for the bulk or too narrow for the tail,
      and it would bias every moment. Two independent draws share about :math:`n^2/N` particles,
      which lowers a W2 noise floor estimated from them by a relative :math:`O(n/N)`.
    * ``mean``/``cov``: the moments of :math:`\mu_N(t)` (1/N normalisation), in float64.
    * no density (``has_density`` is ``False``): an empirical measure has none.

    Stored as :class:`ParticleData` (``.npz``, ``allow_pickle=False``; verified against the pinned
    :func:`particle_content_hash` on first use, loaded lazily); ``build`` recomputes it
    (``wgfbench reference build/verify``). Only the stored times can be asked for (``KeyError``
    otherwise).
    """

    kind: ClassVar[ReferenceKind] = "numerical"

    def __init__(
        self,
        dim: int,
        source: Path | Traversable,
        sha256: str,
        build: Callable[[], ParticleData],
        radial_centre: Tensor | None = None,
    ):
        self.dim, self.source, self.sha256, self.build = dim, source, sha256, build
        self.radial_centre = radial_centre
        self._data: ParticleData | None = None

    @property
    def data(self) -> ParticleData:
        if self._data is None:
            data = load_particle_data(self.source, self.sha256)
            if data.x.shape[2] != self.dim:
                raise ReferenceDataError(
                    f"{self.source} holds {data.x.shape[2]}-D particles, expected {self.dim}-D"
                )
            self._data = data
        return self._data

    @property
    def provenance(self) -> str:  # type: ignore[override]
        return json.dumps(self.data.provenance, sort_keys=True)

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(float(t) for t in self.data.times)

    @property
    def n_particles(self) -> int:
        return int(self.data.x.shape[1])

    def particles(self, t: float) -> Tensor:
        """The stored particles at ``t`` (one of the stored times), (N, d) float64."""
        times = self.data.times
        i = int(np.argmin(np.abs(times - t)))
        if not math.isclose(float(times[i]), float(t), rel_tol=1e-9, abs_tol=1e-12):
            raise KeyError(f"the numerical reference stores t in {self.times}, not t={t}")
        return torch.from_numpy(self.data.x[i].astype(np.float64))

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        x = self.particles(t)
        N = x.shape[0]
        if n <= N:
            index = torch.randperm(N, generator=generator)[:n]
        else:
            index = torch.randint(N, (n,), generator=generator)
        return x[index]

    def mean(self, t: float) -> Tensor:
        return self.particles(t).mean(dim=0)

    def cov(self, t: float) -> Tensor:
        x = self.particles(t)
        centred = x - x.mean(dim=0)
        return centred.T @ centred / x.shape[0]


def max_difference(a: GridData, b: GridData) -> float:
    """Largest absolute difference of two builds (inf when their times or grids differ)."""
    if a.rho.shape != b.rho.shape or not np.array_equal(a.times, b.times) or a.box != b.box:
        return math.inf
    return float(np.max(np.abs(a.rho - b.rho)))


def grid_data_from_snapshots(snapshots: Sequence[GridSnapshot], provenance: dict) -> GridData:
    """Stack a solver's grid snapshots into :class:`GridData`."""
    box = snapshots[0].box
    rho = np.stack([s.rho.detach().to("cpu", DTYPE).numpy() for s in snapshots])
    return GridData(np.array([s.t for s in snapshots], dtype=np.float64), rho, box, provenance)


__all__ = [
    "GridData",
    "GridPath",
    "ParticleData",
    "ParticlePath",
    "ReferenceDataError",
    "content_hash",
    "grid_data_from_snapshots",
    "load_grid_data",
    "load_particle_data",
    "max_difference",
    "particle_content_hash",
    "particle_max_difference",
    "provenance",
    "save_grid_data",
    "save_particle_data",
]
