"""Price table (USD per 1M tokens) for cost estimates; the pipeline's ``pricing`` block overrides it.

Estimates only: prices change, so a run's cost figure is labelled 'estimated' everywhere.
"""

from __future__ import annotations

from datafactory.config.pipeline import PricingConfig

# (input, output) USD per 1M tokens, list prices as of late 2025
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
    "glm-4-flash": (0.0, 0.0),
    "glm-4-plus": (0.70, 0.70),
    "glm-4-air": (0.07, 0.07),
}


def price_for(model: str, pricing: PricingConfig) -> tuple[float, float] | None:
    """(input, output) price per 1M tokens, or None when unknown (cost is then not estimated)."""
    if pricing.input_per_1m is not None and pricing.output_per_1m is not None:
        return pricing.input_per_1m, pricing.output_per_1m
    if model in PRICES:
        return PRICES[model]
    # dated snapshots ("gpt-4o-mini-2024-07-18") share the family price; longest prefix wins
    best = max((m for m in PRICES if model.startswith(m)), key=len, default=None)
    return PRICES[best] if best else None


def cost(model: str, pricing: PricingConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    price = price_for(model, pricing)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def batch_cost(model: str, pricing: PricingConfig, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The price of a request sent in a provider batch: ``pricing.batch_share`` (0.5) of the online one."""
    online = cost(model, pricing, prompt_tokens, completion_tokens)
    return None if online is None else online * pricing.batch_share
