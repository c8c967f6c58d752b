"""The flow's first step: an input row becomes the record's ``source`` — the mapped input fields
(template variable → value) — or a reject of stage ``input`` before anything is sent.

Rejects here: a row that could not be read (``bad_input``), a copy of an earlier row
(``duplicate_input``), a mapped column that is missing or empty (``missing_field``), and whatever a
gate's ``check_source`` says about the mapped fields (``SourceGate``: a test question given as input
is rejected without paying for a request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datafactory.engine.outcome import reject
from datafactory.io.readers import BadRow
from datafactory.quality.gate import SourceGate
from datafactory.record import Record


class SourceStep:
    def __init__(self, fields: dict[str, str], gates: Sequence[SourceGate] = ()) -> None:
        self.fields = list(fields.items())
        self.gates = list(gates)

    def __call__(self, rec: Record) -> bool:
        """Map ``rec.source`` (the row as read) in place; False when ``rec`` is now rejected."""
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
        for gate in self.gates:
            verdict = gate.check_source(source)
            if verdict is not None:
                reject(rec, "input", verdict.reason, f"{where}: {verdict.detail}" if verdict.detail else where)
                return False
        return True
