"""The request step: render the prompt from the record's source and ask for the ``n`` samples; each
choice becomes a sample record (``meta``: ``sample``, ``attempts``, ``raw``, ``finish``, ``messages``).

Servers that ignore ``n`` (llama.cpp, Ollama; the zhipuai SDK has none) return fewer choices: the rest
is asked for with more requests, each its own cache entry (``variant``), with the seed moved on so a
seeded server does not repeat itself. A request that failed after its retries is a reject of stage
``request`` whose reason says what failed (by type; ``reasons.py`` says whether a rerun asks again).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from datafactory.engine.outcome import reject
from datafactory.engine.requester import Requester, RequestFailed
from datafactory.errors import AuthenticationFailed, BadResponse, ConnectionFailed, FatalRequestError, RateLimited
from datafactory.providers.base import Choice
from datafactory.record import Record


def sample_count(params: dict[str, Any]) -> int:
    n = params.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1


def request_reject(rec: Record, failed: RequestFailed) -> Record:
    """``rec`` rejected for a request that failed after all retries (a 401 stops the run instead)."""
    err = failed.error
    if isinstance(err, AuthenticationFailed):
        raise err
    if isinstance(err, FatalRequestError):
        reason = f"http_{err.status}" if err.status else "request_rejected"
    elif isinstance(err, RateLimited):
        reason = "rate_limited"
    elif isinstance(err, BadResponse):
        reason = "bad_response"
    elif isinstance(err, ConnectionFailed):  # a TransientError: the more specific class first
        reason = "connection_failed"
    else:
        reason = "request_failed"
    rec.meta["attempts"] = failed.attempts
    raw = getattr(err, "raw", None)
    if raw:
        rec.meta["raw"] = raw
    else:
        rec.meta.pop("raw", None)
    return reject(rec, "request", reason, str(err))


class RequestStep:
    def __init__(self, render: Any, requester: Requester, params: dict[str, Any]) -> None:
        self.render, self.req, self.params = render, requester, params
        self.samples = sample_count(params)
        self.seconds = 0.0  # time in render and record making (not the wait for the response)

    async def __call__(self, rec: Record) -> list[Record]:
        """The sample records of ``rec`` (ids ``key-i`` when ``n`` > 1), or ``[rec]`` rejected."""
        t0 = perf_counter()
        messages = self.render(rec.source)
        self.seconds += perf_counter() - t0
        try:
            if self.samples == 1:  # the common case, one frame less on every resume of the request
                answer = await self.req.ask(messages, self.params)
                choices, attempts = answer.completion.choices[:1], answer.attempts
            else:
                choices, attempts = await self._sample(messages)
        except RequestFailed as failed:
            return [request_reject(rec, failed)]
        if not choices:  # only a cache entry nobody can read has none (a live reply without is BadResponse)
            return [reject(rec, "request", "bad_response", "the stored response has no choices")]
        t0 = perf_counter()
        multi = len(choices) > 1
        base = rec.meta
        out = []
        for i, choice in enumerate(choices):
            meta = {"seq": base.get("seq", 0), "where": base.get("where", ""), "sample": i, "attempts": attempts,
                    "raw": choice.text, "finish": choice.finish_reason, "messages": messages,
                    "reasoning": choice.reasoning}
            out.append(Record(id=f"{rec.id}-{i}" if multi else rec.id, source=rec.source, meta=meta))
        self.seconds += perf_counter() - t0
        return out

    async def _sample(self, messages: list[dict[str, str]]) -> tuple[list[Choice], int]:
        answer = await self.req.ask(messages, self.params)
        choices = list(answer.completion.choices)
        attempts = answer.attempts
        variant = 0
        while choices and len(choices) < self.samples and variant < self.samples:
            variant += 1
            params = {**self.params, "n": self.samples - len(choices)}
            seed = params.get("seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                params["seed"] = seed + variant
            more = await self.req.ask(messages, params, variant=variant)
            attempts += more.attempts
            choices.extend(more.completion.choices)
        return choices[:self.samples], attempts
