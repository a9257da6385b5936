"""``wgfbench new-plugin``: write a working plugin project from the templates in ``templates/``.

The project (``DIR/NAME``) is a complete distribution: a ``pyproject.toml`` with the ``wgfbench``
entry point ``NAME``, a package ``src/<NAME with - as _>/`` whose ``plugin`` module holds the
hook implementations, and tests that run the conformance suite (:mod:`wgfbench.testing`). With
``kind="solver"`` it provides an explicit Euler–Maruyama particle solver for Fokker–Planck
problems named ``NAME``; with ``kind="problem"`` a 1-D Ornstein–Uhlenbeck problem
``NAME/ou-1d`` with an exact Gaussian reference; ``kind="both"`` (the default) provides both. The
generated code uses only wgfbench's public API.
"""

from __future__ import annotations

import keyword
import re
import string
import sys
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

KINDS = ("solver", "problem", "both")

NAME_RULE = (
    "a plugin name is lower case: it starts with a letter, holds only letters a-z, digits and "
    "single '-' or '_' between them, and is at most 40 characters long (e.g. 'my-solver')"
)
NAME_PATTERN = re.compile(r"^[a-z](?:[a-z0-9]|[-_](?=[a-z0-9]))*$")


class ScaffoldError(ValueError):
    """A plugin name that breaks :data:`NAME_RULE`, or a target that already exists."""


def validate_name(name: str) -> str:
    """``name`` if it is a valid plugin name; otherwise :class:`ScaffoldError` saying what is wrong
    and stating the rule. The package name (``-`` → ``_``) must not be a Python keyword, and must
    not shadow an importable module (``wgfbench``, ``torch``, …)."""
    if not NAME_PATTERN.match(name) or len(name) > 40:
        problems = []
        if any(c.isupper() for c in name):
            problems.append("capitals")
        if any(c.isspace() for c in name):
            problems.append("spaces")
        if name and not name[0].isalpha():
            problems.append(f"a first character {name[0]!r}")
        others = sorted(
            {c for c in name if not (c.isascii() and (c.isalnum() or c in "-_")) and not c.isspace()}
        )
        if others:
            problems.append("the character(s) " + " ".join(repr(c) for c in others))
        if len(name) > 40:
            problems.append(f"{len(name)} characters")
        what = " and ".join(problems) if problems else "a leading, trailing or doubled '-'/'_'"
        raise ScaffoldError(f"invalid plugin name {name!r} ({what}): {NAME_RULE}")
    package = package_name(name)
    if keyword.iskeyword(package):
        raise ScaffoldError(f"invalid plugin name {name!r}: its package {package!r} is a Python keyword")
    if package in sys.stdlib_module_names or find_spec(package) is not None:
        raise ScaffoldError(
            f"invalid plugin name {name!r}: its package {package!r} would shadow the importable module "
            f"{package!r}; choose another name"
        )
    return name


def package_name(name: str) -> str:
    """The import name of the plugin's package: ``name`` with ``-`` replaced by ``_``."""
    return name.replace("-", "_")


def _template(filename: str) -> string.Template:
    return string.Template(resources.files(__package__).joinpath("templates", filename).read_text("utf-8"))


def _render(filename: str, values: dict[str, str]) -> str:
    return _template(filename).substitute(values)


