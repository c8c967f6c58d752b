"""Adaptive concurrency (``limits.concurrency: auto``): how many requests are in flight, learned from the server.

The scheduler runs ``limits.max_concurrency`` workers; each request holds a slot of this limiter while it
is on the wire, so the limit below that ceiling is what really goes out. The limit is revised once per
*window* (as many finished requests as the limit, at least ``MIN_WINDOW``):

* a 429 *without* Retry-After, or a timeout, in the window → the limit is halved (a 429 with
  Retry-After is the server saying when; the pause gate waits that out and the limit stays);
* the window's median latency above ``QUEUE_RATIO`` × the baseline (the lowest window median seen
  recently, half-limit probe windows included) → the server is queueing (vLLM saturated,
  LLaMA-Factory's one-at-a-time worker): the limit shrinks in proportion, towards where the latency
  was flat;
* latency flat (below ``GROW_RATIO`` × baseline and far from ``timeout_s``), no 429/timeout, and the
  limit was used up in the window → it doubles until the first decrease, then grows by half, and by a
  tenth once past the last limit the latency said was enough (TCP's slow-start threshold).

Only requests sent under the current limit count towards its window: replies still queued from a
higher limit would otherwise make it shrink again and again.

Never below ``floor`` (2, or the ceiling when it is lower): AIMD that collapses to 1 under a long 429
storm and never comes back is a known failure (NeMo DataDesigner #575); here every window of successes
after a storm grows the limit again. The baseline forgets: it is the minimum over the last
``BASELINE_WINDOWS`` windows, and every ``PROBE_EVERY`` windows one runs at half the limit to measure
it afresh (as BBR's ProbeRTT does): a server that became slower for good is not read as queueing
forever, and a queue we keep up ourselves does not become the new normal.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from dataclasses import dataclass
from typing import Any

from datafactory.errors import RateLimited, RequestTimedOut

START = 4
MIN_WINDOW = 8
QUEUE_RATIO = 1.5
GROW_RATIO = 1.2
START_GROWTH = 2.0
GROWTH = 1.5
SLOW_GROWTH = 1.1
BACKOFF = 0.5
# latency differences below this are noise (event-loop scheduling, a busy client), not queueing
LATENCY_SLACK_S = 0.01
BASELINE_WINDOWS = 20
# no growth that could take the latency (which grows with the limit on a queueing server) past this share
# of limits.timeout_s: the target is zero timeouts
TIMEOUT_SHARE = 0.5
# every this many windows, one window runs at half the limit (see _revise)
PROBE_EVERY = 10


@dataclass(slots=True)
class Slot:
    started: float
    epoch: int  # the limit's revision when it was taken (older slots tell of an older limit)


class AdaptiveLimit:
    """An in-flight limiter whose limit follows the server (see the module docstring). ``report`` is the
    ``adaptive_concurrency`` block of stats.json, kept up to date once per window."""

    def __init__(self, ceiling: int, *, start: int = START, floor: int = 2, timeout_s: float | None = None,
                 report: dict[str, Any] | None = None) -> None:
        self.timeout_s = timeout_s
        self.ceiling = max(1, ceiling)
        self.floor = min(max(1, floor), self.ceiling)
        self.limit = float(min(max(start, self.floor), self.ceiling))
        self.in_flight = 0
        self._changed = asyncio.Event()
        self._latencies: list[float] = []
        self._finished = 0
        self._windows = 0
        self._overloaded = False
        self._saturated = False
        self._probe_hold: float | None = None  # the limit to go back to after a probe window
        self._epoch = 0
        # where growth slows from ×GROWTH to ×SLOW_GROWTH: the last limit the latency said was enough
        self._ssthresh = float(self.ceiling)
        self._baselines: collections.deque[float] = collections.deque(maxlen=BASELINE_WINDOWS)
        self._t0 = time.monotonic()
        self.history: list[list[float]] = [[0.0, self.current]]
        self.decreases = 0
        self.peak = self.current
        self.report = report if report is not None else {}
        self._report()

    @property
    def current(self) -> int:
        return max(self.floor, int(self.limit))

    async def acquire(self) -> Slot:
        """Wait for a free slot (the limit may have shrunk below what is in flight: then for several)."""
        while self.in_flight >= self.current:
            self._saturated = True
            self._changed.clear()
            await self._changed.wait()
        self.in_flight += 1
        if self.in_flight >= self.current:
            self._saturated = True
        return Slot(time.monotonic(), self._epoch)

    def release(self, slot: Slot, error: BaseException | None = None) -> None:
        """The request ended: ``error`` None is an answer (its latency is a sample); a 429 without
        Retry-After or a timeout is overload; any other failure (or a cancel) only frees the slot."""
        self.in_flight -= 1
        self._changed.set()
        if slot.epoch != self._epoch:
            return  # sent under the previous limit: says nothing about this one
        self._finished += 1
        if error is None:
            self._latencies.append(time.monotonic() - slot.started)
        elif isinstance(error, RequestTimedOut) or (isinstance(error, RateLimited) and error.retry_after is None):
            self._overloaded = True
        if self._finished >= max(MIN_WINDOW, self.current):
            self._revise()

    def _revise(self) -> None:
        old = self.limit
        # the later half of the window: the first replies under a new limit come before its queue has built up
        late = self._latencies[len(self._latencies) // 2:]
        median = statistics.median(late) if len(late) >= MIN_WINDOW // 4 else None
        baseline = min(self._baselines) if self._baselines else median
        if self._probe_hold is not None:  # a window at half the limit, to measure the unqueued latency
            self.limit, self._probe_hold = self._probe_hold, None
            old = self.limit
        elif median is not None and baseline is not None and not self._overloaded:
            if median > QUEUE_RATIO * baseline + LATENCY_SLACK_S:
                # shrink towards the concurrency at which the latency was still near the baseline
                self.limit = max(self.floor, self.limit * max(BACKOFF, GROW_RATIO * baseline / median))
                self._ssthresh = self.limit
            elif median <= GROW_RATIO * baseline + LATENCY_SLACK_S and self._saturated:
                self._grow(median)
        if self._overloaded:
            self.limit = max(self.floor, self.limit * BACKOFF)
        if median is not None:
            self._baselines.append(median)
        if self.limit < old:
            self.decreases += 1
        if int(self.limit) != int(old):
            self.history.append([round(time.monotonic() - self._t0, 3), self.current])
            if len(self.history) > 200:  # keep stats.json small on a long run
                del self.history[1:len(self.history) - 150]
        self.peak = max(self.peak, self.current)
        self._windows += 1
        # now and then one window at half the limit: the baseline would otherwise creep up with the queue
        if self._windows % PROBE_EVERY == 0 and self.current > self.floor:
            self._probe_hold = self.limit
            self.limit = max(float(self.floor), self.limit / 2)
        if int(self.limit) != int(old) or self._probe_hold is not None:
            self._epoch += 1
        self._latencies.clear()
        self._finished = 0
        self._overloaded = self._saturated = False
        self._changed.set()
        self._report()

    def _grow(self, median: float) -> None:
        growth = (START_GROWTH if not self.decreases  # nothing learnt yet: find the level fast
                  else GROWTH if self.limit < self._ssthresh else SLOW_GROWTH)
        new = self._ssthresh if self.limit < self._ssthresh < self.limit * growth else \
            max(self.limit + 1, self.limit * growth)
        if self.timeout_s is not None and median > 0:
            # were the server queueing, the latency would grow with the limit: never towards limits.timeout_s
            new = min(new, self.limit * TIMEOUT_SHARE * self.timeout_s / median)
        if new > self.limit:
            self.limit = min(float(self.ceiling), new)

    def _report(self) -> None:
        final = max(self.floor, int(self._probe_hold)) if self._probe_hold is not None else self.current
        self.report.update({"ceiling": self.ceiling, "floor": self.floor, "final": final,
                            "peak": self.peak, "decreases": self.decreases, "history": self.history})
