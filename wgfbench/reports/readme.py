"""Generated blocks of the README: tables copied verbatim from committed result files.

A block is a stretch of a markdown file between an opening marker that names the block and the
committed file it shows, and a closing marker::

    <!-- generated: NAME (from PATH/TO/table.md; regenerate: wgfbench readme) -->
    ...the file's text, verbatim...
    <!-- generated:end -->

The file's path is relative to the markdown file's directory. The file itself is written by the
benchmark or report that computes it (``benchmarks/jko_steps.py --out``,
``benchmarks/harness.py --table/--timings``); :func:`render` only copies it, so a table in the
README is never a hand copy. ``wgfbench readme`` rewrites every block and ``wgfbench readme
--check`` lists the blocks that differ from their files (a test runs the check).

The leaderboard table (``leaderboard-table:begin`` … ``:end``) is a block of another kind: it is
computed from the committed runs by ``wgfbench leaderboard ... --readme``
(:func:`wgfbench.reports.leaderboard.replace_readme_table`) and is left alone here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from wgfbench.errors import WgfbenchError

__all__ = ["END", "Block", "blocks", "render", "stale_blocks"]

END = "<!-- generated:end -->"
"""The closing marker of every generated block."""

_BLOCK = re.compile(
    r"^<!-- generated: (?P<name>[\w.-]+) \(from (?P<source>[^;)\s]+)(?:;[^)]*)?\) -->\n"
    r"(?P<body>.*?)^" + re.escape(END) + r"$",
    flags=re.MULTILINE | re.DOTALL,
)
_OPENING = re.compile(r"^<!-- generated: ", flags=re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One generated block: its ``name``, the ``source`` file it shows (as written in the marker,
    relative to the markdown file), and the span ``[start, end)`` of its body in the text."""

    name: str
    source: str
    start: int
    end: int
    body: str


def blocks(text: str) -> list[Block]:
    """Every generated block of ``text``, in order; :class:`WgfbenchError` when an opening marker
    is malformed or has no closing marker, or when two blocks share a name."""
    found = [
        Block(m["name"], m["source"], m.start("body"), m.start("body") + len(m["body"]), m["body"])
        for m in _BLOCK.finditer(text)
    ]
    openings = len(_OPENING.findall(text))
    if openings != len(found):
        raise WgfbenchError(
            f"{openings} '<!-- generated: NAME (from PATH; ...) -->' markers but {len(found)} complete "
            f"blocks: every opening marker needs the form above on a line of its own and a closing "
            f"'{END}' line"
        )
    names = [b.name for b in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise WgfbenchError(f"generated blocks named twice: {', '.join(duplicates)}")
    return found


def _source_text(block: Block, root: Path) -> str:
    path = root / block.source
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WgfbenchError(
            f"generated block {block.name!r}: cannot read its file {block.source} ({exc.strerror}); "
            "commit it or rerun the command that writes it"
        ) from None
    return text if text.endswith("\n") else text + "\n"


def render(text: str, root: Path) -> str:
    """``text`` with the body of every generated block replaced by its file (read from ``root``)."""
    parts, position = [], 0
    for block in blocks(text):
        parts += [text[position : block.start], _source_text(block, root)]
        position = block.end
    parts.append(text[position:])
    return "".join(parts)


def stale_blocks(text: str, root: Path) -> list[str]:
    """Names of the blocks of ``text`` whose body differs from their file (read from ``root``)."""
    return [block.name for block in blocks(text) if block.body != _source_text(block, root)]
