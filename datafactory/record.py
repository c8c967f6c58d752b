"""The one record type that flows through every stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import xxhash


def canonical_json(value: Any) -> bytes:
    """Key-sorted compact JSON: the same value always gives the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def content_hash(value: Any) -> str:
    """Stable 64-bit hex id of a JSON-able value (xxh3 of its canonical JSON)."""
    return xxhash.xxh3_64_hexdigest(canonical_json(value))


@dataclass(slots=True)
class Record:
    """One row on its way from input to output.

    ``id`` is a content hash of the source row, so resume and dedup share one key;
    ``source`` is the input row as read; ``fields`` what stages produced (the model's JSON
    object, output columns); ``meta`` bookkeeping (input position, sample index, attempts).
    """

    id: str
    source: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
