"""Did-you-mean suggestions for unknown keys and registry names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest valid spelling of ``name`` among ``choices``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """Did-you-mean: the closest spelling, else a choice that is a prefix of ``name`` (``evaluation`` → ``eval``)."""
    options = [str(c) for c in choices]
    # two neighbouring letters swapped is the commonest typo: ``modle`` means ``model``, not ``mode``
    hit = next((c for c in options if _swapped(name, c)), None) or closest(name, options)
    if hit is None:
        prefixed = [c for c in options if len(c) >= 3 and (name.startswith(c) or c.startswith(name))]
        hit = max(prefixed, key=len) if prefixed else None
    return hit


def _swapped(name: str, choice: str) -> bool:
    """``choice`` is ``name`` with two neighbouring letters swapped back."""
    diff = [i for i, (a, b) in enumerate(zip(name, choice, strict=False)) if a != b]
    return (len(name) == len(choice) and len(diff) == 2 and diff[1] == diff[0] + 1
            and name[diff[0]] == choice[diff[1]] and name[diff[1]] == choice[diff[0]])
