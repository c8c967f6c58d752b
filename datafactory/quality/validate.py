"""JSON Schema validation of model output, with errors worded for a re-ask.

``jsonschema`` (Draft 2020-12) is the reference and words every error. Most replies are valid, and
``jsonschema`` walks a schema in Python objects (~0.09 ms per reply on the shipped gsm8k schema), so a
schema written only with keywords that mean the same in Draft 7 and 2020-12 (``FAST_KEYWORDS``) is also
compiled with ``fastjsonschema`` (generated Python, ~10x faster): a reply it accepts is valid; one it
refuses goes to ``jsonschema``, whose errors decide (none: valid) — so a verdict never depends on the
fast path, only its cost does (tests/test_validate_fast.py holds both to the same verdicts).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from datafactory.errors import ValidationFailed

# keywords whose Draft 7 meaning (what fastjsonschema compiles) is the Draft 2020-12 one. Out: enum (unless
# of strings only), const and uniqueItems (Python's 1 == True), format (fastjsonschema asserts it, jsonschema
# does not by default), items as a list, $ref/$defs (2020-12 resolution), patternProperties
FAST_KEYWORDS = frozenset({
    "$schema", "$comment", "title", "description", "default", "examples", "type", "properties", "required",
    "additionalProperties", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
    "maxItems", "items", "allOf", "anyOf", "oneOf", "not"})
_SCHEMA_MAPS = ("properties",)  # keywords whose value maps names to subschemas
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def fast_compatible(schema: Any) -> bool:
    """Whether every keyword of ``schema`` (and of its subschemas) is in ``FAST_KEYWORDS``."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= FAST_KEYWORDS | _string_choices(schema):
        return False
    for key, value in schema.items():
        if key in _SCHEMA_MAPS:
            if not isinstance(value, dict) or not all(fast_compatible(v) for v in value.values()):
                return False
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list) or not all(fast_compatible(v) for v in value):
                return False
        elif key in ("additionalProperties", "items", "not") and not fast_compatible(value):
            return False
    return True


def _string_choices(schema: dict[str, Any]) -> set[str]:
    """enum of strings only: the same in both (a str equals only a str); others are not compiled."""
    if isinstance(schema.get("enum"), list) and all(isinstance(v, str) for v in schema["enum"]):
        return {"enum"}
    return set()


def class_dollars(pattern: str) -> str:
    """``pattern`` with each ``$`` inside a character class escaped (``[-$]`` -> ``[-\\$]``, the same set):
    fastjsonschema turns every unescaped ``$`` into ``\\Z``, which is no set member. (Outside a class
    that makes its match stricter than Python's ``$``; a string refused only for that goes to jsonschema.)"""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if not in_class and c == "[":
            in_class = True
            out.append(c)
            i += 1
            if pattern[i:i + 1] == "^":
                out.append("^")
                i += 1
            if pattern[i:i + 1] == "]":  # a ']' first in the set is a member
                out.append("]")
                i += 1
            continue
        if in_class and c == "]":
            in_class = False
        out.append("\\$" if in_class and c == "$" else c)
        i += 1
    return "".join(out)


def _for_fast(schema: Any) -> Any:
    """A copy of ``schema`` for fastjsonschema: no ``$schema`` (Draft 7 semantics), patterns via ``class_dollars``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$schema":
            continue
        if key == "pattern" and isinstance(value, str):
            out[key] = class_dollars(value)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _for_fast(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_for_fast(sub) for sub in value]
        elif key in ("additionalProperties", "items", "not"):
            out[key] = _for_fast(value)
        else:
            out[key] = value
    return out


def _fast(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    if not fast_compatible(schema):
        return None
    import fastjsonschema

    try:
        check = fastjsonschema.compile(_for_fast(schema), use_formats=False, detailed_exceptions=False)
    except (fastjsonschema.JsonSchemaDefinitionException, re.error):  # then jsonschema alone
        return None

    def valid(value: Any) -> bool:
        try:
            check(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return valid


class SchemaValidator:
    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        self._validator = Draft202012Validator(schema)
        self._valid = _fast(schema)

    @property
    def compiled(self) -> bool:
        """Whether valid replies are recognised by the compiled fast path (else jsonschema checks each)."""
        return self._valid is not None

    def validate(self, value: dict[str, Any]) -> None:
        """Raise ValidationFailed(reason='schema_invalid') listing up to three problems."""
        if self._valid is not None and self._valid(value):
            return
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            parts = []
            for err in errors[:3]:
                where = "/".join(str(p) for p in err.path) or "(root)"
                parts.append(f"at {where}: {err.message}")
            raise ValidationFailed("; ".join(parts), reason="schema_invalid")


def reask_message(error: str) -> str:
    """The follow-up user turn sent after an invalid reply."""
    return (f"Your previous reply could not be used: {error}. Reply again with only the JSON object, "
            "following the required format exactly.")
