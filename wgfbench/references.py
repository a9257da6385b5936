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

Every reference checks its arguments before answering (:meth:`Reference.check_time`, applied to
``sample``, ``log_density``, ``mean``, ``cov``, ``energy`` and ``at`` of every subclass, plugins'
included): a negative, NaN or infinite time, a time beyond the data a stored reference holds, a
negative sample size or a non-finite point raises :class:`~wgfbench.errors.InvalidInput` naming the
reference, instead of answering with extrapolated samples or failing inside a factorisation.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from wgfbench.errors import InvalidInput

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
    r"""The Gaussian law :math:`\mathcal N(m, \Sigma)` on :math:`\mathbb R^d`: ``mean`` :math:`m`
    (d,) and positive definite ``cov`` :math:`\Sigma` (d, d), any array-like (stored in float64).
    Sampled as :math:`m + L\xi` with :math:`LL^\top=\Sigma` (Cholesky), :math:`\xi\sim\mathcal
    N(0, I)`; ``log_density``, ``mean()`` and ``cov()`` in closed form."""

    def __init__(self, mean, cov):
        self._mean = as_tensor(mean).reshape(-1)
        self._cov = as_tensor(cov)
        self.dim = self._mean.numel()
        if self._cov.shape != (self.dim, self.dim):
            raise ValueError(f"covariance must be {self.dim}x{self.dim}, got {tuple(self._cov.shape)}")
        if not (torch.isfinite(self._mean).all() and torch.isfinite(self._cov).all()):
            raise InvalidInput(
                f"a Gaussian needs a finite mean and covariance, got {self._mean} and {self._cov}"
            )
        try:
            self._chol = torch.linalg.cholesky(self._cov)
        except RuntimeError as exc:  # torch.linalg.LinAlgError
            raise InvalidInput(f"the covariance of a Gaussian must be positive definite: {exc}") from exc

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
    r"""The Gaussian mixture :math:`\sum_k w_k\,\mathcal N(m_k, \Sigma_k)`: ``weights`` (K,)
    non-negative with sum 1, ``means`` (K, d), ``covs`` (K, d, d); samples, density, mean and
    covariance in closed form."""

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
# Argument checks shared by every reference


_MISSING = object()

_CHECKED_METHODS = ("sample", "log_density", "mean", "cov", "energy", "at")
"""Methods whose first argument is a time ``t``: every subclass's own definitions are wrapped by
:func:`_checking_arguments` (``sample``'s second is the size ``n``, ``log_density``'s the points)."""


def _argument(args: tuple, kwargs: dict, index: int, name: str | None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, _MISSING) if name is not None else _MISSING


