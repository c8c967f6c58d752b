"""The one retry layer (tenacity): exponential backoff with jitter, Retry-After honoured.

Retried: ``RateLimited`` and ``TransientError`` (5xx, timeouts, dropped/refused connections, non-JSON
200 bodies). Not retried: ``FatalRequestError`` (400/403/404...) and ``AuthenticationFailed`` (401,
which stops the run). Providers never retry on their own (SDK ``max_retries=0``).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from datafactory import constants as C
from datafactory.engine.ratelimit import PauseGate
from datafactory.engine.stats import Stats
from datafactory.errors import RateLimited, TransientError

T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Full-jitter exponential backoff for the n-th failed attempt (1-based)."""
    return random.uniform(0, min(C.BACKOFF_MAX_S, C.BACKOFF_INITIAL_S * 2 ** (attempt - 1)))


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return min(exc.retry_after, C.RETRY_AFTER_CAP_S) + random.uniform(0, C.RESUME_JITTER_S)
    return backoff(state.attempt_number)


async def with_retries(call: Callable[[], Awaitable[T]], *, max_attempts: int, gate: PauseGate,
                       stats: Stats) -> T:
    """Run ``call`` until it succeeds, fails for good, or ``max_attempts`` is reached (last error raised)."""

    def before_sleep(state: RetryCallState) -> None:
        stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            # everyone waits, not just this worker: that is what stops a retry storm
            pause = exc.retry_after if exc.retry_after is not None else C.DEFAULT_RATE_LIMIT_PAUSE_S
            gate.pause(min(pause, C.RETRY_AFTER_CAP_S))

    retrying = AsyncRetrying(stop=stop_after_attempt(max_attempts), wait=_wait,
                             retry=retry_if_exception_type((RateLimited, TransientError)),
                             before_sleep=before_sleep, reraise=True)
    result: T
    async for attempt in retrying:
        with attempt:
            result = await call()
    return result
