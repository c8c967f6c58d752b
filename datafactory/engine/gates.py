"""Builds the gate steps a pipeline turned on (from the step registry, in flow order) and sorts them by
where in the flow they run.

Order matters: cheap filters first, then answer check and decontamination, dedup last — so a
record rejected for another reason never enters the dedup memory and blocks a later good one.
The order is the registry's (``datafactory/steps/gates.py``); what each gate reads is resolved once
here (``steps/reads.py``), so the run and a resume's seeding read the same column.

Where each gate runs (one gate may implement several hooks):

* ``source``: gates with ``check_source`` — on the mapped input fields, before any request;
* ``batch``: gates without memory — on micro-batches of records in arrival order (their verdict does
  not depend on other records, so order does not matter);
* ``asynchronous``: gates with ``acheck`` — on the survivors of the batch gates, with the run's requester;
* ``ordered``: gates with memory (``seed``: dedup) — after pairing, on micro-batches in *input* order
  (``engine/ordered.py``), so their verdicts do not depend on response latencies. In preference / KTO
  runs, gates reading a pair column (``chosen``, ``rejected``) run there too: only a pair has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datafactory.config.pipeline import Pipeline
from datafactory.formats.output import row_columns
from datafactory.quality.gate import AsyncGate, Gate, SeedableGate, SourceGate
from datafactory.steps.reads import GateContext

PAIR_COLUMNS = frozenset({"chosen", "rejected"})


@dataclass(frozen=True)
class Gates:
    """The built gates plus what they read: ``needs_object``: some gate reads a property of the model's
    object that no output column carries, so it sees ``{**obj, **row}`` rather than the row alone;
    ``stored_props``: the properties of that kind that gates with memory read — stored with each
    written row (``engine/cache.py``'s ``gate_reads``) so a resume seeds them from exactly that."""

    gates: list[Gate]
    context: GateContext
    needs_object: bool
    stored_props: tuple[str, ...] = ()
    source: list[SourceGate] = field(default_factory=list)
    batch: list[Gate] = field(default_factory=list)
    asynchronous: list[AsyncGate] = field(default_factory=list)
    ordered: list[Gate] = field(default_factory=list)


def build_gates(pipe: Pipeline) -> Gates:
    paired = pipe.output.format in ("preference", "kto")
    ctx = GateContext(output=pipe.output, paired=paired)
    gates = [g for cfg in pipe.quality.steps.values() if (g := cfg.build(ctx)) is not None]
    reads = [name for g in gates for name in gate_reads(g)]
    columns = row_columns(pipe.output)
    ordered, batch = [], []
    for g in gates:
        if not callable(getattr(g, "check", None)):
            continue
        if isinstance(g, SeedableGate) or (paired and PAIR_COLUMNS & set(gate_reads(g))):
            ordered.append(g)
        else:
            batch.append(g)
    stored: list[str] = []
    whole_object = pipe.output.format == "jsonl" and not pipe.output.columns  # the row holds the object
    if not paired and not whole_object:
        for g in ordered:
            stored.extend(n for n in gate_reads(g) if n not in columns and n not in stored)
    return Gates(gates, ctx, ctx.needs_object(reads), tuple(stored),
                 source=[g for g in gates if isinstance(g, SourceGate)], batch=batch,
                 asynchronous=[g for g in gates if isinstance(g, AsyncGate)], ordered=ordered)


def gate_reads(gate: object) -> tuple[str, ...]:
    """The field names a built gate reads (its ``fields``, or the answer check's ``output_field``)."""
    fields = getattr(gate, "fields", None)
    if fields is None:
        field_name = getattr(gate, "output_field", None)
        return (field_name,) if field_name else ()
    return (fields,) if isinstance(fields, str) else tuple(fields)
