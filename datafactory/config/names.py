"""Names a pipeline refers to, checked before anything is paid for.

A typo in a column or field name does not fail loudly on its own: every row is sent, every answer is
rejected, and the run ends with exit 0. So the names are checked up front (``validate``,
``--dry-run`` and before ``augment`` sends its first request), each error naming the pipeline file,
line and key with a did-you-mean:

* ``input.fields``: every mapped column must appear in the input's first rows;
* gate ``fields`` / ``output_field``: a property of the output schema or a column of the output row
  (what gates see); ``answer_check.source_field``, ``exact_dedup.against_input`` and
  ``decontaminate.inputs``: a mapped template variable (what the source of a record holds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located, load_yaml
from datafactory.errors import ConfigError

if TYPE_CHECKING:
    from datafactory.config.pipeline import Pipeline

SAMPLE_ROWS = 100  # first rows whose columns count as "the input's columns"
# columns the output shapes add (alpaca/sharegpt rows, preference pairs, KTO tags)
_SHAPED = ("instruction", "input", "output", "system", "history", "chosen", "rejected", "kto_tag", "label")
_GATE_FIELD_KEYS = {"answer_check": ("output_field",), "exact_dedup": ("fields",), "near_dedup": ("fields",),
                    "decontaminate": ("fields",), "length": ("fields",), "empty_fields": ("fields",),
                    "language": ("fields",)}


def output_names(schema: dict[str, Any], columns: dict[str, str], fmt: str, conversation: str) -> set[str]:
    """What a gate may name: schema properties + output columns (+ the shapes' own columns)."""
    names = set((schema.get("properties") or {}).keys()) | set(columns)
    if fmt != "jsonl":
        names |= {*_SHAPED, conversation}
    return names


def check_gate_names(loc: Located, quality: dict[str, Any], schema: dict[str, Any], columns: dict[str, str],
                     fields: dict[str, str], fmt: str, conversation: str) -> None:
    """ConfigError for a gate field that no record will ever have (see the module docstring)."""
    if not (schema.get("properties") or columns):
        return  # a schema without properties: nothing to check against
    known = output_names(schema, columns, fmt, conversation)
    for gate, keys in _GATE_FIELD_KEYS.items():
        cfg = quality.get(gate)
        if not cfg:
            continue
        for key in keys:
            value = cfg.get(key)
            names = [value] if isinstance(value, str) else list(value or [])
            for i, name in enumerate(names):
                if name not in known:
                    where = f"quality.{gate}.{key}" + (f"[{i}]" if not isinstance(value, str) else "")
                    raise loc.error(where, f"'{name}' is not a field of the output (schema properties and "
                                    f"output columns: {_listing(known)})", suggestion=closest(name, known))
    check = quality.get("answer_check") or {}
    if check.get("source_field") is not None and check["source_field"] not in fields:
        raise loc.error("quality.answer_check.source_field", f"'{check['source_field']}' is not a mapped input "
                        f"field (input.fields: {_listing(fields)})", suggestion=closest(check["source_field"], fields))
    for gate, key in (("exact_dedup", "against_input"), ("decontaminate", "inputs")):
        for i, var in enumerate((quality.get(gate) or {}).get(key) or []):
            if var not in fields:
                raise loc.error(f"quality.{gate}.{key}[{i}]", f"'{var}' is not a mapped input field "
                                f"(input.fields: {_listing(fields)})", suggestion=closest(str(var), fields))


def input_columns(pipe: Pipeline, rows: int = SAMPLE_ROWS, head: Sequence[Any] | None = None) -> set[str] | None:
    """Columns seen in the first ``rows`` decodable rows of the input (None: no decodable row).
    ``head``: those ``(position, row)`` pairs, already read by the caller (the run reads its input once)."""
    from datafactory.io.readers import BadRow, iter_rows

    seen: set[str] = set()
    found = False
    if head is not None:
        for _, row in head[:rows]:
            if not isinstance(row, BadRow):
                seen.update(row)
                found = True
        return seen if found else None
    inp = pipe.input
    it = iter_rows(inp.path, fmt=inp.format, split=inp.split, subset=inp.subset)
    try:
        for n, (_, row) in enumerate(it, start=1):
            if not isinstance(row, BadRow):
                seen.update(row)
                found = True
            if n >= rows:
                break
    finally:
        with contextlib.suppress(Exception):
            it.close()  # type: ignore[attr-defined]
    return seen if found else None


def check_input_columns(pipe: Pipeline, rows: int = SAMPLE_ROWS, head: Sequence[Any] | None = None) -> None:
    """ConfigError naming the ``input.fields`` entry whose column is in none of the first rows."""
    columns = input_columns(pipe, rows, head)
    if columns is None:
        return  # no decodable row: every row is rejected as bad_input, which the run reports itself
    for var, col in pipe.input.fields.items():
        if col not in columns:
            raise _pipeline_error(pipe, f"input.fields.{var}", f"column '{col}' is not in the input "
                                  f"({pipe.input.path}, first {rows} rows: {_listing(columns)})",
                                  suggestion=closest(col, columns))


def _pipeline_error(pipe: Pipeline, key: str, message: str, suggestion: str | None) -> ConfigError:
    loc: Located | None = None
    if Path(pipe.source).is_file():
        with contextlib.suppress(ConfigError):
            loc = load_yaml(pipe.source)
    if loc is None:
        return ConfigError(message, file=pipe.source, key=key, suggestion=suggestion)
    return loc.error(key, message, suggestion=suggestion)


def _listing(names: Iterable[str], most: int = 12) -> str:
    items = sorted(str(n) for n in names)
    shown = ", ".join(items[:most])
    return shown + (f", … ({len(items)} in all)" if len(items) > most else "") if items else "none"
