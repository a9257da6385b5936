"""The pluggy host: entry points, isolation of failing plugins, duplicates, disabling, docs."""

from __future__ import annotations

import inspect
import re
import sys
import types
from importlib import metadata

import pytest
import torch
from toy_plugins import FrozenSolver, plugin_module, tiny_problem

import wgfbench
from wgfbench import hookspecs
from wgfbench.errors import DuplicateNameError, PluginError, UnknownNameError
from wgfbench.host import Host

BUILTIN_PLUGINS = {
    "fokker-planck",
    "porous-medium",
    "aggregation",
    "kalman-wasserstein",
    "reference",
    "langevin",
}


_plugin = plugin_module


def test_builtins_come_through_entry_points():
    eps = {ep.name: ep for ep in metadata.entry_points(group="wgfbench")}
    assert BUILTIN_PLUGINS <= set(eps)
    host = Host(distributions={"wgfbench"})
    assert not host.failures, host.failures
    assert BUILTIN_PLUGINS <= set(host.plugin_infos)
    for name in BUILTIN_PLUGINS:
        info = host.plugin_infos[name]
        assert info.distribution == "wgfbench"
        assert info.version == wgfbench.__version__
    # Every built-in item names the plugin that provided it.
    assert host.solvers.entry("langevin").plugin.name == "langevin"


def test_direct_plugins_register_problems_and_solvers():
    host = Host(entry_points=False, plugins=[_plugin("toyplug", [tiny_problem()], [FrozenSolver])])
    assert list(host.problems) == ["toy/gauss-1d"]
    assert list(host.solvers) == ["toy-frozen"]
    assert host.problems.entry("toy/gauss-1d").plugin.name == "toyplug"
    problem = wgfbench.get_problem("toy/gauss-1d", host=host)
    solver = wgfbench.get_solver("toy-frozen", tier="smoke", host=host)
    assert isinstance(solver, FrozenSolver) and problem.dim == 1


class OtherFrozenSolver(FrozenSolver):
    name = "toy-other"


def test_duplicate_names_keep_the_first_and_are_the_second_plugins_failure():
    a = _plugin("plugin_a", [tiny_problem()], [FrozenSolver])
    b = _plugin("plugin_b", [tiny_problem(), tiny_problem("toy/other-1d")], [FrozenSolver, OtherFrozenSolver])
    host = Host(entry_points=False, plugins=[a, b])
    first = host.problems.entry("toy/gauss-1d").plugin.name  # the plugin collected first
    second = ({"plugin_a", "plugin_b"} - {first}).pop()
    assert host.solvers.entry("toy-frozen").plugin.name == first
    assert [(f.plugin, f.stage) for f in host.failures] == [
        (second, "wgfbench_register_problems"),
        (second, "wgfbench_register_solvers"),
    ]
    assert all(f.error.startswith("DuplicateNameError") for f in host.failures)
    assert re.search(rf"problem 'toy/gauss-1d'.*{first}.*{second}", host.failures[0].error)
    assert re.search(rf"solver 'toy-frozen'.*{first}.*{second}", host.failures[1].error)
    # plugin_b's other items still register
    assert host.problems.entry("toy/other-1d").plugin.name == "plugin_b"
    assert host.solvers.entry("toy-other").plugin.name == "plugin_b"
    assert host.failure_note("solver") == ""  # a clash hides nothing: the name is there
    # outside the host's collection a registry still refuses a second registration
    with pytest.raises(DuplicateNameError, match=rf"{first}.*<direct>"):
        host.solvers.add(FrozenSolver)


def test_failed_plugins_are_named_when_one_of_their_names_is_unknown():
    bad = types.ModuleType("bad")

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        raise ImportError("needs a missing package")

    bad.wgfbench_register_solvers = wgfbench_register_solvers
    host = Host(entry_points=False, plugins=[bad, _plugin("good", [tiny_problem()], [FrozenSolver])])
    note = host.failure_note("solver")
    assert "Plugin 'bad' failed to register its solvers (ImportError: needs a missing package)" in note
    assert host.failure_note("problem") == ""
    with pytest.raises(UnknownNameError, match="Plugin 'bad' failed") as info:
        wgfbench.get_solver("bad-solver", host=host)
    assert info.value.note == note


