"""Exceptions raised by the host, each saying what was wrong and what would fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class WgfbenchError(Exception):
    """Base class of every error wgfbench raises on purpose."""


def close_matches(name: str, known: Iterable[str]) -> list[str]:
    """Up to three names of ``known`` close to ``name`` (difflib ratio ≥ 0.5), best first: the
    suggestions every "unknown name" message offers."""
    return difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)


class UnknownNameError(WgfbenchError, KeyError):
    """A solver, problem, metric or tier name that nothing registered; suggests close matches.

    ``note`` is appended to the message: the host passes the plugins that failed to load
    (:meth:`wgfbench.host.Host.failure_note`), since a name they would have registered is
    otherwise reported as a plain typo.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], note: str = ""):
        known = sorted(known)
        close = close_matches(name, known)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f" Known {kind}s: {', '.join(known) or 'none'}."
        self.kind, self.name, self.suggestions, self.note = kind, name, close, note
        super().__init__(f"unknown {kind} {name!r}.{hint}{listing}{' ' + note if note else ''}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(WgfbenchError):
    """Two plugins registered the same solver or problem name."""


class PluginError(WgfbenchError):
    """A plugin's code failed when wgfbench used what it registered (a problem factory that raised
    or built something else than the problem it was registered as); names the item and the plugin."""


class InvalidInput(WgfbenchError, ValueError):
    """An argument outside what a public function answers for (a negative, NaN or infinite time, a
    non-finite point, an input too large to process); the message names the argument and its value."""


class ConfigError(WgfbenchError, ValueError):
    """A malformed solver config or run plan; the message names the offending field."""


class BudgetExceeded(WgfbenchError):
    """A solver used more than its tier's wall-time budget (raised by ``ctx.check_budget()``)."""


class NonFiniteOutput(WgfbenchError):
    """A solver returned NaN or infinite values."""
