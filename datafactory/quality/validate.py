"""JSON Schema validation of model output (``jsonschema``), with errors worded for a re-ask."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from datafactory.errors import ValidationFailed


class SchemaValidator:
    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = Draft202012Validator(schema)

    def validate(self, value: dict[str, Any]) -> None:
        """Raise ValidationFailed(reason='schema_invalid') listing up to three problems."""
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
