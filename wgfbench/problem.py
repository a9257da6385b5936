r"""The :class:`Problem` contract: one Wasserstein gradient flow with trusted references.

A problem is the PDE

.. math:: \partial_t\rho = \nabla\cdot\big(\mathcal M(\rho)\,\nabla\tfrac{\delta\mathcal E}{\delta\rho}\big),
          \qquad \rho(0)=\rho_0,

given by its ``energy`` (typed terms, :mod:`wgfbench.energy`), its ``mobility``, the initial law
``initial`` and the snapshot ``times``. Time is elapsed time since :math:`\rho_0`:
``times[0] == 0``.

Solvers never see a :class:`Problem`: the runner hands them its :class:`ProblemView`
(:meth:`Problem.view`), which has everything that defines the flow (energy, mobility, initial law,
times, ``dt``, box, the initial family's initial laws) and nothing that answers it (no references,
no reference samplers, no members' references). Only the calibration and baseline rows
(``Solver.role``) get the problem itself, and the leaderboard never ranks them as solvers.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from torch import Tensor

from wgfbench.contract import ContractError, check_problem
from wgfbench.energy import Energy
from wgfbench.references import Distribution, JKOIterates, Reference


def primary_metrics() -> tuple[str, ...]:
    """The metrics a problem may rank by: every built-in distance with a noise floor
    (:data:`wgfbench.metrics.registry.BUILTIN_METRICS` entries with ``floor=True``) and the energy
    gap of stationary-only references. Read from the metric registry, never listed twice."""
    from wgfbench.metrics.registry import BUILTIN_METRICS

    return (*(m.name for m in BUILTIN_METRICS if m.floor), "energy_gap")


def __getattr__(name: str) -> object:
    if name == "PRIMARY_METRICS":  # computed lazily: the registry imports this module's users
        return primary_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


STATIONARY_ROLE = "stationary"
r"""``references["stationary"]``: the stationary law :math:`\rho_\infty` (a
:class:`~wgfbench.references.Stationary`) wherever the flow has one and it is known, also for
problems whose ``"pde"`` reference is time-resolved; the ``equilibrium`` baseline returns it."""


@dataclass(frozen=True)
class Mobility:
    r"""The mobility of the flow.

    * ``wasserstein``: :math:`\partial_t\rho=\nabla\cdot(\rho\nabla\delta\mathcal E/\delta\rho)`;
    * ``nonlinear``: :math:`\nabla\cdot(M(\rho)\nabla\delta\mathcal E/\delta\rho)` with ``M`` given
      (e.g. :math:`M(\rho)=\rho(1-\rho)`, Deep JKO §4.3);
    * ``kalman``: :math:`\nabla\cdot(\rho\,C(\rho)\nabla\delta\mathcal E/\delta\rho)` with
      :math:`C(\rho)` the covariance of :math:`\rho` (Garbuno-Inigo et al. 2020; Deep JKO (34)).
    """

    kind: Literal["wasserstein", "nonlinear", "kalman"] = "wasserstein"
    M: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if (self.kind == "nonlinear") != (self.M is not None):
            raise ValueError("a nonlinear mobility needs M(rho); the others take none")


@dataclass(frozen=True)
class Box:
    r"""An axis-aligned box :math:`[\mathrm{low}_1,\mathrm{high}_1]\times\dots\times
    [\mathrm{low}_d,\mathrm{high}_d]`: the grid of grid solvers, and for ``wall=True`` the domain.

    ``wall`` says what the box is:

    * ``True``: the problem is posed on the box with a no-flux (reflecting) boundary,
      :math:`\rho\,M(\rho)\nabla\frac{\delta\mathcal E}{\delta\rho}\cdot n = 0` on its faces
      (e.g. ``fokker-planck/box-1d`` on :math:`[0,1]`). Mass never leaves it, the law may be
      positive up to its faces, and every solver must respect the walls: particles are reflected
      back (or kept in), grid schemes close the box; a solver that cannot declines the problem in
      ``supports``, naming the wall.
    * ``False`` (default): the flow lives on :math:`\mathbb R^d` and the box is a computational
      window where the law has negligible mass at every snapshot (Gaussians are cut at ±7σ),
      for grid solvers and plots; particle solvers ignore it.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    wall: bool = False

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or any(h <= l for l, h in zip(self.low, self.high, strict=True)):
            raise ValueError(f"invalid box: low={self.low}, high={self.high}")
        if not isinstance(self.wall, bool):
            raise ValueError(f"Box.wall must be True or False, got {self.wall!r}")

    @property
    def dim(self) -> int:
        return len(self.low)

    @classmethod
    def cube(cls, half_width: float, dim: int, centre: float = 0.0, wall: bool = False) -> Box:
        """The cube :math:`[c-h, c+h]^d` with ``c = centre``, ``h = half_width``, ``d = dim``."""
        return cls((centre - half_width,) * dim, (centre + half_width,) * dim, wall)


