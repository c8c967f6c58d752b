"""The gate protocol: what the record-flow engine calls after a record is parsed and validated.

A gate looks at one record (or a batch) and either keeps it (``None``) or returns a
:class:`Reject` with a short, stable reason code that the engine counts per reason and writes to
``rejects.jsonl``, plus a human-readable detail. Gates never raise for a bad record: rejecting is
their normal outcome. Gates may be stateful (dedup remembers what it kept), so the engine must
call one gate instance in record order and from one thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from datafactory.record import Record, canonical_json

FieldSpec = str | Sequence[str]


@dataclass(frozen=True, slots=True)
class Reject:
    """Why a gate dropped a record: ``reason`` is a stable code (``duplicate``, ``too_long``...)
    to count by; ``detail`` says which record, eval item or number made the decision."""

    reason: str
    detail: str = ""


@runtime_checkable
class Gate(Protocol):
    """Anything with a ``name`` and ``check(record) -> Reject | None``."""

    name: str

    def check(self, record: Record) -> Reject | None: ...


@runtime_checkable
class BatchGate(Gate, Protocol):
    """A gate with a faster batch path; ``check_batch(rs)`` must equal ``[check(r) for r in rs]``."""

    def check_batch(self, records: Sequence[Record]) -> list[Reject | None]: ...


@runtime_checkable
class SeedableGate(Gate, Protocol):
    """A dedup gate that can be told about the input rows before the run, so output that merely
    repeats its input (a "rephrase" identical to the source) is not counted as new data."""

    def seed(self, texts: Iterable[str]) -> None: ...


def check_all(gate: Gate, records: Sequence[Record]) -> list[Reject | None]:
    """Run ``gate`` over ``records`` in order, through its batch path when it has one.

    (``getattr``, not ``isinstance(gate, BatchGate)``: a runtime Protocol check costs ~18 us, and the
    engine asks once per gate per micro-batch.)"""
    many = getattr(gate, "check_batch", None)
    if many is not None:
        return many(records)
    return [gate.check(record) for record in records]


def field_names(fields: FieldSpec) -> tuple[str, ...]:
    """``"answer"`` or ``["question", "answer"]`` as a tuple; an empty selection is a bug."""
    names = (fields,) if isinstance(fields, str) else tuple(fields)
    if not names:
        raise ValueError("a gate needs at least one field name")
    return names


def value_text(value: Any) -> str:
    """The text a gate sees for one field value: strings as they are, None as empty, and
    anything else (a list of chat turns, a dict) as canonical JSON so equal values compare equal."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return canonical_json(value).decode("utf-8")


def field_text(record: Record, fields: tuple[str, ...]) -> str:
    """The named output fields of ``record`` joined with newlines (missing fields are empty)."""
    if len(fields) == 1:
        return value_text(record.fields.get(fields[0]))
    return "\n".join(value_text(record.fields.get(name)) for name in fields)


def field_texts(records: Sequence[Record], fields: tuple[str, ...]) -> list[str]:
    """``field_text`` of many records; the common one-string-field case skips a call per record."""
    if len(fields) == 1:
        name = fields[0]
        return [v if isinstance(v := r.fields.get(name), str) else value_text(v) for r in records]
    return [field_text(r, fields) for r in records]


@runtime_checkable
class SourceGate(Protocol):
    """A gate that also checks the *input* row before any request is sent (decontamination of inputs:
    a test question given as input costs nothing). ``check_source`` gets the mapped input fields
    (template variable → value); a reject there is written with stage ``input``."""

    name: str

    def check_source(self, source: dict[str, Any]) -> Reject | None: ...


@runtime_checkable
class AsyncGate(Protocol):
    """A gate whose decision may need a request (the optional LLM judge of decontamination). The flow
    runs ``acheck`` on the records that passed the batch gates; ``ask(messages, params)`` is the run's
    requester (cached, limited, retried, counted in stats and cost like every request)."""

    name: str

    async def acheck(self, record: Record, ask: Any) -> Reject | None: ...
