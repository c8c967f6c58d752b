"""A small declarative checker for YAML config sections.

Every section declares its keys once (type, default, required, allowed values); ``check_section``
turns a YAML mapping into a plain dict or raises a ConfigError that names the file, line and key
path, with a did-you-mean suggestion for unknown keys. Kept tiny on purpose: the config is small
and errors must be precise, which generic schema libraries make hard to word well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datafactory.config.suggest import closest
from datafactory.config.yamlio import Located

_MISSING = object()


@dataclass(frozen=True)
class Key:
    """One allowed key: its type(s), default, and optional extra check returning an error text."""

    types: type | tuple[type, ...]
    default: Any = _MISSING
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             dict: "a mapping", list: "a list", type(None): "null"}
    tup = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in tup)


def _type_ok(value: Any, types: type | tuple[type, ...]) -> bool:
    tup = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in tup:
        return False  # YAML 'yes' is not a number
    if isinstance(value, int) and float in tup:
        return True
    return isinstance(value, tup)


def check_section(loc: Located, data: Any, path: str, keys: dict[str, Key]) -> dict[str, Any]:
    """Validate ``data`` (the YAML value at ``path``) against ``keys``; return it with defaults filled."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise loc.error(path, f"expected a mapping, got {type(data).__name__}")
    for name in data:
        if name not in keys:
            where = f"{path}.{name}" if path else name
            raise loc.error(where, "unknown key", suggestion=closest(name, keys))
    out: dict[str, Any] = {}
    for name, spec in keys.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if spec.required:
                raise loc.error(where, "required key is missing")
            out[name] = spec.default
            continue
        value = data[name]
        if not _type_ok(value, spec.types):
            raise loc.error(where, f"expected {_type_name(spec.types)}, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            hint = closest(str(value), [str(c) for c in spec.choices])
            raise loc.error(where, f"must be one of {', '.join(map(str, spec.choices))}", suggestion=hint)
        if spec.check is not None and value is not None:
            problem = spec.check(value)
            if problem:
                raise loc.error(where, problem)
        out[name] = value
    return out


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def positive(value: Any) -> str | None:
    """A number > 0; ``.nan`` and ``.inf`` are refused (YAML reads them as floats)."""
    if not _finite(value):
        return f"must be a finite number greater than 0, got {value!r}"
    return None if value > 0 else "must be greater than 0"


def non_negative(value: Any) -> str | None:
    if not _finite(value):
        return f"must be a finite number (0 or more), got {value!r}"
    return None if value >= 0 else "must be 0 or more"
