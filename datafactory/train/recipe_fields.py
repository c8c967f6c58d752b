"""Checking one recipe section against its field table: unknown keys, types, choices, minimums.

Kept apart from :mod:`datafactory.train.recipe` (which holds the tables and the cross-field rules).
Every failure is a ConfigError naming file, line and key, with a did-you-mean for typos.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located

REQUIRED: Any = object()


@dataclass(frozen=True)
class Field:
    """How one recipe key is checked: its kind, default and allowed values."""

    kind: str  # int, float, number, bool, str, path, file, strlist, dict, int_or_auto
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None


def with_defaults(spec: type, fields: dict[str, Field]) -> dict[str, Field]:
    """``fields`` with each default taken from the dataclass ``spec`` (its only home; REQUIRED when it has
    none). The table must name exactly the dataclass's fields: a key added to one and not the other fails
    at import."""
    declared = {f.name: f for f in dataclasses.fields(spec)}
    if set(declared) != set(fields):
        raise AssertionError(f"{spec.__name__} fields and the recipe table differ: "
                             f"{sorted(set(declared) ^ set(fields))}")
    out = {}
    for name, checker in fields.items():
        f = declared[name]
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = REQUIRED
        out[name] = dataclasses.replace(checker, default=default)
    return out


def reject_unknown(loc: Located, prefix: str, data: dict[str, Any], known: dict[str, Any]) -> None:
    """ConfigError (with did-you-mean) for the first key of ``data`` not in ``known``."""
    for key in data:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else str(key)
            where = f"in '{prefix}'" if prefix else "at the top level"
            extra = " (other LLaMA-Factory keys go under 'overrides')" if prefix == "train" else ""
            raise loc.error(path, f"unknown key {where}; known keys: {', '.join(known)}{extra}",
                            suggest(str(key), known))


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """Did-you-mean: the closest spelling, else a choice that is a prefix of ``name`` (``evaluation``)."""
    options = list(choices)
    hit = closest(name, options)
    if hit is None:
        prefixed = [c for c in options if len(c) >= 3 and (name.startswith(c) or c.startswith(name))]
        hit = max(prefixed, key=len) if prefixed else None
    return hit


def check_section(loc: Located, prefix: str, raw: dict[str, Any], fields: dict[str, Field],
                  base: Path, recipe_dir: Path | None = None) -> dict[str, Any]:
    """Validate one section: reject unknown keys, fill defaults, coerce and check each value."""
    reject_unknown(loc, prefix, raw, fields)
    out: dict[str, Any] = {}
    for name, spec in fields.items():
        path = f"{prefix}.{name}"
        if name not in raw or raw[name] is None:
            if spec.default is REQUIRED:
                raise loc.error(path, f"missing required key '{name}'")
            out[name] = list(spec.default) if isinstance(spec.default, list) else (
                dict(spec.default) if isinstance(spec.default, dict) else spec.default)
            continue
        out[name] = coerce(loc, path, raw[name], spec, base, recipe_dir)
    return out


def show(value: Any) -> str:
    """A value and its type, for error messages."""
    return f"{value!r} ({type(value).__name__})"


def coerce(loc: Located, path: str, value: Any, spec: Field, base: Path,
           recipe_dir: Path | None = None) -> Any:
    """One value checked against its Field.

    ``path`` values (run directories) are made absolute against ``base`` (the working directory),
    ``file`` values (files shipped next to the recipe) against ``recipe_dir``.
    """
    if value is None:
        if spec.default is REQUIRED:
            raise loc.error(path, "must not be empty")
        return spec.default
    kind = spec.kind
    out: Any
    if kind == "int_or_auto" and value == "auto":
        return value
    if kind in ("int", "int_or_auto"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise loc.error(path, f"expected a whole number, got {show(value)}")
        out = value
    elif kind in ("float", "number"):
        out = _number(loc, path, value)
        if kind == "float":
            out = float(out)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise loc.error(path, f"expected true or false, got {show(value)}")
        out = value
    elif kind in ("str", "path", "file"):
        if not isinstance(value, str) or not value.strip():
            raise loc.error(path, f"expected a non-empty string, got {show(value)}")
        root = (recipe_dir or base) if kind == "file" else base
        out = value.strip() if kind == "str" else (root / Path(value.strip()).expanduser()).resolve()
    elif kind == "strlist":
        items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
            raise loc.error(path, f"expected a non-empty list of names, got {show(value)}")
        out = list(items)
    elif kind == "dict":
        if not isinstance(value, dict):
            raise loc.error(path, f"expected a mapping, got {show(value)}")
        out = dict(value)
    else:  # pragma: no cover - programming error in the field tables
        raise AssertionError(kind)
    if spec.choices is not None and out not in spec.choices:
        shown = ", ".join(str(c) for c in spec.choices)
        raise loc.error(path, f"must be one of {shown}, got {out!r}",
                        closest(str(out), [str(c) for c in spec.choices]))
    if spec.minimum is not None and isinstance(out, (int, float)) and out < spec.minimum:
        raise loc.error(path, f"must be >= {spec.minimum:g}, got {out}")
    return out


def _number(loc: Located, path: str, value: Any) -> int | float:
    if isinstance(value, bool):
        raise loc.error(path, f"expected a number, got {show(value)}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise loc.error(path, f"expected a number, got {show(value)}")
