"""The money limit (``limits.max_cost_usd`` / ``--max-cost``): the run stops before its spend could
pass it.

Spend is counted from the usage the server reported, priced by ``providers/pricing.py``; it covers
the whole run dir (every response in its cache, earlier invocations included), so a rerun with the
same budget does not spend it again and a rerun with a higher one continues. Before a request is
sent its worst case (estimated prompt + ``max_tokens`` × n) is reserved, so requests in flight can
never add up past the limit; the reservation is replaced by the real cost when the answer arrives.
"""

from __future__ import annotations

from typing import Any

from datafactory.errors import BudgetExhausted, ConfigError
from datafactory.providers.pricing import cost, price_for


class Budget:
    def __init__(self, limit_usd: float, model: str, pricing: Any, spent_usd: float = 0.0) -> None:
        self.limit_usd, self.model, self.pricing = limit_usd, model, pricing
        self.spent_usd = spent_usd
        self.reserved_usd = 0.0

    def reserve(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Reserve the worst case of one request at the online price, or raise ``BudgetExhausted``."""
        return self.hold(cost(self.model, self.pricing, prompt_tokens, completion_tokens) or 0.0)

    def hold(self, amount: float, held_by: str = "requests in flight") -> float:
        """Reserve ``amount`` (a request's worst case, at whatever price it is sent: batch mode holds the
        batch price), or raise ``BudgetExhausted`` when it does not fit beside what is spent and held."""
        if self.spent_usd + self.reserved_usd + amount > self.limit_usd:
            raise BudgetExhausted(
                f"budget reached: ${self.spent_usd:.4f} spent and ${self.reserved_usd:.4f} held by {held_by}, "
                f"of ${self.limit_usd:.4f} (limits.max_cost_usd / --max-cost), and the next request could cost "
                f"up to ${amount:.4f}. Rerun with a higher --max-cost to continue; nothing finished is lost",
                budget_usd=self.limit_usd, spent_usd=self.spent_usd)
        self.reserved_usd += amount
        return amount

    def settle(self, reservation: float, actual_usd: float | None) -> None:
        """The answer came back: the reservation becomes what it really cost (None: it failed, free)."""
        self.reserved_usd = max(0.0, self.reserved_usd - reservation)
        self.spent_usd += actual_usd or 0.0


def budget_for(pipe: Any, usage_by_model: dict[str, tuple[int, int]]) -> Budget | None:
    """The run's budget, with what the run dir's cache says was already spent; None without a limit."""
    limit = getattr(pipe.limits, "max_cost_usd", None)
    if limit is None:
        return None
    model = pipe.provider.model
    if price_for(model, pipe.pricing) is None:
        raise ConfigError(f"a cost limit needs a price for model '{model}': set pricing.input_per_1m and "
                          "pricing.output_per_1m", key="limits.max_cost_usd", file=pipe.source)
    spent = 0.0
    for stored_model, (prompt, completion) in usage_by_model.items():
        spent += cost(stored_model or model, pipe.pricing, prompt, completion) or 0.0
    return Budget(float(limit), model, pipe.pricing, spent)
