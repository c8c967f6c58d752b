"""Structured output: ask the server for JSON that fits the pipeline's schema (``provider.structured_output``).

``auto`` (the default) on an OpenAI-compatible server sends ``response_format: {type: json_schema,
json_schema: {name, schema, strict}}`` built from the pipeline's schema; vLLM and llama.cpp then
constrain decoding and return bare JSON. A server that refuses it (an error status whose message
names ``response_format``, the parameter we added) makes the run fall back one step, json_object,
then the prompt alone, and remember that: the first request of each step is sent on its own while
the others wait a moment for its verdict, so a refusal costs about one request per step, never one per row.
ZhipuAI gets json_object. Our own jsonschema validation runs on every reply whatever the mode.

``response_format`` added here is not part of the cache key (the Requester keys on the pipeline's
params): a fallback mid-run leaves finished rows finished, and a cached reply stays valid whichever
mode produced it, because the same validation decides whether it is usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from typing import Any

from datafactory.errors import FatalRequestError, ProviderError, ServerError
from datafactory.providers.base import Completion, Provider

MODES = ("auto", "json_schema", "json_object", "off")
# keywords OpenAI's strict mode does not accept; dropped from what is *sent* (our validation keeps them)
STRICT_UNSUPPORTED = frozenset({"minLength", "maxLength", "patternProperties", "unevaluatedProperties",
                                "propertyNames", "minProperties", "maxProperties", "uniqueItems", "contains",
                                "minContains", "maxContains", "dependentRequired", "dependentSchemas", "if",
                                "then", "else", "not", "$schema", "$id", "examples", "default"})
# params through which the user already asks for constrained output (then auto leaves the request alone)
USER_CONSTRAINTS = ("response_format", "guided_json", "guided_regex", "guided_choice", "structured_outputs")
# how long requests wait for the verdict on a format before they go anyway: a refusal comes back at once
# (nothing is generated), an accepted request takes a generation, which nobody should wait for
PROBE_WAIT_S = 0.1
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(schema to send, strict)``. Strict mode needs every object closed (``additionalProperties:
    false``) with all its properties required: an object that leaves additional properties open is
    closed (extras were allowed, never needed); one with optional properties or a schema for its extra
    keys cannot be made strict without changing what is valid, so the schema goes as it is, strict false."""
    if schema.get("type") != "object":
        return copy.deepcopy(schema), False
    out = copy.deepcopy(schema)
    return (_strict(out), True) if _can_be_strict(out) else (copy.deepcopy(schema), False)


def _subschemas(node: dict[str, Any]) -> list[Any]:
    subs: list[Any] = list((node.get("properties") or {}).values())
    for key in ("items", "additionalItems"):
        if isinstance(node.get(key), dict):
            subs.append(node[key])
    for key in ("prefixItems", "anyOf", "allOf", "oneOf"):
        if isinstance(node.get(key), list):
            subs.extend(node[key])
    for key in ("$defs", "definitions"):
        if isinstance(node.get(key), dict):
            subs.extend(node[key].values())
    return [s for s in subs if isinstance(s, dict)]


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _can_be_strict(node: dict[str, Any]) -> bool:
    if _is_object(node):
        if isinstance(node.get("additionalProperties"), dict):
            return False  # a schema for the extra keys: a map, which strict mode cannot express
        props = node.get("properties") or {}
        if set(props) - set(node.get("required") or ()):
            return False  # optional properties: strict would make the model always write them
    return all(_can_be_strict(s) for s in _subschemas(node))


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    for key in STRICT_UNSUPPORTED & set(node):
        del node[key]
    if _is_object(node):
        node["additionalProperties"] = False
        node.setdefault("properties", {})
        node["required"] = list(node["properties"])
    for sub in _subschemas(node):
        _strict(sub)
    return node


def schema_name(schema: dict[str, Any], fallback: str) -> str:
    """A json_schema ``name`` (``^[A-Za-z0-9_-]{1,64}$``) from the schema's title or the pipeline name."""
    title = schema.get("title")
    name = _NAME.sub("_", title if isinstance(title, str) and title.strip() else fallback).strip("_")
    return (name or "output")[:64]


def formats_for(mode: str, kind: str, schema: dict[str, Any], name: str) -> list[dict[str, Any] | None]:
    """The response_format values to try, best first; None is the prompt alone."""
    sent, strict = strict_schema(schema)
    as_schema = {"type": "json_schema", "json_schema": {"name": schema_name(schema, name), "schema": sent,
                                                        "strict": strict}}
    as_object = {"type": "json_object"}
    if mode == "off":
        return [None]
    if mode == "json_object" or kind == "zhipuai":
        return [as_object] if mode != "auto" else [as_object, None]
    if mode == "json_schema":
        return [as_schema]
    return [as_schema, as_object, None]