@dataclass(frozen=True)
class InitialFamily:
    """A seeded distribution over initial conditions of the same problem (for operator learning).

    ``draw(generator)`` returns ``(initial, reference)``: a member's :math:`\\rho_0` and its exact
    reference. Training members come from a seed stream distinct from the evaluated initial
    condition's.
    """

    description: str
    draw: Callable[[torch.Generator], tuple[Distribution, Reference]]

    def view(self) -> InitialFamilyView:
        """The family as solvers see it: members' initial laws without their references."""
        return InitialFamilyView(self.description, _InitialLaws(self.draw))


_MEMBER_FACTORIES: dict[int, Callable[[torch.Generator], tuple[Distribution, Reference]]] = {}
"""Member factories of the initial families that have handed out a view, by token. The view holds
only the token: a factory may close over references (a shared stationary law), and nothing
reachable from a :class:`ProblemView` may lead to one."""
_TOKENS = itertools.count()


class _InitialLaws:
    r"""``draw(generator) -> Distribution``: the :math:`\rho_0` of a family member. Holds a token
    of the member factory, never the factory; the member's reference is dropped before anything is
    returned."""

    __slots__ = ("_token",)

    def __init__(self, draw: Callable[[torch.Generator], tuple[Distribution, Reference]]):
        self._token = next(_TOKENS)
        _MEMBER_FACTORIES[self._token] = draw

    def __call__(self, generator: torch.Generator) -> Distribution:
        initial, _reference = _MEMBER_FACTORIES[self._token](generator)
        return initial


@dataclass(frozen=True)
class InitialFamilyView:
    r"""An :class:`InitialFamily` as solvers see it: ``draw(generator)`` returns a member's
    :math:`\rho_0` only (operator-learning solvers train on these; the references stay with
    the scorer)."""

    description: str
    draw: Callable[[torch.Generator], Distribution]


