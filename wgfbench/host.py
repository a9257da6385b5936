"""The plugin host: loads ``wgfbench`` entry points with pluggy and collects problems and solvers.

Built-in plugins come through the entry-point group like any third-party one; nothing is
registered privately. ``WGFBENCH_DISABLE_PLUGINS`` (a comma list of entry-point names) blocks
plugins; a plugin that fails to import or to register is recorded by name with its error and the
others still load.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from wgfbench import hookspecs
from wgfbench.errors import DuplicateNameError
from wgfbench.metrics.registry import MetricRegistry, builtin_registry
from wgfbench.registry import PluginInfo, ProblemRegistry, SolverRegistry

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_ENV = "WGFBENCH_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised."""

    plugin: str
    stage: str  # "import" or the hook name
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed at {self.stage}: {self.error}"


def disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


@dataclass
class Host:
    """A pluggy ``PluginManager`` plus the problems and solvers its plugins registered.

    Parameters
    ----------
    entry_points:
        Load plugins from the ``wgfbench`` entry-point group (default ``True``).
    distributions:
        When given, only entry points shipped by these distributions load (tests use
        ``{"wgfbench"}`` so that stray installed plugins never leak in).
    plugins:
        Extra plugin objects (modules or instances with ``@hookimpl`` functions) registered
        directly, as tests and notebooks do.
    disable:
        Entry-point names to block; defaults to ``$WGFBENCH_DISABLE_PLUGINS``.
    """

    entry_points: bool = True
    distributions: Collection[str] | None = None
    plugins: Iterable[Any] = ()
    disable: Collection[str] | None = None
    pm: pluggy.PluginManager = field(init=False)
    problems: ProblemRegistry = field(init=False, default_factory=ProblemRegistry)
    solvers: SolverRegistry = field(init=False, default_factory=SolverRegistry)
    metrics: MetricRegistry = field(init=False, default_factory=builtin_registry)
    failures: list[PluginFailure] = field(init=False, default_factory=list)
    _info: dict[str, PluginInfo] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        disabled = set(self.disable) if self.disable is not None else disabled_from_env()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        if self.entry_points:
            self._load_entry_points(disabled)
        for obj in self.plugins:
            name = getattr(obj, "__name__", None) or type(obj).__name__
            if name in disabled:
                continue
            self._register(obj, PluginInfo(name=name, module=getattr(obj, "__module__", name) or name))
        self.pm.check_pending()
        self._collect("wgfbench_register_problems", self.problems)
        self._collect("wgfbench_register_solvers", self.solvers)
        self._collect("wgfbench_register_metrics", self.metrics)

    def _load_entry_points(self, disabled: set[str]) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in disabled:
                continue
            if self.distributions is not None and dist not in self.distributions:
                continue
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist,
                version=ep.dist.version if ep.dist is not None else None,
            )
            if ep.name in self._info:  # the same distribution seen twice on sys.path
                continue
            try:
                module = ep.load()
            except Exception as exc:
                self.failures.append(
                    PluginFailure(ep.name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
                )
                continue
            self._register(module, info)

    def _register(self, obj: Any, info: PluginInfo) -> None:
        self.pm.register(obj, name=info.name)
        self._info[info.name] = info

    def _collect(self, hook_name: str, registry: ProblemRegistry | SolverRegistry | MetricRegistry) -> None:
        hook = getattr(self.pm.hook, hook_name)
        # Called one plugin at a time (not hook(...)) so that a failing plugin is isolated and
        # every registered item carries the plugin that provided it.
        for impl in reversed(hook.get_hookimpls()):
            registry.current_plugin = self._info[impl.plugin_name]
            try:
                impl.function(registry)
            except DuplicateNameError:
                raise
            except Exception as exc:
                self.failures.append(
                    PluginFailure(
                        impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}", traceback.format_exc()
                    )
                )
            finally:
                registry.current_plugin = None

    @property
    def plugin_infos(self) -> dict[str, PluginInfo]:
        return dict(self._info)

    def plugin_versions(self) -> dict[str, str | None]:
        return {name: info.version for name, info in self._info.items()}


_default_host: Host | None = None


def default_host() -> Host:
    """The process-wide host built from installed entry points (built once, on first use)."""
    global _default_host
    if _default_host is None:
        _default_host = Host()
    return _default_host


def set_default_host(host: Host | None) -> Host | None:
    """Replace the host used by :func:`wgfbench.get_problem` and friends; returns the old one."""
    global _default_host
    old, _default_host = _default_host, host
    return old
