r"""The rules of the plugin contract that wgfbench enforces where an item enters it.

Each rule has a name, and every violation raises :class:`ContractError` whose message starts
with ``rule '<name>':`` and says what is wrong and how to fix it. :data:`RULES` lists every rule
with what it asks and where it is enforced:

* when a :class:`~wgfbench.problem.Problem` is constructed (``Problem.__post_init__`` calls
  :func:`check_problem`), so a malformed problem never exists, whether a plugin registers it or a
  script builds it;
* when a name is registered (``registry.add``): the name rules of :func:`check_problem_name`
  for problems (a factory's problem is checked in full when it is built) and
  :func:`check_solver_class` for solver classes. While the host collects plugins, a violation
  is recorded as that plugin's failure (``wgfbench list`` shows it) and its other items still
  register; a direct ``registry.add`` raises;
* when a solver is configured (``Solver.for_tier`` calls :func:`check_known_tiers`);
* by the conformance kit (:mod:`wgfbench.testing`) only, for rules that need a run or that
  test-only classes may skip (a BibTeX ``citation``).

The functions are the single implementation of each rule: the conformance kit and the docs
reuse them and this table.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wgfbench.context import TIERS
from wgfbench.errors import ConfigError, WgfbenchError, close_matches


class ContractError(WgfbenchError, ValueError):
    """A problem or solver that breaks a rule of the plugin contract (:data:`RULES`).

    ``rule`` is the rule's name (a key of :data:`RULES`), ``detail`` what is wrong; the message
    is ``rule '<rule>': <detail>``. A :class:`ValueError`, as malformed arguments are."""

    def __init__(self, rule: str, detail: str):
        if rule not in RULES:
            raise KeyError(f"unknown contract rule {rule!r}")
        self.rule, self.detail = rule, detail
        super().__init__(f"rule {rule!r}: {detail}")


Enforced = Literal["construction", "registration", "configuration", "conformance kit"]


@dataclass(frozen=True)
class Rule:
    """One rule of the contract: its ``name``, what it ``applies_to`` (``"problem"``,
    ``"solver"`` or both), where it is ``enforced`` (module docstring) and a ``description``
    that states it for plugin authors."""

    name: str
    applies_to: tuple[str, ...]
    enforced: tuple[Enforced, ...]
    description: str


_RULE_LIST = (
    Rule(
        "lower-case names",
        ("problem", "solver"),
        ("construction", "registration"),
        "A problem name is 'family/id' and a solver name one word, in lower case: letters, digits, "
        "'.', '_', '-' (and '+' after the family of a problem), starting with a letter or digit; "
        "no spaces, no capitals.",
    ),
    Rule(
        "no glob characters",
        ("solver",),
        ("registration",),
        "A solver name has none of the characters * ? [ ]: `wgfbench run --solver PATTERN` selects "
        "solvers by fnmatch glob, and such a name could never be selected on its own.",
    ),
    Rule(
        "name starts with family",
        ("problem",),
        ("construction",),
        "A problem's name starts with its family and a slash: family 'fokker-planck', name "
        "'fokker-planck/ou-2d'.",
    ),
    Rule(
        "positive dimension",
        ("problem",),
        ("construction",),
        "dim is an integer >= 1, and the initial law, every reference and the box live in it.",
    ),
    Rule(
        "positive version",
        ("problem",),
        ("construction",),
        "version is an integer >= 1, bumped whenever the physics or a reference changes.",
    ),
    Rule(
        "snapshot times",
        ("problem",),
        ("construction",),
        "times are finite, start at 0 (the initial law; time is elapsed time since rho_0), "
        "increase strictly and hold at least one snapshot after 0.",
    ),
    Rule(
        "dt within snapshot gaps",
        ("problem",),
        ("construction",),
        "The recommended step dt is positive, finite and at most the smallest gap between two "
        "snapshot times: a solver stepping at dt must not step over a snapshot.",
    ),
    Rule(
        "typed energy",
        ("problem",),
        ("construction",),
        "energy is a wgfbench.Energy (typed terms: Entropy, PowerInternal, Potential, Interaction).",
    ),
    Rule(
        "initial law",
        ("problem",),
        ("construction",),
        "initial is a wgfbench.Distribution of the problem's dimension.",
    ),
    Rule(
        "known mobility",
        ("problem",),
        ("construction",),
        "mobility is a wgfbench.Mobility of kind 'wasserstein', 'nonlinear' (with M) or 'kalman'.",
    ),
    Rule(
        "box dimension",
        ("problem",),
        ("construction",),
        "box, when given, is a wgfbench.Box of the problem's dimension; box.wall says whether it is "
        "a no-flux wall or only a computational window.",
    ),
    Rule(
        "pde reference",
        ("problem",),
        ("construction",),
        "references['pde'] is a wgfbench.Reference of the problem's dimension whose kind is "
        "'exact', 'stationary' or 'numerical'.",
    ),
    Rule(
        "jko reference",
        ("problem",),
        ("construction",),
        "references['jko'], where given, is a wgfbench.JKOIterates.",
    ),
    Rule(
        "stationary reference",
        ("problem",),
        ("construction",),
        "references['stationary'], where given, is a Stationary reference (kind 'stationary').",
    ),
    Rule(
        "known primary metric",
        ("problem",),
        ("construction",),
        "primary_metric is a built-in distance with a noise floor or 'energy_gap'; 'radial_w2' also "
        "needs the pde reference's radial_centre, a point of the problem's dimension.",
    ),
    Rule(
        "known role",
        ("solver",),
        ("registration",),
        "Solver.role is 'solver' (the default; leave it), 'baseline' or 'calibration'.",
    ),
    Rule(
        "typed config",
        ("solver",),
        ("registration",),
        "Solver.Config is a subclass of wgfbench.SolverConfig (a pydantic model that rejects "
        "unknown fields).",
    ),
    Rule(
        "known tiers",
        ("solver",),
        ("registration", "configuration"),
        "Every key of Solver.presets is a tier name (wgfbench.TIERS): a preset for a misspelt tier "
        "would never be used.",
    ),
    Rule(
        "valid presets",
        ("solver",),
        ("registration",),
        "Every preset, the field values of one tier, is a valid Solver.Config.",
    ),
    Rule(
        "bibtex citation",
        ("solver",),
        ("conformance kit",),
        "Solver.citation is the BibTeX entry (@kind{key, ...}) of the method's paper.",
    ),
)

RULES: dict[str, Rule] = {rule.name: rule for rule in _RULE_LIST}
"""Every rule of the contract by name (see :class:`Rule`)."""

PROBLEM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._+-]*$")
"""Problem names: ``family/id`` in lower case (letters, digits, ``.``, ``_``, ``-``; also ``+``
in the id)."""

SOLVER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
"""Solver names: one lower-case word (letters, digits, ``.``, ``_``, ``+``, ``-``)."""

GLOB_CHARACTERS = frozenset("*?[]")
"""Characters fnmatch reads as a pattern, which no solver name may hold."""


# ----------------------------------------------------------------------------------------------
# Names


def _name_defects(name: str) -> list[str]:
    """What is wrong with the characters of ``name``, in words: capitals, spaces, others."""
    defects = []
    if any(c.isupper() for c in name):
        defects.append("capitals")
    if any(c.isspace() for c in name):
        defects.append("a space" if sum(c.isspace() for c in name) == 1 else "spaces")
    others = sorted({c for c in name if not (c.isalnum() or c.isspace() or c in "._+-/")})
    others += sorted({c for c in name if c.isalnum() and not c.isascii()})
    if others:
        defects.append("the character(s) " + " ".join(repr(c) for c in others))
    return defects


def check_problem_name(name: Any) -> None:
    """Rule ``lower-case names`` for a problem name: ``family/id`` in lower case."""
    if not isinstance(name, str) or not name:
        raise ContractError("lower-case names", f"a problem needs a non-empty string name, got {name!r}")
    if PROBLEM_NAME.match(name):
        return
    defects = _name_defects(name)
    if name.count("/") != 1:
        defects.append("no '/' between family and id" if "/" not in name else "more than one '/'")
    if not defects:
        defects.append("a family or id that does not start with a letter or digit, or a '+' in its family")
    raise ContractError(
        "lower-case names",
        f"problem name {name!r} has {' and '.join(dict.fromkeys(defects))}; names are family/id in lower "
        "case (letters, digits, '.', '_', '-'), e.g. 'fokker-planck/ou-2d'",
    )


def check_solver_name(name: Any) -> None:
    """Rules ``no glob characters`` and ``lower-case names`` for a solver name."""
    if not isinstance(name, str) or not name:
        raise ContractError(
            "lower-case names", f"a solver class needs a non-empty string `name`, got {name!r}"
        )
    globs = sorted(GLOB_CHARACTERS & set(name))
    if globs:
        raise ContractError(
            "no glob characters",
            f"solver name {name!r} holds {' '.join(repr(c) for c in globs)}, which `--solver PATTERN` "
            "reads as a glob, so the name could never be selected on its own; use letters, digits, "
            "'.', '_', '-'",
        )
    if SOLVER_NAME.match(name):
        return
    defects = _name_defects(name)
    if "/" in name:
        defects.append("a '/'")
    if not defects:
        defects.append("a first character that is not a letter or digit")
    raise ContractError(
        "lower-case names",
        f"solver name {name!r} has {' and '.join(dict.fromkeys(defects))}; solver names are one word in "
        "lower case (letters, digits, '.', '_', '-'), e.g. 'deep-jko'",
    )


# ----------------------------------------------------------------------------------------------
# Problems


def check_dt(name: str, dt: Any, times: tuple[float, ...]) -> None:
    """Rule ``dt within snapshot gaps``: ``0 < dt <= min gap of times`` (1e-9 relative slack)."""
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not (math.isfinite(dt) and dt > 0):
        raise ContractError(
            "dt within snapshot gaps", f"{name}: dt must be a positive finite number, got {dt!r}"
        )
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(times)]
    if not gaps:
        return
    gap, a, b = min(gaps)
    if dt > gap * (1 + 1e-9):
        raise ContractError(
            "dt within snapshot gaps",
            f"{name}: dt = {dt:g} is larger than the gap {gap:g} between the snapshot times {a:g} and "
            f"{b:g}, so a solver stepping at dt would step over that snapshot; make dt at most {gap:g}",
        )


def check_times(name: str, times: tuple[float, ...]) -> None:
    """Rule ``snapshot times``: finite, ``times[0] == 0``, strictly increasing, two or more."""
    if not all(math.isfinite(t) for t in times):
        raise ContractError("snapshot times", f"{name}: times must be finite, got {times}")
    if not times or times[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(times)):
        raise ContractError("snapshot times", f"{name}: times must start at 0 and increase, got {times}")
    if len(times) < 2:
        raise ContractError("snapshot times", f"{name}: times needs at least one snapshot after t = 0")


def check_problem(problem: Any) -> None:
    """Every construction rule of :data:`RULES` on a problem, in the order of the table; raises
    :class:`ContractError` naming the first rule broken. ``Problem.__post_init__`` calls it (with
    ``times`` already converted to floats)."""
    from wgfbench.energy import Energy
    from wgfbench.problem import STATIONARY_ROLE, Box, Mobility, primary_metrics
    from wgfbench.references import Distribution, JKOIterates, Reference

    name = problem.name
    check_problem_name(name)
    if not name.startswith(f"{problem.family}/"):
        raise ContractError(
            "name starts with family", f"problem name {name!r} must start with its family {problem.family!r}/"
        )
    dim = problem.dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ContractError("positive dimension", f"{name}: dim must be a positive integer, got {dim!r}")
    version = problem.version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ContractError("positive version", f"{name}: version must be an integer >= 1, got {version!r}")
    check_times(name, problem.times)
    check_dt(name, problem.dt, problem.times)
    if not isinstance(problem.energy, Energy):
        raise ContractError(
            "typed energy", f"{name}: energy must be a wgfbench.Energy, got {type(problem.energy).__name__}"
        )
    if not isinstance(problem.initial, Distribution) or problem.initial.dim != dim:
        got = getattr(problem.initial, "dim", type(problem.initial).__name__)
        raise ContractError(
            "initial law", f"{name}: initial must be a Distribution living in dimension {dim}, got {got}"
        )
    mobility = problem.mobility
    if not isinstance(mobility, Mobility) or mobility.kind not in ("wasserstein", "nonlinear", "kalman"):
        raise ContractError("known mobility", f"{name}: unknown mobility {mobility!r}")
    box = problem.box
    if box is not None and (not isinstance(box, Box) or box.dim != dim):
        got = f"dimension {box.dim}" if isinstance(box, Box) else type(box).__name__
        raise ContractError(
            "box dimension", f"{name}: box must be a wgfbench.Box of dimension {dim}, got {got}"
        )
    references = problem.references
    pde = references.get("pde")
    if not isinstance(pde, Reference):
        raise ContractError("pde reference", f"{name}: references needs a 'pde' Reference")
    if pde.dim != dim:
        raise ContractError(
            "pde reference",
            f"{name}: initial and reference must live in dimension {dim}, the reference is {pde.dim}-D",
        )
    if getattr(pde, "kind", None) not in ("exact", "stationary", "numerical"):
        raise ContractError(
            "pde reference",
            f"{name}: the 'pde' reference's kind is {getattr(pde, 'kind', None)!r}, not exact, "
            "stationary or numerical",
        )
    if "jko" in references and not isinstance(references["jko"], JKOIterates):
        raise ContractError("jko reference", f"{name}: the 'jko' reference must be JKOIterates")
    stationary = references.get(STATIONARY_ROLE)
    if stationary is not None and getattr(stationary, "kind", None) != "stationary":
        raise ContractError(
            "stationary reference", f"{name}: references['stationary'] must be a Stationary reference"
        )
    if problem.primary_metric not in (primaries := primary_metrics()):
        raise ContractError(
            "known primary metric",
            f"{name}: primary_metric must be one of {primaries}, got {problem.primary_metric!r}",
        )
    if problem.primary_metric == "radial_w2":
        centre = pde.radial_centre
        shape = None if centre is None else tuple(getattr(centre, "shape", ()))
        if shape != (dim,):
            raise ContractError(
                "known primary metric",
                f"{name}: primary metric radial_w2 needs the 'pde' reference's radial_centre of shape "
                f"({dim},), got {None if centre is None else shape}",
            )


# ----------------------------------------------------------------------------------------------
# Solvers


def check_known_tiers(solver_cls: type) -> None:
    """Rule ``known tiers``: every key of ``solver_cls.presets`` is a tier of
    :data:`wgfbench.TIERS`; the error suggests the closest tier."""
    presets = getattr(solver_cls, "presets", {})
    name = getattr(solver_cls, "name", solver_cls.__name__)
    if not isinstance(presets, Mapping):
        raise ContractError(
            "known tiers", f"solver {name!r}: presets must map tier names to field values, got {presets!r}"
        )
    for tier in presets:
        if tier in TIERS:
            continue
        close = close_matches(str(tier), TIERS)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        raise ContractError(
            "known tiers",
            f"solver {name!r} has presets for {tier!r}, which is not a tier (known tiers: "
            f"{', '.join(TIERS)}), so they would never be used{hint}",
        )


def check_presets(solver_cls: type) -> None:
    """Rule ``valid presets``: each preset validates against ``solver_cls.Config``."""
    from wgfbench.solver import _config_from

    for tier, values in solver_cls.presets.items():
        if not isinstance(values, Mapping):
            raise ContractError(
                "valid presets",
                f"solver {solver_cls.name!r}: the {tier!r} preset must map field names to values, "
                f"got {values!r}",
            )
        try:
            _config_from(solver_cls, values)
        except ConfigError as exc:
            raise ContractError(
                "valid presets", f"the {tier!r} preset is not a valid config: {exc}"
            ) from None
        except Exception as exc:  # a Config class pydantic cannot build at all
            raise ContractError(
                "valid presets",
                f"solver {solver_cls.name!r}: building its Config from the {tier!r} preset raised "
                f"{type(exc).__name__}: {exc}",
            ) from exc


def check_citation(solver_cls: type) -> None:
    """Rule ``bibtex citation``: ``citation`` looks like a BibTeX entry ``@kind{key, ...}``."""
    citation = getattr(solver_cls, "citation", None)
    if not (isinstance(citation, str) and re.search(r"@\w+\s*\{", citation)):
        raise ContractError(
            "bibtex citation",
            f"solver {getattr(solver_cls, 'name', solver_cls.__name__)!r} needs a BibTeX `citation` (an "
            "@entry{key, ...} of the method's paper)",
        )


def check_solver_class(solver_cls: type) -> None:
    """Every registration rule of :data:`RULES` on a solver class, in the order of the table;
    raises :class:`ContractError` naming the first rule broken. ``registry.add`` calls it. (The
    ``bibtex citation`` rule is left to the conformance kit: :func:`check_citation`.)"""
    from wgfbench.solver import ROLES, SolverConfig

    name = getattr(solver_cls, "name", None)
    check_solver_name(name)
    if solver_cls.role not in ROLES:
        raise ContractError(
            "known role", f"solver {name!r} has role {solver_cls.role!r}; roles: {', '.join(ROLES)}"
        )
    config = getattr(solver_cls, "Config", None)
    if not (isinstance(config, type) and issubclass(config, SolverConfig)):
        raise ContractError(
            "typed config", f"solver {name!r}: Config must subclass wgfbench.SolverConfig, got {config!r}"
        )
    check_known_tiers(solver_cls)
    check_presets(solver_cls)


__all__ = [
    "GLOB_CHARACTERS",
    "PROBLEM_NAME",
    "RULES",
    "SOLVER_NAME",
    "ContractError",
    "Rule",
    "check_citation",
    "check_dt",
    "check_known_tiers",
    "check_presets",
    "check_problem",
    "check_problem_name",
    "check_solver_class",
    "check_solver_name",
    "check_times",
]
