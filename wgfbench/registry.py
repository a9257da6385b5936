"""Registries handed to the ``wgfbench_register_*`` hooks, recording which plugin provided what.

``add`` enforces the registration rules of :mod:`wgfbench.contract` (names, presets, …): a
violation raises :class:`~wgfbench.contract.ContractError` naming the rule, or, while the host
collects plugins, is recorded as the plugin's failure and the item is left out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from wgfbench.contract import ContractError, check_problem_name, check_solver_class
from wgfbench.errors import DuplicateNameError, PluginError, UnknownNameError, WgfbenchError

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

    A name registered twice raises :class:`DuplicateNameError`, and an item that breaks a rule of
    the contract :class:`~wgfbench.contract.ContractError`, except while the host collects
    plugins (``keep_first``): then the first registration is kept (the offending item is left
    out), the error is appended to ``rejected`` (the host records it as the plugin's failure) and
    the hook goes on, so one bad item neither sinks the host nor drops the plugin's other items.
    ``note`` is appended to the :class:`UnknownNameError` of :meth:`entry` (the host sets it to the
    plugins that failed to load, whose items are missing).
    """

    kind: str
    entries: dict[str, Registered[T]] = field(default_factory=dict)
    current_plugin: PluginInfo | None = None
    keep_first: bool = False
    rejected: list[WgfbenchError] = field(default_factory=list)
    note: str = ""

    def _reject(self, error: WgfbenchError) -> None:
        """Raise ``error``, or record it in ``rejected`` while the host collects (``keep_first``)."""
        if not self.keep_first:
            raise error
        self.rejected.append(error)

    def _check(self, name: str, item: T) -> None:
        """The registration rules of :mod:`wgfbench.contract` for ``item`` registered as ``name``
        (raises :class:`~wgfbench.contract.ContractError`); each kind of registry supplies its own."""
        raise NotImplementedError

    def _add(self, name: str, item: T) -> None:
        plugin = self.current_plugin or PluginInfo(name="<direct>", module="<direct>")
        try:
            self._check(name, item)
        except ContractError as exc:
            self._reject(ContractError(exc.rule, f"{exc.detail} ({self.kind} not registered)"))
            return
        if name in self.entries:
            other = self.entries[name].plugin
            error = DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {other} and by plugin {plugin}; "
                f"the first ({other.name}'s) is kept. Disable one with "
                f"WGFBENCH_DISABLE_PLUGINS={plugin.name} (or {other.name})."
            )
            self._reject(error)
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

    def _check(self, name: str, item: Any) -> None:
        check_problem_name(name)

    def _wrap(self, name: str, item: Any, plugin: PluginInfo) -> Any:
        from wgfbench.problem import Problem

        return item if isinstance(item, Problem) else ProblemFactory(name, item, plugin)


class SolverRegistry(_Registry[type]):
    """Collects solver classes (subclasses of :class:`wgfbench.Solver`)."""

    def __init__(self) -> None:
        super().__init__(kind="solver")

    def add(self, solver_cls: type) -> None:
        from wgfbench.solver import Solver

        if not (isinstance(solver_cls, type) and issubclass(solver_cls, Solver)):
            raise TypeError(f"registry.add expects a Solver subclass, got {solver_cls!r}")
        self._add(getattr(solver_cls, "name", None), solver_cls)  # type: ignore[arg-type]

    def _check(self, name: str, item: type) -> None:
        check_solver_class(item)
