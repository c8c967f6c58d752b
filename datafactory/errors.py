"""The datafactory error tree.

Callers (the retry layer, the CLI) decide by *type*, never by message text:
``RateLimited`` and ``TransientError`` are retried, ``FatalRequestError`` fails one row,
``AuthenticationFailed`` stops the run, everything under ``UserError`` is printed without a
traceback.
"""

from __future__ import annotations


class DatafactoryError(Exception):
    """Base class of every error datafactory raises on purpose."""


class UserError(DatafactoryError):
    """A mistake the user can fix (config, input, environment); the CLI prints it, exit 1."""


class ConfigError(UserError):
    """An invalid pipeline or recipe: names the file, the key path and, for typos, a suggestion."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None, suggestion: str | None = None) -> None:
        self.file, self.key, self.line, self.suggestion = file, key, line, suggestion
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if key:
            where += f"{key}: "
        text = where + message
        if suggestion:
            text += f" (did you mean '{suggestion}'?)"
        super().__init__(text)


class InputError(UserError):
    """Unreadable input data; names the file and, where known, the line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file, self.line = file, line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)


class MissingApiKey(UserError):
    """No API key in the environment variable the provider block names."""


class RunLocked(UserError):
    """Another datafactory process holds the run directory."""


class UnknownName(UserError):
    """A registry lookup failed (provider, format...); lists the choices."""


class DiskWriteError(UserError):
    """Writing the run directory failed (disk full, permissions)."""


# ---------------------------------------------------------------- provider errors
class ProviderError(DatafactoryError):
    """A request to the model API failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RateLimited(ProviderError):
    """HTTP 429 (or the provider's equivalent); ``retry_after`` seconds when the server said."""

    def __init__(self, message: str, *, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TransientError(ProviderError):
    """5xx, timeouts, dropped connections, refused connections: worth retrying."""


class ConnectionFailed(TransientError):
    """No HTTP answer at all: refused, DNS failure, reset, disconnected (``status`` is None)."""


class RequestTimedOut(TransientError):
    """The request did not complete within ``timeout_s`` (a total deadline)."""


class ServerError(TransientError):
    """A retryable HTTP status (5xx, 408, 409...); ``status`` says which."""


class FatalRequestError(ProviderError):
    """400/403/404/422...: retrying the same request cannot help; the row is rejected."""


class AuthenticationFailed(FatalRequestError, UserError):
    """401: the key is wrong; the whole run stops at once."""


class BadResponse(TransientError):
    """Status 200 but the body is not a chat completion (HTML, empty, truncated JSON, wrong shape).

    ``raw`` keeps the start of the body so the reject record can show what came back."""

    def __init__(self, message: str, *, status: int | None = 200, raw: str = "") -> None:
        super().__init__(message, status=status)
        self.raw = raw


# ---------------------------------------------------------------- quality errors
class ValidationFailed(DatafactoryError):
    """Model output could not be parsed or does not match the schema; ``reason`` is the reject code."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)
