"""The docs that live in the repository stay true to the code: the problem catalogue lists every
built-in problem as registered, the tests it names exist, the design page names modules that
exist, links between docs resolve, and nothing in the repository cites files outside it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import wgfbench
from wgfbench.host import default_host

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PROBLEMS_DOC = DOCS / "problems.md"
DESIGN_DOC = DOCS / "design.md"

# The catalogue's rows: | `name` | d | reference kind | other roles | `primary` |
_ROW = re.compile(
    r"^\| `(?P<name>[^`]+)` \| (?P<dim>\d+) \| (?P<kind>\w+) \| (?P<roles>[^|]+) \| `(?P<primary>\w+)` \|$"
)


def _catalogue() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in PROBLEMS_DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            assert match["name"] not in rows, f"docs/problems.md lists {match['name']} twice"
            rows[match["name"]] = match.groupdict()
    return rows


def _builtin_problems() -> list[str]:
    host = default_host()
    return [
        name
        for name in host.problems
        if host.problems.entry(name).plugin.module.startswith("wgfbench_plugins.")
    ]


def test_every_builtin_problem_is_in_the_catalogue():
    names = _builtin_problems()
    assert names, "no built-in problem is registered: is wgfbench installed with its plugins?"
    rows = _catalogue()
    text = PROBLEMS_DOC.read_text(encoding="utf-8")
    missing = [name for name in names if name not in rows or f"`{name}`" not in text]
    assert not missing, f"docs/problems.md has no catalogue row for {missing}"
    unknown = sorted(set(rows) - set(names))
    assert not unknown, f"docs/problems.md lists problems that are not registered: {unknown}"


def test_catalogue_rows_describe_the_registered_problems():
    wrong = []
    for name, row in _catalogue().items():
        problem = wgfbench.get_problem(name)
        roles = sorted(role for role in problem.references if role != "pde")
        documented = sorted(r.strip() for r in row["roles"].split(",") if r.strip() not in {"", "—"})
        actual = {
            "dim": str(problem.dim),
            "kind": problem.reference.kind,
            "roles": roles,
            "primary": problem.primary_metric,
        }
        written = {"dim": row["dim"], "kind": row["kind"], "roles": documented, "primary": row["primary"]}
        if actual != written:
            wrong.append(f"{name}: docs say {written}, the registry {actual}")
    assert not wrong, "docs/problems.md catalogue rows are out of date:\n" + "\n".join(wrong)


def test_verifying_tests_named_in_the_catalogue_exist():
    text = PROBLEMS_DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+)`", text))
    assert named, "docs/problems.md names no verifying test"
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(
            re.findall(r"^\s*def (test_\w+)\(", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
        )
    missing = sorted(named - defined)
    assert not missing, f"docs/problems.md names tests that do not exist: {missing}"


def test_paths_and_modules_named_in_the_design_page_exist():
    text = DESIGN_DOC.read_text(encoding="utf-8")
    missing = []
    for path in set(re.findall(r"`((?:wgfbench|plugins|tests|benchmarks|docs)/[\w./-]*)`", text)):
        if not (ROOT / path.rstrip("/")).exists():
            missing.append(path)
    for module in set(re.findall(r"`(wgfbench(?:\.\w+)+)`", text)):
        parts = module.split(".")
        # a module, or a name defined in one (wgfbench.metrics.ScoreCache, wgfbench.Solver)
        candidates = [ROOT.joinpath(*parts[:i]) for i in range(len(parts), 0, -1)]
        if not any(c.with_suffix(".py").exists() or (c / "__init__.py").exists() for c in candidates):
            missing.append(module)
    assert not missing, f"docs/design.md names paths or modules that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_between_docs_resolve(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if "." not in path and "/" not in path:
            continue  # mathematics such as [ρ](x), not a link
        if not (DOCS / path).resolve().exists():
            broken.append(target)
    assert not broken, f"docs/{page} links to missing files: {broken}"


# Files outside the repository that nothing in it may cite; built here so that this file does not
# match itself.
FORBIDDEN = ("PROBLEMS" + ".md", "DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # tracked files and new ones not yet added (ignored files excluded)
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def test_no_tracked_file_cites_a_file_outside_the_repository():
    offenders = []
    for name in _tracked_files():
        if name.startswith("docs/"):
            continue
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary data
        for lineno, line in enumerate(text.splitlines(), 1):
            hits = [f for f in FORBIDDEN if f in line]
            if hits:
                offenders.append(f"{name}:{lineno}: {', '.join(hits)}")
    assert not offenders, (
        "files cite documents outside the repository (cite docs/problems.md, docs/design.md or the "
        "paper instead, or state the fact):\n" + "\n".join(offenders)
    )
