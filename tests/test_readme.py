"""The README's result tables are generated from committed results, not copied by hand: the
reference-campaign table from the committed runs, every other table from the committed file its
``generated:`` block names."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from wgfbench.cli import main
from wgfbench.errors import WgfbenchError
from wgfbench.reports.leaderboard import README_BEGIN, README_END, build_leaderboard, replace_readme_table
from wgfbench.reports.readme import blocks as readme_blocks
from wgfbench.reports.readme import render, stale_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _campaign_runs() -> list[Path]:
    """The run directories of the README's ``wgfbench leaderboard RUN... --readme README.md``."""
    text = README.read_text(encoding="utf-8")
    command = re.search(
        r"^wgfbench leaderboard (.+?) --out \S+ --readme README\.md$", text, flags=re.MULTILINE
    )
    assert command, "the README names no 'wgfbench leaderboard RUN... --out DIR --readme README.md' command"
    return [ROOT / part for part in command.group(1).split()]


def test_readme_table_is_the_committed_leaderboard():
    runs = _campaign_runs()
    missing = [str(r) for r in runs if not (r / "manifest.json").is_file()]
    if missing:
        pytest.fail(f"the README's campaign runs are not committed: {missing}")
    text = README.read_text(encoding="utf-8")
    assert README_BEGIN in text and README_END in text
    expected = replace_readme_table(text, build_leaderboard(runs).to_readme_table())
    assert text == expected, (
        "README table differs from the committed runs: rerun `wgfbench leaderboard ... --readme README.md`"
    )


# --------------------------------------------------------------------------------------------------
# Generated blocks: every other result table of the README is a committed file, copied verbatim.

GENERATED = {"harness-scoring-cost", "harness-warm-cache", "harness-per-call", "jko-steps"}


def test_readme_result_tables_are_generated_blocks():
    names = {block.name for block in readme_blocks(README.read_text(encoding="utf-8"))}
    assert GENERATED <= names, f"README lacks the generated blocks {sorted(GENERATED - names)}"


def test_every_generated_block_is_its_committed_file():
    stale = stale_blocks(README.read_text(encoding="utf-8"), ROOT)
    assert not stale, f"README blocks differ from their files: {stale}; run `wgfbench readme`"


def _harness_module():
    spec = importlib.util.spec_from_file_location(
        "wgfbench_bench_harness", ROOT / "benchmarks" / "harness.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("table", ["harness.md", "warm-cache-rerun.md"])
def test_scoring_cost_tables_are_computed_from_the_committed_runs(table, monkeypatch):
    """The scoring-cost tables are what benchmarks/harness.py computes from the runs they name."""
    text = (ROOT / "leaderboards" / "quick-cpu" / "scoring-cost" / table).read_text(encoding="utf-8")
    runs_line = re.search(r"^Runs: (.+?)\. \d+ ok cases", text, flags=re.MULTILINE)
    assert runs_line, f"{table} names no runs"
    runs = [Path(run) for run in re.findall(r"`([^`]+)`", runs_line.group(1))]
    monkeypatch.chdir(ROOT)
    assert _harness_module().scoring_table(runs) == text, (
        f"{table} differs from the committed runs: rerun `python benchmarks/harness.py RUN... --table ...`"
    )


def test_render_copies_each_file_verbatim_and_check_lists_stale_blocks(tmp_path):
    (tmp_path / "a.md").write_text("| a |\n|---|\n| 1 |\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("no newline at the end", encoding="utf-8")
    text = (
        "# title\n"
        "<!-- generated: a (from a.md; regenerate: wgfbench readme) -->\nold\n<!-- generated:end -->\n"
        "between\n"
        "<!-- generated: b (from b.md) -->\n<!-- generated:end -->\ntail\n"
    )
    assert stale_blocks(text, tmp_path) == ["a", "b"]
    new = render(text, tmp_path)
    assert new == (
        "# title\n"
        "<!-- generated: a (from a.md; regenerate: wgfbench readme) -->\n| a |\n|---|\n| 1 |\n"
        "<!-- generated:end -->\nbetween\n"
        "<!-- generated: b (from b.md) -->\nno newline at the end\n<!-- generated:end -->\ntail\n"
    )
    assert stale_blocks(new, tmp_path) == []
    assert render(new, tmp_path) == new


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- generated: a (from a.md) -->\nno end\n", "complete blocks"),
        ("<!-- generated: a from a.md -->\n<!-- generated:end -->\n", "complete blocks"),
        (
            "<!-- generated: a (from missing.md) -->\n<!-- generated:end -->\n",
            "cannot read its file missing.md",
        ),
        (
            "<!-- generated: a (from a.md) -->\n<!-- generated:end -->\n" * 2,
            "named twice: a",
        ),
    ],
)
def test_malformed_or_missing_blocks_are_errors(tmp_path, text, message):
    (tmp_path / "a.md").write_text("x\n", encoding="utf-8")
    with pytest.raises(WgfbenchError, match=message):
        render(text, tmp_path)


def test_readme_command_rewrites_and_checks(tmp_path):
    (tmp_path / "t.md").write_text("| t |\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated: t (from t.md) -->\nstale\n<!-- generated:end -->\n", encoding="utf-8")
    runner = CliRunner()
    checked = runner.invoke(main, ["readme", str(readme), "--check"])
    assert checked.exit_code == 1 and "t" in checked.output
    assert "stale" in readme.read_text(encoding="utf-8")
    assert runner.invoke(main, ["readme", str(readme)]).exit_code == 0
    assert (
        readme.read_text(encoding="utf-8")
        == "<!-- generated: t (from t.md) -->\n| t |\n<!-- generated:end -->\n"
    )
    assert runner.invoke(main, ["readme", str(readme), "--check"]).exit_code == 0
