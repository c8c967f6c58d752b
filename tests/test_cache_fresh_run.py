"""The response cache's fresh-run shortcut (a miss without a SELECT) never hides a stored response."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from datafactory.engine.cache import Cache
from datafactory.engine.ray.responses import merge_into

REQ = {"model": "m", "messages": [], "params": {}}


def test_fresh_cache_finds_what_it_stored(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite")
    assert cache.get("a") is None
    cache.put("a", REQ, {"text": "A"})
    cache.put_many([("b", REQ, {"text": "B"}), ("c", REQ, {"text": "C"})])
    assert cache.get("a") == {"text": "A"}
    assert cache.get("b") == {"text": "B"}
    assert cache.get("c") == {"text": "C"}
    assert cache.get("d") is None
    cache.close()


def test_reopened_cache_finds_the_previous_runs_responses(tmp_path: Path) -> None:
    first = Cache(tmp_path / "cache.sqlite")
    first.put("a", REQ, {"text": "A"})
    first.close()  # a resume: a new object over a file that holds responses
    again = Cache(tmp_path / "cache.sqlite")
    assert again.get("a") == {"text": "A"}
    assert again.get("z") is None
    again.close()


def test_merged_responses_are_found(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite")  # empty at open
    worker = tmp_path / "ray"
    worker.mkdir()
    wc = Cache(worker / "responses-0.sqlite")
    wc.put("w", REQ, {"text": "W"})
    wc.close()
    assert merge_into(cache, tmp_path) == 1
    assert cache.get("w") == {"text": "W"}
    cache.close()


def test_a_row_written_behind_the_cache_is_found_once_it_knows(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite")
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    db.execute("INSERT INTO responses VALUES ('x', x'7b7d', '{\"text\": \"X\"}', 0)")
    db.commit()
    db.close()
    cache.stored_elsewhere()
    assert cache.get("x") == {"text": "X"}
    cache.close()
