"""The leaderboard as one self-contained HTML page: inline CSS, every figure embedded as a base64
PNG ``data:`` URI, no script and no external URL, so the file can be mailed, attached to a CI run
or opened offline. It holds every table of :meth:`Leaderboard.tables` (one ``<table>`` each) and
every figure written."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from wgfbench.reports.tables import MATRIX_LEGEND

if TYPE_CHECKING:
    from wgfbench.reports.leaderboard import Leaderboard

STYLE = (
    "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}img{max-width:100%;display:block;margin:0.5em 0}"
    "figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"
    "nav ul{columns:3}code{background:#f6f6f6;padding:0 2px}"
)


def _inline_markdown(text: str) -> str:
    """Escaped ``text`` with markdown ``**bold**`` and ``code`` spans as HTML."""
    out = html.escape(text)
    parts = out.split("**")
    out = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def table_html(frame: pd.DataFrame, markdown_cells: bool = False) -> str:
    """``frame`` as a ``<table>``: escaped cells, or with ``markdown_cells`` the inline markdown of
    the matrix (bold first places, code spans) as HTML."""
    cell = _inline_markdown if markdown_cells else html.escape
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = [
        "<tr>" + "".join(f"<td>{cell(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    ]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def image_html(path: Path, caption: str) -> str:
    """A ``<figure>`` with the PNG at ``path`` embedded as a ``data:`` URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'
    )


def _anchor(index: int) -> str:
    return f"t{index}"


def render(board: Leaderboard) -> str:
    """The page: header, notes, a contents list, then every table of ``board.tables()`` in order,
    the figures of each problem after its table and the cross-problem figures after the summary."""
    esc = html.escape
    tables = board.tables()
    headings = {board.problem_heading(p): p for p in board.per_problem}
    body = [f"<h1>wgfbench leaderboard — tier <code>{esc(board.tier)}</code></h1>", "<ul>"]
    body += [f"<li>{_inline_markdown(line.strip().removeprefix('- '))}</li>" for line in board.header_lines()]
    body.append("</ul>")
    if board.notes:
        body += ["<h2>Notes</h2>", "<ul>", *[f"<li>{esc(n)}</li>" for n in board.notes], "</ul>"]
    body += ["<nav><h2>Contents</h2><ul>"]
    body += [f'<li><a href="#{_anchor(i)}">{esc(title)}</a></li>' for i, title in enumerate(tables)]
    body += ["</ul></nav>"]
    for i, (title, frame) in enumerate(tables.items()):
        body.append(f'<h2 id="{_anchor(i)}">{esc(title)}</h2>')
        matrix = title == "Problem × solver"
        body.append(table_html(frame, markdown_cells=matrix))
        if matrix:
            body.append(f"<p>{_inline_markdown(MATRIX_LEGEND)}</p>")
        problem = headings.get(title)
        figures = board.figure_list(problem) if problem is not None else []
        if title == "Summary":
            figures = board.figure_list(None)
        body += [image_html(path, caption) for caption, path in figures if path.is_file()]
    if not len(board.failures):
        body += ["<h2>Failures</h2>", "<p>No case failed.</p>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>wgfbench leaderboard ({esc(board.tier)})</title><style>{STYLE}</style></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )
