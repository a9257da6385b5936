r"""The conformance suite: one pytest test per contract check, for any solver or problem plugin.

Subclass a suite class in the plugin's own tests, name what it checks, and pytest collects one
test per check (so a failure names the check, the solver and the problem)::

    from wgfbench.testing import ProblemConformance, SolverConformance

    class TestMySolver(SolverConformance):
        solver = MySolver                       # the class, or a registered name "my-solver"
        problems = ("fokker-planck/ou-2d", make_my_problem)   # optional; default: the kit's OU

    class TestMyProblem(ProblemConformance):
        problems = (make_my_problem,)           # Problems, factories or registered names

The same suites run for registered plugins from the command line, with no test file:
``pytest --wgfbench-solver NAME --wgfbench-problem NAME`` (see
:mod:`wgfbench.testing.pytest_plugin`).

Solver checks (:class:`SolverConformance`), each on every problem: ``contract`` (the class
contract), ``supports``, ``runs`` (``prepare`` + ``solve`` as the runner calls them, without
raising), ``budget``, ``shapes``, ``finite``, ``mass``, ``step_log``, ``no_reference_access`` (the
solver sees a :class:`~wgfbench.ProblemView` and calls no method of the problem's references),
``seed_reproducible`` (the same seed gives bitwise the same output on the CPU) and
``cpu_gpu_parity`` (a CUDA run agrees in law with the CPU run; skipped, with the reason, where
CUDA is not available). A solver runs once per (problem, device, seed) per class; the checks share
that run.

Problem checks (:class:`ProblemConformance`): the sections of
:func:`~wgfbench.testing.check_problem` (``identity``, ``initial``, ``reference``,
``initial_matches_reference``, ``primary_metric``, ``jko``, ``initial_family``; those that do not
apply are skipped with the reason; ``identity`` runs as ``test_contract``) and
``view_hides_references``.

Class attributes tune the checks: ``tier`` (default ``"smoke"``), ``seed``, ``budget_seconds``,
``overrides`` (solver config fields), ``mass_tol``, ``law_z``, ``ks_alpha``, ``n`` (samples per
draw of the problem checks). A subclass may instead override the ``wgfbench_solver`` or
``wgfbench_problem`` fixture.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import torch

import wgfbench
from wgfbench.problem import Problem
from wgfbench.solver import Solver
from wgfbench.testing.checks import (
    PROBLEM_CHECKS,
    NotApplicable,
    ProblemOptions,
    ProblemReport,
    SolverRun,
    check_run_budget,
    check_run_finite,
    check_run_mass,
    check_run_no_reference_access,
    check_run_shapes,
    check_run_steps,
    check_runs_agree_in_law,
    check_runs_identical,
    check_solver_class,
    check_solver_supports,
    ornstein_uhlenbeck_problem,
    problem_prefix,
    run_solver,
    solver_prefix,
)

ProblemSpec = Problem | str | Callable[[], Problem]
"""A problem for the suite: a :class:`~wgfbench.Problem`, a zero-argument factory, or the name of
a registered problem (looked up in :func:`wgfbench.default_host` when the test runs)."""

SolverSpec = type[Solver] | str
"""A solver for the suite: a :class:`~wgfbench.Solver` subclass or the name of a registered one."""


def default_problems() -> list[Problem]:
    """The problems a :class:`SolverConformance` without ``problems`` runs on: the kit's own
    Ornstein–Uhlenbeck problems in 1-D and 2-D (exact Gaussian references, no plugin needed).
    A solver that does not support one is skipped there, with its reason. The same objects on
    every call, so that a class's checks share one run per problem."""
    return list(_default_problems())


@functools.cache
def _default_problems() -> tuple[Problem, ...]:
    return (
        ornstein_uhlenbeck_problem([1.0], [0.5], [-1.0], [[0.25]], name="testing/ou-1d"),
        ornstein_uhlenbeck_problem([1.0, 3.0], [0.5, -0.5], [2.0, 1.0], [[0.3, 0.1], [0.1, 0.2]]),
    )


def resolve_problem(spec: ProblemSpec) -> Problem:
    """The :class:`~wgfbench.Problem` a :data:`ProblemSpec` names."""
    if isinstance(spec, Problem):
        return spec
    if isinstance(spec, str):
        return wgfbench.get_problem(spec)
    if callable(spec):
        problem = spec()
        if not isinstance(problem, Problem):
            raise TypeError(f"problem factory {spec!r} returned {type(problem).__name__}, not a Problem")
        return problem
    raise TypeError(f"expected a Problem, a factory or a registered name, got {spec!r}")


