"""One request, the way every request goes: cache → breaker → budget → limits → provider → retry → cache.

The response is stored in the cache the moment it arrives (before it is parsed), so a crash right
after can never cost a second payment for it. Every attempt reports to the run-level breaker, and
with a cost limit every attempt reserves its worst case before it is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from datafactory import constants as C
from datafactory.config.pipeline import Pipeline
from datafactory.engine.adaptive import AdaptiveLimit, Slot
from datafactory.engine.breaker import Breaker, breaker_for
from datafactory.engine.budget import Budget
from datafactory.engine.cache import Cache
from datafactory.engine.put_batch import PutBatcher
from datafactory.engine.ratelimit import Limits
from datafactory.engine.retry import with_retries
from datafactory.engine.stats import Stats
from datafactory.errors import ProviderError, RateLimited, RequestFailed, TransientError
from datafactory.providers.base import Completion, Provider
from datafactory.providers.pool import PoolProvider
from datafactory.providers.pricing import cost
from datafactory.providers.status import parse_reset
from datafactory.providers.structured import structured
from datafactory.record import content_hash


@dataclass(slots=True)
class _Ask:
    """One request's state across its attempts."""

    messages: list[dict[str, str]]
    params: dict[str, Any]
    key: str
    prompt_est: int
    attempts: int = 0
    cost: float | None = None  # of the attempt that got the answer (None: no price known)


@dataclass(slots=True)
class Answer:
    completion: Completion
    attempts: int
    cached: bool


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    return int(sum(len(m["content"]) for m in messages) / C.CHARS_PER_TOKEN) + 4 * len(messages)


def expected_completion_tokens(pipe: Pipeline) -> int:
    """Completion tokens one request may cost: max_tokens (or the pricing estimate) × n samples."""
    params = pipe.provider.params
    per_sample = int(params.get("max_tokens") or params.get("max_completion_tokens")
                     or pipe.pricing.expected_output_tokens)
    return per_sample * int(params.get("n", 1))


