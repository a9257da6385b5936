"""The README's reference-campaign table is generated from the committed runs, not copied by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wgfbench.reports.leaderboard import README_BEGIN, README_END, build_leaderboard, replace_readme_table

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
