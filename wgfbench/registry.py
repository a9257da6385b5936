"""Registries handed to the ``wgfbench_register_*`` hooks, recording which plugin provided what."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from wgfbench.errors import DuplicateNameError, PluginError, UnknownNameError

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
    """Items by name, each with the plugin that registered it.

    A name registered twice raises :class:`DuplicateNameError`, except while the host collects
    plugins (``keep_first``): then the first registration is kept, the error is appended to
    ``rejected`` (the host records it as the second plugin's failure) and the hook goes on, so one
    clash neither sinks the host nor drops the plugin's other items. ``note`` is appended to the
    :class:`UnknownNameError` of :meth:`entry` (the host sets it to the plugins that failed to load,
    whose items are missing).
    """

    kind: str
    entries: dict[str, Registered[T]] = field(default_factory=dict)
    current_plugin: PluginInfo | None = None
    keep_first: bool = False
    rejected: list[DuplicateNameError] = field(default_factory=list)
    note: str = ""

    def _add(self, name: str, item: T) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} must be registered with a non-empty string name")
        plugin = self.current_plugin or PluginInfo(name="<direct>", module="<direct>")
        if name in self.entries:
            other = self.entries[name].plugin
            error = DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other} and by plugin {plugin}; "
                f"the first ({other.name}'s) is kept. Disable one with "
                f"WGFBENCH_DISABLE_PLUGINS={plugin.name} (or {other.name})."
            )
            if not self.keep_first:
                raise error
            self.rejected.append(error)
            return
        self.entries[name] = Registered(name, self._wrap(name, item, plugin), plugin)

    def _wrap(self, name: str, item: T, plugin: PluginInfo) -> T:
        """What is stored for ``item`` (the item itself; problem factories are wrapped)."""
        return item

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
            raise UnknownNameError(self.kind, name, self.entries, note=self.note) from None


@dataclass(frozen=True)
class ProblemFactory:
    """A registered problem factory: calling it builds the problem, and any failure of the
    plugin's code becomes a :class:`~wgfbench.errors.PluginError` naming the problem and its plugin
    (one broken factory must be reported, not abort a whole plan). ``function`` is the callable the
    plugin registered."""

    name: str
    function: Callable[[], Any]
    plugin: PluginInfo

    def __call__(self) -> Any:
        from wgfbench.problem import Problem

        where = f"problem {self.name!r} of plugin {self.plugin}"
        try:
            problem = self.function()
        except Exception as exc:
            raise PluginError(f"{where} failed to build: {type(exc).__name__}: {exc}") from exc
        if not isinstance(problem, Problem):
            raise PluginError(
                f"{where}: its factory returned {type(problem).__name__}, not a wgfbench.Problem"
            )
        if problem.name != self.name:
            raise PluginError(f"{where}: its factory built a problem named {problem.name!r}")
        return problem


class ProblemRegistry(_Registry[Any]):
    """Collects problems. ``add(problem)`` or ``add(factory, name=...)`` for lazily built ones;
    a factory is stored as a :class:`ProblemFactory`."""

    def __init__(self) -> None:
        super().__init__(kind="problem")

    def add(self, problem: Any, name: str | None = None) -> None:
        from wgfbench.problem import Problem

        if not (isinstance(problem, Problem) or callable(problem)):
            raise TypeError(f"registry.add expects a wgfbench.Problem or a factory, got {problem!r}")
        if name is None:
            name = getattr(problem, "name", None)
            if name is None:
                raise ValueError("registry.add(factory) needs name=...: a factory has no .name")
        self._add(name, problem)

    def _wrap(self, name: str, item: Any, plugin: PluginInfo) -> Any:
        from wgfbench.problem import Problem

        return item if isinstance(item, Problem) else ProblemFactory(name, item, plugin)


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