def names_param(message: str, name: str) -> bool:
    """Whether the server's message names the parameter ``name`` (as a whole word)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


def is_refusal(exc: ProviderError) -> bool:
    """A refusal of the response_format we sent: an error status (4xx; some servers, llama.cpp's among
    them, answer their validation errors with 500) whose message names the parameter."""
    if not isinstance(exc, FatalRequestError | ServerError) or exc.status in (None, 401, 403, 404, 429):
        return False
    return names_param(str(exc), "response_format")


class StructuredOutput:
    """A Provider that adds the run's response_format to every request, and steps down on a refusal.

    ``report`` is the ``structured_output`` block of stats.json (kept up to date as the run goes)."""

    def __init__(self, inner: Provider, formats: list[dict[str, Any] | None], report: dict[str, Any]) -> None:
        self.inner, self.name = inner, inner.name
        self.formats = formats
        self.level = 0
        self.confirmed = formats[0] is None  # nothing to confirm when nothing is added
        self.probe_wait_s = PROBE_WAIT_S
        self._probe: asyncio.Event | None = None  # set when the request trying an unconfirmed format ends
        self.report = report
        report.update({"sent": _label(formats[0]), "refused_requests": 0, "fallbacks": []})

    def __repr__(self) -> str:
        return f"StructuredOutput({self.inner!r}, sent={_label(self.formats[self.level])})"

    def _params(self, params: dict[str, Any], level: int) -> dict[str, Any]:
        fmt = self.formats[level]
        return params if fmt is None else {**params, "response_format": fmt}

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        while True:
            probe: asyncio.Event | None = None
            if not self.confirmed:
                if self._probe is None:  # this request tries the format; the others wait for its verdict
                    probe = self._probe = asyncio.Event()
                else:
                    before = self.level
                    with contextlib.suppress(TimeoutError):  # ... a moment: a slow probe must not hold the run
                        await asyncio.wait_for(self._probe.wait(), self.probe_wait_s)
                    if self.level != before and not self.confirmed:
                        continue  # refused: the next step is tried by one request first
            level = self.level
            try:
                comp = await self.inner.complete(model, messages, self._params(params, level))
            except ProviderError as exc:
                if self.refused(exc, level):
                    continue
                raise
            finally:
                if probe is not None:
                    self._probe = None
                    probe.set()
            if level == self.level:
                self.confirmed = True
            return comp

    def refused(self, exc: ProviderError, level: int) -> bool:
        """True when ``exc`` refused the format sent at ``level`` and a lower step is left (ask again).
        Batch mode calls it too, for a batch line refused for its response_format."""
        if self.formats[level] is None or not is_refusal(exc) or level + 1 >= len(self.formats):
            return False
        self.report["refused_requests"] += 1
        if level == self.level:  # the first to see it steps down; requests already in flight just ask again
            self.level = level + 1
            self.confirmed = self.formats[self.level] is None
            self.report["sent"] = _label(self.formats[self.level])
            self.report["fallbacks"].append({"from": _label(self.formats[level]),
                                             "to": self.report["sent"], "status": exc.status,
                                             "server_said": str(exc)[:300]})
        return True

    _refused = refused  # the name batch mode (engine/batch/driver.py) first used

    async def aclose(self) -> None:
        await self.inner.aclose()


def _label(fmt: dict[str, Any] | None) -> str:
    if fmt is None:
        return "prompt_only"
    strict = fmt.get("json_schema", {}).get("strict")
    return f"{fmt['type']}{' (strict)' if strict else ''}"


def structured(inner: Provider, mode: str, kind: str, schema: dict[str, Any], params: dict[str, Any],
               name: str, report: dict[str, Any]) -> Provider:
    """``inner`` with structured output as ``mode`` asks, or ``inner`` itself when nothing is to be added
    (mode off, or the pipeline's params already ask for constrained output: the user's choice wins)."""
    extra: dict[str, Any] = params["extra_body"] if isinstance(params.get("extra_body"), dict) else {}
    if any(k in params or k in extra for k in USER_CONSTRAINTS):
        report.update({"sent": "provider.params", "refused_requests": 0, "fallbacks": []})
        return inner
    formats = formats_for(mode, kind, schema, name)
    if formats == [None]:
        report.update({"sent": "off", "refused_requests": 0, "fallbacks": []})
        return inner
    return StructuredOutput(inner, formats, report)
