"""Registries handed to the ``wgfbench_register_*`` hooks, recording which plugin provided what."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from wgfbench.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from: its entry-point name, module, distribution and version."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "not installed"
        return f"{self.name} ({dist})"


@dataclass
class Registered(Generic[T]):
    """One registered item with the plugin that provided it."""

    name: str
    item: T
    plugin: PluginInfo


@dataclass
class _Registry(Generic[T]):
    kind: str
    entries: dict[str, Registered[T]] = field(default_factory=dict)
    current_plugin: PluginInfo | None = None

    def _add(self, name: str, item: T) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} must be registered with a non-empty string name")
        plugin = self.current_plugin or PluginInfo(name="<direct>", module="<direct>")
        if name in self.entries:
            other = self.entries[name].plugin
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other} and by plugin {plugin}. "
                f"Disable one with WGFBENCH_DISABLE_PLUGINS={plugin.name} (or {other.name})."
            )
        self.entries[name] = Registered(name, item, plugin)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> Registered[T]:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.entries) from None


class ProblemRegistry(_Registry[Any]):
    """Collects problems. ``add(problem)`` or ``add(factory, name=...)`` for lazily built ones."""

    def __init__(self) -> None:
        super().__init__(kind="problem")

    def add(self, problem: Any, name: str | None = None) -> None:
        if name is None:
            name = getattr(problem, "name", None)
            if name is None:
                raise ValueError("registry.add(factory) needs name=...: a factory has no .name")
        self._add(name, problem)


class SolverRegistry(_Registry[type]):
    """Collects solver classes (subclasses of :class:`wgfbench.Solver`)."""

    def __init__(self) -> None:
        super().__init__(kind="solver")

    def add(self, solver_cls: type) -> None:
        from wgfbench.solver import ROLES, Solver

        if not (isinstance(solver_cls, type) and issubclass(solver_cls, Solver)):
            raise TypeError(f"registry.add expects a Solver subclass, got {solver_cls!r}")
        if solver_cls.role not in ROLES:
            raise ValueError(
                f"solver {solver_cls.name!r} has role {solver_cls.role!r}; roles: {', '.join(ROLES)}"
            )
        self._add(solver_cls.name, solver_cls)
