"""HTTP status → typed error, and Retry-After parsing. Shared by every provider."""

from __future__ import annotations

import contextlib
import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from datafactory.errors import (
    AuthenticationFailed,
    FatalRequestError,
    ProviderError,
    RateLimited,
    ServerError,
)
from datafactory.providers.base import LITELLM_PREFIX
from datafactory.secrets import redact

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date), or None.

    The litellm proxy renames the upstream's headers (``llm_provider-retry-after``,
    ``llm_provider-x-ratelimit-reset-requests``); both spellings count. Without any Retry-After, when
    the request limit is used up (``x-ratelimit-remaining-requests: 0``) the wait is its reset time."""
    if not headers:
        return None
    for prefix in ("", LITELLM_PREFIX):
        wait = _retry_after(headers, prefix)
        if wait is not None:
            return wait
    for prefix in ("", LITELLM_PREFIX):
        if str(headers.get(f"{prefix}x-ratelimit-remaining-requests", "")).strip() != "0":
            continue
        reset = parse_reset(headers.get(f"{prefix}x-ratelimit-reset-requests"))
        if reset is not None and math.isfinite(reset):
            return max(0.0, reset)
    return None


def _retry_after(headers: Mapping[str, str], prefix: str) -> float | None:
    ms = headers.get(f"{prefix}retry-after-ms")
    if ms is not None:
        with contextlib.suppress(ValueError):
            wait = float(ms) / 1000.0
            if math.isfinite(wait):
                return max(0.0, wait)
    value = headers.get(f"{prefix}retry-after")
    if value is None:
        return None
    try:
        wait = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, wait) if math.isfinite(wait) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_reset(value: str | None) -> float | None:
    """OpenAI-style reset durations: '1s', '6m0s', '20ms', '0.5s' → seconds."""
    if not value:
        return None
    total, matched = 0.0, False
    for num, unit in _DURATION.findall(value):
        matched = True
        total += float(num) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    if matched:
        return total
    try:
        return float(value)
    except ValueError:
        return None


MESSAGE_CHARS = 500


def error_message(body: Any) -> str:
    """The server's own words from an error body, redacted, then cut to ``MESSAGE_CHARS``.

    One reader for every transport: OpenAI ``{"error": {"message"}}`` or ``{"error": "text"}``, FastAPI
    (LLaMA-Factory, vLLM) ``{"detail": "text"}`` and ``{"detail": [{"loc": [...], "msg": ...}]}``,
    ``{"message": ...}``; anything else shows the start of the body. Redacting *before* cutting keeps a
    key that straddles the cut from leaving its first characters behind."""
    data = body
    if isinstance(body, bytes | bytearray | str):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
    text = _message_of(data) if data is not None else None
    if text is None:
        if isinstance(body, bytes | bytearray):
            text = bytes(body[:64_000]).decode("utf-8", "replace")
        else:
            text = str(body)[:64_000] if body is not None else ""
        text = " ".join(text.split())
    return redact(text)[:MESSAGE_CHARS]


def _message_of(data: Any) -> str | None:
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        found = _message_of(err) if err.get("message") is None else err.get("message")
        if found is not None:
            return str(found)
    if isinstance(err, str) and err:
        return err
    detail = data.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(_validation_item(d) for d in detail[:10])
    message = data.get("message") or data.get("msg")
    return str(message) if message else None


def _validation_item(item: Any) -> str:
    """One FastAPI/pydantic validation error: ``body.temperature: Input should be a valid number``."""
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(x) for x in loc) if isinstance(loc, list) else ""
    msg = str(item.get("msg", item))
    return f"{where}: {msg}" if where else msg


def error_for_status(status: int, message: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """The typed error for an HTTP error status. Decided by the code alone, never by the text."""
    # some servers echo the credentials they were sent; error texts end up on stderr and in tracebacks
    text = redact(f"HTTP {status}: {message}".strip())
    if status == 429:
        return RateLimited(text, status=status, retry_after=parse_retry_after(headers))
    if status == 401:
        return AuthenticationFailed(f"{text} — check your API key", status=status)
    if status in RETRYABLE_STATUS or status >= 500:
        return ServerError(text, status=status)
    return FatalRequestError(text, status=status)
