"""Batch mode's durable record (``batches.sqlite`` in the run dir): every request waiting for a batch, and
every batch with the provider's ids, written around each provider call so that a kill -9 at any moment
followed by a rerun never submits a row twice.

A batch goes ``intent`` (its requests assigned to it, one transaction) → ``uploaded`` (input file id
recorded) → ``submitted`` (batch id recorded) → ``collected`` (its lines are in the cache and its requests
settled, one transaction). A rerun finds an ``intent`` batch: no provider batch can exist for it (``create``
is only ever called after the file id is committed), so it is uploaded and created. It finds an ``uploaded``
batch: the create may have reached the provider, so the provider's batch list is searched for it (by the
batch's local id in the metadata, or its input file) before anything is created.

A request is ``queued`` (wanted, in no batch), ``assigned`` (in a batch not yet collected) or ``failed`` (gave
up in this invocation). Collected requests are removed: their responses are in the cache.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from datafactory.errors import DiskWriteError
from datafactory.io.sqlite import open_run_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, line BLOB NOT NULL, request BLOB NOT NULL, state TEXT NOT NULL,
    batch TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, est_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, batch);
CREATE TABLE IF NOT EXISTS batches (
    local_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, state TEXT NOT NULL, requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL, created REAL NOT NULL, file_id TEXT, batch_id TEXT, status TEXT,
    collected INTEGER NOT NULL DEFAULT 0, errored INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS members (local_id TEXT NOT NULL, key TEXT NOT NULL, pos INTEGER NOT NULL,
    PRIMARY KEY (local_id, key));
"""


@dataclass(frozen=True)
class BatchRow:
    local_id: str
    seq: int
    state: str
    requests: int
    bytes: int
    created: float
    file_id: str | None
    batch_id: str | None
    status: str | None
    collected: int
    errored: int
    missing: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.batch_id, "local_id": self.local_id, "state": self.state, "status": self.status,
                "requests": self.requests, "bytes": self.bytes, "collected": self.collected,
                "errored": self.errored, "missing": self.missing}


@dataclass(frozen=True)
class Settle:
    """What collecting a batch decided for one of its requests."""

    key: str
    outcome: str            # "collected" | "retry" | "failed" | "requeue" (no attempt counted) | "forget"
                            # (rebuilt by the next pass: the line itself must change, e.g. its response_format)
    error: str = ""


class BatchStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_run_db(self.path, _SCHEMA, "batch record")
        self._pending: list[tuple[str, bytes, bytes, float]] = []

    def close(self) -> None:
        self._db.close()

    def _tx(self, statements: Iterable[tuple[str, Any]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                if isinstance(args, list):
                    self._db.executemany(sql, args)
                else:
                    self._db.execute(sql, args)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise DiskWriteError(f"cannot write {self.path}: {exc}") from None

    # ---------------------------------------------------------------- requests
    def start_invocation(self) -> None:
        """A new invocation asks afresh: requests that are in no batch (queued, or failed last time) are
        dropped; the first pass queues again exactly what the rows still need."""
        self._tx([("DELETE FROM requests WHERE state IN ('queued', 'failed')", ())])

    def states(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, state FROM requests").fetchall())

    def queue(self, key: str, line: bytes, request: bytes, est_usd: float = 0.0) -> None:
        """A request wanted in a batch (written at ``flush``: losing the buffer to a kill costs nothing);
        ``est_usd``: its worst-case price, reserved against a cost limit while it is in a batch."""
        self._pending.append((key, line, request, est_usd))
        if len(self._pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self._tx([("INSERT OR IGNORE INTO requests (key, line, request, state, est_usd) "
                       "VALUES (?, ?, ?, 'queued', ?)", rows)])

    def queued(self) -> list[tuple[str, int]]:
        """``(key, line bytes)`` of every queued request, in the order they were asked."""
        return [(k, int(n)) for k, n in self._db.execute(
            "SELECT key, length(line) FROM requests WHERE state = 'queued' ORDER BY rowid")]

    def fail(self, keys: list[str], error: str) -> None:
        self._tx([("UPDATE requests SET state = 'failed', batch = NULL, last_error = ? WHERE key = ?",
                   [(error, k) for k in keys])])

    def estimates(self, state: str | None = None) -> dict[str, float]:
        """key → worst-case price of the requests (in ``state``)."""
        rows = (self._db.execute("SELECT key, est_usd FROM requests WHERE state = ?", (state,)) if state
                else self._db.execute("SELECT key, est_usd FROM requests"))
        return {k: float(v) for k, v in rows}

    def line_of(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT line FROM requests WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def request_of(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT request FROM requests WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def attempts(self, key: str) -> int:
        row = self._db.execute("SELECT attempts FROM requests WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- batches
    def add_intent(self, keys: list[str], nbytes: int) -> str:
        """Record a batch of ``keys`` before anything is sent; its local id (also its metadata on the provider)."""
        local = uuid.uuid4().hex[:16]
        seq = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches").fetchone()[0])
        self._tx([("INSERT INTO batches (local_id, seq, state, requests, bytes, created) "
                   "VALUES (?, ?, 'intent', ?, ?, ?)", (local, seq, len(keys), nbytes, time.time())),
                  ("INSERT INTO members VALUES (?, ?, ?)", [(local, k, i) for i, k in enumerate(keys)]),
                  ("UPDATE requests SET state = 'assigned', batch = ? WHERE key = ?", [(local, k) for k in keys])])
        return local

    def file_bytes(self, local_id: str) -> bytes:
        """The input file of a batch, line for line the same on every call."""
        return b"".join(bytes(line) + b"\n" for (line,) in self._db.execute(
            "SELECT r.line FROM members m JOIN requests r ON r.key = m.key WHERE m.local_id = ? ORDER BY m.pos",
            (local_id,)))

    def member_keys(self, local_id: str) -> list[str]:
        return [k for (k,) in self._db.execute("SELECT key FROM members WHERE local_id = ? ORDER BY pos",
                                               (local_id,))]

    def set_file(self, local_id: str, file_id: str) -> None:
        self._tx([("UPDATE batches SET state = 'uploaded', file_id = ? WHERE local_id = ?", (file_id, local_id))])

    def set_submitted(self, local_id: str, batch_id: str, status: str) -> None:
        self._tx([("UPDATE batches SET state = 'submitted', batch_id = ?, status = ? WHERE local_id = ?",
                   (batch_id, status, local_id))])

    def set_status(self, local_id: str, status: str) -> None:
        self._tx([("UPDATE batches SET status = ? WHERE local_id = ?", (status, local_id))])

    def drop_intent(self, local_id: str) -> None:
        """A batch that was never created (a cancel before it was): its requests are queued again."""
        self._tx([("UPDATE requests SET state = 'queued', batch = NULL WHERE batch = ?", (local_id,)),
                  ("UPDATE batches SET state = 'dropped' WHERE local_id = ?", (local_id,))])

    def settle(self, local_id: str, status: str, results: list[Settle], max_attempts: int) -> None:
        """One transaction: the batch is collected and each of its requests settled."""
        counts = {o: sum(1 for r in results if r.outcome == o)
                  for o in ("collected", "retry", "failed", "requeue", "forget")}
        self._tx([
            ("DELETE FROM requests WHERE key = ? AND batch = ?",
             [(r.key, local_id) for r in results if r.outcome in ("collected", "forget")]),
            ("UPDATE requests SET state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'queued' END, "
             "attempts = attempts + 1, batch = NULL, last_error = ? WHERE key = ? AND batch = ?",
             [(max_attempts, r.error, r.key, local_id) for r in results if r.outcome == "retry"]),
            ("UPDATE requests SET state = 'failed', attempts = attempts + 1, batch = NULL, last_error = ? "
             "WHERE key = ? AND batch = ?", [(r.error, r.key, local_id) for r in results if r.outcome == "failed"]),
            ("UPDATE requests SET state = 'queued', batch = NULL WHERE key = ? AND batch = ?",
             [(r.key, local_id) for r in results if r.outcome == "requeue"]),
            ("UPDATE batches SET state = 'collected', status = ?, collected = ?, errored = ?, missing = ? "
             "WHERE local_id = ?", (status, counts["collected"], counts["retry"] + counts["failed"] + counts["forget"],
                                    counts["requeue"], local_id)),
        ])

    def batches(self, *states: str) -> list[BatchRow]:
        sql = "SELECT local_id, seq, state, requests, bytes, created, file_id, batch_id, status, collected, " \
              "errored, missing FROM batches"
        args: tuple[str, ...] = ()
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args = states
        return [BatchRow(*row) for row in self._db.execute(sql + " ORDER BY seq", args)]

    def iter_failed(self) -> Iterator[tuple[str, int, str]]:
        yield from self._db.execute("SELECT key, attempts, COALESCE(last_error, '') FROM requests "
                                    "WHERE state = 'failed'")
