"""The run-level breaker: when requests fail systematically, stop sending and say why.

Every request attempt reports to the breaker. It trips when

* ``first_limit`` attempts (over at least two different requests) failed in a row and none has
  succeeded yet in this invocation: nothing listening at the URL, a wrong model (404), a parameter
  the server refuses (400/422), a 500 the server gives to every request;
* ``streak_limit`` attempts failed in a row after earlier successes (the server went away mid-run);
* the run has been rate limited for ``rate_limit_wait_s`` without a single success (quota exhausted).

429s are not failures here (they are waited on, bounded by time); a 401 stops the run by itself.
Once tripped, ``check()`` raises ``RequestsFailing`` before any further request and ``sleep`` (the
retry layer's backoff) wakes up at once, so workers stop within one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datafactory import constants as C
from datafactory.errors import (
    AuthenticationFailed,
    BadResponse,
    ConnectionFailed,
    ProviderError,
    RateLimited,
    RequestsFailing,
    RequestTimedOut,
    RunStopped,
    ServerError,
)


@dataclass(frozen=True)
class Setup:
    """What the hints talk about: the model, the URL and the parameters that were sent."""

    model: str
    base_url: str | None
    params: tuple[str, ...] = ()
    timeout_s: float = C.DEFAULT_TIMEOUT_S


def signature(exc: ProviderError) -> str:
    """The class of a failure: error type plus status (``FatalRequestError/404``)."""
    return f"{type(exc).__name__}/{exc.status}" if exc.status else type(exc).__name__


@dataclass
class Breaker:
    setup: Setup
    first_limit: int = C.BREAKER_FIRST_FAILURES
    streak_limit: int = C.BREAKER_STREAK
    rate_limit_wait_s: float = C.DEFAULT_RATE_LIMIT_WAIT_S
    on_trip: Callable[[RunStopped], None] | None = None
    tripped: RequestsFailing | None = None
    successes: int = 0
    streak: int = 0
    _kinds: Counter[str] = field(default_factory=Counter)
    _keys: set[str] = field(default_factory=set)
    _last: dict[str, ProviderError] = field(default_factory=dict)
    _progress_at: float = field(default_factory=time.monotonic)
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        """Raise the breaker's error when it has tripped (called before every request attempt)."""
        if self.tripped is not None:
            raise self.tripped

    async def sleep(self, seconds: float) -> None:
        """A backoff sleep that ends early when the breaker trips (tenacity's ``sleep``)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._open.wait(), seconds)

    def success(self) -> None:
        self.successes += 1
        self.streak = 0
        self._kinds.clear()
        self._keys.clear()
        self._last.clear()
        self._progress_at = time.monotonic()

    def failure(self, exc: ProviderError, request_key: str) -> None:
        if isinstance(exc, RateLimited):
            waited = time.monotonic() - self._progress_at
            if waited >= self.rate_limit_wait_s:
                self._trip(exc, f"rate limited for {waited:.0f}s without one successful request",
                           "the quota or credit may be used up (check the account), or lower --rpm/--tpm/"
                           "--concurrency; limits.rate_limit_wait_s sets how long to wait")
            return
        if isinstance(exc, AuthenticationFailed) or self.tripped is not None:
            return
        sig = signature(exc)
        self.streak += 1
        self._kinds[sig] += 1
        self._last[sig] = exc
        if len(self._keys) < 2:
            self._keys.add(request_key)
        if self.successes == 0 and self.streak >= self.first_limit and len(self._keys) >= 2:
            what = f"the first {self.streak} requests failed and none succeeded"
        elif self.successes > 0 and self.streak >= self.streak_limit:
            what = f"{self.streak} requests in a row failed (after {self.successes} succeeded)"
        else:
            return
        top = self._last[self._kinds.most_common(1)[0][0]]
        self._trip(top, what, hint_for(top, self.setup))

    def _trip(self, exc: ProviderError, what: str, hint: str) -> None:
        message = f"stopped sending: {what}. The server said: {exc}\nhint: {hint}"
        self.tripped = RequestsFailing(message, error=exc, failures=self.streak, hint=hint)
        self._open.set()
        if self.on_trip is not None:
            self.on_trip(self.tripped)


def hint_for(exc: ProviderError, setup: Setup) -> str:
    """What to check for a failure that every request gets (by type and status, never by text;
    the server's message is only searched for the name of a parameter that was sent)."""
    url = setup.base_url or "the provider's default URL"
    if isinstance(exc, ConnectionFailed):
        return f"nothing answers at {url}: is the server up, and are the host and port right (--base-url)?"
    if isinstance(exc, RequestTimedOut):
        return (f"no answer within limits.timeout_s={setup.timeout_s:g}s: is the server overloaded or stuck? "
                "Raise limits.timeout_s or lower --concurrency")
    if isinstance(exc, BadResponse):
        return (f"{url} answers, but not with chat completions: is --base-url the OpenAI-compatible API root "
                "(usually ending in /v1)?")
    named = _named_param(str(exc), setup.params)
    if named is not None:
        return f"the server names provider.params.{named}: remove it or fix its value (its type, its range)"
    status = exc.status or 0
    if status == 404:
        v1 = "" if (setup.base_url or "").rstrip("/").endswith("/v1") else " (it does not end in /v1)"
        return (f"the server knows no model '{setup.model}' or no such URL: check --model, and that "
                f"--base-url {url}{v1} is the API root, usually ending in /v1")
    if status == 403:
        return f"the key is not allowed to use model '{setup.model}' (or this endpoint): check its permissions"
    if isinstance(exc, ServerError) or status >= 500:
        sent = ", ".join(setup.params) or "none"
        return ("the server fails every request: look at its log; a parameter it does not support is a common "
                f"cause (provider.params sent: {sent})")
    if 400 <= status < 500:
        sent = ", ".join(setup.params) or "none"
        return (f"the server refuses the request: check --model '{setup.model}' and provider.params "
                f"(sent: {sent})")
    return "every request fails the same way: check the provider block of the pipeline"


def _named_param(message: str, params: tuple[str, ...]) -> str | None:
    for name in sorted(params, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message):
            return name
    return None


def breaker_for(pipe: Any) -> Breaker:
    """The breaker for a pipeline (its limits decide the streak and the rate-limit wait)."""
    lim = pipe.limits
    setup = Setup(model=pipe.provider.model, base_url=pipe.provider.base_url,
                  params=tuple(pipe.provider.params), timeout_s=lim.timeout_s)
    # the streak covers the requests that can be on the wire at once; with ``concurrency: auto`` the workers
    # (max_concurrency) are not what is in flight — the adaptive limit starts small — so the floor holds
    in_flight = 0 if getattr(lim, "adaptive", False) else lim.concurrency
    return Breaker(setup, streak_limit=max(C.BREAKER_STREAK, 2 * in_flight),
                   rate_limit_wait_s=getattr(lim, "rate_limit_wait_s", C.DEFAULT_RATE_LIMIT_WAIT_S))
