"""A small declarative checker for YAML config sections (pipelines and train-eval recipes alike).

Every section declares its keys once (type, default, required, allowed values); ``check_section``
turns a YAML mapping into a plain dict or raises a ConfigError that names the file, line and key
path, with a did-you-mean suggestion for unknown keys. ``keys_from`` derives those keys from a
dataclass — its field types, its defaults and ``field(metadata={"doc": ..., "choices": ..., "check":
...})`` — so a section's schema and defaults live once, in the dataclass. Kept tiny on purpose: the
config is small and errors must be precise, which generic schema libraries make hard to word well.
"""

from __future__ import annotations

import dataclasses
import math
import types as pytypes
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datafactory.config.suggest import closest, suggest
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
    convert: Callable[[Any], Any] | None = None  # runs before the type check (e.g. "1e-4" -> 1e-4)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)  # the field's metadata

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


def check_section(loc: Located, data: Any, path: str, keys: dict[str, Key], *, null_is_default: bool = False,
                  unknown_hint: str = "") -> dict[str, Any]:
    """Validate ``data`` (the YAML value at ``path``) against ``keys``; return it with defaults filled.

    ``null_is_default``: ``key: null`` means "the default" (recipes) rather than the value None;
    ``unknown_hint`` is added to the unknown-key error (e.g. where other keys belong).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise loc.error(path, f"expected a mapping, got {type(data).__name__}")
    reject_unknown(loc, path, data, keys, hint=unknown_hint)
    out: dict[str, Any] = {}
    for name, spec in keys.items():
        where = f"{path}.{name}" if path else name
        if name not in data or (null_is_default and data[name] is None):
            if spec.required:
                raise loc.error(where, "required key is missing" if name not in data else "must not be empty")
            out[name] = _fresh(spec.default)
            continue
        value = data[name]
        if spec.convert is not None:
            value = spec.convert(value)
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


def reject_unknown(loc: Located, path: str, data: dict[str, Any], known: Any, *, hint: str = "") -> None:
    """ConfigError (with did-you-mean) for the first key of ``data`` not in ``known``."""
    for name in data:
        if name not in known:
            where = f"{path}.{name}" if path else str(name)
            raise loc.error(where, "unknown key" + hint, suggestion=suggest(str(name), known))


def _fresh(default: Any) -> Any:
    """A copy of a mutable default, so that no two configs share one list or dict."""
    return type(default)(default) if isinstance(default, (list, dict)) else default


# ------------------------------------------------------------------------------ keys from a dataclass
_YAML_TYPES: dict[Any, tuple[type, ...]] = {int: (int,), float: (float,), bool: (bool,), str: (str,),
                                            Path: (str,), list: (list,), dict: (dict,), type(None): (type(None),),
                                            Any: (object,)}


def yaml_types(annotation: Any) -> tuple[type, ...]:
    """The YAML value types a field annotation accepts (``Path`` is written as a string)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, pytypes.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in yaml_types(arg))
    base = origin or annotation
    if base not in _YAML_TYPES:  # pragma: no cover - programming error in a config dataclass
        raise TypeError(f"no YAML type for the annotation {annotation!r}")
    return _YAML_TYPES[base]


def field_default(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default (calling its factory), or the required marker when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING if f.default is dataclasses.MISSING else f.default


def keys_from(cls: type, *, skip: tuple[str, ...] = ()) -> dict[str, Key]:
    """The YAML keys of a config dataclass: one per field, typed by its annotation, defaulted by its default,
    documented and checked by its metadata (``doc``, ``choices``, ``check``, ``convert``, ``default``
    where the YAML default differs from the resolved one, e.g. None for "derived from other keys")."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, Key] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        default = meta["default"] if "default" in meta else field_default(f)
        choices = meta.get("choices")
        keys[f.name] = Key(yaml_types(meta.get("type", hints[f.name])), default,
                           choices=tuple(choices) if choices is not None else None, check=meta.get("check"),
                           doc=meta.get("doc", ""), convert=meta.get("convert"), meta=meta)
    return keys


def doc(text: str, **more: Any) -> dict[str, Any]:
    """``field(metadata=doc("..."))``: a field's documentation plus optional ``choices``/``check``/``convert``."""
    return {"doc": text, **more}


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


def at_least(minimum: float) -> Callable[[Any], str | None]:
    """A check: a number >= ``minimum``."""
    def check(value: Any) -> str | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < minimum:
            return f"must be >= {minimum:g}, got {value}"
        return None
    return check


def number(value: Any) -> Any:
    """Convert: a YAML 1.1 exponent string (``1e-4`` without a dot is read as a string) is a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def as_float(value: Any) -> Any:
    """Convert: like :func:`number`, then an integer becomes a float (``3`` epochs → 3.0)."""
    value = number(value)
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def names(value: Any) -> Any:
    """Convert: ``"a, b"`` → ``["a", "b"]`` (a list of names may be written as one comma-separated string)."""
    return [s.strip() for s in value.split(",")] if isinstance(value, str) else value


def stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def non_empty(value: Any) -> str | None:
    """A check: a non-empty string, or a non-empty list of non-empty strings."""
    if isinstance(value, str):
        return None if value.strip() else "expected a non-empty string, got ''"
    if isinstance(value, list) and value and all(isinstance(s, str) and s for s in value):
        return None
    return f"expected a non-empty list of names, got {value!r}"
