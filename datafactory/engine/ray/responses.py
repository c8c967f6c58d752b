"""Where a Ray worker stores responses: its own SQLite file in the run dir, ``RUN_DIR/ray/responses-<i>.sqlite``.

A response must be durable the moment it arrives (the kill -9 rule of ``engine/cache.py``), and the
workers are other processes, maybe on other machines sharing the run dir's filesystem. So each worker
claims a slot ``i`` (an exclusive file lock, ``responses-<i>.lock``, held while the worker lives; the
lowest free number, so a rerun reuses the same few files) and writes every response to its own file
with the asyncio engine's ``Cache.put`` (one autocommit per response, WAL).

A look-up (``get``) tries the worker's own file, then every other response file of the run dir that
existed when the worker started: the other slots' files and the driver's ``cache.sqlite`` (responses of
an asyncio-engine run, and those merged at the end of earlier Ray runs) — so a rerun sends no request
whose response any worker stored, whichever worker gets the row this time. At the end of a run the
driver merges the workers' responses into ``cache.sqlite`` (:func:`merge_into`), so the run dir reads
the same to the asyncio engine, the budget and the report.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from datafactory.engine.cache import Cache
from datafactory.io.rundir import RunDir

SUBDIR = "ray"
MAX_SLOTS = 4096


def claim(run_dir: Path) -> tuple[int, FileLock]:
    """The lowest free worker slot of the run dir, locked for this process's lifetime."""
    folder = run_dir / SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(MAX_SLOTS):
        lock = FileLock(str(folder / f"responses-{i}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        return i, lock
    raise RuntimeError(f"more than {MAX_SLOTS} Ray workers hold {folder}")


def response_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / SUBDIR).glob("responses-*.sqlite"))


class WorkerCache(Cache):
    """A worker's response store: writes go to ``path``; look-ups also read ``others`` (read-only)."""

    def __init__(self, path: Path, others: list[Path]) -> None:
        super().__init__(path)
        self._others: list[sqlite3.Connection] = []
        for other in others:
            if other == path or not other.exists():
                continue
            with contextlib.suppress(sqlite3.Error):
                self._others.append(sqlite3.connect(f"file:{other}?mode=ro", uri=True, check_same_thread=False))

    def get(self, key: str) -> dict[str, Any] | None:
        hit = super().get(key)
        if hit is not None:
            return hit
        for db in self._others:
            try:
                row = db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error:  # a file another version wrote, or no responses table yet: a miss
                continue
            if row is not None:
                return orjson.loads(row[0])
        return None

    def close(self) -> None:
        for db in self._others:
            db.close()
        super().close()


def open_worker_cache(run_dir: Path) -> tuple[int, FileLock, WorkerCache]:
    slot, lock = claim(run_dir)
    own = run_dir / SUBDIR / f"responses-{slot}.sqlite"
    others = [p for p in response_files(run_dir) if p != own] + [RunDir(run_dir).cache]
    return slot, lock, WorkerCache(own, others)


def merge_into(cache: Cache, run_dir: Path) -> int:
    """Copy every worker's responses into the run's ``cache.sqlite`` (those it lacks); returns how many."""
    added = 0
    for path in response_files(run_dir):
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error:
            continue
        try:
            rows = src.execute("SELECT key, request, response, created FROM responses").fetchall()
        except sqlite3.Error:
            rows = []
        finally:
            src.close()
        added += _put_many(cache, rows)
    return added


def _put_many(cache: Cache, rows: list[tuple[str, bytes, bytes, float]]) -> int:
    db = cache._db  # noqa: SLF001 — one transaction for the merge; Cache has no bulk insert
    before = db.total_changes
    db.execute("BEGIN")
    try:
        db.executemany("INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return db.total_changes - before
