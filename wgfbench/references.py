r"""Distributions and reference solutions: the contract every problem's references fulfil.

A :class:`Reference` is the law :math:`\rho(t)` the solver is scored against, with ``t`` the time
elapsed since the initial condition (``t = 0`` is :math:`\rho_0`). Its ``kind`` is

* ``"exact"``: known at every ``t`` (a closed form, or exact samples through an exact map);
* ``"stationary"``: only :math:`t=\infty` is known; scored at the final snapshot or by the
  energy gap;
* ``"numerical"``: a high-resolution run of a trusted solver, stored as data with provenance.

Everything here computes in float64 on the CPU with the caller's ``torch.Generator``; callers
move results to their device. The generic Gaussian building blocks live here so that every family
plugin uses the same, tested code; family-specific references (Barenblatt, radial maps, ...) live
with their family in ``plugins/problems``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
from torch import Tensor

DTYPE = torch.float64
ReferenceKind = Literal["exact", "stationary", "numerical"]


def as_tensor(x, dtype: torch.dtype = DTYPE) -> Tensor:
    return torch.as_tensor(x, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Distributions (fixed laws: initial conditions, stationary states, mixture components)


class Distribution(ABC):
    """A law on :math:`\\mathbb R^d` that can be sampled and, where known, evaluated."""

    dim: int

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` i.i.d. samples, shape (n, d), float64."""

    def log_density(self, x: Tensor) -> Tensor:
        """:math:`\\log\\rho(x)` for ``x`` of shape (n, d); raises where the density is unknown."""
        raise NotImplementedError(f"{type(self).__name__} has no known density")

    @property
    def has_density(self) -> bool:
        return type(self).log_density is not Distribution.log_density

    def mean(self) -> Tensor | None:
        return None

    def cov(self) -> Tensor | None:
        return None


class Gaussian(Distribution):
    r""":math:`\mathcal N(m, \Sigma)`."""

    def __init__(self, mean, cov):
        self._mean = as_tensor(mean).reshape(-1)
        self._cov = as_tensor(cov)
        self.dim = self._mean.numel()
        if self._cov.shape != (self.dim, self.dim):
            raise ValueError(f"covariance must be {self.dim}x{self.dim}, got {tuple(self._cov.shape)}")
        self._chol = torch.linalg.cholesky(self._cov)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=DTYPE)
        return self._mean + z @ self._chol.T

    def log_density(self, x: Tensor) -> Tensor:
        diff = as_tensor(x) - self._mean
        sol = torch.linalg.solve_triangular(self._chol, diff.T, upper=False)
        logdet = 2 * torch.log(torch.diagonal(self._chol)).sum()
        return -0.5 * (sol**2).sum(0) - 0.5 * logdet - 0.5 * self.dim * math.log(2 * math.pi)

    def mean(self) -> Tensor:
        return self._mean

    def cov(self) -> Tensor:
        return self._cov


class GaussianMixture(Distribution):
    r""":math:`\sum_k w_k\,\mathcal N(m_k, \Sigma_k)`; ``means`` (K, d), ``covs`` (K, d, d)."""

    def __init__(self, weights, means, covs):
        self.weights = as_tensor(weights).reshape(-1)
        if not torch.isclose(self.weights.sum(), as_tensor(1.0)) or (self.weights < 0).any():
            raise ValueError("mixture weights must be non-negative and sum to 1")
        self.components = [Gaussian(m, c) for m, c in zip(as_tensor(means), as_tensor(covs), strict=True)]
        self.dim = self.components[0].dim

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        out = torch.empty(n, self.dim, dtype=DTYPE)
        for k, comp in enumerate(self.components):
            idx = (labels == k).nonzero().squeeze(1)
            out[idx] = comp.sample(idx.numel(), generator)
        return out

    def log_density(self, x: Tensor) -> Tensor:
        logs = torch.stack([c.log_density(x) for c in self.components])
        return torch.logsumexp(logs + torch.log(self.weights)[:, None], dim=0)

    def mean(self) -> Tensor:
        return sum(w * c.mean() for w, c in zip(self.weights, self.components, strict=True))

    def cov(self) -> Tensor:
        m = self.mean()
        second = sum(
            w * (c.cov() + torch.outer(c.mean(), c.mean()))
            for w, c in zip(self.weights, self.components, strict=True)
        )
        return second - torch.outer(m, m)


