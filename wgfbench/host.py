"""The plugin host: loads ``wgfbench`` entry points with pluggy and collects problems and solvers.

Built-in plugins come through the entry-point group like any third-party one; nothing is
registered privately. ``WGFBENCH_DISABLE_PLUGINS`` (a comma list of entry-point names) blocks
plugins; a plugin that fails to import or to register is recorded by name with its error and the
others still load. A solver or problem name registered by two plugins keeps the first registration
and is recorded as a failure of the second; an item that breaks a registration rule of
:mod:`wgfbench.contract` (a name with capitals or glob characters, presets for a misspelt tier, …)
is left out and recorded as its plugin's failure, with the rule named, while the plugin's other
items register; a disabled name that no plugin has is recorded (and
warned about) with the close matches, since the plugin meant is then still loaded.
"""

from __future__ import annotations

import os
import traceback
import warnings
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from wgfbench import hookspecs
from wgfbench.errors import DuplicateNameError, close_matches
from wgfbench.metrics.registry import MetricRegistry, builtin_registry
from wgfbench.registry import PluginInfo, ProblemRegistry, SolverRegistry

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
DISABLE_ENV = "WGFBENCH_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, whose hook raised, that registered a name another
    plugin already had or an item that breaks a rule of the contract
    (:class:`~wgfbench.contract.ContractError`, left out); also a disabled name that no plugin
    has (``stage`` ``"disable"``)."""

    plugin: str
    stage: str  # "import", the hook name, or "disable"
    error: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed at {self.stage}: {self.error}"

    @property
    def hides_items(self) -> bool:
        """Whether items of the plugin may be missing because of this failure: a failed import
        or hook, not a duplicate (the name is there, from the other plugin) nor a disable typo."""
        return self.stage != DISABLE_STAGE and not self.error.startswith(f"{DuplicateNameError.__name__}:")


DISABLE_STAGE = "disable"
"""``PluginFailure.stage`` of a disabled name that matches no plugin."""

_HOOK_OF_KIND = {"solver": "wgfbench_register_solvers", "problem": "wgfbench_register_problems"}


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
        from_env = self.disable is None
        disabled = disabled_from_env() if from_env else set(self.disable)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        # Every installed entry-point name counts as known, loaded or not (entry_points=False,
        # another distribution): a disabled name is a typo only when no plugin anywhere has it.
        known = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if self.entry_points:
            self._load_entry_points(disabled)
        for obj in self.plugins:
            name = getattr(obj, "__name__", None) or type(obj).__name__
            known.add(name)
            if name in disabled:
                continue
            self._register(obj, PluginInfo(name=name, module=getattr(obj, "__module__", name) or name))
        self._check_disabled(disabled, known, from_env)
        self.pm.check_pending()
        self._collect("wgfbench_register_problems", self.problems)
        self._collect("wgfbench_register_solvers", self.solvers)
        self._collect("wgfbench_register_metrics", self.metrics)
        self.problems.note = self.failure_note("problem")
        self.solvers.note = self.failure_note("solver")

    def _check_disabled(self, disabled: set[str], known: set[str], from_env: bool) -> None:
        """A disabled name that no plugin has is a typo whose plugin is still loaded: warn and
        record it (``wgfbench list`` shows it) with the close matches."""
        source = DISABLE_ENV if from_env else "Host(disable=...)"
        for name in sorted(disabled - known):
            close = close_matches(name, known)
            hint = (
                f"did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else f"plugins: {', '.join(sorted(known)) or 'none'}."
            )
            message = f"{source} names {name!r}, but no plugin has that name, so nothing was disabled; {hint}"
            warnings.warn(message, UserWarning, stacklevel=4)
            self.failures.append(PluginFailure(name, DISABLE_STAGE, message))

    def failure_note(self, kind: str | None = None) -> str:
        """The plugins whose items may be missing because they failed to load, as a sentence to
        append to an "unknown name" error (empty when none did).

        ``kind`` (``"solver"`` or ``"problem"``) keeps only the failures that can hide that kind:
        failed imports and failures of its registration hook. The runner passes it to
        :class:`~wgfbench.errors.UnknownNameError` (``note=``) so that selecting a solver of a
        broken plugin says why it is missing instead of suggesting a typo.
        """
        stages = {"import", _HOOK_OF_KIND[kind]} if kind in _HOOK_OF_KIND else None
        parts = []
        for f in self.failures:
            if not f.hides_items or (stages is not None and f.stage not in stages):
                continue
            if f.stage == "import":
                parts.append(
                    f"plugin {f.plugin!r} failed to load ({f.error}); "
                    "its solvers and problems are unavailable"
                )
            else:
                what = f.stage.removeprefix("wgfbench_register_")
                parts.append(f"plugin {f.plugin!r} failed to register its {what} ({f.error})")
        if not parts:
            return ""
        text = "; ".join(parts)
        return f"{text[0].upper()}{text[1:]}; see `wgfbench list`."

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
        # every registered item carries the plugin that provided it. A solver or problem name that
        # another plugin registered first is kept from the first, and an item that breaks a
        # contract rule is left out; both are recorded as this plugin's failures (``keep_first``)
        # and its other items still register. The metric registry raises on a clash, caught here.
        keeps_first = isinstance(registry, ProblemRegistry | SolverRegistry)
        for impl in reversed(hook.get_hookimpls()):
            registry.current_plugin = self._info[impl.plugin_name]
            if keeps_first:
                registry.keep_first = True
            try:
                impl.function(registry)
            except Exception as exc:
                self.failures.append(
                    PluginFailure(
                        impl.plugin_name, hook_name, f"{type(exc).__name__}: {exc}", traceback.format_exc()
                    )
                )
            finally:
                registry.current_plugin = None
            if keeps_first:
                registry.keep_first = False
                self.failures.extend(
                    PluginFailure(impl.plugin_name, hook_name, f"{type(error).__name__}: {error}")
                    for error in registry.rejected
                )
                registry.rejected.clear()

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
