r"""Typed energy terms of a Wasserstein gradient flow.

The free energy is

.. math::  \mathcal E(\rho) = \int U(\rho)\,dx + \int V\rho\,dx + \tfrac12\iint W(x-y)\rho(x)\rho(y)\,dx\,dy,

(Lee, Wang & Li, *Deep JKO*, eq. (2)) and its Wasserstein gradient flow is
:math:`\partial_t\rho = \nabla\cdot(M(\rho)\nabla\,\delta\mathcal E/\delta\rho)` with first variation
:math:`\delta\mathcal E/\delta\rho = U'(\rho) + V + W*\rho`.

Each term gives its value, first variation and the derivatives solvers need, and one estimator per
representation (see ``docs/problems.md``, "Energy estimators"):

* particles with log-densities: :math:`\int U(\rho) = \mathbb E[U(\rho(X))/\rho(X)]`,
  :math:`\mathbb E[V(X)]`, :math:`\tfrac12\mathbb E[W(X-X')]` as a U-statistic;
* samples alone: Kozachenko–Leonenko for the entropy, Leonenko–Pronzato–Savani for
  :math:`\int\rho^m` (k-NN, :mod:`wgfbench.estimators`).

Every estimator returns per-sample contributions, so that the mean and its standard error come
from the same numbers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from wgfbench import estimators

# ----------------------------------------------------------------------------------------------
# Internal energies U(ρ)


class InternalEnergy(ABC):
    """A density of internal energy :math:`U(\\rho)` with :math:`U(0)=0`."""

    @abstractmethod
    def U(self, rho: Tensor) -> Tensor: ...

    @abstractmethod
    def dU(self, rho: Tensor) -> Tensor:
        """:math:`U'(\\rho)`, the first variation of :math:`\\int U(\\rho)`."""

    @abstractmethod
    def d2U(self, rho: Tensor) -> Tensor:
        """:math:`U''(\\rho)`."""

    @abstractmethod
    def per_mass(self, log_rho: Tensor) -> Tensor:
        """:math:`U(\\rho)/\\rho` as a function of :math:`\\log\\rho`, so that
        :math:`\\int U(\\rho) = \\mathbb E_\\rho[U(\\rho)/\\rho]`."""

    @abstractmethod
    def per_sample(self, x: Tensor) -> Tensor:
        """Per-sample terms of a k-NN estimate of :math:`\\int U(\\rho)` from samples alone."""

    def pressure(self, rho: Tensor) -> Tensor:
        """The pressure :math:`P(\\rho) = \\rho U'(\\rho) - U(\\rho)`: the internal-energy part of the
        flow is :math:`\\partial_t\\rho = \\Delta P(\\rho)`."""
        return rho * self.dU(rho) - self.U(rho)


@dataclass(frozen=True)
class Entropy(InternalEnergy):
    r""":math:`U(\rho) = \rho\log\rho`: linear diffusion :math:`\Delta\rho` (Fokker–Planck)."""

    def U(self, rho: Tensor) -> Tensor:
        return torch.xlogy(rho, rho)

    def dU(self, rho: Tensor) -> Tensor:
        return torch.log(rho) + 1.0

    def d2U(self, rho: Tensor) -> Tensor:
        return 1.0 / rho

    def per_mass(self, log_rho: Tensor) -> Tensor:
        return log_rho

    def per_sample(self, x: Tensor) -> Tensor:
        return -estimators.kozachenko_leonenko_terms(x)


@dataclass(frozen=True)
class PowerInternal(InternalEnergy):
    r""":math:`U(\rho) = \rho^m/(m-1)`, :math:`m>1`: the porous medium equation
    :math:`\partial_t\rho=\Delta\rho^m`."""

    m: float

    def __post_init__(self) -> None:
        if not self.m > 1:
            raise ValueError(f"PowerInternal needs m > 1, got m={self.m}")

    def U(self, rho: Tensor) -> Tensor:
        return rho.clamp_min(0) ** self.m / (self.m - 1)

    def dU(self, rho: Tensor) -> Tensor:
        return self.m / (self.m - 1) * rho.clamp_min(0) ** (self.m - 1)

    def d2U(self, rho: Tensor) -> Tensor:
        return self.m * rho.clamp_min(0) ** (self.m - 2)

    def per_mass(self, log_rho: Tensor) -> Tensor:
        return torch.exp((self.m - 1) * log_rho) / (self.m - 1)

    def per_sample(self, x: Tensor) -> Tensor:
        return estimators.leonenko_pronzato_savani_terms(x, q=self.m) / (self.m - 1)


# ----------------------------------------------------------------------------------------------
# Interaction kernels W(x) = w(|x|)


class Kernel(ABC):
    """A radial interaction kernel :math:`W(x) = w(|x|)`; kernels add with ``+``."""

    @abstractmethod
    def of_distance(self, r: Tensor) -> Tensor: ...

    def __call__(self, z: Tensor) -> Tensor:
        """:math:`W(z)` for displacements ``z`` of shape ``(..., d)``."""
        return self.of_distance(torch.linalg.vector_norm(z, dim=-1))

    def __add__(self, other: Kernel) -> Kernel:
        return KernelSum((self, other))


@dataclass(frozen=True)
class KernelSum(Kernel):
    parts: tuple[Kernel, ...]

    def of_distance(self, r: Tensor) -> Tensor:
        return sum(k.of_distance(r) for k in self.parts)

    def __add__(self, other: Kernel) -> Kernel:
        return KernelSum((*self.parts, other))


@dataclass(frozen=True)
class Quadratic(Kernel):
    r""":math:`W(x) = c|x|^2/2` (attraction; with :math:`c=1` the mean-field contraction to the mean)."""

    c: float = 1.0

    def of_distance(self, r: Tensor) -> Tensor:
        return 0.5 * self.c * r**2


@dataclass(frozen=True)
class PowerLaw(Kernel):
    r""":math:`W(x) = c|x|^a/a`."""

    a: float
    c: float = 1.0

    def of_distance(self, r: Tensor) -> Tensor:
        return self.c * r**self.a / self.a


@dataclass(frozen=True)
class Newtonian(Kernel):
    r"""Newtonian repulsion :math:`N_1=-|x|`, :math:`N_2=-\ln|x|`, :math:`N_d=|x|^{2-d}/(d-2)`.

    With this normalisation :math:`-\nabla N_d * \rho(x) = x\,m(|x|)/|x|^d` for radial
    :math:`\rho` (:math:`m(r)` the mass within radius :math:`r`), so :math:`|x|^2/2 + N_d`
    aggregates to the uniform density :math:`1/\omega_d` on the unit ball (Newton's shell theorem;
    ``docs/problems.md``).
    """

    d: int

    def of_distance(self, r: Tensor) -> Tensor:
        if self.d == 1:
            return -r
        if self.d == 2:
            return -torch.log(r)
        return r ** (2 - self.d) / (self.d - 2)


# ----------------------------------------------------------------------------------------------
# Energy terms


@dataclass(frozen=True)
class Potential:
    r"""Potential energy :math:`\int V\rho`. ``V`` maps ``(n, d)`` to ``(n,)``; ``grad`` (optional)
    maps ``(n, d)`` to ``(n, d)`` and defaults to autograd."""

    V: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor] | None = None

    def grad_V(self, x: Tensor) -> Tensor:
        if self.grad is not None:
            return self.grad(x)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.V(x).sum(), x)
        return g


@dataclass(frozen=True)
class Interaction:
    r"""Interaction energy :math:`\tfrac12\iint W(x-y)\rho(x)\rho(y)` with a radial ``kernel``."""

    kernel: Kernel

    def per_sample(self, x: Tensor, chunk: int = 2048) -> Tensor:
        r"""Per-particle terms :math:`\tfrac12\frac1{n-1}\sum_{j\ne i}W(x_i-x_j)` (a U-statistic)."""
        n = x.shape[0]
        out = torch.empty(n, dtype=x.dtype, device=x.device)
        for start in range(0, n, chunk):
            block = x[start : start + chunk]
            r = torch.cdist(block, x)
            idx = torch.arange(block.shape[0], device=x.device)
            # The diagonal (r = 0, singular for Newtonian kernels) is excluded, not evaluated.
            r[idx, start + idx] = 1.0
            w = self.kernel.of_distance(r)
            w[idx, start + idx] = 0.0
            out[start : start + chunk] = 0.5 * w.sum(dim=1) / (n - 1)
        return out

    def pair_terms(self, x: Tensor) -> Tensor:
        r"""The terms of :meth:`per_sample` differentiable in ``x`` (dense N × N, for the batches
        particle solvers train on): the diagonal is masked before the square root, so kernels
        singular at 0 and the gradient of :math:`|x|` at 0 never enter."""
        n = x.shape[0]
        sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        r = torch.where(eye, torch.ones_like(sq), sq).sqrt()
        w = torch.where(eye, torch.zeros_like(sq), self.kernel.of_distance(r))
        return 0.5 * w.sum(1) / (n - 1)


EnergyTerm = InternalEnergy | Potential | Interaction


@dataclass(frozen=True)
class EnergyEstimate:
    """A Monte Carlo estimate: ``value`` ± ``stderr`` (one standard error)."""

    value: float
    stderr: float


def _estimate(per_sample: Tensor) -> EnergyEstimate:
    n = per_sample.numel()
    value = float(per_sample.mean())
    stderr = float(per_sample.std() / math.sqrt(n)) if n > 1 else float("nan")
    return EnergyEstimate(value, stderr)


@dataclass(frozen=True)
class Energy:
    """A free energy made of typed terms: at most one internal energy, potentials, interactions."""

    terms: tuple[EnergyTerm, ...]

    def __init__(self, terms: Sequence[EnergyTerm]):
        terms = tuple(terms)
        if sum(isinstance(t, InternalEnergy) for t in terms) > 1:
            raise ValueError("an Energy has at most one internal-energy term")
        for t in terms:
            if not isinstance(t, InternalEnergy | Potential | Interaction):
                raise TypeError(f"not an energy term: {t!r}")
        object.__setattr__(self, "terms", terms)

    @property
    def internal(self) -> InternalEnergy | None:
        return next((t for t in self.terms if isinstance(t, InternalEnergy)), None)

    @property
    def potentials(self) -> tuple[Potential, ...]:
        return tuple(t for t in self.terms if isinstance(t, Potential))

    @property
    def interactions(self) -> tuple[Interaction, ...]:
        return tuple(t for t in self.terms if isinstance(t, Interaction))

    def V(self, x: Tensor) -> Tensor:
        """Total potential at ``x`` (zero when there is none)."""
        return sum((p.V(x) for p in self.potentials), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))

    def grad_V(self, x: Tensor) -> Tensor:
        return sum((p.grad_V(x) for p in self.potentials), torch.zeros_like(x))

    def _per_sample(self, x: Tensor, internal_terms: Tensor | None) -> Tensor:
        total = self.V(x)
        if internal_terms is not None:
            total = total + internal_terms
        for inter in self.interactions:
            # The pair terms h_i form an order-2 U-statistic with variance ≈ 4 Var(h_i)/n (Hoeffding
            # projection), twice the std/√n of the h_i themselves; 2h_i − mean(h) keeps the mean and
            # carries that variance, so _estimate's stderr is right.
            h = inter.per_sample(x)
            total = total + 2.0 * h - h.mean()
        return total

    def particle_terms(self, x: Tensor, log_rho: Tensor) -> Tensor:
        r"""Per-particle :math:`U(\rho)/\rho + V + \tfrac12\frac1{N-1}\sum_{l\ne j}W` (N,) at ``x``
        (N, d) with ``log_rho`` (N,), differentiable in both: their mean is the particle estimate
        of :math:`\mathcal E` that neural solvers differentiate (Deep JKO's loss, PWGF's
        :math:`F(\theta)`)."""
        total = self.V(x)
        if self.internal is not None:
            total = total + self.internal.per_mass(log_rho)
        for inter in self.interactions:
            total = total + inter.pair_terms(x)
        return total

    def on_particles(self, x: Tensor, log_rho: Tensor) -> EnergyEstimate:
        """Estimate from particles ``x`` (n, d) ~ ρ carrying their log-densities ``log_rho`` (n,)."""
        internal = self.internal
        terms = internal.per_mass(log_rho) if internal is not None else None
        return _estimate(self._per_sample(x, terms))

    def on_samples(self, x: Tensor) -> EnergyEstimate:
        """Estimate from samples alone (k-NN estimators for the internal energy)."""
        internal = self.internal
        terms = internal.per_sample(x) if internal is not None else None
        return _estimate(self._per_sample(x, terms))