def _checking_arguments(method_name: str, method: Callable) -> Callable:
    """``method`` preceded by the reference's checks of its time (and of ``n`` or the points);
    arguments are passed on unchanged."""
    names = [
        p.name
        for p in list(inspect.signature(method).parameters.values())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    t_name = names[0] if names else None
    second = names[1] if len(names) > 1 else None

    @functools.wraps(method)
    def checked(self, *args: Any, **kwargs: Any) -> Any:
        t = _argument(args, kwargs, 0, t_name)
        if t is not _MISSING:  # a missing argument is the method's own TypeError
            self.check_time(t)
            if method_name == "sample" and (n := _argument(args, kwargs, 1, second)) is not _MISSING:
                self._check_size(n, t)
            elif method_name == "log_density" and (x := _argument(args, kwargs, 1, second)) is not _MISSING:
                self.check_points(x, t)
        return method(self, *args, **kwargs)

    checked.__wgfbench_checked__ = True  # type: ignore[attr-defined]
    return checked


# ----------------------------------------------------------------------------------------------
# References ρ(t)


class Reference(ABC):
    """The law :math:`\\rho(t)` a solver is scored against (see module docstring).

    ``radial_centre`` is set for references that are radial about a point, which enables the
    low-noise ``radial_w2`` metric. ``owner`` says which problem (and role) the reference answers
    for; :class:`~wgfbench.problem.Problem` sets it, and error messages name it. ``times`` are the
    only times a stored (numerical) reference holds; ``None`` where every ``t ≥ 0`` is answered.

    Every subclass's ``sample``, ``log_density``, ``mean``, ``cov``, ``energy`` and ``at`` first
    check their arguments (:meth:`check_time`, :meth:`check_points`); subclasses implement only the
    answer.
    """

    kind: ClassVar[ReferenceKind]
    dim: int
    radial_centre: Tensor | None = None
    provenance: str = ""
    owner: str = ""
    times: tuple[float, ...] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _CHECKED_METHODS:
            method = cls.__dict__.get(name)
            if inspect.isfunction(method) and not getattr(method, "__wgfbench_checked__", False):
                setattr(cls, name, _checking_arguments(name, method))

    def describe(self) -> str:
        """How error messages name this reference: ``reference of fokker-planck/ou-2d``."""
        return f"reference of {self.owner}" if self.owner else f"{type(self).__name__} reference"

    def check_time(self, t: Any) -> float:
        """``t`` as a float, or :class:`~wgfbench.errors.InvalidInput` when this reference cannot
        answer it: not a real number, NaN, negative (time is elapsed since :math:`\\rho_0`),
        infinite (only a stationary reference answers ``t = inf``), or beyond the last of the
        stored ``times`` (a stored reference does not extrapolate)."""
        try:
            value = float(t)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInput(f"{self.describe()} asked for t = {t!r}: a time is a real number") from None
        if math.isnan(value):
            raise InvalidInput(f"{self.describe()} asked for t = nan: a time is a number ≥ 0")
        if math.isinf(value):
            if value > 0 and self.kind == "stationary":
                return value
            raise InvalidInput(
                f"{self.describe()} asked for t = {value}: times are finite "
                "(only a stationary reference answers t = inf)"
            )
        if value < 0:
            raise InvalidInput(f"{self.describe()} asked for t = {value:g}: times start at 0")
        stored = self.times
        if stored is not None and len(stored) > 0:
            last = max(float(s) for s in stored)
            if value > last + 1e-9 * max(1.0, abs(last)):
                raise InvalidInput(
                    f"{self.describe()} asked for t = {value:g}: its stored data end at t = {last:g}"
                )
        return value

    def check_points(self, x: Any, t: Any = None) -> None:
        """:class:`~wgfbench.errors.InvalidInput` when the points ``x`` (n, d) hold NaN or ±inf,
        or live in another dimension than the reference."""
        at = "" if t is None else f" at t = {float(t):g}"
        try:
            points = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            return  # not array-like: the method's own error says so
        if points.ndim == 2 and points.shape[1] != self.dim:
            raise InvalidInput(
                f"{self.describe()} is {self.dim}-D; asked for log_density{at} of points of shape "
                f"{tuple(points.shape)}"
            )
        if points.is_floating_point() and not bool(torch.isfinite(points).all()):
            non_finite = ~torch.isfinite(points)
            bad = int(non_finite.flatten(1).any(1).sum() if points.ndim >= 2 else non_finite.sum())
            raise InvalidInput(
                f"{self.describe()} asked for log_density{at} of {bad} non-finite point(s) (NaN or ±inf): "
                "evaluate finite points only"
            )

    def _check_size(self, n: Any, t: Any) -> None:
        try:
            size = operator.index(n)
        except TypeError:
            raise InvalidInput(f"{self.describe()} asked for n = {n!r} samples: n is an integer") from None
        if size < 0:
            raise InvalidInput(f"{self.describe()} asked for n = {size} samples at t = {float(t):g}: n ≥ 0")

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
    r"""An exact, time-dependent reference :math:`t\mapsto\rho(t)` given in closed form: ``at(t)``
    returns the :class:`Distribution` :math:`\rho(t)` at elapsed time ``t >= 0`` (``at(0)`` is
    :math:`\rho_0`), and ``sample``, ``log_density``, ``mean`` and ``cov`` at ``t`` are those of
    ``at(t)``. ``dim`` is the dimension; ``energy``, when given, is the closed-form free energy
    :math:`t\mapsto\mathcal E(\rho(t))` (``None``: unknown). Kind ``"exact"``.

    E.g. the Ornstein–Uhlenbeck flow :math:`\partial_t\rho=\nabla\cdot(\rho\nabla V)+\Delta\rho`,
    :math:`V=\tfrac a2|x|^2`, from :math:`\mathcal N(m_0,s_0 I)` in 1-D is
    ``DistributionPath(lambda t: Gaussian([m0 * exp(-a t)], [[s0 exp(-2at) + (1 - exp(-2at)) / a]]), 1)``.
    """

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
    """The stationary law :math:`\\rho_\\infty = \\lim_{t\\to\\infty}\\rho(t)` as a reference (kind
    ``"stationary"``): ``law`` is its :class:`Distribution`, and ``sample``/``log_density``/
    ``mean``/``cov`` ignore ``t``. A problem's ``references["stationary"]``, or its ``"pde"``
    reference where only the end state is known (then scored at the final snapshot).

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
    the JKO time discretisation. Every subclass's ``for_step`` first checks that ``tau`` is a
    positive finite number, and the reference it returns is named after ``owner`` (the problem's
    name, set by :class:`~wgfbench.problem.Problem`).
    """

    owner: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("for_step")
        if inspect.isfunction(method) and not getattr(method, "__wgfbench_checked__", False):
            cls.for_step = _checking_step(method)  # type: ignore[method-assign]

    @abstractmethod
    def for_step(self, tau: float) -> Reference: ...


def _checking_step(method: Callable) -> Callable:
    """``for_step`` preceded by the check of ``tau`` and followed by naming the reference it built."""

    @functools.wraps(method)
    def checked(self: JKOIterates, tau: Any) -> Reference:
        name = f"JKO iterates of {self.owner}" if self.owner else f"{type(self).__name__}"
        try:
            value = float(tau)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInput(f"{name} asked for tau = {tau!r}: the JKO step is a real number") from None
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(f"{name} asked for tau = {value:g}: the JKO step is a positive finite number")
        reference = method(self, tau)
        if self.owner and isinstance(reference, Reference) and not reference.owner:
            try:
                reference.owner = f"{self.owner} (jko, tau = {value:g})"
            except AttributeError:  # a reference with __slots__ keeps its class name
                pass
        return reference

    checked.__wgfbench_checked__ = True  # type: ignore[attr-defined]
    return checked


def jko_step_count(t: float, tau: float) -> int:
    """The number of JKO steps ``k`` with ``k * tau == t``; raises when ``t`` is not on the τ-grid."""
    k = round(t / tau)
    if abs(k * tau - t) > 1e-9 * max(1.0, abs(t)):
        raise ValueError(f"t={t} is not a multiple of the JKO step tau={tau}")
    return k
