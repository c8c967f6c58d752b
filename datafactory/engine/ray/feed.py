"""The input rows a Ray run still has to do, as records in input order — keyed exactly as the asyncio
engine keys them (``engine/scheduler.py``: content hash, ``~n`` for the n-th repeat of a row, whose copy
is rejected as a duplicate by the input step), so both engines resume each other's run dirs."""

from __future__ import annotations

import contextlib

from datafactory.config.pipeline import Pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.input import input_for
from datafactory.engine.input_keys import RowKeys, input_record
from datafactory.engine.stats import Stats
from datafactory.record import Record


def records_to_do(pipe: Pipeline, cache: Cache, fp: str, stats: Stats) -> list[Record]:
    """Every input row (up to ``input.limit``) without an outcome of configuration ``fp``; the rows
    already done are counted in ``stats.rows_skipped_done``."""
    inp = pipe.input
    rows = input_for(pipe).rows()
    keys = RowKeys()
    todo: list[Record] = []
    seq = 0
    try:
        for pos, row in rows:
            if inp.limit is not None and seq >= inp.limit:
                break
            seq += 1
            key, dup_of = keys.key(row)
            if cache.is_done(fp, key):
                stats.rows_skipped_done += 1
                continue
            todo.append(input_record(key, seq, f"{inp.path}:{pos}", row, dup_of))
    finally:
        with contextlib.suppress(Exception):
            rows.close()  # type: ignore[attr-defined]
    return todo
