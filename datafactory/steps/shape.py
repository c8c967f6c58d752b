"""The shape step (row formats: alpaca, sharegpt, jsonl): a parsed sample becomes the output row(s).

``output.explode`` makes one record per item of a list property (ids ``<sample id>.<j>``). A record's
``fields`` is what the gates read: the row, or — when a gate reads a property of the model's object
that no column carries — the row over the object (``{**obj, **row}``), with the row itself in
``meta["row"]`` (what is written).
"""

from __future__ import annotations

from datafactory.config.pipeline import OutputConfig
from datafactory.engine.outcome import reject
from datafactory.errors import ValidationFailed
from datafactory.formats import output as shapes
from datafactory.record import Record


class ShapeStep:
    def __init__(self, output: OutputConfig, needs_object: bool) -> None:
        self.output, self.needs_object = output, needs_object
        self.shape = shapes.ROW_SHAPES[output.format]

    def __call__(self, rec: Record) -> list[Record]:
        """The row records of one parsed sample (rejected ones marked, in order)."""
        explode = self.output.explode
        if not explode:
            return [self._one(rec, rec.id, rec.fields, rec.meta)]
        items = rec.fields.get(explode)
        if not isinstance(items, list) or not items:
            return [reject(rec, "validate", "schema_invalid", f"'{explode}' is not a non-empty list")]
        return [self._one(rec, f"{rec.id}.{j}", it if isinstance(it, dict) else {"value": it}, dict(rec.meta))
                for j, it in enumerate(items)]

    def _one(self, rec: Record, oid: str, obj: dict, meta: dict) -> Record:
        out = Record(id=oid, source=rec.source, fields=obj, meta=meta)
        try:
            row = self.shape(self.output, obj, rec.source, oid, reasoning=rec.meta.get("reasoning"))
        except ValidationFailed as exc:
            return reject(out, "validate", exc.reason, str(exc))
        if self.needs_object:
            out.fields = {**obj, **row}
            meta["row"] = row
        else:
            out.fields = row
        return out
