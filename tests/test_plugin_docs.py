"""docs/plugins.md stays complete: every hook of wgfbench/hookspecs.py is documented with its exact
signature and exercised by a hook implementation that a test registers, every name a plugin
author can import from ``wgfbench`` is mentioned, and every check of the conformance suite is
described."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import wgfbench
from wgfbench import hookspecs
from wgfbench.testing import ProblemConformance, SolverConformance

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
TEMPLATES = ROOT / "wgfbench" / "scaffold" / "templates"


def _hookspecs() -> dict[str, object]:
    """The hook specifications: the functions of wgfbench.hookspecs marked ``@hookspec``."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    specs = {
        name: fn for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, marker)
    }
    assert specs, "no hookspec found in wgfbench/hookspecs.py"
    return specs


def _signature(fn) -> str:
    """``name(param: Annotation, ...) -> Return`` as written in hookspecs.py (the annotations are
    strings there: ``from __future__ import annotations``)."""
    return f"{fn.__name__}{inspect.signature(fn)}".replace("'", "")


def _code_spans(text: str) -> str:
    """Every inline code span and fenced block of a markdown text, joined."""
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    without_fences = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", without_fences))


@pytest.fixture(scope="module")
def doc() -> str:
    return PLUGINS_DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_every_hook_is_documented_with_its_exact_signature(doc, name):
    signature = _signature(_hookspecs()[name])
    assert f"### `{signature}`" in doc, f"docs/plugins.md needs a section headed `{signature}`"
    section = doc.split(f"### `{signature}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert "```python" in section and f"def {name}(registry)" in section, (
        f"the section of {name} needs a worked example implementing it"
    )
    for parameter in inspect.signature(_hookspecs()[name]).parameters:
        assert f"`{parameter}`" in section, f"the section of {name} does not describe `{parameter}`"


def _hookimpl_names(text: str) -> set[str]:
    return set(re.findall(r"@wgfbench\.hookimpl\s*\n\s*def (\w+)\(", text))


def test_every_hook_is_exercised_by_a_registered_implementation():
    """Each hookspec has an implementation in a test module or test-support plugin that the
    tests register, or in the scaffold's templates (tests/test_plugin_kit.py installs the
    scaffold and runs it)."""
    implemented: dict[str, list[str]] = {}
    sources = [*ROOT.joinpath("tests").rglob("*.py"), *TEMPLATES.glob("*.tmpl")]
    for path in sources:
        for name in _hookimpl_names(path.read_text(encoding="utf-8")):
            implemented.setdefault(name, []).append(str(path.relative_to(ROOT)))
    missing = sorted(set(_hookspecs()) - set(implemented))
    assert not missing, f"hooks no test registers an implementation of: {missing}"


def test_the_scaffold_implements_the_registration_hooks_it_needs():
    templates = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*.tmpl"))
    assert {"wgfbench_register_problems", "wgfbench_register_solvers"} <= _hookimpl_names(templates)
    assert _hookimpl_names(templates) <= set(_hookspecs())


@pytest.mark.parametrize("name", sorted(wgfbench.__all__))
def test_every_public_name_is_mentioned(doc, name):
    code = _code_spans(doc)
    assert re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", code), (
        f"wgfbench.{name} is exported but docs/plugins.md never mentions it in code"
    )


def test_every_conformance_check_is_described(doc):
    checks = {
        name
        for cls in (SolverConformance, ProblemConformance)
        for name in dir(cls)
        if name.startswith("test_")
    }
    assert len(checks) >= 15
    missing = sorted(name for name in checks if f"`{name}`" not in doc)
    assert not missing, f"docs/plugins.md does not describe the conformance checks {missing}"


def test_the_command_line_entry_points_are_documented(doc):
    for text in ("wgfbench new-plugin NAME [--kind solver|problem|both] [--dir DIR]", "--wgfbench-solver"):
        assert text in doc
    assert "--wgfbench-problem" in doc and "pytest11" in doc