def test_a_broken_problem_factory_is_a_plugin_error_naming_problem_and_plugin():
    def broken():
        raise RuntimeError("reference data missing")

    def misnamed():
        return tiny_problem("toy/other-1d")

    module = types.ModuleType("factories")

    @wgfbench.hookimpl
    def wgfbench_register_problems(registry):
        registry.add(broken, name="toy/broken-1d")
        registry.add(misnamed, name="toy/misnamed-1d")

    module.wgfbench_register_problems = wgfbench_register_problems
    host = Host(entry_points=False, plugins=[module])
    with pytest.raises(
        PluginError, match=r"'toy/broken-1d' of plugin factories.*RuntimeError: reference data"
    ):
        wgfbench.get_problem("toy/broken-1d", host=host)
    with pytest.raises(PluginError, match="built a problem named 'toy/other-1d'"):
        wgfbench.get_problem("toy/misnamed-1d", host=host)


def test_disabling_an_unknown_plugin_warns_and_is_recorded_with_close_matches(monkeypatch):
    monkeypatch.setenv("WGFBENCH_DISABLE_PLUGINS", "langevn")
    with pytest.warns(UserWarning, match="'langevn'.*did you mean 'langevin'"):
        host = Host(distributions={"wgfbench"})
    (failure,) = host.failures
    assert (
        failure.plugin == "langevn"
        and failure.stage == "disable"
        and "WGFBENCH_DISABLE_PLUGINS" in failure.error
    )
    assert "langevin" in host.solvers and host.failure_note("solver") == ""


def test_failing_plugin_is_reported_and_others_still_load():
    good = _plugin("good", [tiny_problem()])
    bad = types.ModuleType("bad")

    @wgfbench.hookimpl
    def wgfbench_register_solvers(registry):
        raise RuntimeError("boom in register")

    bad.wgfbench_register_solvers = wgfbench_register_solvers
    host = Host(entry_points=False, plugins=[bad, good])
    assert [f.plugin for f in host.failures] == ["bad"]
    assert "boom in register" in str(host.failures[0])
    assert "toy/gauss-1d" in host.problems


def test_import_failure_of_an_entry_point_is_isolated(monkeypatch):
    real = metadata.entry_points

    def with_broken(group=None, **kw):
        eps = list(real(group=group, **kw)) if group else real(**kw)
        if group == "wgfbench":
            broken = metadata.EntryPoint("broken-plugin", "wgfbench_no_such_module_xyz", "wgfbench")
            eps.append(broken)
        return eps

    monkeypatch.setattr(metadata, "entry_points", with_broken)
    host = Host()
    failure = next(f for f in host.failures if f.plugin == "broken-plugin")
    assert failure.stage == "import" and "ModuleNotFoundError" in failure.error
    assert "langevin" in host.solvers


def test_disable_env_blocks_plugins(monkeypatch):
    monkeypatch.setenv("WGFBENCH_DISABLE_PLUGINS", "langevin, aggregation")
    host = Host(distributions={"wgfbench"})
    assert "langevin" not in host.plugin_infos and "aggregation" not in host.plugin_infos
    assert "langevin" not in host.solvers
    assert "reference" in host.solvers


def test_misspelt_hook_fails_check_pending():
    module = types.ModuleType("typo")

    @wgfbench.hookimpl
    def wgfbench_register_solver(registry):  # missing "s"
        pass

    module.wgfbench_register_solver = wgfbench_register_solver
    with pytest.raises(Exception, match="unknown hook"):
        Host(entry_points=False, plugins=[module])


def test_unknown_names_suggest_close_matches():
    host = Host(entry_points=False, plugins=[_plugin("p", [tiny_problem()], [FrozenSolver])])
    with pytest.raises(UnknownNameError, match="toy/gauss-1d"):
        wgfbench.get_problem("toy/gaus-1d", host=host)
    with pytest.raises(UnknownNameError, match="toy-frozen"):
        wgfbench.get_solver("toy-frozn", host=host)


def test_every_hookspec_is_documented_with_its_signature():
    specs = {n: f for n, f in vars(hookspecs).items() if n.startswith("wgfbench_") and callable(f)}
    assert set(specs) == {
        "wgfbench_register_problems",
        "wgfbench_register_solvers",
        "wgfbench_register_metrics",
    }
    readme = (__import__("pathlib").Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    for name, func in specs.items():
        assert func.__doc__ and "Example" in func.__doc__, f"{name} has no docstring with an example"
        params = ", ".join(inspect.signature(func).parameters)
        assert f"{name}({params})" in readme, f"{name}({params}) is not documented in docs/plugins.md"


def test_no_stray_plugins_in_the_test_host():
    host = wgfbench.default_host()
    assert {info.distribution for info in host.plugin_infos.values()} <= {"wgfbench"}
    assert torch.get_default_dtype() == torch.float32  # nothing mutates global torch state
    assert "wgfbench_example_plugin" not in sys.modules