@dataclass(frozen=True, eq=False)
class Problem:
    """A benchmark problem: one Wasserstein gradient flow (module docstring) and the references
    it is scored against. Construction enforces the rules of :mod:`wgfbench.contract`
    (:func:`~wgfbench.contract.check_problem`: lower-case ``family/id`` name, times, ``dt`` no
    larger than a snapshot gap, typed energy, references, …) and raises
    :class:`~wgfbench.contract.ContractError` naming the rule broken.

    ``references`` maps a role to a reference: ``"pde"`` (the solution in time; also
    ``problem.reference``) and, where known, ``"jko"`` (:class:`~wgfbench.references.JKOIterates`).
    ``primary_metric`` ranks solvers on this problem; ``rel_error`` divides it by the same metric
    between :math:`\\rho_0` and the reference at ``t``. ``version`` is bumped whenever the physics
    or the reference changes, which invalidates cached results. ``times`` are the snapshot times
    (``times[0] == 0`` is :math:`\\rho_0`) and ``dt`` the recommended step, at most the smallest
    gap between them. ``box`` is the grid solvers' box; ``box.wall`` (also ``has_walls``) says
    whether it is a no-flux wall every solver must respect or only a window (:class:`Box`).
    """

    name: str
    family: str
    dim: int
    energy: Energy
    initial: Distribution
    times: tuple[float, ...]
    dt: float
    references: Mapping[str, Reference | JKOIterates]
    primary_metric: str
    mobility: Mobility = field(default_factory=Mobility)
    box: Box | None = None
    initial_family: InitialFamily | None = None
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        try:
            times = tuple(float(t) for t in self.times)
        except (TypeError, ValueError):
            raise ContractError(
                "snapshot times", f"{self.name}: times must be numbers, got {self.times!r}"
            ) from None
        object.__setattr__(self, "times", times)
        check_problem(self)
        self._name_references()

    def _name_references(self) -> None:
        """Tell each reference which problem it answers for, so that its errors name it
        (``reference of fokker-planck/ou-2d asked for t = -1``). A reference shared by several
        problems keeps the first name."""
        for role, reference in self.references.items():
            if not isinstance(reference, Reference | JKOIterates) or reference.owner:
                continue
            owner = self.name if role in ("pde", "jko") else f"{self.name} ({role})"
            try:
                reference.owner = owner
            except AttributeError:  # a reference with __slots__ keeps its class name
                pass

    @property
    def reference(self) -> Reference:
        """The solution of the PDE in time (the ``"pde"`` role)."""
        return self.references["pde"]  # type: ignore[return-value]

    @property
    def jko(self) -> JKOIterates | None:
        return self.references.get("jko")  # type: ignore[return-value]

    @property
    def final_time(self) -> float:
        return self.times[-1]

    @property
    def has_walls(self) -> bool:
        """Whether the problem is posed on ``box`` with no-flux walls that solvers must respect
        (``box.wall``; :class:`Box`)."""
        return self.box is not None and self.box.wall

    @property
    def stationary(self) -> Reference | None:
        r""":math:`\rho_\infty` where known: ``references["stationary"]``, or the ``"pde"``
        reference itself when it is stationary."""
        law = self.references.get(STATIONARY_ROLE)
        if law is None and self.reference.kind == "stationary":
            law = self.reference
        return law  # type: ignore[return-value]

    def view(self) -> ProblemView:
        """What a solver may see of this problem (module docstring): the flow, not its answers.
        Built once per problem."""
        cached = self.__dict__.get("_view")
        if cached is None:
            cached = self._make_view()
            object.__setattr__(self, "_view", cached)
        return cached

    def _make_view(self) -> ProblemView:
        """Every field of :class:`ProblemView` copied from this problem (the field names are the
        same), with the initial family replaced by its view."""
        shared = {f.name: getattr(self, f.name) for f in fields(ProblemView) if f.name != "initial_family"}
        family = None if self.initial_family is None else self.initial_family.view()
        return ProblemView(**shared, initial_family=family)


@dataclass(frozen=True, eq=False)
class ProblemView:
    """A :class:`Problem` without its references: what ``Solver.prepare`` and ``Solver.solve``
    receive. Same field names as the problem, so solver code reads ``problem.energy``,
    ``problem.initial``, ``problem.times`` … either way; ``references``, ``reference``, ``jko``
    and the primary metric are absent, and ``initial_family`` is an :class:`InitialFamilyView`.
    ``box.wall`` / ``has_walls`` tell a solver whether the box is a no-flux wall it must respect
    (:class:`Box`)."""

    name: str
    family: str
    dim: int
    energy: Energy
    initial: Distribution
    times: tuple[float, ...]
    dt: float
    mobility: Mobility = field(default_factory=Mobility)
    box: Box | None = None
    initial_family: InitialFamilyView | None = None
    version: int = 1
    description: str = ""

    @property
    def final_time(self) -> float:
        return self.times[-1]

    @property
    def has_walls(self) -> bool:
        """Whether the problem is posed on ``box`` with no-flux walls that solvers must respect
        (``box.wall``; :class:`Box`)."""
        return self.box is not None and self.box.wall

    def view(self) -> ProblemView:
        return self


ProblemLike = Problem | ProblemView
"""What solvers are typed against: the runner passes a :class:`ProblemView`, and direct callers
(tests, scripts) may pass a whole :class:`Problem`."""


_SOLVER_RUNNING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "wgfbench_solver_running", default=False
)


@contextmanager
def solver_scope(role: str = "solver") -> Iterator[None]:
    """While a ``solver`` role's ``prepare``/``solve`` runs (the runner enters this scope),
    :func:`wgfbench.get_problem` returns :class:`ProblemView` s: the registry is no back door to
    the references. Baseline and calibration roles run unscoped."""
    token = _SOLVER_RUNNING.set(role == "solver")
    try:
        yield
    finally:
        _SOLVER_RUNNING.reset(token)


def solver_is_running() -> bool:
    """True inside :func:`solver_scope` for a solver."""
    return _SOLVER_RUNNING.get()