def resolve_solver(spec: SolverSpec, tier: str, overrides: Mapping[str, Any]) -> Solver:
    """An instance of the solver a :data:`SolverSpec` names, configured for ``tier``."""
    if isinstance(spec, str):
        return wgfbench.get_solver(spec, tier, **overrides)
    if inspect.isclass(spec) and issubclass(spec, Solver):
        return spec.for_tier(tier, **overrides)
    raise TypeError(f"expected a wgfbench.Solver subclass or a registered name, got {spec!r}")


def spec_id(spec: Any) -> str:
    """The test id of a solver or problem spec: its name where it has one."""
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(spec, "__name__", None) or repr(spec)


class SolverConformance:
    """The conformance suite of a solver plugin (module docstring). Set ``solver`` (a
    :class:`~wgfbench.Solver` subclass or a registered name) and optionally ``problems``; name the
    subclass ``Test…`` so that pytest collects it."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.wgfbench_conformance]
    solver: ClassVar[SolverSpec | None] = None
    problems: ClassVar[Sequence[ProblemSpec]] = ()
    tier: ClassVar[str] = "smoke"
    seed: ClassVar[int] = 0
    budget_seconds: ClassVar[float | None] = None
    overrides: ClassVar[Mapping[str, Any]] = {}
    mass_tol: ClassVar[float] = 1e-6
    law_z: ClassVar[float] = 6.0
    ks_alpha: ClassVar[float] = 1e-6

    # -- parametrisation ---------------------------------------------------------------------

    @classmethod
    def solver_specs(cls, config: pytest.Config) -> list[SolverSpec]:
        """The solvers the class checks (one test per check and solver)."""
        if cls.solver is None:
            raise TypeError(f"{cls.__name__}: set the class attribute `solver` (a Solver class or a name)")
        return [cls.solver]

    @classmethod
    def problem_specs(cls, config: pytest.Config) -> tuple[list[ProblemSpec], bool]:
        """The problems to run on, and whether they were chosen (an unsupported chosen problem
        fails; an unsupported default one is skipped)."""
        if cls.problems:
            return list(cls.problems), True
        return list(default_problems()), False

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        names = metafunc.fixturenames
        if "_wgfbench_solver_spec" in names:
            solvers = self.solver_specs(metafunc.config)
            metafunc.parametrize("_wgfbench_solver_spec", solvers, ids=[spec_id(s) for s in solvers])
        if "_wgfbench_problem_spec" in names:
            problems, chosen = self.problem_specs(metafunc.config)
            metafunc.parametrize(
                "_wgfbench_problem_spec",
                [(p, chosen) for p in problems],
                ids=[spec_id(p) for p in problems],
            )

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    def _wgfbench_runs(self) -> dict[tuple[Any, ...], SolverRun]:
        """The runs of this class, shared by its checks (freed when the class is done)."""
        return {}

    @pytest.fixture
    def wgfbench_solver(self, _wgfbench_solver_spec: SolverSpec) -> Solver:
        """The solver under test, configured for ``tier`` with ``overrides``."""
        return resolve_solver(_wgfbench_solver_spec, self.tier, self.overrides)

    @pytest.fixture(scope="class")
    def _wgfbench_built(self) -> dict[int, Problem]:
        return {}

    @pytest.fixture
    def wgfbench_problem(
        self, _wgfbench_problem_spec: tuple[ProblemSpec, bool], _wgfbench_built: dict[int, Problem]
    ) -> Problem:
        """The problem the solver runs on (built once per class)."""
        spec = _wgfbench_problem_spec[0]
        if id(spec) not in _wgfbench_built:
            _wgfbench_built[id(spec)] = resolve_problem(spec)
        return _wgfbench_built[id(spec)]

    @pytest.fixture
    def _wgfbench_problem_chosen(self, _wgfbench_problem_spec: tuple[ProblemSpec, bool]) -> bool:
        return _wgfbench_problem_spec[1]

    @pytest.fixture
    def wgfbench_run(
        self,
        wgfbench_solver: Solver,
        wgfbench_problem: Problem,
        _wgfbench_problem_chosen: bool,
        _wgfbench_runs: dict[tuple[Any, ...], SolverRun],
    ) -> Callable[..., SolverRun]:
        """``wgfbench_run(device="cpu", repeat=0)``: the solver's run on the problem (cached per
        class; ``repeat`` > 0 is another run with the same seed). Skips or fails first when the
        solver does not support the problem."""
        self._require_support(wgfbench_solver, wgfbench_problem, _wgfbench_problem_chosen)

        def get(device: str = "cpu", repeat: int = 0) -> SolverRun:
            key = (
                type(wgfbench_solver),
                wgfbench_solver.config.model_dump_json(),
                id(wgfbench_problem),
                device,
                self.seed,
                repeat,
            )
            if key not in _wgfbench_runs:
                _wgfbench_runs[key] = run_solver(
                    wgfbench_solver,
                    wgfbench_problem,
                    self.tier,
                    device,
                    self.seed,
                    self.budget_seconds,
                )
            return _wgfbench_runs[key]

        return get

    def _require_support(self, solver: Solver, problem: Problem, chosen: bool) -> None:
        prefix = solver_prefix(solver, problem, self.tier, "cpu")
        reason = check_solver_supports(solver, problem, prefix)
        if reason is None:
            return
        if chosen:
            raise AssertionError(f"{prefix}: the solver does not support this problem: {reason}")
        pytest.skip(f"{solver.name} does not support {problem.name}: {reason}")

    # -- the checks --------------------------------------------------------------------------

    def test_contract(self, wgfbench_solver: Solver) -> None:
        """The class contract (:mod:`wgfbench.contract`): name, role, a SolverConfig, presets
        valid for every tier, a BibTeX citation."""
        check_solver_class(wgfbench_solver)

    def test_supports(
        self, wgfbench_solver: Solver, wgfbench_problem: Problem, _wgfbench_problem_chosen: bool
    ) -> None:
        """``supports`` returns True or a reason; a chosen problem must be supported."""
        self._require_support(wgfbench_solver, wgfbench_problem, _wgfbench_problem_chosen)

    def test_runs(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """``prepare`` and ``solve`` finish without raising and return a Trajectory."""
        wgfbench_run().result()

    def test_budget(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """The run stays within the tier's wall-time budget (or ``budget_seconds``)."""
        check_run_budget(wgfbench_run())

    def test_shapes(self, wgfbench_run: Callable[..., SolverRun], wgfbench_problem: Problem) -> None:
        """One snapshot per problem time, particles (n, d) or a d-axis grid."""
        check_run_shapes(wgfbench_run(), wgfbench_problem)

    def test_finite(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """No NaN or inf in any snapshot; no infinite step-log energy."""
        check_run_finite(wgfbench_run())

    def test_mass(self, wgfbench_run: Callable[..., SolverRun], wgfbench_problem: Problem) -> None:
        """Weights non-negative summing to 1; grid densities non-negative with unit mass;
        particles inside no-flux walls."""
        check_run_mass(wgfbench_run(), self.mass_tol, wgfbench_problem)

    def test_step_log(self, wgfbench_run: Callable[..., SolverRun], wgfbench_problem: Problem) -> None:
        """The step log is ordered in time with non-negative steps; ``jko_tau`` divides the times."""
        check_run_steps(wgfbench_run(), wgfbench_problem)

    def test_no_reference_access(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """The solver called no method of the problem's references while it ran."""
        run = wgfbench_run()
        run.result()
        check_run_no_reference_access(run)

    def test_seed_reproducible(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """Two CPU runs with the same seed give bitwise identical snapshots."""
        check_runs_identical(wgfbench_run(), wgfbench_run(repeat=1))

    def test_cpu_gpu_parity(self, wgfbench_run: Callable[..., SolverRun]) -> None:
        """A CUDA run with the same seed agrees in law with the CPU run (moments and marginal KS
        for particles, L1 for grids)."""
        if not torch.cuda.is_available():
            pytest.skip("CUDA is not available: CPU/GPU parity not checked")
        check_runs_agree_in_law(wgfbench_run(), wgfbench_run("cuda"), self.law_z, self.ks_alpha)


class ProblemConformance:
    """The conformance suite of a problem plugin (module docstring). Set ``problems`` (or
    ``problem``): :class:`~wgfbench.Problem` objects, zero-argument factories or registered
    names; name the subclass ``Test…`` so that pytest collects it."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.wgfbench_conformance]
    problem: ClassVar[ProblemSpec | None] = None
    problems: ClassVar[Sequence[ProblemSpec]] = ()
    n: ClassVar[int] = 1000
    seed: ClassVar[int] = 0
    law_z: ClassVar[float] = 6.0
    ks_alpha: ClassVar[float] = 1e-6

    @classmethod
    def problem_specs(cls, config: pytest.Config) -> list[ProblemSpec]:
        specs = list(cls.problems) + ([cls.problem] if cls.problem is not None else [])
        if not specs:
            raise TypeError(f"{cls.__name__}: set the class attribute `problems` (or `problem`)")
        return specs

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "_wgfbench_problem_spec" in metafunc.fixturenames:
            specs = self.problem_specs(metafunc.config)
            metafunc.parametrize("_wgfbench_problem_spec", specs, ids=[spec_id(p) for p in specs])

    @pytest.fixture(scope="class")
    def _wgfbench_built(self) -> dict[int, Problem]:
        return {}

    @pytest.fixture
    def wgfbench_problem(self, _wgfbench_problem_spec: ProblemSpec, _wgfbench_built: dict) -> Problem:
        """The problem under test (built once per class)."""
        key = id(_wgfbench_problem_spec)
        if key not in _wgfbench_built:
            _wgfbench_built[key] = resolve_problem(_wgfbench_problem_spec)
        return _wgfbench_built[key]

    def _section(self, name: str, problem: Problem) -> None:
        opts = ProblemOptions(n=self.n, seed=self.seed, law_z=self.law_z, ks_alpha=self.ks_alpha)
        report = ProblemReport(problem=getattr(problem, "name", repr(problem)), n=self.n)
        try:
            PROBLEM_CHECKS[name](problem, report, opts)
        except NotApplicable as exc:
            pytest.skip(f"{getattr(problem, 'name', problem)}: {name} does not apply: {exc}")

    def test_contract(self, wgfbench_problem: Problem) -> None:
        """The contract rules of :mod:`wgfbench.contract`: name, family, version, dim, times, dt,
        energy, initial law, mobility, box, reference roles, primary metric."""
        self._section("identity", wgfbench_problem)

    def test_initial(self, wgfbench_problem: Problem) -> None:
        """ρ0 samples: shape, float64 on the CPU, finite, seed-reproducible, right moments."""
        self._section("initial", wgfbench_problem)

    def test_reference(self, wgfbench_problem: Problem) -> None:
        """The reference at every snapshot time: shapes, finiteness, reproducibility, moments,
        energy."""
        self._section("reference", wgfbench_problem)

    def test_initial_matches_reference(self, wgfbench_problem: Problem) -> None:
        """Exact references start at ρ0."""
        self._section("initial_matches_reference", wgfbench_problem)

    def test_primary_metric(self, wgfbench_problem: Problem) -> None:
        """The primary metric can be computed from the reference."""
        self._section("primary_metric", wgfbench_problem)

    def test_jko(self, wgfbench_problem: Problem) -> None:
        """Exact JKO iterates, where given."""
        self._section("jko", wgfbench_problem)

    def test_initial_family(self, wgfbench_problem: Problem) -> None:
        """The initial family, where given, draws reproducibly."""
        self._section("initial_family", wgfbench_problem)

    def test_view_hides_references(self, wgfbench_problem: Problem) -> None:
        """What a solver gets (``problem.view()``) has the flow and none of the answers."""
        prefix = problem_prefix(wgfbench_problem)
        view = wgfbench_problem.view()
        if not isinstance(view, wgfbench.ProblemView):
            raise AssertionError(f"{prefix}: view() must return a wgfbench.ProblemView, got {type(view)}")
        leaked = [a for a in ("references", "reference", "jko", "primary_metric") if hasattr(view, a)]
        if leaked:
            raise AssertionError(f"{prefix}: the solver's view exposes {leaked}")
        if (view.name, view.dim, view.times, view.dt) != (
            wgfbench_problem.name,
            wgfbench_problem.dim,
            wgfbench_problem.times,
            wgfbench_problem.dt,
        ):
            raise AssertionError(f"{prefix}: the view does not describe the same flow as the problem")
        if view.initial_family is not None:
            member = view.initial_family.draw(torch.Generator().manual_seed(self.seed))
            if not isinstance(member, wgfbench.Distribution):
                raise AssertionError(
                    f"{prefix}: the view's initial_family.draw must return an initial law only, "
                    f"got {type(member).__name__}"
                )


__all__ = [
    "ProblemConformance",
    "ProblemSpec",
    "SolverConformance",
    "SolverSpec",
    "default_problems",
    "resolve_problem",
    "resolve_solver",
]
