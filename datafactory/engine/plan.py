"""``--dry-run`` / :func:`plan`: what a run would send and cost, sending nothing and needing no API key.

The input is read as the run reads it and each row goes through the run's own input step
(steps/source.py: mapping, missing fields, and the source gates such as the input-side
decontamination), so the rows a run would reject before any request are counted as unusable, by reason,
with one example each, and cost nothing in the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafactory.config.names import check_input_columns
from datafactory.config.pipeline import Pipeline, as_pipeline
from datafactory.engine.gates import build_gates
from datafactory.engine.requester import estimate_tokens, expected_completion_tokens
from datafactory.io.readers import BadRow, iter_rows
from datafactory.providers.pricing import batch_cost, cost
from datafactory.record import Record
from datafactory.steps.source import SourceStep

BATCH = 256  # rows checked by the source gates at once (the feed's batch)


@dataclass
class Plan:
    """What ``--dry-run`` reports: nothing is sent."""

    rows: int
    bad_rows: int
    sample_prompts: list[list[dict[str, str]]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cost_usd: float | None = None
    model: str = ""
    # rows that will not be sent, by reject reason, with the first example of each (file:line: why)
    unusable: dict[str, int] = field(default_factory=dict)
    unusable_examples: dict[str, str] = field(default_factory=dict)

    def _unusable(self, reason: str, example: str) -> None:
        self.bad_rows += 1
        self.unusable[reason] = self.unusable.get(reason, 0) + 1
        self.unusable_examples.setdefault(reason, example)


def plan(pipeline: Pipeline | str | Path, *, show: int = 3, **overrides: Any) -> Plan:
    """Render a few prompts, count rows, estimate tokens and cost. Needs no API key; sends nothing."""
    pipe = as_pipeline(pipeline, overrides)
    check_input_columns(pipe)
    inp = pipe.input
    step = SourceStep(inp.fields, build_gates(pipe).source)
    result = Plan(rows=0, bad_rows=0, model=pipe.provider.model)
    per_request = expected_completion_tokens(pipe)
    pending: list[Record] = []

    def flush() -> None:
        step.batch(pending)
        for rec in pending:
            reason = rec.meta.get("reason")
            if reason is not None:  # the same words as the reject the run would write for it
                result._unusable(str(reason), str(rec.meta.get("error", "")))
                continue
            result.rows += 1
            messages = pipe.prompt.render(rec.source)
            if len(result.sample_prompts) < show:
                result.sample_prompts.append(messages)
            result.prompt_tokens += estimate_tokens(messages)
            result.completion_tokens += per_request
        pending.clear()

    seen = 0
    for pos, row in iter_rows(inp.path, fmt=inp.format, split=inp.split, subset=inp.subset):
        if inp.limit is not None and seen >= inp.limit:
            break
        seen += 1
        if isinstance(row, BadRow):
            result._unusable("bad_input", f"{inp.path}:{row.line}: {row.error}")
            continue
        pending.append(Record(id=str(pos), source=row, meta={"where": f"{inp.path}:{pos}"}))
        if len(pending) >= BATCH:
            flush()
    flush()
    result.requests = result.rows
    price = batch_cost if pipe.provider.mode == "batch" else cost  # batch mode: pricing.batch_share of online
    result.cost_usd = price(pipe.provider.model, pipe.pricing, result.prompt_tokens, result.completion_tokens)
    return result
