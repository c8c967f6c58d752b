"""Did-you-mean suggestions for unknown keys and registry names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest valid spelling of ``name`` among ``choices``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None
