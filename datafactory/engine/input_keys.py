"""How both engines (asyncio and Ray) key input rows and make their records — one place, so each resumes
the other's run dirs: a row's id is the content hash of the row as read; the n-th repeat of a row gets
``<hash>~n`` and is rejected as a duplicate by the input step (one request for the content)."""

from __future__ import annotations

from typing import Any

from datafactory.io.readers import BadRow
from datafactory.record import Record, content_hash


def row_key(row: dict[str, Any] | BadRow) -> str:
    if isinstance(row, BadRow):
        return content_hash({"bad_row": row.raw, "line": row.line})
    return content_hash(row)


class RowKeys:
    """Keys rows in input order; remembers each content's count (one int per distinct row)."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def key(self, row: dict[str, Any] | BadRow) -> tuple[str, str | None]:
        """``(key, duplicate_of)``: ``duplicate_of`` is the first copy's key for a repeat, else None."""
        key = row_key(row)
        h = int(key, 16)
        if h in self._seen:  # same content twice in the input: one request, the copy is rejected
            self._seen[h] += 1
            return f"{key}~{self._seen[h]}", key
        self._seen[h] = 0
        return key, None


def input_record(key: str, seq: int, where: str, row: dict[str, Any] | BadRow, duplicate_of: str | None) -> Record:
    """The record of one input row, as the input step expects it (``meta``: seq, where, duplicate_of, bad)."""
    meta: dict[str, Any] = {"seq": seq, "where": where}
    if duplicate_of is not None:
        meta["duplicate_of"] = duplicate_of
    if isinstance(row, BadRow):
        meta["bad"] = row
    return Record(id=key, source={} if isinstance(row, BadRow) else row, meta=meta)
