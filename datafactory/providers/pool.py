"""Several endpoints as one Provider (``provider.endpoints``, ``--base-url`` given more than once).

Each request goes to the endpoint with the most free capacity for its weight (in flight ÷ weight, lowest
first; an endpoint's own ``concurrency`` caps it). An endpoint that fails — a refused connection at once,
or ``FAIL_STREAK`` transient failures in a row (5xx, timeouts, dropped connections) — is taken out for a
cool-down (``COOLDOWN_S``, doubling while it keeps failing, at most ``COOLDOWN_MAX_S``), then one request
probes it: an answer brings it back, a failure sends it out again. The retry layer retries a failed
request as it always does; the retry goes to another endpoint (a task remembers the endpoints that failed
it until its next answer), so a dying endpoint costs attempts, never rows, while any endpoint lives.
Several API keys for one provider are endpoints with the same URL and different ``api_key_env``.

The cache key never names the endpoint (the Requester keys on model, messages and params only).
``report`` is the ``endpoints`` block of stats.json: per endpoint its requests, answers, failures, how
often it was taken out, and its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from datafactory.errors import ConnectionFailed, ProviderError, RateLimited, TransientError
from datafactory.providers.base import Completion, Provider

FAIL_STREAK = 3
COOLDOWN_S = 2.0
COOLDOWN_MAX_S = 60.0

# the endpoints that failed the current task's request since its last answer (the retry avoids them)
_failed_here: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("failed_here", default=frozenset())


def shown_url(url: str) -> str:
    """The URL without user:password (the only part of it that could be a secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass
class Endpoint:
    provider: Provider
    label: str
    weight: float = 1.0
    cap: int | None = None
    in_flight: int = 0
    streak: int = 0
    down_until: float = 0.0    # out of the pool until then (0: in)
    cooldown: float = COOLDOWN_S
    probing: bool = False      # its one probe request is on the wire
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        return self.down_until > 0.0

    def usable(self, now: float) -> bool:
        if self.cap is not None and self.in_flight >= self.cap:
            return False
        if self.down:
            return now >= self.down_until and not self.probing
        return True


class PoolProvider:
    """A Provider over several endpoints (see the module docstring)."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("a pool needs at least one endpoint")
        self.endpoints = endpoints
        self.name = endpoints[0].provider.name
        self._changed = asyncio.Event()
        self.report: dict[str, Any] = {}
        for ep in endpoints:
            ep.counts = {"url": ep.label, "weight": ep.weight, "requests": 0, "answers": 0, "failures": 0,
                         "taken_out": 0, "state": "in"}
        self._labels()

    def __repr__(self) -> str:
        return f"PoolProvider({[ep.label for ep in self.endpoints]})"

    def _labels(self) -> None:
        seen: dict[str, int] = {}
        for ep in self.endpoints:  # the same URL twice (two keys): number them
            n = seen[ep.label] = seen.get(ep.label, 0) + 1
            self.report[ep.label if n == 1 else f"{ep.label} #{n}"] = ep.counts

    async def _pick(self) -> tuple[Endpoint, bool]:
        while True:
            now = time.monotonic()
            avoid = _failed_here.get()
            usable = [i for i, ep in enumerate(self.endpoints) if ep.usable(now)]
            preferred = [i for i in usable if i not in avoid] or usable
            if preferred:
                # down endpoints whose cool-down is over come first: one probe each
                probe = [i for i in preferred if self.endpoints[i].down]
                i = probe[0] if probe else min(preferred, key=lambda j: (self.endpoints[j].in_flight + 1)
                                               / self.endpoints[j].weight)
                ep = self.endpoints[i]
                if ep.down:
                    ep.probing = True
                    ep.counts["state"] = "probing"
                return ep, ep.down
            self._changed.clear()
            waits = [ep.down_until - now for ep in self.endpoints if ep.down and not ep.probing]
            # every endpoint is busy or out: wait for a free slot or the end of the nearest cool-down
            timeout = max(0.01, min(waits)) if waits else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def complete(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        ep, probe = await self._pick()
        index = self.endpoints.index(ep)
        ep.in_flight += 1
        ep.counts["requests"] += 1
        try:
            comp = await ep.provider.complete(model, messages, params)
        except ProviderError as exc:
            self._failure(ep, exc, probe)
            _failed_here.set(_failed_here.get() | {index})
            raise
        except BaseException:  # cancelled: the probe (if it was one) is free again
            if probe:
                ep.probing = False
            raise
        finally:
            ep.in_flight -= 1
            self._changed.set()
        self._answer(ep)
        if _failed_here.get():
            _failed_here.set(frozenset())
        return comp

    def _answer(self, ep: Endpoint) -> None:
        ep.counts["answers"] += 1
        ep.streak = 0
        if ep.down or ep.probing:
            ep.down_until, ep.probing, ep.cooldown = 0.0, False, COOLDOWN_S
            ep.counts["state"] = "in"

    def _failure(self, ep: Endpoint, exc: ProviderError, probe: bool) -> None:
        ep.counts["failures"] += 1
        if isinstance(exc, RateLimited) or not isinstance(exc, TransientError):
            if probe or ep.down:  # the server answered: it is alive (a 4xx is the request's fault)
                ep.down_until, ep.probing, ep.cooldown = 0.0, False, COOLDOWN_S
                ep.counts["state"] = "in"
            return
        if ep.down and not probe:
            return  # was on the wire when the endpoint was taken out
        ep.streak += 1
        if probe or isinstance(exc, ConnectionFailed) or ep.streak >= FAIL_STREAK:
            self._take_out(ep, again=probe)

    def _take_out(self, ep: Endpoint, *, again: bool) -> None:
        if again:  # its probe failed: a longer cool-down
            ep.cooldown = min(COOLDOWN_MAX_S, ep.cooldown * 2)
        ep.probing = False
        ep.down_until = time.monotonic() + ep.cooldown
        ep.counts["taken_out"] += 1
        ep.counts["state"] = "out"
        self._changed.set()

    async def aclose(self) -> None:
        for ep in self.endpoints:
            await ep.provider.aclose()
