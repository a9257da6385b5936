r"""The :class:`Problem` contract: one Wasserstein gradient flow with trusted references.

A problem is the PDE

.. math:: \partial_t\rho = \nabla\cdot\big(\mathcal M(\rho)\,\nabla\tfrac{\delta\mathcal E}{\delta\rho}\big),
          \qquad \rho(0)=\rho_0,

given by its ``energy`` (typed terms, :mod:`wgfbench.energy`), its ``mobility``, the initial law
``initial`` and the snapshot ``times``. Time is elapsed time since :math:`\rho_0`:
``times[0] == 0``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from wgfbench.energy import Energy
from wgfbench.references import Distribution, JKOIterates, Reference

PRIMARY_METRICS = ("w2", "bures_w2", "radial_w2", "sliced_w2", "energy_gap")


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
    """An axis-aligned box ``[low, high]`` for grid solvers (no-flux boundary)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or any(h <= l for l, h in zip(self.low, self.high, strict=True)):
            raise ValueError(f"invalid box: low={self.low}, high={self.high}")

    @property
    def dim(self) -> int:
        return len(self.low)

    @classmethod
    def cube(cls, half_width: float, dim: int, centre: float = 0.0) -> Box:
        return cls((centre - half_width,) * dim, (centre + half_width,) * dim)


@dataclass(frozen=True)
class InitialFamily:
    """A seeded distribution over initial conditions of the same problem (for operator learning).

    ``draw(generator)`` returns ``(initial, reference)``: a member's :math:`\\rho_0` and its exact
    reference. Training members come from a seed stream distinct from the evaluated initial
    condition's.
    """

    description: str
    draw: Callable[[torch.Generator], tuple[Distribution, Reference]]


@dataclass(frozen=True, eq=False)
class Problem:
    """A benchmark problem (see ``DESIGN.md``, "Contracts").

    ``references`` maps a role to a reference: ``"pde"`` (the solution in time; also
    ``problem.reference``) and, where known, ``"jko"`` (:class:`~wgfbench.references.JKOIterates`).
    ``primary_metric`` ranks solvers on this problem; ``rel_error`` divides it by the same metric
    between :math:`\\rho_0` and the reference at ``t``. ``version`` is bumped whenever the physics
    or the reference changes, which invalidates cached results.
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
        if not self.name.startswith(f"{self.family}/"):
            raise ValueError(f"problem name {self.name!r} must start with its family {self.family!r}/")
        times = tuple(float(t) for t in self.times)
        object.__setattr__(self, "times", times)
        if not times or times[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError(f"{self.name}: times must start at 0 and increase, got {times}")
        if "pde" not in self.references or not isinstance(self.references["pde"], Reference):
            raise ValueError(f"{self.name}: references needs a 'pde' Reference")
        if "jko" in self.references and not isinstance(self.references["jko"], JKOIterates):
            raise ValueError(f"{self.name}: the 'jko' reference must be JKOIterates")
        if self.primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"{self.name}: primary_metric must be one of {PRIMARY_METRICS}")
        if self.initial.dim != self.dim or self.reference.dim != self.dim:
            raise ValueError(f"{self.name}: initial and reference must live in dimension {self.dim}")
        if self.box is not None and self.box.dim != self.dim:
            raise ValueError(f"{self.name}: box dimension {self.box.dim} != {self.dim}")
        if not self.dt > 0:
            raise ValueError(f"{self.name}: dt must be positive")

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
