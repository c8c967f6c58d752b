"""Builds the gate steps a pipeline turned on (from the step registry, in flow order) and runs them.

Order matters: cheap filters first, then answer check and decontamination, dedup last — so a
record rejected for another reason never enters the dedup memory and blocks a later good one.
The order is the registry's (``datafactory/steps/gates.py``); what each gate reads is resolved once
here (``steps/reads.py``), so the run and a resume's seeding read the same column.
"""

from __future__ import annotations

from dataclasses import dataclass

from datafactory.config.pipeline import Pipeline
from datafactory.quality.gate import Gate
from datafactory.steps.reads import GateContext


@dataclass(frozen=True)
class Gates:
    """The built gates plus what they read: ``needs_object``: some gate reads a property of the model's
    object that no output column carries, so it sees ``{**obj, **row}`` rather than the row alone."""

    gates: list[Gate]
    context: GateContext
    needs_object: bool


def build_gates(pipe: Pipeline) -> Gates:
    ctx = GateContext(output=pipe.output, paired=pipe.output.format in ("preference", "kto"))
    gates = [g for cfg in pipe.quality.steps.values() if (g := cfg.build(ctx)) is not None]
    reads = [name for g in gates for name in _reads(g)]
    return Gates(gates, ctx, ctx.needs_object(reads))


def _reads(gate: Gate) -> tuple[str, ...]:
    fields = getattr(gate, "fields", None)
    if fields is None:
        field_name = getattr(gate, "output_field", None)
        return (field_name,) if field_name else ()
    return (fields,) if isinstance(fields, str) else tuple(fields)
