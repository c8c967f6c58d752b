"""Request and token limits: a sliding-window ledger per limit, paced, and a global pause gate.

* ``WindowLimit``: at most ``limit`` units (requests or tokens) in *any* window of ``window_s``
  seconds. Every admission is written to a ledger ``(time, amount)``; a request is let through only
  when the entries of the last ``window_s`` seconds plus its own amount fit the limit. Amounts of
  requests in flight are *reservations*: when the reply reports its usage the entry is replaced by
  it (``settle``), so room charged for tokens that were never generated comes back at once, not
  capped at a second's worth. On top of the hard window the admissions are *paced* at
  ``limit / window_s`` per second (a virtual clock, corrected by the settlements too), so a limit is
  spread over the minute instead of being spent in a burst the server would answer with 429s.
* ``Limits``: the RPM and TPM limits of one run. A request's token reservation is its prompt estimate
  plus the completion tokens *learned from the replies so far* (the largest recent reply, never more
  than ``max_tokens`` × n), not ``max_tokens`` itself: with max_tokens 1024 and 150-token replies
  charging max_tokens up front would leave most of the limit unused.
* ``PauseGate``: a 429 (or exhausted ``x-ratelimit-*`` headers) pauses *every* worker until the
  server's reset time, so one rate-limit answer does not become a retry storm.

A single request larger than the whole limit is let through once the window is empty (it could never
fit otherwise); that window then holds that one request only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import random
import time
from dataclasses import dataclass

from datafactory import constants as C

_RECENT = 64  # replies the completion estimate learns from


@dataclass(slots=True)
class _Entry:
    t: float
    amount: float
    live: bool = True  # still inside the window (counted in the ledger's sum)


class WindowLimit:
    """``limit`` units per ``window_s`` seconds, never more in any window (see module docstring)."""

    def __init__(self, limit: float, window_s: float = 60.0, *, slack_s: float = 0.0) -> None:
        if not (math.isfinite(limit) and limit > 0 and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"a limit needs a finite positive amount and window, got {limit!r}/{window_s!r}")
        self.limit, self.window = float(limit), float(window_s)
        self.rate = self.limit / self.window
        # how far the pacing clock may run ahead of (or keep credit behind) real time; 0: evenly spaced
        self.slack_s = slack_s
        self._log: collections.deque[_Entry] = collections.deque()
        self._sum = 0.0
        self._tat = time.monotonic()  # pacing: when the next admission is due
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def used(self) -> float:
        """Units counted in the current window (reservations of requests in flight included)."""
        self._expire(time.monotonic())
        return self._sum

    def _expire(self, now: float) -> None:
        log, horizon = self._log, now - self.window
        while log and log[0].t <= horizon:
            entry = log.popleft()
            entry.live = False
            self._sum -= entry.amount
        if not log:
            self._sum = 0.0  # no float drift across windows

    def _wait(self, now: float, amount: float) -> float:
        """Seconds until ``amount`` may go (≤ 0: now)."""
        wait = self._tat - self.slack_s - now
        room = max(0.0, self.limit - amount)  # an oversize request waits for an empty window
        excess = self._sum - room
        if excess > 1e-9:
            # the oldest entries must leave the window first (a settlement may free room sooner)
            for entry in self._log:
                excess -= entry.amount
                if excess <= 1e-9:
                    wait = max(wait, entry.t + self.window - now)
                    break
        return wait

    async def acquire(self, amount: float) -> _Entry:
        """Wait until ``amount`` fits; return its ledger entry (to ``settle`` with the real amount)."""
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                self._expire(now)
                wait = self._wait(now, amount)
                if wait <= 0:
                    break
                self._changed.clear()
                # a settlement may free room before the computed time: wake up for it
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)
            entry = _Entry(now, float(amount))
            self._log.append(entry)
            self._sum += entry.amount
            # idle time is not saved up beyond the slack (that would be a burst after a pause)
            self._tat = max(self._tat, now - self.slack_s) + entry.amount / self.rate
            return entry

    def settle(self, entry: _Entry, actual: float) -> None:
        """Replace a reservation by what was really used (0 for a request the server refused)."""
        delta = float(actual) - entry.amount
        if not delta:
            return
        entry.amount = float(actual)
        self._tat += delta / self.rate  # the pacing clock gives back (or takes) the difference too
        if entry.live:
            self._sum += delta
        self._changed.set()


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


@dataclass(slots=True)
class Ticket:
    """What one request holds from the limits until its reply (or failure) is known."""

    prompt_est: int
    tokens: int = 0
    request: _Entry | None = None
    token_entry: _Entry | None = None


class Limits:
    """Everything a request must pass before it is sent.

    ``max_completion`` is what one request may cost at most in completion tokens (max_tokens × n, or
    the pricing estimate when max_tokens is unset): the reservation until replies teach better.
    """

    def __init__(self, rpm: float | None, tpm: float | None, *, max_completion: int = 0,
                 window_s: float = 60.0) -> None:
        # RPM: evenly spaced, no burst at all; TPM: a second's worth of slack for the pacing clock
        self.rpm = WindowLimit(rpm, window_s) if rpm else None
        self.tpm = WindowLimit(tpm, window_s, slack_s=1.0) if tpm else None
        self.gate = PauseGate()
        self.max_completion = max(0, int(max_completion))
        self._completions: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._prompt_ratio: collections.deque[float] = collections.deque(maxlen=_RECENT)

    def expected_tokens(self, prompt_est: int) -> int:
        """Tokens to reserve: the prompt estimate (scaled as replies showed) + learned completion."""
        ratio = max(self._prompt_ratio) if self._prompt_ratio else 1.0
        completion = max(self._completions) if self._completions else self.max_completion
        if self.max_completion:
            completion = min(completion, self.max_completion)
        return int(math.ceil(prompt_est * ratio)) + completion

    def ticket_now(self, prompt_est: int) -> Ticket | None:
        """The ticket at once when nothing can hold this request back (no RPM/TPM limit, no pause): the
        same as awaiting ``before_request`` then, without its coroutines. None: await ``before_request``."""
        if self.rpm is None and self.tpm is None and self.gate.until <= time.monotonic():
            return Ticket(prompt_est)
        return None

    async def before_request(self, prompt_est: int) -> Ticket:
        """Wait for the pause gate and room in the limits; ``prompt_est`` is the estimated prompt size."""
        await self.gate.wait()
        ticket = Ticket(prompt_est)
        if self.rpm is not None:
            ticket.request = await self.rpm.acquire(1)
        if self.tpm is not None:
            ticket.tokens = self.expected_tokens(prompt_est)
            ticket.token_entry = await self.tpm.acquire(ticket.tokens)
        return ticket

    def after_response(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int) -> None:
        """The reply came: learn from its usage and replace the reservation by it."""
        if prompt_tokens > 0 and ticket.prompt_est > 0:
            self._prompt_ratio.append(min(4.0, prompt_tokens / ticket.prompt_est))
        if completion_tokens > 0:
            self._completions.append(completion_tokens)
        if self.tpm is not None and ticket.token_entry is not None and (prompt_tokens or completion_tokens):
            self.tpm.settle(ticket.token_entry, prompt_tokens + completion_tokens)

    def after_failure(self, ticket: Ticket, *, answered: bool) -> None:
        """The request failed. An error the server *answered* (429, 4xx, 5xx) generated nothing, so its
        token reservation is given back; without an answer (timeout, dropped) it may have been
        processed and stays charged. It counts as a request either way."""
        if answered and self.tpm is not None and ticket.token_entry is not None:
            self.tpm.settle(ticket.token_entry, 0)