class Requester:
    def __init__(self, pipe: Pipeline, provider: Provider, cache: Cache, limits: Limits, stats: Stats, *,
                 breaker: Breaker | None = None, budget: Budget | None = None) -> None:
        self.pipe, self.cache, self.limits, self.stats = pipe, cache, limits, stats
        # response_format from the schema (not in the cache key: see providers/structured.py)
        cfg = pipe.provider
        if isinstance(provider, PoolProvider):  # several endpoints: their counts in stats.json
            stats.sections["endpoints"] = provider.report
        self.provider = structured(provider, cfg.structured_output, cfg.kind, pipe.schema, cfg.params, pipe.name,
                                   stats.sections.setdefault("structured_output", {}))
        # limits.concurrency auto: the scheduler runs max_concurrency workers, this decides how many send
        self.adaptive = (AdaptiveLimit(pipe.limits.concurrency, timeout_s=pipe.limits.timeout_s,
                                       report=stats.sections.setdefault("adaptive_concurrency", {}))
                         if pipe.limits.adaptive else None)
        self.breaker = breaker or breaker_for(pipe)
        self.budget = budget
        self._puts = PutBatcher(cache)  # responses of one loop turn committed together, before ask returns
        self._static = {"provider": pipe.provider.kind, "model": pipe.provider.model,
                        "template": pipe.prompt.fingerprint, "schema": content_hash(pipe.schema)}
        self._expected_out = expected_completion_tokens(pipe)
        self._model = pipe.provider.model
        # batch mode (engine/batch): called on a cache miss instead of sending; raises RequestDeferred
        # (queued for a provider batch) or RequestFailed (the row's request gave up after max_attempts)
        self.on_miss: Callable[[str, list[dict[str, str]], dict[str, Any]], None] | None = None

    def cache_key(self, messages: list[dict[str, str]], params: dict[str, Any], variant: int = 0) -> str:
        # ``variant`` (only when set, so older keys stay valid): extra requests for the same prompt
        extra = {"variant": variant} if variant else {}
        return content_hash({**self._static, "messages": messages, "params": params, **extra})

    async def ask(self, messages: list[dict[str, str]], params: dict[str, Any], *, variant: int = 0) -> Answer:
        """``variant`` > 0 asks the same prompt again as its own cache entry (it is not sent)."""
        key = self.cache_key(messages, params, variant)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return Answer(Completion.from_json(hit), 0, True)
        if self.on_miss is not None:
            self.on_miss(key, messages, params)
            raise AssertionError("on_miss must raise RequestDeferred or RequestFailed")
        ask = _Ask(messages, params, key, estimate_tokens(messages))
        # the first attempt is awaited straight (the path nearly every request takes: no closure, no retry
        # object); a retryable failure goes to the retry layer as its first attempt (engine/retry.py)
        send = self._attempt if self.adaptive is None else self._adaptive_attempt
        try:
            try:
                comp = await send(ask)
            except (RateLimited, TransientError) as exc:
                comp = await with_retries(partial(send, ask), max_attempts=self.pipe.limits.max_attempts,
                                          gate=self.limits.gate, stats=self.stats, sleep=self.breaker.sleep,
                                          rate_limit_wait_s=self.pipe.limits.rate_limit_wait_s, first=exc)
        except ProviderError as exc:
            self.stats.failed_requests += 1
            raise RequestFailed(exc, ask.attempts) from None
        self._account(comp, ask.cost)
        await self._puts.put(key, {"model": self.pipe.provider.model, "messages": messages, "params": params},
                             comp.to_json())
        return Answer(comp, ask.attempts, False)

    async def _adaptive_attempt(self, ask: _Ask) -> Completion:
        # with concurrency: auto the adaptive slot comes first: a request waiting for one has not passed
        # the breaker, reserved budget or taken an RPM/TPM ticket yet (all 256 workers would otherwise do
        # so, and send after the breaker tripped)
        assert self.adaptive is not None
        slot = await self.adaptive.acquire()
        try:
            comp = await self._attempt(ask, slot)
        except BaseException as exc:  # a cancel frees the slot too
            self.adaptive.release(slot, exc)
            raise
        self.adaptive.release(slot)
        return comp

    async def _attempt(self, ask: _Ask, slot: Slot | None = None) -> Completion:
        """One attempt: breaker, budget, limits, the provider call (counted in ``stats.in_flight`` while it
        is out: the report's timeline samples it)."""
        self.breaker.check()
        # the worst case is reserved before the request goes out, so requests in flight never add up
        # past the budget; it becomes the real cost when the answer arrives (nothing when it failed)
        budget = self.budget
        reserved = budget.reserve(ask.prompt_est, self._expected_out) if budget is not None else 0.0
        charged: float | None = None
        stats = self.stats
        try:
            ask.attempts += 1
            ticket = self.limits.ticket_now(ask.prompt_est) or await self.limits.before_request(ask.prompt_est)
            stats.requests_sent += 1
            if slot is not None:
                slot.started = time.monotonic()  # the latency the adaptive limit learns from: on the wire only
            stats.in_flight += 1
            try:
                comp = await self.provider.complete(self._model, ask.messages, ask.params)
            except ProviderError as exc:
                self.limits.after_failure(ticket, answered=exc.status is not None)
                if isinstance(exc, RateLimited):
                    stats.rate_limited += 1
                self.breaker.failure(exc, ask.key)
                raise
            finally:
                stats.in_flight -= 1
            self.limits.after_response(ticket, comp.prompt_tokens, comp.completion_tokens)
            self.breaker.success()
            charged = ask.cost = self._cost(comp)
            return comp
        finally:
            if budget is not None:
                budget.settle(reserved, charged)

    def _cost(self, comp: Completion) -> float | None:
        return cost(self.pipe.provider.model, self.pipe.pricing, comp.prompt_tokens, comp.completion_tokens)

    def _account(self, comp: Completion, cost_usd: float | None) -> None:
        s = self.stats
        s.prompt_tokens += comp.prompt_tokens
        s.completion_tokens += comp.completion_tokens
        s.add_cost(cost_usd)
        if comp.headers:
            self._observe_headers(comp.headers)

    def _observe_headers(self, headers: dict[str, str]) -> None:
        """When the provider says a limit is used up, pause everyone until its reset."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            if left <= 0:
                reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
                self.limits.gate.pause(min(reset if reset is not None else C.DEFAULT_RATE_LIMIT_PAUSE_S,
                                           C.RETRY_AFTER_CAP_S))
