"""The pipeline loader's helpers for files and cross-references: input / eval-set / schema paths resolved
against the pipeline file, the schema loaded, template placeholders and output columns checked against
what exists (each error names the YAML key and line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datafactory.config.prompt import PromptTemplate
from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located
from datafactory.io.readers import detect_format

BUILTIN_EVAL_SETS = ("gsm8k",)


def _str_map(loc: Located, value: dict[str, Any], path: str) -> dict[str, str]:
    for k, v in value.items():
        if not isinstance(v, str):
            raise loc.error(f"{path}.{k}", f"expected a string, got {v!r}")
    return {str(k): v for k, v in value.items()}


def _resolve_input(value: str, base: Path) -> str:
    candidate = (base / value) if not Path(value).is_absolute() else Path(value)
    # a path that exists locally (or looks like a file) is local; anything else is a hub id
    if candidate.exists() or detect_format(value) is not None:
        return str(candidate)
    return value


def _eval_set(loc: Located, value: Any, base: Path) -> str:
    """A built-in eval set name (``gsm8k``) or a JSONL path, resolved against the pipeline's folder."""
    if not isinstance(value, str):
        raise loc.error("quality.decontaminate.eval_sets", f"expected a name or a path, got {value!r}")
    if value in BUILTIN_EVAL_SETS:
        return value
    return _must_exist(loc, "quality.decontaminate.eval_sets", value, base)


def _must_exist(loc: Located, key: str, value: str, base: Path) -> str:
    p = Path(value) if Path(value).is_absolute() else base / value
    if not p.is_file():
        raise loc.error(key, f"file not found: {p}")
    return str(p)


def _load_schema(loc: Located, path: str) -> dict[str, Any]:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise loc.error("schema", f"{path} is not valid JSON: {exc}") from None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise loc.error("schema", f"{path} is not a valid JSON Schema: {exc.message}") from None
    return dict(schema)


def _check_placeholders(loc: Located, template: PromptTemplate, fields: dict[str, str]) -> None:
    for var in template.variables:
        if var not in fields:
            raise loc.error("input.fields", f"prompt template {template.path} uses {{{{ {var} }}}} but "
                            f"input.fields does not map it", suggestion=closest(var, fields))


def _check_columns(loc: Located, columns: dict[str, str], schema: dict[str, Any],
                   fields: dict[str, str]) -> None:
    props = set((schema.get("properties") or {}).keys())
    for col, ref in columns.items():
        if ref.startswith("source."):
            name = ref[len("source."):]
            if name not in fields:
                raise loc.error(f"output.columns.{col}", f"'{ref}' is not a mapped input field",
                                suggestion=closest(name, fields))
        elif ref == "response.reasoning":  # formats/output.py REASONING_REF
            continue
        elif props and ref not in props:
            raise loc.error(f"output.columns.{col}", f"'{ref}' is not a property of the output schema",
                            suggestion=closest(ref, props))
