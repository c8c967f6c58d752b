"""Model text → JSON object: strip ``<think>`` blocks, take the object from a fenced or bare reply.

Replaces the usual ```` ```json ```` regex + ``eval()``: never evaluates anything, tolerates prose
around the object, and picks the *last* fenced block / first complete object as models write them.

Whatever a server sends, this ends in a dict or a ``ValidationFailed`` in time linear in the reply:

* ``<think>`` blocks are removed by one forward scan (a regex ``<think>.*?</think>`` rescans the tail
  for every unclosed tag: 30 000 tags took 51 s);
* JSON is decoded by orjson, which has a depth limit (1024) instead of a RecursionError, and is fed
  growing windows of the text so a failed start costs only as much text as it read. After a start
  fails at some position, the search goes on *after* that position (not at the next ``{`` inside the
  broken object), so every byte is decoded about once.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from datafactory.errors import ValidationFailed

_OPEN = re.compile(r"<think>", re.IGNORECASE)
_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_OPEN_THINK = re.compile(r"\s*<think>", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)

# the first window a start is decoded with; it grows ×4 while the decoder runs off its end
_WINDOW = 256
# a reply with this many failed '{' starts is not an answer (LaTeX-heavy prose has a few hundred)
MAX_STARTS = 20_000


def strip_think(text: str) -> str:
    """Remove reasoning blocks; an unclosed ``<think>`` at the start means no answer was given."""
    parts: list[str] = []
    pos = 0
    while (opened := _OPEN.search(text, pos)) is not None:
        closed = _CLOSE.search(text, opened.end())
        if closed is None:  # unclosed: no later tag can close either, keep the rest as it is
            break
        parts.append(text[pos:opened.start()])
        pos = closed.end()
    parts.append(text[pos:])
    out = "".join(parts)
    if _OPEN_THINK.match(out):
        return ""
    return out


def think_text(text: str) -> str | None:
    """The text inside the reply's ``<think>`` blocks (joined by blank lines), or None without any. One
    forward scan like ``strip_think``; an unclosed block at the start (the reply ran out inside its
    reasoning) is kept as reasoning too."""
    parts: list[str] = []
    pos = 0
    while (opened := _OPEN.search(text, pos)) is not None:
        closed = _CLOSE.search(text, opened.end())
        if closed is None:
            if not text[:opened.start()].strip():
                parts.append(text[opened.end():])
            break
        parts.append(text[opened.end():closed.start()])
        pos = closed.end()
    found = [p.strip() for p in parts if p.strip()]
    return "\n\n".join(found) if found else None


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model reply, or ValidationFailed(reason='invalid_json' | 'empty_output')."""
    body = strip_think(text).strip()
    if not body:
        raise ValidationFailed("the model returned no answer (empty or only <think> text)", reason="empty_output")
    candidates = [m.group(1).strip() for m in _FENCE.finditer(body)][::-1]
    candidates.append(body)
    for cand in candidates:
        data = cand.encode("utf-8", "replace")  # a lone surrogate cannot be valid JSON anyway
        value = _loads(data)
        if not isinstance(value, dict):
            value = _first_object(data)
        if isinstance(value, dict):
            return value
    raise ValidationFailed("no JSON object found in the reply", reason="invalid_json")


def _loads(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _first_object(data: bytes) -> dict[str, Any] | None:
    """The first '{' that starts a complete JSON object (prose before/after is allowed)."""
    view = memoryview(data)
    start = data.find(b"{")
    tries = 0
    while start != -1 and tries < MAX_STARTS:
        tries += 1
        value, failed_at = _object_at(data, view, start)
        if value is not None:
            return value
        start = data.find(b"{", max(failed_at, start + 1))
    return None


def _object_at(data: bytes, view: memoryview, start: int) -> tuple[dict[str, Any] | None, int]:
    """Decode the object starting at ``start``: ``(object, 0)`` or ``(None, position it failed at)``."""
    size = len(data)
    window = _WINDOW
    while True:
        end = min(size, start + window)
        while end < size and data[end] & 0xC0 == 0x80:  # never cut a UTF-8 sequence in two
            end += 1
        try:
            value = orjson.loads(view[start:end])
        except orjson.JSONDecodeError as exc:
            pos = exc.pos
        else:
            return (value, 0) if isinstance(value, dict) else (None, end)
        if end < size and pos >= end - start - 4:  # ran off the window, not off the object
            window *= 4
            continue
        if pos > 0:  # "unexpected content after document": the object ends before ``pos``
            value = _loads(view[start:start + pos])
            if isinstance(value, dict):
                return value, 0
        return None, start + max(pos, 1)
