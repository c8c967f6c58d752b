"""Cheap per-record filters: length, empty fields, script/language.

They run before the expensive gates (answer check, decontamination, dedup) so that a truncated or
empty output is counted under its real reason and never enters the dedup memory.
"""

from __future__ import annotations

import bisect
from collections import Counter

from datafactory.quality.gate import FieldSpec, Reject, field_names, field_text
from datafactory.record import Record


class LengthFilter:
    """Rejects a record whose named fields (joined by newlines, stripped) are shorter than
    ``min_chars`` (``too_short``: a refusal or a truncated reply) or longer than ``max_chars``
    (``too_long``: a runaway generation that would dominate training batches)."""

    name = "length"

    def __init__(self, fields: FieldSpec, min_chars: int = 1, max_chars: int = 20000) -> None:
        if not 0 <= min_chars <= max_chars:
            raise ValueError(f"need 0 <= min_chars <= max_chars, got {min_chars} and {max_chars}")
        self.fields, self.min_chars, self.max_chars = field_names(fields), min_chars, max_chars

    def check(self, record: Record) -> Reject | None:
        size = len(field_text(record, self.fields).strip())
        where = ", ".join(self.fields)
        if size < self.min_chars:
            return Reject("too_short", f"{size} chars in {where}, fewer than min_chars={self.min_chars}")
        if size > self.max_chars:
            return Reject("too_long", f"{size} chars in {where}, more than max_chars={self.max_chars}")
        return None


class EmptyFieldFilter:
    """Rejects a record in which any named field is missing, None, blank, or an empty list or
    object (``empty_field``): the model skipped part of the schema, and an empty answer must not
    reach the output or be remembered by dedup."""

    name = "empty_field"

    def __init__(self, fields: FieldSpec) -> None:
        self.fields = field_names(fields)

    def check(self, record: Record) -> Reject | None:
        for name in self.fields:
            if name not in record.fields:
                return Reject("empty_field", f"{name!r} is missing")
            value = record.fields[name]
            if value is None or (isinstance(value, str) and not value.strip()):
                return Reject("empty_field", f"{name!r} is empty")
            if isinstance(value, list | dict | tuple) and not value:
                return Reject("empty_field", f"{name!r} is an empty {type(value).__name__}")
        return None


# (first code point, script) for the scripts the heuristic tells apart; "other" fills the gaps
_RANGES: list[tuple[int, str]] = [
    (0x0000, "latin"), (0x0250, "other"), (0x0370, "greek"), (0x0400, "cyrillic"), (0x0530, "other"),
    (0x0590, "hebrew"), (0x0600, "arabic"), (0x0780, "other"), (0x0900, "devanagari"), (0x0980, "other"),
    (0x0E00, "thai"), (0x0E80, "other"), (0x1100, "cjk"), (0x1200, "other"), (0x1E00, "latin"),
    (0x1F00, "greek"), (0x2000, "other"), (0x2E80, "cjk"), (0xA000, "other"), (0xAC00, "cjk"),
    (0xD7B0, "other"), (0xF900, "cjk"), (0xFB00, "other"), (0xFF21, "latin"), (0xFF5B, "other"),
    (0xFF66, "cjk"), (0xFFE0, "other"), (0x20000, "cjk"), (0x32000, "other"),
]
_STARTS = [start for start, _ in _RANGES]

SCRIPTS = frozenset(script for _, script in _RANGES) - {"other"}
# languages whose script is not Latin; any other two-letter code is taken to be written in Latin
_LANGUAGE_SCRIPT = {
    "zh": "cjk", "ja": "cjk", "ko": "cjk", "ru": "cyrillic", "uk": "cyrillic", "bg": "cyrillic",
    "sr": "cyrillic", "be": "cyrillic", "kk": "cyrillic", "mk": "cyrillic", "mn": "cyrillic",
    "ar": "arabic", "fa": "arabic", "ur": "arabic", "ps": "arabic", "el": "greek", "he": "hebrew",
    "yi": "hebrew", "hi": "devanagari", "mr": "devanagari", "ne": "devanagari", "th": "thai",
}


def script_of(ch: str) -> str:
    """The script of one letter: latin, cjk, cyrillic, arabic, greek, hebrew, devanagari, thai, other."""
    return _RANGES[bisect.bisect_right(_STARTS, ord(ch)) - 1][1]


def language_script(code: str) -> str:
    """The script a language code (``"en"``, ``"zh"``) or a script name (``"cjk"``) stands for."""
    code = code.lower()
    if code in SCRIPTS:
        return code
    if len(code) in (2, 3) and code.isalpha():
        return _LANGUAGE_SCRIPT.get(code, "latin")
    raise ValueError(f"unknown language {code!r}: give an ISO 639 code like 'en' or one of {sorted(SCRIPTS)}")


class LanguageFilter:
    """Rejects a record whose letters are mostly in a script the allowed languages do not use
    (``wrong_language``), e.g. a Chinese reply to an English prompt.

    A cheap script heuristic (letters counted by Unicode block), not language identification: it
    cannot tell English from French, so a pipeline turns it on only when it wants that guard.
    Text with no letters (pure arithmetic) passes.
    """

    name = "language"

    def __init__(self, field: FieldSpec, allowed: tuple[str, ...] = ("en",), min_share: float = 0.8) -> None:
        if not 0.0 < min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {min_share}")
        self.fields, self.min_share = field_names(field), min_share
        self.allowed = tuple(allowed)
        self.scripts = frozenset(language_script(code) for code in self.allowed)

    def check(self, record: Record) -> Reject | None:
        text = field_text(record, self.fields)
        if text.isascii():
            # only Latin letters: the common case needs no per-character work
            if "latin" in self.scripts:
                return None
            counts = Counter({"latin": sum(ch.isalpha() for ch in text)})
        else:
            counts = Counter(script_of(ch) for ch in text if ch.isalpha())
        letters = sum(counts.values())
        if letters == 0:
            return None
        share = sum(n for script, n in counts.items() if script in self.scripts) / letters
        if share >= self.min_share:
            return None
        top = counts.most_common(1)[0][0]
        allowed = ", ".join(self.allowed)
        return Reject("wrong_language", f"{share:.0%} of letters in {allowed} scripts; most are {top}")
