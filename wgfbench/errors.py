"""Exceptions raised by the host, each saying what was wrong and what would fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class WgfbenchError(Exception):
    """Base class of every error wgfbench raises on purpose."""


class UnknownNameError(WgfbenchError, KeyError):
    """A solver, problem, metric or tier name that nothing registered; suggests close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f" Known {kind}s: {', '.join(known) or 'none'}."
        self.kind, self.name, self.suggestions = kind, name, close
        super().__init__(f"unknown {kind} {name!r}.{hint}{listing}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(WgfbenchError):
    """Two plugins registered the same solver or problem name."""


class ConfigError(WgfbenchError, ValueError):
    """A malformed solver config or run plan; the message names the offending field."""


class BudgetExceeded(WgfbenchError):
    """A solver used more than its tier's wall-time budget (raised by ``ctx.check_budget()``)."""


class NonFiniteOutput(WgfbenchError):
    """A solver returned NaN or infinite values."""
