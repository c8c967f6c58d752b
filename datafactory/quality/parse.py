"""Model text → JSON object: strip ``<think>`` blocks, take the object from a fenced or bare reply.

Replaces the usual ```` ```json ```` regex + ``eval()``: never evaluates anything, tolerates prose
around the object, and picks the *last* fenced block / first complete object as models write them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from datafactory.errors import ValidationFailed

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"^\s*<think>", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_decoder = json.JSONDecoder()


def strip_think(text: str) -> str:
    """Remove reasoning blocks; an unclosed ``<think>`` at the start means no answer was given."""
    text = _THINK.sub("", text)
    if _OPEN_THINK.match(text):
        return ""
    return text


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model reply, or ValidationFailed(reason='invalid_json' | 'empty_output')."""
    body = strip_think(text).strip()
    if not body:
        raise ValidationFailed("the model returned no answer (empty or only <think> text)", reason="empty_output")
    candidates = [m.group(1).strip() for m in _FENCE.finditer(body)][::-1]
    candidates.append(body)
    for cand in candidates:
        try:
            value = json.loads(cand)
        except ValueError:
            value = _first_object(cand)
        if isinstance(value, dict):
            return value
    raise ValidationFailed("no JSON object found in the reply", reason="invalid_json")


def _first_object(text: str) -> dict[str, Any] | None:
    """Scan for the first '{' that starts a complete JSON object (prose before/after is allowed)."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None
