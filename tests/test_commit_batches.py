"""Finished rows are committed in groups (engine/commit.py): one transaction per batch, written when
the batch is full, when its oldest row has waited, and at the end — and a kill -9 between batches
still leaves every row accounted once with no stored response paid again."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from test_crash_signals import kill_three_times_then_resume

from datafactory.engine.cache import Cache
from datafactory.engine.commit import CommitBatcher


def _outcome_rows(path) -> int:
    db = sqlite3.connect(path)  # a second connection: sees only what is committed
    try:
        return int(db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])
    finally:
        db.close()


def _sample(i: int) -> list:
    return [(True, None, {"instruction": f"q{i}", "output": f"a{i}"})]


def test_rows_wait_in_the_batch_until_it_is_full_then_land_in_one_transaction(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = CommitBatcher(cache, "fp", max_rows=3, max_wait_s=0)
    batcher.add("k1", 1, _sample(1))
    batcher.add("k2", 2, _sample(2))
    assert _outcome_rows(cache.path) == 0 and len(batcher) == 2
    batcher.add("k3", 3, _sample(3))
    assert _outcome_rows(cache.path) == 3 and batcher.commits == 1
    batcher.add("k4", 4, _sample(4))
    batcher.close()  # the end of the run writes what is left
    assert _outcome_rows(cache.path) == 4 and batcher.commits == 2
    assert [k for k, _ in cache.iter_outcomes_with_keys("fp", ok=True)] == ["k1#0", "k2#0", "k3#0", "k4#0"]


def test_a_batch_that_does_not_fill_is_written_once_its_oldest_row_has_waited(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = CommitBatcher(cache, "fp", max_rows=1000, max_wait_s=0.05)

    async def run() -> tuple[int, int]:
        batcher.add("k1", 1, _sample(1))
        before = _outcome_rows(cache.path)
        await asyncio.sleep(0.2)
        return before, _outcome_rows(cache.path)

    assert asyncio.run(run()) == (0, 1)


def test_a_retried_row_in_a_batch_replaces_its_earlier_reject_whole(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    cache.commit_row("fp", "k1", 1, [(False, "timeout", {"id": "k1"}), (False, "timeout", {"id": "k1"})])
    cache.commit_rows("fp", [("k1", 1, _sample(1)), ("k2", 2, _sample(2))])
    assert cache.totals("fp") == (2, {})


def test_a_write_that_fails_in_the_timer_stops_the_next_add(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    batcher = CommitBatcher(cache, "fp", max_rows=1000, max_wait_s=0.01)

    async def run() -> None:
        batcher.add("k1", 1, _sample(1))
        cache.close()  # the timer's write now fails
        await asyncio.sleep(0.1)
        batcher.add("k2", 2, _sample(2))

    with pytest.raises(sqlite3.Error):
        asyncio.run(run())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_while_rows_wait_in_a_batch_then_resume_accounts_for_every_row_once(make_project, server):
    server.latency_s = 0.01  # many rows finish per batch window, so a kill lands with a batch unwritten
    proj = make_project(rows=4000, limits={"concurrency": 64})  # enough left that every kill lands mid-run
    kill_three_times_then_resume(proj, server, after_requests=100, max_sleep_s=0.4, final_timeout_s=150)
