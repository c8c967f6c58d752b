"""The compiled fast path of SchemaValidator (fastjsonschema) never changes a verdict or a message:
jsonschema (Draft 2020-12) is the reference on a set of valid and invalid objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from datafactory.errors import ValidationFailed
from datafactory.quality.validate import SchemaValidator, class_dollars

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "schemas").glob("*.json"))

SCHEMAS = [
    {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer", "minimum": 2}}},
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x[$]?y$"}}, "additionalProperties": False},
    {"type": "object", "properties": {"n": {"type": "number", "exclusiveMaximum": 3}, "l": {
        "type": "array", "items": {"type": "string", "maxLength": 2}, "minItems": 1}}},
    {"anyOf": [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}]},
    {"type": "object", "properties": {"e": {"enum": [1, "x"]}, "f": {"format": "email"}}},  # not compiled
]
OBJECTS = [
    {}, {"a": 1}, {"a": 2}, {"a": 2.0}, {"a": True}, {"a": "2"}, {"a": None}, {"a": "xy"}, {"a": "x$y"},
    {"a": "xy\n"}, {"a": "x-y"}, {"b": 1}, {"a": 3, "b": 1}, {"n": 2.5}, {"n": 3}, {"n": False},
    {"dialogues": [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]},
    {"dialogues": [{"conversations": [{"from": "bot", "value": "hi"}, {"from": "gpt", "value": ""}]}]},
    {"l": []}, {"l": ["ab"]}, {"l": ["abc"]}, {"l": "ab"}, {"e": True}, {"e": 1.0}, {"e": "x"}, {"f": "no mail"},
    {"question": "Janet has sixteen ducks.", "answer": "16 - 3 = 13\n#### 13"},
    {"question": "Janet has sixteen ducks.", "answer": "16 - 3 = 13\n#### $1,300.50 .\n"},
    {"question": "Janet has sixteen ducks.", "answer": "#### -$5"},
    {"question": "Janet has sixteen ducks.", "answer": "no final line"},
    {"question": "short", "answer": "#### 5"}, {"question": 5, "answer": "#### 5"},
    {"question": "Janet has sixteen ducks.", "answer": "#### 5", "extra": [1, 2]},
    {"instruction": "Rewrite this", "output": "done", "input": ""}, {"chosen": "a", "rejected": "b"},
]


def _reference(schema: dict, value: object) -> str | None:
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join(f"at {'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:3])


def _ours(validator: SchemaValidator, value: object) -> str | None:
    try:
        validator.validate(value)  # type: ignore[arg-type]
    except ValidationFailed as exc:
        assert exc.reason == "schema_invalid"
        return str(exc)
    return None


@pytest.mark.parametrize("schema", SCHEMAS + [json.loads(p.read_text()) for p in SHIPPED])
def test_fast_validator_gives_jsonschemas_verdicts_and_messages(schema):
    validator = SchemaValidator(schema)
    for value in OBJECTS:
        expected = _reference(schema, value)
        got = _ours(validator, value)
        assert (got is None) == (expected is None), (value, got, expected)
        if expected is not None:
            assert expected in got


def test_shipped_schemas_are_checked_by_the_compiled_path():
    for path in SHIPPED:
        assert SchemaValidator(json.loads(path.read_text())).compiled, path.name


def test_schemas_with_draft_dependent_keywords_stay_on_jsonschema_alone():
    assert not SchemaValidator(SCHEMAS[-1]).compiled
    assert not SchemaValidator({"type": "array", "items": [{"type": "string"}]}).compiled
    assert not SchemaValidator({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"}).compiled


def test_dollar_inside_a_set_stays_a_member_for_the_compiled_pattern():
    assert class_dollars(r"####\s*[-$]?[0-9]+$") == r"####\s*[-\$]?[0-9]+$"
    assert class_dollars(r"[]$]\[$") == r"[]\$]\[$"


def test_string_enums_compile_and_agree():
    schema = {"type": "object", "properties": {"from": {"enum": ["human", "gpt"]}}}
    validator = SchemaValidator(schema)
    assert validator.compiled
    for value in ({"from": "gpt"}, {"from": "bot"}, {"from": 1}):
        assert (_ours(validator, value) is None) == (_reference(schema, value) is None), value
