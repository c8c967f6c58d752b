"""A record's outcome: written (its output row) or rejected (stage, reason, error), kept in ``record.meta``.

The flow marks a record rejected with :func:`reject`; the commit turns every finished record into the
commit log's ``(ok, reason, payload)`` with :func:`to_sample`. The payload of a reject is the reject
record ``{id, stage, reason, attempts, last_error, raw_output}`` written to ``rejects.jsonl``; texts
are redacted *before* they are cut (a key straddling the cut would otherwise leave its first
characters); a raw output longer than ``C.REJECT_RAW_CHARS`` keeps its start and end around a marker,
and ``raw_output_chars`` gives the length it had.

Meta keys the flow uses (one place to look them up):

* ``seq`` input position (1-based, in input order), ``where`` ``file:line`` of the input row;
* ``attempts`` requests this record's answer took, ``raw`` the model's raw text;
* ``sample`` index of the sample among the ``n`` asked for; ``correct`` the answer check's tag
  (preference / KTO); ``row`` the output row when ``fields`` also holds the model's object;
* ``stage``, ``reason``, ``error`` set by :func:`reject`.
"""

from __future__ import annotations

from typing import Any

from datafactory import constants as C
from datafactory.record import Record
from datafactory.secrets import redact

Sample = tuple[bool, "str | None", dict[str, Any]]  # the commit log's (ok, reject reason, payload)


def reject(rec: Record, stage: str, reason: str, last_error: str = "", *, raw: bool = True) -> Record:
    """Mark ``rec`` rejected (in place) and return it. ``raw``: keep the raw output in the reject."""
    meta = rec.meta
    meta["stage"], meta["reason"], meta["error"] = stage, reason, last_error
    if not raw:
        meta.pop("raw", None)
    return rec


def rejected(rec_id: str, stage: str, reason: str, last_error: str = "", **meta: Any) -> Record:
    """A new rejected record (for a row or sample that never became a record of its own)."""
    return Record(id=rec_id, source={}, meta={**meta, "stage": stage, "reason": reason, "error": last_error})


def is_rejected(rec: Record) -> bool:
    return "reason" in rec.meta


def to_sample(rec: Record) -> Sample:
    """The commit log's form of a finished record."""
    meta = rec.meta
    reason = meta.get("reason")
    if reason is None:
        return (True, None, meta.get("row", rec.fields))
    payload: dict[str, Any] = {"id": rec.id, "stage": meta["stage"], "reason": reason,
                               "attempts": meta.get("attempts", 0),
                               "last_error": redact(meta.get("error") or "")[:2000], "raw_output": None}
    raw = meta.get("raw")
    if raw is not None:
        text = redact(raw)
        payload["raw_output"] = shorten(text, C.REJECT_RAW_CHARS)
        if len(text) > C.REJECT_RAW_CHARS:
            payload["raw_output_chars"] = len(text)
    return (False, reason, payload)


def shorten(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its first two thirds and last third with a
    marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return (f"{text[:head]}\n[... datafactory cut {len(text) - head - tail:,} of {len(text):,} characters ...]\n"
            f"{text[len(text) - tail:]}")
