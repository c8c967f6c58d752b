"""The input rows a Ray run still has to do, streamed to Ray in blocks — keyed exactly as the asyncio
engine keys them (``engine/input_keys.py``: content hash, ``~n`` for the n-th repeat of a row, whose copy
is rejected as a duplicate by the input step), so both engines resume each other's run dirs.

The driver reads the input once, in order (the reader streams: JSONL/CSV line by line, Parquet by row
group), skips every row with an outcome of this configuration (resume), and hands the rest over one block
at a time: each block (``rows_per_block`` pickled records and their input positions) goes to the object
store as an Arrow table (``ray.put``) and the driver keeps only its ref. The dataset is made of those
refs (``ray.data.from_arrow_refs``), so the driver never holds the input — the object store does (in
shared memory, spilled to disk when it fills). What the driver keeps per row is its key's 8-byte hash
(``RowKeys``: the repeat count of each content).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.input import input_for
from datafactory.engine.input_keys import RowKeys, input_record
from datafactory.engine.stats import Stats
from datafactory.record import Record

MAX_ROWS_PER_BLOCK = 256


def rows_per_block(rows: int | None, workers: int) -> int:
    """Blocks small enough that every worker gets some (4 a worker), at most ``MAX_ROWS_PER_BLOCK`` rows."""
    if rows is None:
        return MAX_ROWS_PER_BLOCK
    return max(1, min(MAX_ROWS_PER_BLOCK, -(-rows // (4 * workers))))


def blocks_to_do(pipe: Pipeline, cache: Cache, fp: str, stats: Stats, size: list[int]) -> Iterator[list[Record]]:
    """Every input row (up to ``input.limit``) without an outcome of configuration ``fp``, ``size[0]`` at a
    time (read at each block: the driver sizes blocks once it knows the workers); the rows already done are
    counted in ``stats.rows_skipped_done``."""
    inp = pipe.input
    rows = input_for(pipe).rows()
    keys = RowKeys()
    block: list[Record] = []
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
            block.append(input_record(key, seq, f"{inp.path}:{pos}", row, dup_of))
            if len(block) >= size[0]:
                yield block
                block = []
        if block:
            yield block
    finally:
        with contextlib.suppress(Exception):
            rows.close()  # type: ignore[attr-defined]


def put_block(block: list[Record]) -> Any:
    """One block in the object store: an Arrow table of ``seq`` and the pickled record (``rec``)."""
    import pyarrow as pa
    import ray

    from datafactory.engine.ray.worker import dumps

    return ray.put(pa.table({"seq": pa.array([rec.meta["seq"] for rec in block], pa.int64()),
                             "rec": pa.array([dumps(rec) for rec in block], pa.binary())}))
