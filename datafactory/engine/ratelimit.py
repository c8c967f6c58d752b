"""Request and token limits: token buckets for RPM/TPM and a global pause gate.

* ``TokenBucket``: refills continuously at limit/60 per second and holds at most one second's worth
  (so a 60 s window never sees more than the limit plus that one-second burst). A request larger
  than the bucket may borrow (the level goes negative) instead of waiting forever.
* ``PauseGate``: a 429 (or exhausted ``x-ratelimit-*`` headers) pauses *every* worker until the
  server's reset time, so one rate-limit answer does not become a retry storm.
"""

from __future__ import annotations

import asyncio
import random
import time

from datafactory import constants as C


class TokenBucket:
    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        # the lock makes waiters first-come first-served
        async with self._lock:
            need = min(amount, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def correct(self, delta: float) -> None:
        """Charge (or refund) the difference between the estimate and what the response reported."""
        self._refill()
        self.level = min(self.capacity, self.level - delta)


class PauseGate:
    """Shared 'nobody sends before T' barrier."""

    def __init__(self) -> None:
        self.until = 0.0

    def pause(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + seconds)

    async def wait(self) -> None:
        delay = self.until - time.monotonic()
        if delay > 0:
            # jitter the restart so paused workers do not all fire in the same millisecond
            await asyncio.sleep(delay + random.uniform(0, C.RESUME_JITTER_S))
            # another 429 may have extended the pause meanwhile
            while (delay := self.until - time.monotonic()) > 0:
                await asyncio.sleep(delay + random.uniform(0, C.RESUME_JITTER_S))


class Limits:
    """Everything a request must pass before it is sent."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None
        self.gate = PauseGate()

    async def before_request(self, est_tokens: int) -> None:
        await self.gate.wait()
        if self.rpm is not None:
            await self.rpm.acquire(1)
        if self.tpm is not None:
            await self.tpm.acquire(est_tokens)

    def after_response(self, est_tokens: int, actual_tokens: int) -> None:
        if self.tpm is not None and actual_tokens:
            self.tpm.correct(actual_tokens - est_tokens)
