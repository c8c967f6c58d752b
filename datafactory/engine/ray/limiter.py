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

The cost limit (``limits.max_cost_usd`` / ``--max-cost``) is the actor's too: it holds the run's
:class:`~datafactory.engine.budget.Budget` (what the run dir already cost, from the stored usage) and
reserves each request's worst case *before* admitting it, as the asyncio engine does before sending, so
the requests in flight on all workers together never add up past the limit; the usage a worker reports
with ``after_response`` settles the reservation at the real cost. A request that does not fit is refused
with the budget's own ``BudgetExhausted`` (raised on the worker; the run stops as on the asyncio engine).

One actor is a single point of admission; at millions of requests per minute a split of the limit
into per-worker shares with rebalancing would scale further (not needed below ~50k requests/s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

from datafactory.engine.budget import Budget
from datafactory.engine.ratelimit import Limits, PauseGate, Ticket
from datafactory.errors import BudgetExhausted
from datafactory.providers.pricing import cost


class _Limiter:
    """The actor's body (a plain class, so it can be tested without Ray)."""

    def __init__(self, rpm: float | None, tpm: float | None, max_completion: int,
                 budget: Budget | None = None) -> None:
        self.limits = Limits(rpm, tpm, max_completion=max_completion)
        self.max_completion, self.budget = max_completion, budget
        self.tickets: dict[int, Ticket] = {}
        self.reserved: dict[int, float] = {}
        self.issued = 0
        self.pauses = 0
        self.refused = 0

    async def before_request(self, prompt_est: int) -> int | dict[str, Any]:
        """A ticket id, or (the budget would be passed) the refusal as plain values."""
        held = 0.0
        if self.budget is not None:
            try:
                held = self.budget.reserve(prompt_est, self.max_completion)
            except BudgetExhausted as exc:  # its keyword-only constructor does not unpickle: values
                self.refused += 1
                return {"message": str(exc), "budget_usd": exc.budget_usd, "spent_usd": exc.spent_usd}
        try:
            ticket = await self.limits.before_request(prompt_est)
        except BaseException:
            if self.budget is not None:
                self.budget.settle(held, None)
            raise
        self.issued += 1
        self.tickets[self.issued] = ticket
        self.reserved[self.issued] = held
        return self.issued

    def after_response(self, ticket_id: int, prompt_tokens: int, completion_tokens: int) -> None:
        ticket = self.tickets.pop(ticket_id, None)
        if ticket is not None:
            self.limits.after_response(ticket, prompt_tokens, completion_tokens)
        self._settle(ticket_id, prompt_tokens, completion_tokens)

    def after_failure(self, ticket_id: int, answered: bool) -> None:
        ticket = self.tickets.pop(ticket_id, None)
        if ticket is not None:
            self.limits.after_failure(ticket, answered=answered)
        self._settle(ticket_id, None, None)

    def _settle(self, ticket_id: int, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        held = self.reserved.pop(ticket_id, 0.0)
        if self.budget is not None:
            actual = (None if prompt_tokens is None or completion_tokens is None else
                      cost(self.budget.model, self.budget.pricing, prompt_tokens, completion_tokens))
            self.budget.settle(held, actual)

    def pause(self, seconds: float) -> float:
        """Pause every worker for ``seconds``; returns how long the pause still lasts."""
        self.pauses += 1
        self.limits.gate.pause(seconds)
        return self.remaining()

    def remaining(self) -> float:
        return max(0.0, self.limits.gate.until - time.monotonic())

    def report(self) -> dict[str, Any]:
        """For stats.json (``ray.limiter``)."""
        out: dict[str, Any] = {"requests_admitted": self.issued, "pauses": self.pauses,
                               "in_flight": len(self.tickets)}
        if self.budget is not None:
            out.update(spent_usd=self.budget.spent_usd, budget_usd=self.budget.limit_usd,
                       refused_by_budget=self.refused)
        return out


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

    def ticket_now(self, prompt_est: int) -> Ticket | None:
        """Never a local ticket: every request is admitted (and its cost reserved) by the actor."""
        return None

    async def before_request(self, prompt_est: int) -> Ticket:
        await self.gate.wait()
        ticket_id = await self.actor.before_request.remote(prompt_est)
        if isinstance(ticket_id, dict):  # the budget: the run stops before this request is sent
            raise BudgetExhausted(ticket_id["message"], budget_usd=ticket_id["budget_usd"],
                                  spent_usd=ticket_id["spent_usd"])
        return RemoteTicket(prompt_est, ticket_id=ticket_id)

    def after_response(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int) -> None:
        if isinstance(ticket, RemoteTicket):
            self.actor.after_response.remote(ticket.ticket_id, prompt_tokens, completion_tokens)

    def after_failure(self, ticket: Ticket, *, answered: bool) -> None:
        if isinstance(ticket, RemoteTicket):
            self.actor.after_failure.remote(ticket.ticket_id, answered)