def render_plugin(name: str, kind: str = "both") -> dict[str, str]:
    """The files of the plugin project ``name`` of ``kind``: relative path → text."""
    validate_name(name)
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    package = package_name(name)
    has_solver, has_problem = kind in ("solver", "both"), kind in ("problem", "both")
    solver_name, problem_name = name, f"{name}/ou-1d"
    summary = {
        "solver": f"the Euler–Maruyama particle solver '{solver_name}'",
        "problem": f"the exact 1-D Ornstein–Uhlenbeck problem '{problem_name}'",
        "both": f"the Euler–Maruyama particle solver '{solver_name}' and the exact 1-D "
        f"Ornstein–Uhlenbeck problem '{problem_name}'",
    }[kind]
    run_solver = solver_name if has_solver else "langevin"
    run_problem = problem_name if has_problem else "fokker-planck/ou-1d"
    values = {
        "name": name,
        "distribution": name,
        "package": package,
        "summary": summary,
        "solver_name": solver_name,
        "problem_name": problem_name,
        "items": " and ".join(
            ([f"the solver {solver_name}"] if has_solver else [])
            + ([f"the problem {problem_name}"] if has_problem else [])
        ),
        "run_args": f"--solver {run_solver} --solver reference --problem {run_problem}",
    }
    init_imports, plugin_imports, hooks, asserts = [], [], [], []
    if has_problem:
        init_imports.append(f"from {package}.problem import PROBLEM_NAME, make_ou_1d")
        plugin_imports.append(f"from {package}.problem import PROBLEM_NAME, make_ou_1d")
    if has_solver:
        init_imports.append(f"from {package}.solver import EulerMaruyama")
        plugin_imports.append(f"from {package}.solver import EulerMaruyama")
        hooks.append(_render("hook_solvers.py.tmpl", values))
        asserts.append(f'    assert host.solvers.entry("{solver_name}").item.__name__ == "EulerMaruyama"')
    if has_problem:
        hooks.append(_render("hook_problems.py.tmpl", values))
        asserts.append(f'    assert "{problem_name}" in host.problems')
        asserts.append(f'    assert wgfbench.get_problem("{problem_name}", host=host).dim == 1')
    exported = (["EulerMaruyama"] if has_solver else []) + (
        ["PROBLEM_NAME", "make_ou_1d"] if has_problem else []
    )
    init_imports.append("")
    init_imports.append("__all__ = [" + ", ".join(f'"{e}"' for e in exported) + "]")
    values.update(
        init_imports="\n".join(init_imports),
        plugin_imports="\n".join(plugin_imports) + "\n",
        plugin_hooks="\n".join(hooks),
        plugin_test_asserts="\n".join(asserts),
        solver_testing_names=", ".join(
            ["SolverConformance"]
            + (["default_problems"] if has_problem else [])
            + ["ornstein_uhlenbeck_problem"]
        ),
        solver_test_imports="\n".join(
            ([f"from {package}.problem import make_ou_1d"] if has_problem else [])
            + [f"from {package}.solver import EulerMaruyama"]
        ),
        solver_test_problems=(
            "    # The plugin's own problem and the kit's exact OU problems (1-D and 2-D).\n"
            "    problems = (make_ou_1d, *default_problems())\n"
            if has_problem
            else "    # No `problems`: the kit's exact OU problems (1-D and 2-D).\n"
        ),
    )

    src = f"src/{package}"
    files = {
        "pyproject.toml": _render("pyproject.toml.tmpl", values),
        "README.md": _render("README.md.tmpl", values),
        f"{src}/__init__.py": _render("__init__.py.tmpl", values),
        f"{src}/plugin.py": _render("plugin.py.tmpl", values),
        "tests/test_plugin.py": _render("test_plugin.py.tmpl", values),
    }
    if has_solver:
        files[f"{src}/solver.py"] = _render("solver.py.tmpl", values)
        files["tests/test_solver.py"] = _render("test_solver.py.tmpl", values)
    if has_problem:
        files[f"{src}/problem.py"] = _render("problem.py.tmpl", values)
        files["tests/test_problem.py"] = _render("test_problem.py.tmpl", values)
    return files


def create_plugin(name: str, kind: str = "both", directory: Path | str = ".") -> Path:
    """Write the plugin project ``name`` into ``directory/name`` and return that path. Refuses
    (:class:`ScaffoldError`) when the path already exists; writes nothing then."""
    files = render_plugin(name, kind)
    root = Path(directory) / name
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another --dir or name (nothing was overwritten)")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


__all__ = [
    "KINDS",
    "NAME_RULE",
    "ScaffoldError",
    "create_plugin",
    "package_name",
    "render_plugin",
    "validate_name",
]
