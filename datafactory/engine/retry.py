"""The one retry layer (tenacity): exponential backoff with jitter, Retry-After honoured.

Retried: ``RateLimited`` and ``TransientError`` (5xx, timeouts, dropped/refused connections, non-JSON
200 bodies). Not retried: ``FatalRequestError`` (400/403/404...) and ``AuthenticationFailed`` (401,
which stops the run). Providers never retry on their own (SDK ``max_retries=0``).

``max_attempts`` counts failures other than 429: waiting on rate limits is bounded by time
(``rate_limit_wait_s`` since the first 429 of the request), so a long 429 storm that the run rides
out does not use up a row's attempts. Every provider (HTTP, SDK, ZhipuAI) goes through here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

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


class _Stop:
    """Stop after ``max_attempts`` failures that are not 429s, or once 429s have been waited on for
    ``rate_limit_wait_s`` (counted from this request's first 429)."""

    def __init__(self, max_attempts: int, rate_limit_wait_s: float) -> None:
        self.max_attempts, self.rate_limit_wait_s = max_attempts, rate_limit_wait_s
        self.failures = 0
        self.first_429: float | None = None

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            now = time.monotonic()
            if self.first_429 is None:
                self.first_429 = now
            return now - self.first_429 >= self.rate_limit_wait_s
        self.failures += 1
        return self.failures >= self.max_attempts


async def with_retries(call: Callable[[], Awaitable[T]], *, max_attempts: int, gate: PauseGate,
                       stats: Stats, rate_limit_wait_s: float = C.DEFAULT_RATE_LIMIT_WAIT_S,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       first: BaseException | None = None) -> T:
    """Run ``call`` until it succeeds, fails for good, ``max_attempts`` non-429 failures are reached, or
    429s were waited on for ``rate_limit_wait_s`` (last error raised). ``sleep`` does the backoff waits
    (the breaker's ends early when the run stops). ``first``: the retryable error of a first attempt the
    caller made itself (``Requester.ask`` awaits it straight); it counts as this call's first attempt."""

    def before_sleep(state: RetryCallState) -> None:
        stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            # everyone waits, not just this worker: that is what stops a retry storm
            pause = exc.retry_after if exc.retry_after is not None else C.DEFAULT_RATE_LIMIT_PAUSE_S
            gate.pause(min(pause, C.RETRY_AFTER_CAP_S))

    # fast path: the first attempt runs outside tenacity (its per-attempt bookkeeping costs ≈ 0.2 ms of
    # CPU per request); a retryable failure is handed to tenacity as its own first attempt, so every
    # retry decision, wait, count and pause is tenacity's exactly as if it had run that attempt
    if first is None:
        try:
            return await call()
        except (RateLimited, TransientError) as exc:
            first = exc

    async def attempt_call() -> T:
        nonlocal first
        if first is not None:
            failed, first = first, None
            raise failed
        return await call()

    retrying = AsyncRetrying(stop=_Stop(max_attempts, rate_limit_wait_s), wait=_wait, sleep=sleep,
                             retry=retry_if_exception_type((RateLimited, TransientError)),
                             before_sleep=before_sleep, reraise=True)
    result: T
    async for attempt in retrying:
        with attempt:
            result = await attempt_call()
    return result
