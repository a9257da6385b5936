"""The plugin contract where items enter it: one case per rule of ``wgfbench.contract`` (a bad item
is refused with the rule named, a good one registers), the box's wall flag and the public exports."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from pydantic import PositiveInt
from toy_plugins import FrozenSolver, plugin_module, tiny_problem

import wgfbench
from wgfbench import contract
from wgfbench.context import Context
from wgfbench.contract import RULES, ContractError
from wgfbench.energy import Energy, Entropy, Potential
from wgfbench.errors import PluginError, UnknownNameError
from wgfbench.host import Host
from wgfbench.problem import Box, Mobility
from wgfbench.references import DistributionPath, Gaussian, Reference
from wgfbench.registry import ProblemRegistry, SolverRegistry

F64 = torch.float64


_plugin = plugin_module


def _rule(exc_info) -> str:
    assert isinstance(exc_info.value, ContractError)
    return exc_info.value.rule


def _solver(name: str = "toy-ok", **attributes) -> type:
    return type("ToySolver", (FrozenSolver,), {"name": name, **attributes})


def ou_1d(**changes) -> wgfbench.Problem:
    """1-D OU flow, V = x²/2, from N(1, 0.25): m = e^{-t}, s² = 0.25 e^{-2t} + 1 - e^{-2t}."""

    def at(t: float) -> Gaussian:
        return Gaussian([math.exp(-t)], [[0.25 * math.exp(-2 * t) + 1 - math.exp(-2 * t)]])

    fields = {
        "name": "toy/ou-1d",
        "family": "toy",
        "dim": 1,
        "energy": Energy([Entropy(), Potential(lambda x: 0.5 * (x**2).sum(-1), grad=lambda x: x)]),
        "initial": at(0.0),
        "times": (0.0, 0.1, 0.5),
        "dt": 0.05,
        "references": {"pde": DistributionPath(at, 1)},
        "primary_metric": "w2",
    }
    fields.update(changes)
    return wgfbench.Problem(**fields)


# ----------------------------------------------------------------------------------------------
# The table


def test_every_rule_is_described_and_errors_name_known_rules():
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.description.endswith(".") and len(rule.description) > 40, name
        assert set(rule.applies_to) <= {"problem", "solver"} and rule.applies_to
        assert set(rule.enforced) <= {"construction", "registration", "configuration", "conformance kit"}
    error = ContractError("dt within snapshot gaps", "too large")
    assert str(error) == "rule 'dt within snapshot gaps': too large" and isinstance(error, ValueError)
    with pytest.raises(KeyError, match="unknown contract rule"):
        ContractError("no such rule", "x")


# ----------------------------------------------------------------------------------------------
# Names


def test_problem_name_with_capitals_and_a_space_is_refused_naming_the_rule():
    registry = ProblemRegistry()
    with pytest.raises(ContractError) as info:
        registry.add(lambda: tiny_problem(), name="Fokker/OU 2d")
    assert _rule(info) == "lower-case names"
    assert "problem name 'Fokker/OU 2d' has capitals and a space" in str(info.value)
    assert "family/id in lower case" in str(info.value)
    assert "Fokker/OU 2d" not in registry
    with pytest.raises(ContractError, match=r"rule 'lower-case names'.*no '/' between family and id"):
        registry.add(lambda: tiny_problem(), name="ou-2d")
    registry.add(lambda: tiny_problem(), name="toy/gauss-1d")
    assert "toy/gauss-1d" in registry


def test_a_problem_with_a_bad_name_cannot_be_constructed():
    with pytest.raises(ContractError) as info:
        tiny_problem("Toy/Gauss-1d")
    assert _rule(info) == "lower-case names" and "capitals" in str(info.value)
    with pytest.raises(ContractError) as info:
        ou_1d(name="toy/ou-1d", family="other")
    assert _rule(info) == "name starts with family"


def test_solver_names_with_capitals_spaces_or_globs_are_refused():
    registry = SolverRegistry()
    with pytest.raises(ContractError) as info:
        registry.add(_solver("Deep JKO"))
    assert _rule(info) == "lower-case names" and "has capitals and a space" in str(info.value)
    for name in ("deep-jko*", "jko?", "jko[2]"):
        with pytest.raises(ContractError) as info:
            registry.add(_solver(name))
        assert _rule(info) == "no glob characters", name
        assert "--solver PATTERN" in str(info.value)
    with pytest.raises(ContractError, match=r"rule 'lower-case names'.*a '/'"):
        registry.add(_solver("toy/solver"))
    with pytest.raises(ContractError, match="non-empty string `name`"):
        registry.add(_solver(""))
    registry.add(_solver("toy-ok_1.2"))
    assert list(registry) == ["toy-ok_1.2"]


def test_a_rule_violation_while_collecting_is_the_plugins_failure_and_its_other_items_register():
    plugin = _plugin(
        "sloppy",
        problems=[("Bad/Name 1d", tiny_problem), ("toy/gauss-1d", tiny_problem)],
        solvers=[_solver("Bad Solver"), _solver("toy-good")],
    )
    host = Host(entry_points=False, plugins=[plugin])
    assert list(host.problems) == ["toy/gauss-1d"] and list(host.solvers) == ["toy-good"]
    failures = {f.stage: f for f in host.failures}
    assert set(failures) == {"wgfbench_register_problems", "wgfbench_register_solvers"}
    assert all(f.plugin == "sloppy" and f.hides_items for f in failures.values())
    problem_error = failures["wgfbench_register_problems"].error
    assert problem_error.startswith("ContractError: rule 'lower-case names': problem name 'Bad/Name 1d'")
    assert "(problem not registered)" in problem_error
    assert "rule 'lower-case names': solver name 'Bad Solver'" in failures["wgfbench_register_solvers"].error
    # Selecting the refused solver explains why it is missing.
    with pytest.raises(UnknownNameError, match=r"failed to register its solvers .*rule 'lower-case names'"):
        wgfbench.get_solver("bad-solver", host=host)


# ----------------------------------------------------------------------------------------------
# Presets, config, role


def test_presets_for_a_misspelt_tier_are_refused_with_a_suggestion():
    misspelt = _solver("toy-misspelt", presets={"smoke": {}, "quik": {}})
    with pytest.raises(ContractError) as info:
        SolverRegistry().add(misspelt)
    assert _rule(info) == "known tiers"
    message = str(info.value)
    assert "presets for 'quik', which is not a tier (known tiers: smoke, quick, large)" in message
    assert "did you mean 'quick'?" in message
    # Configuring the class directly fails too, instead of silently using the defaults.
    with pytest.raises(ContractError, match="rule 'known tiers'"):
        misspelt.for_tier("quick")
    SolverRegistry().add(_solver("toy-tiers", presets={"smoke": {}, "quick": {}, "large": {}}))


class _Config(wgfbench.SolverConfig):
    n: PositiveInt = 3


class _Undefined(wgfbench.SolverConfig):
    n: NoSuchType = 3  # type: ignore[name-defined]  # noqa: F821


def test_presets_that_are_not_valid_configs_are_refused():
    bad = _solver("toy-bad-preset", Config=_Config, presets={"quick": {"n": -1}})
    with pytest.raises(ContractError) as info:
        SolverRegistry().add(bad)
    assert _rule(info) == "valid presets"
    assert "the 'quick' preset is not a valid config" in str(info.value) and "field 'n'" in str(info.value)
    unknown_field = _solver("toy-unknown-field", Config=_Config, presets={"smoke": {"m": 1}})
    with pytest.raises(ContractError, match=r"rule 'valid presets'.*field 'm'"):
        SolverRegistry().add(unknown_field)
    SolverRegistry().add(_solver("toy-good-preset", Config=_Config, presets={"smoke": {"n": 5}}))
    # A Config pydantic cannot build at all (an annotation that names nothing) fails the same rule.
    undefined = _solver("toy-undefined", Config=_Undefined, presets={"smoke": {}})
    with pytest.raises(ContractError, match=r"rule 'valid presets'.*raised PydanticUserError"):
        SolverRegistry().add(undefined)


def test_config_must_be_a_solver_config_and_role_known():
    class Plain:
        pass

    with pytest.raises(ContractError) as info:
        SolverRegistry().add(_solver("toy-plain-config", Config=Plain))
    assert _rule(info) == "typed config"
    with pytest.raises(ContractError) as info:
        SolverRegistry().add(_solver("toy-judge", role="judge"))
    assert _rule(info) == "known role" and "roles: solver, baseline, calibration" in str(info.value)


def test_citation_rule_is_available_to_the_conformance_kit():
    with pytest.raises(ContractError) as info:
        contract.check_citation(_solver("toy-uncited", citation="Smith 2020"))
    assert _rule(info) == "bibtex citation"
    contract.check_citation(_solver("toy-cited", citation="@article{smith2020, title={A}}"))
    assert RULES["bibtex citation"].enforced == ("conformance kit",)


# ----------------------------------------------------------------------------------------------
# Problems


def test_dt_larger_than_a_snapshot_gap_is_refused():
    with pytest.raises(ContractError) as info:
        ou_1d(times=(0.0, 0.02, 0.5), dt=0.05)
    assert _rule(info) == "dt within snapshot gaps"
    assert "dt = 0.05 is larger than the gap 0.02 between the snapshot times 0 and 0.02" in str(info.value)
    for dt in (0.0, -0.1, math.inf, math.nan):
        with pytest.raises(ContractError, match="rule 'dt within snapshot gaps'"):
            ou_1d(dt=dt)
    assert ou_1d(times=(0.0, 0.1, 0.2), dt=0.1).dt == 0.1  # equal to the smallest gap is fine


def test_a_factory_that_builds_a_bad_problem_is_a_plugin_error_naming_the_rule():
    def factory():
        return ou_1d(times=(0.0, 0.01, 1.0))

    host = Host(entry_points=False, plugins=[_plugin("coarse", problems=[("toy/ou-1d", factory)])])
    assert "toy/ou-1d" in host.problems  # the name is fine; the problem is checked when built
    with pytest.raises(
        PluginError, match=r"problem 'toy/ou-1d' of plugin coarse.*rule 'dt within snapshot gaps'"
    ):
        wgfbench.get_problem("toy/ou-1d", host=host)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"times": (0.0,)}, "snapshot times"),
        ({"times": (0.0, math.inf)}, "snapshot times"),
        ({"times": (0.1, 0.5)}, "snapshot times"),
        ({"times": (0.0, 0.5, 0.5)}, "snapshot times"),
        ({"version": 0}, "positive version"),
        ({"version": 1.5}, "positive version"),
        ({"dim": 0}, "positive dimension"),
        ({"energy": [Entropy()]}, "typed energy"),
        ({"initial": Gaussian([0.0, 0.0], torch.eye(2, dtype=F64))}, "initial law"),
        ({"mobility": Mobility("porous")}, "known mobility"),  # type: ignore[arg-type]
        ({"box": Box((0.0, 0.0), (1.0, 1.0))}, "box dimension"),
        ({"references": {}}, "pde reference"),
        ({"references": {"pde": DistributionPath(lambda t: Gaussian([0.0], [[1.0]]), 2)}}, "pde reference"),
        ({"primary_metric": "l7"}, "known primary metric"),
        ({"primary_metric": "radial_w2"}, "known primary metric"),
    ],
)
def test_each_construction_rule_refuses_a_problem(changes, rule):
    with pytest.raises(ContractError) as info:
        ou_1d(**changes)
    assert _rule(info) == rule, str(info.value)
    assert str(info.value).startswith(f"rule {rule!r}: ")


def test_reference_kinds_and_roles_are_checked():
    class Odd(DistributionPath):
        kind = "approximate"  # type: ignore[assignment]

    law = Gaussian([0.0], [[1.0]])
    with pytest.raises(ContractError) as info:
        ou_1d(references={"pde": Odd(lambda t: law, 1)})
    assert _rule(info) == "pde reference" and "'approximate'" in str(info.value)
    pde = DistributionPath(lambda t: law, 1)
    with pytest.raises(ContractError) as info:
        ou_1d(references={"pde": pde, "jko": pde})
    assert _rule(info) == "jko reference"
    with pytest.raises(ContractError) as info:
        ou_1d(references={"pde": pde, "stationary": pde})
    assert _rule(info) == "stationary reference"


def test_good_items_register_and_test_support_plugins_pass_the_rules():
    host = Host(entry_points=False, plugins=[_plugin("fine", [tiny_problem(), ou_1d()], [FrozenSolver])])
    assert not host.failures
    assert list(host.problems) == ["toy/gauss-1d", "toy/ou-1d"] and list(host.solvers) == ["toy-frozen"]
    import campaign_plugins

    campaign = campaign_plugins.host()
    assert not campaign.failures, campaign.failures
    assert {"campaign-frozen", "campaign-slow", "campaign-oskill", "campaign-hang"} <= set(campaign.solvers)


def test_the_example_plugin_passes_the_rules(monkeypatch):
    """examples/wgfbench-example-plugin, loaded from its source file as its entry point would."""
    path = Path(__file__).parents[2] / "examples" / "wgfbench-example-plugin" / "src"
    spec = importlib.util.spec_from_file_location(
        "wgfbench_example_plugin_source", path / "wgfbench_example_plugin" / "__init__.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # pydantic resolves annotations through it
    spec.loader.exec_module(module)
    host = Host(entry_points=False, plugins=[module])
    assert not host.failures, host.failures
    assert list(host.solvers) == ["heun-langevin"] and list(host.problems) == ["example/ou-shifted-1d"]
    wgfbench.get_problem("example/ou-shifted-1d", host=host)
    contract.check_citation(host.solvers.entry("heun-langevin").item)


def test_builtin_plugins_pass_every_rule_including_citations():
    host = Host(distributions={"wgfbench"})
    assert not host.failures, host.failures
    for name in host.solvers:
        cls = host.solvers.entry(name).item
        contract.check_solver_class(cls)
        contract.check_citation(cls)
    for name in ("fokker-planck/box-1d", "fokker-planck/ou-2d", "aggregation/quantile-1d"):
        contract.check_problem(wgfbench.get_problem(name, host=host))


# ----------------------------------------------------------------------------------------------
# The box's wall flag


def test_box_1d_is_walled_and_gaussian_problems_are_not():
    box_1d = wgfbench.get_problem("fokker-planck/box-1d")
    assert box_1d.box == Box((0.0,), (1.0,), wall=True) and box_1d.has_walls
    view = box_1d.view()
    assert view.box.wall is True and view.has_walls
    for name in ("fokker-planck/ou-2d", "fokker-planck/mixture-2d", "aggregation/quantile-1d"):
        problem = wgfbench.get_problem(name)
        assert problem.box is not None and problem.box.wall is False and not problem.view().has_walls
    assert not ou_1d().has_walls  # no box at all
    assert Box.cube(1.0, 2, wall=True).wall and not Box.cube(1.0, 2).wall
    with pytest.raises(ValueError, match=r"Box\.wall must be True or False"):
        Box((0.0,), (1.0,), wall="yes")  # type: ignore[arg-type]


def test_langevin_reflects_at_walls_and_ignores_a_window():
    from wgfbench_plugins.solvers.langevin import Langevin

    solver = Langevin({"n_particles": 400, "log_energy_every": 0})
    # A box far narrower than the law: as a window it is ignored, as a wall it holds every particle.
    window = ou_1d(box=Box((0.5,), (1.5,)))
    walled = ou_1d(box=Box((0.5,), (1.5,), wall=True))
    x_window = solver.solve(window.view(), Context.create(seed=1)).snapshots[-1].x
    x_walled = solver.solve(walled.view(), Context.create(seed=1)).snapshots[-1].x
    assert float(x_window.min()) < 0.5 or float(x_window.max()) > 1.5
    assert float(x_walled.min()) >= 0.5 and float(x_walled.max()) <= 1.5
    # The ensemble Kalman sampler cannot reflect: a walled Kalman problem is declined naming the wall.
    reason = solver.supports(dataclasses.replace(walled, mobility=Mobility("kalman")).view())
    assert isinstance(reason, str) and "wall" in reason
    assert solver.supports(dataclasses.replace(window, mobility=Mobility("kalman")).view()) is True


def test_particle_solvers_that_cannot_respect_walls_decline_walled_problems():
    from wgfbench_plugins.solvers.deep_jko.solver import DeepJKO
    from wgfbench_plugins.solvers.learn_to_evolve.solver import LearnToEvolve
    from wgfbench_plugins.solvers.pwgf.solver import PWGF

    ou = wgfbench.get_problem("fokker-planck/ou-2d")
    quantile = wgfbench.get_problem("aggregation/quantile-1d")
    for solver, problem in ((DeepJKO(), ou), (PWGF(), ou), (LearnToEvolve(), quantile)):
        assert solver.supports(problem.view()) is True, solver.name
        walled = dataclasses.replace(problem, box=dataclasses.replace(problem.box, wall=True))
        reason = solver.supports(walled.view())
        assert isinstance(reason, str) and "no-flux walls (problem.box.wall)" in reason, solver.name
    box_1d = wgfbench.get_problem("fokker-planck/box-1d").view()
    assert "wall" in PWGF().supports(box_1d)


def test_quantile_jko_takes_its_walls_from_the_flag():
    from wgfbench_plugins.solvers.quantile_jko import QuantileJKO

    solver = QuantileJKO()
    box_1d = wgfbench.get_problem("fokker-planck/box-1d")
    assert solver.walls(box_1d) == (0.0, 1.0)
    window = dataclasses.replace(box_1d, box=Box((0.0,), (1.0,)))
    assert solver.walls(window) is None
    assert QuantileJKO({"walls": "box"}).walls(window) == (0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Exports


def _attribute_docstring(name: str) -> str | None:
    """The string literal right after a module-level assignment of ``name`` in a wgfbench module
    (how data, type aliases and markers are documented)."""
    for path in sorted(Path(wgfbench.__file__).parent.glob("*.py")):
        body = ast.parse(path.read_text()).body
        for node, following in itertools.pairwise(body):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
                continue
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                if isinstance(following.value.value, str):
                    return following.value.value
    return None


@pytest.mark.parametrize("name", wgfbench.__all__)
def test_every_export_is_importable_and_documented(name):
    namespace: dict[str, object] = {}
    exec(f"from wgfbench import {name}", namespace)  # the import a plugin author writes
    obj = namespace[name]
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    else:
        doc = _attribute_docstring(name)
    assert doc and len(doc.strip()) >= 20, f"wgfbench.{name} needs a docstring of its own"
    # A backslash escape in a non-raw docstring (``\rho`` read as a carriage return) garbles the docs.
    assert not set(doc) & set("\r\a\b\v\f"), f"wgfbench.{name}: control characters in its docstring"


def test_exports_a_plugin_author_needs():
    for name in (
        "DistributionPath",
        "Stationary",
        "step_ends",
        "equal_steps",
        "Support",
        "support_reason",
        "make_generator",
        "Checkpoint",
        "ContractError",
        "InitialFamilyView",
    ):
        assert name in wgfbench.__all__, name
    assert wgfbench.step_ends((0.0, 0.1, 0.25), 0.1) == pytest.approx([0.1, 0.175, 0.25])
    assert wgfbench.support_reason(True) is None and wgfbench.support_reason(False) == "not supported"
    a = wgfbench.make_generator(7)
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=wgfbench.make_generator(7)))
    ctx, again = Context.create(seed=3), Context.create(seed=3)
    u = ctx.rand(4, 2)
    assert u.shape == (4, 2) and u.dtype == F64 and torch.equal(u, again.rand(4, 2))
    assert bool(((u >= 0) & (u < 1)).all())
    assert isinstance(wgfbench.DistributionPath(lambda t: Gaussian([t], [[1.0]]), 1), Reference)
