"""Responses that arrive in one event-loop turn are committed together, and each put returns only once
its response is committed (readable from another connection)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from datafactory.engine.cache import Cache
from datafactory.engine.put_batch import PutBatcher


def _stored(path) -> set[str]:
    with sqlite3.connect(path) as db:  # another connection: only committed rows are visible
        return {key for (key,) in db.execute("SELECT key FROM responses")}


def test_puts_of_one_loop_turn_share_one_commit_and_return_committed(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = PutBatcher(cache)
    seen_after: dict[str, bool] = {}

    async def one(i: int) -> None:
        await batcher.put(f"k{i}", {"messages": [i]}, {"choices": [{"message": {"content": str(i)}}]})
        seen_after[f"k{i}"] = f"k{i}" in _stored(cache.path)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(50)))
        await one(50)  # a later turn: its own commit

    asyncio.run(main())
    assert batcher.commits == 2
    assert all(seen_after.values()) and len(seen_after) == 51
    assert cache.get("k7") == {"choices": [{"message": {"content": "7"}}]}


def test_a_failed_commit_fails_every_waiting_put(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = PutBatcher(cache)
    cache.close()

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.put(f"k{i}", {}, {}) for i in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, sqlite3.Error) for r in results)


def test_a_cancelled_put_still_stores_its_response(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = PutBatcher(cache)

    async def main() -> None:
        task = asyncio.create_task(batcher.put("k", {}, {"x": 1}))
        await asyncio.sleep(0)  # the put is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cache.get("k") == {"x": 1}
