"""HTTP status → typed error, and Retry-After parsing. Shared by every provider."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

from datafactory.errors import (
    AuthenticationFailed,
    FatalRequestError,
    ProviderError,
    RateLimited,
    ServerError,
)
from datafactory.secrets import redact

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date), or None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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
