"""The flow's first step: an input row becomes the record's ``source`` — the mapped input fields
(template variable → value) — or a reject of stage ``input`` before anything is sent.

Rejects here: a row that could not be read (``bad_input``), a copy of an earlier row
(``duplicate_input``), a mapped column that is missing or empty (``missing_field``), and whatever a
gate's ``check_source`` says about the mapped fields (``SourceGate``: a test question given as input
is rejected without paying for a request). The scheduler runs this step on each batch of rows it reads,
so a gate with a batch path (``check_sources``) checks 256 rows in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datafactory.engine.outcome import reject
from datafactory.io.readers import BadRow
from datafactory.quality.gate import SourceGate
from datafactory.record import Record


class SourceStep:
    """The input step over a batch of rows (the feed reads the input in batches): the per-row mapping,
    then each source gate once over the batch's survivors — through ``check_sources(sources)`` when the
    gate has that batch path (one vectorised pass), else ``check_source`` per row."""

    def __init__(self, fields: dict[str, str], gates: Sequence[SourceGate] = ()) -> None:
        self.fields = list(fields.items())
        self.gates = list(gates)

    def batch(self, records: Sequence[Record]) -> int:
        """Map and check ``records`` in place; returns how many are now rejected."""
        alive = [rec for rec in records if self._map(rec)]
        for gate in self.gates:
            if not alive:
                break
            many = getattr(gate, "check_sources", None)
            verdicts = many([r.source for r in alive]) if many is not None else [
                gate.check_source(r.source) for r in alive]
            still = []
            for rec, verdict in zip(alive, verdicts, strict=True):
                if verdict is None:
                    still.append(rec)
                else:
                    where = rec.meta.get("where", "")
                    reject(rec, "input", verdict.reason, f"{where}: {verdict.detail}" if verdict.detail else where)
            alive = still
        return len(records) - len(alive)

    def __call__(self, rec: Record) -> bool:
        """One row: map and check ``rec`` in place; False when it is now rejected."""
        return self.batch([rec]) == 0

    def _map(self, rec: Record) -> bool:
        """``rec.source`` (the row as read) becomes the mapped input fields; False when rejected."""
        meta = rec.meta
        where = meta.get("where", "")
        bad = meta.pop("bad", None)
        if isinstance(bad, BadRow):
            meta["raw"] = bad.raw
            reject(rec, "input", "bad_input", f"{where}: {bad.error}")
            return False
        dup = meta.get("duplicate_of")
        if dup is not None:
            reject(rec, "input", "duplicate_input", f"{where}: same content as an earlier input row ({dup})")
            return False
        row = rec.source
        source: dict[str, Any] = {}
        for var, col in self.fields:
            value = row.get(col)
            if value is None or value == "":
                reject(rec, "input", "missing_field",
                       f"{where}: input column '{col}' (for {{{{ {var} }}}}) is missing or empty")
                return False
            source[var] = value
        rec.source = source
        return True