# ----------------------------------------------------------------------------------------------
# References ρ(t)


class Reference(ABC):
    """The law :math:`\\rho(t)` a solver is scored against (see module docstring).

    ``radial_centre`` is set for references that are radial about a point, which enables the
    low-noise ``radial_w2`` metric.
    """

    kind: ClassVar[ReferenceKind]
    dim: int
    radial_centre: Tensor | None = None
    provenance: str = ""

    @abstractmethod
    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact samples of :math:`\\rho(t)`, shape (n, d), float64."""

    def log_density(self, t: float, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no known density")

    @property
    def has_density(self) -> bool:
        return type(self).log_density is not Reference.log_density

    def mean(self, t: float) -> Tensor | None:
        return None

    def cov(self, t: float) -> Tensor | None:
        return None

    def energy(self, t: float) -> float | None:
        """The exact free energy at ``t`` where known in closed form."""
        return None


class DistributionPath(Reference):
    """An exact reference given by a distribution-valued function of time ``t -> Distribution``."""

    kind: ClassVar[ReferenceKind] = "exact"

    def __init__(
        self, at: Callable[[float], Distribution], dim: int, energy: Callable[[float], float] | None = None
    ):
        self._at, self.dim, self._energy = at, dim, energy

    def at(self, t: float) -> Distribution:
        return self._at(float(t))

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        return self.at(t).sample(n, generator)

    def log_density(self, t: float, x: Tensor) -> Tensor:
        return self.at(t).log_density(x)

    def mean(self, t: float) -> Tensor | None:
        return self.at(t).mean()

    def cov(self, t: float) -> Tensor | None:
        return self.at(t).cov()

    def energy(self, t: float) -> float | None:
        return None if self._energy is None else float(self._energy(float(t)))


class Stationary(Reference):
    """Only :math:`\\rho_\\infty` is known: ``sample``/``log_density`` ignore ``t``.

    ``energy_inf`` is the minimal energy :math:`\\mathcal E(\\rho_\\infty)` when known.
    """

    kind: ClassVar[ReferenceKind] = "stationary"

    def __init__(self, law: Distribution, energy_inf: float | None = None, provenance: str = ""):
        self.law, self.dim, self.energy_inf, self.provenance = law, law.dim, energy_inf, provenance

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        return self.law.sample(n, generator)

    def log_density(self, t: float, x: Tensor) -> Tensor:
        return self.law.log_density(x)

    @property
    def has_density(self) -> bool:
        return self.law.has_density

    def mean(self, t: float) -> Tensor | None:
        return self.law.mean()

    def cov(self, t: float) -> Tensor | None:
        return self.law.cov()

    def energy(self, t: float) -> float | None:
        return self.energy_inf


class JKOIterates(ABC):
    """Exact JKO iterates :math:`\\rho^{k}` for a fixed step ``tau`` (the ``"jko"`` reference role).

    ``for_step(tau)`` returns a :class:`Reference` whose time ``t`` must be a multiple of ``tau``
    (``t = k tau``); scoring against it separates the solver's own error from the O(τ) error of
    the JKO time discretisation.
    """

    @abstractmethod
    def for_step(self, tau: float) -> Reference: ...


def jko_step_count(t: float, tau: float) -> int:
    """The number of JKO steps ``k`` with ``k * tau == t``; raises when ``t`` is not on the τ-grid."""
    k = round(t / tau)
    if abs(k * tau - t) > 1e-9 * max(1.0, abs(t)):
        raise ValueError(f"t={t} is not a multiple of the JKO step tau={tau}")
    return k
