"""One rate limit for every Ray worker: RPM, TPM and the 429 pause hold across the whole actor pool.

``LimiterActor`` is one async Ray actor (no CPU) holding the run's :class:`~datafactory.engine.ratelimit.Limits`
— the same sliding-window ledgers, pacing and pause gate the asyncio engine uses, so the limits mean
exactly what they mean there, for the sum of all workers. Each worker's ``Requester`` gets a
:class:`RemoteLimits` in place of a local ``Limits``:

* ``before_request`` waits for the worker's local view of the pause, then asks the actor for room (one
  round trip per request; the actor's own pause gate holds every worker, see below) and gets a ticket id;
* ``after_response`` / ``after_failure`` report the usage to the actor (fire and forget), which settles
  the ledger entries exactly as ``Limits`` does locally;
* the pause gate (``RemotePauseGate``): a 429 or exhausted ``x-ratelimit-*`` headers seen by any worker
  pause the actor's gate, so every worker's next ``before_request`` waits out the server's reset time.

One actor is a single point of admission; at millions of requests per minute a split of the limit
into per-worker shares with rebalancing would scale further (not needed below ~50k requests/s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from datafactory.engine.ratelimit import Limits, PauseGate, Ticket


class _Limiter:
    """The actor's body (a plain class, so it can be tested without Ray)."""

    def __init__(self, rpm: float | None, tpm: float | None, max_completion: int) -> None:
        self.limits = Limits(rpm, tpm, max_completion=max_completion)
        self.tickets: dict[int, Ticket] = {}
        self.issued = 0
        self.pauses = 0

    async def before_request(self, prompt_est: int) -> int:
        ticket = await self.limits.before_request(prompt_est)
        self.issued += 1
        self.tickets[self.issued] = ticket
        return self.issued

    def after_response(self, ticket_id: int, prompt_tokens: int, completion_tokens: int) -> None:
        ticket = self.tickets.pop(ticket_id, None)
        if ticket is not None:
            self.limits.after_response(ticket, prompt_tokens, completion_tokens)

    def after_failure(self, ticket_id: int, answered: bool) -> None:
        ticket = self.tickets.pop(ticket_id, None)
        if ticket is not None:
            self.limits.after_failure(ticket, answered=answered)

    def pause(self, seconds: float) -> float:
        """Pause every worker for ``seconds``; returns how long the pause still lasts."""
        self.pauses += 1
        self.limits.gate.pause(seconds)
        return self.remaining()

    def remaining(self) -> float:
        return max(0.0, self.limits.gate.until - time.monotonic())

    def report(self) -> dict[str, Any]:
        """For stats.json (``ray.limiter``)."""
        return {"requests_admitted": self.issued, "pauses": self.pauses, "in_flight": len(self.tickets)}


LimiterActor: Any = ray.remote(_Limiter)  # started with .options(num_cpus=0, max_concurrency=...) by the driver


class RemotePauseGate(PauseGate):
    """The pause gate of one worker: a pause is local at once and global through the actor."""

    def __init__(self, actor: Any) -> None:
        super().__init__()
        self.actor = actor

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        self.actor.pause.remote(seconds)


@dataclass(slots=True)
class RemoteTicket(Ticket):
    ticket_id: int = 0


class RemoteLimits(Limits):
    """``Limits`` for a ``Requester`` on a Ray worker: every decision is the limiter actor's."""

    def __init__(self, actor: Any) -> None:
        super().__init__(None, None)
        self.actor = actor
        self.gate = RemotePauseGate(actor)

    async def before_request(self, prompt_est: int) -> Ticket:
        await self.gate.wait()
        ticket_id = await self.actor.before_request.remote(prompt_est)
        return RemoteTicket(prompt_est, ticket_id=ticket_id)

    def after_response(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int) -> None:
        if isinstance(ticket, RemoteTicket):
            self.actor.after_response.remote(ticket.ticket_id, prompt_tokens, completion_tokens)

    def after_failure(self, ticket: Ticket, *, answered: bool) -> None:
        if isinstance(ticket, RemoteTicket):
            self.actor.after_failure.remote(ticket.ticket_id, answered)
