"""The run's SQLite database: request cache + commit log of finished rows.

* ``responses``: every response is stored (and committed) the moment it arrives, keyed by a hash of
  provider, model, messages, params, template and schema — so a rerun or a resume after ``kill -9``
  never pays for the same request twice.
* ``configs``: the components of every pipeline fingerprint used in this run dir, when it was last
  used and last exported — what a rerun with a changed configuration is compared against, and which
  configuration the files in ``data/`` come from.
* ``outcomes``: one row per finished sample (written or rejected), keyed by the pipeline fingerprint
  and the input row's key. A resume skips rows that have an outcome; the data files are exported
  from here, in input order, so they are always complete and never hold a row twice.

The order that makes kill -9 safe: **a response is committed before anything that depends on it is
committed as an outcome.** ``put`` commits each response at once; ``put_many`` commits the responses
that arrived in one event-loop turn together, and their requests wait for that commit before anything
uses them (``engine/put_batch.py``) — never a response held back while later work goes on; outcomes may be
grouped (``commit_rows``, driven by ``engine/commit.py``): a row whose outcome is lost with its batch
is redone from the cache by the resume, without a request, and every row keeps exactly one outcome
(a row's samples are replaced whole, inside the batch's one transaction).

WAL mode with ``synchronous=NORMAL``: a commit survives a process crash (what kill -9 does) without
an fsync per request; only a power loss could drop the last few responses (they would be re-asked).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from datafactory.engine.reasons import asked_again_on_rerun
from datafactory.errors import DiskWriteError
from datafactory.io.sqlite import open_run_db

Sample = tuple[bool, "str | None", dict[str, Any]]  # (ok, reject reason, output row or reject record)
RowOutcome = tuple[str, int, list[Sample]]  # (row key, input position, samples)

SQLITE_FULL = 13
SQLITE_IOERR = 10

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, request BLOB NOT NULL, response BLOB NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    fingerprint TEXT NOT NULL, row_key TEXT NOT NULL, sample INTEGER NOT NULL, seq INTEGER NOT NULL,
    ok INTEGER NOT NULL, reason TEXT, payload BLOB NOT NULL,
    PRIMARY KEY (fingerprint, row_key, sample)
);
CREATE INDEX IF NOT EXISTS outcomes_order ON outcomes (fingerprint, ok, seq, sample);
CREATE TABLE IF NOT EXISTS gate_reads (
    fingerprint TEXT NOT NULL, row_key TEXT NOT NULL, sample INTEGER NOT NULL, fields BLOB NOT NULL,
    PRIMARY KEY (fingerprint, row_key, sample)
);
CREATE TABLE IF NOT EXISTS configs (
    fingerprint TEXT PRIMARY KEY, parts BLOB NOT NULL, last_used REAL NOT NULL, exported REAL
);
"""


def _disk_error(exc: sqlite3.Error, path: Path) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (SQLITE_FULL, SQLITE_IOERR):
        return DiskWriteError(f"cannot write {path}: disk full or I/O error ({exc})")
    return exc


def _asked_again(reason: str | None) -> bool:
    try:
        return asked_again_on_rerun(reason or "")
    except KeyError:
        # a code no table knows (a run dir from another version): keep it, never pay for it again
        return False


class Cache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_run_db(self.path, _SCHEMA, "cache")
        # the reason table lives in Python (engine/reasons.py); SQLite asks it for each reject it finds,
        # so a run dir written by an older version follows today's classes
        self._db.create_function("asked_again", 1, _asked_again, deterministic=True)

    def close(self) -> None:
        self._db.close()

    # ---------------------------------------------------------------- responses
    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                             (key, orjson.dumps(request), orjson.dumps(response), time.time()))
        except sqlite3.Error as exc:
            raise _disk_error(exc, self.path) from None

    def put_many(self, items: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """``put`` each (key, request, response), all committed in one transaction (``engine/put_batch.py``)."""
        try:
            self._db.execute("BEGIN")
            try:
                now = time.time()
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                                     [(key, orjson.dumps(req), orjson.dumps(resp), now) for key, req, resp in items])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _disk_error(exc, self.path) from None

    def requests(self) -> Iterator[dict[str, Any]]:
        """Every stored request (for audits and tests: what has been paid for)."""
        for (blob,) in self._db.execute("SELECT request FROM responses"):
            yield orjson.loads(blob)

    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        """Prompt and completion tokens the server reported over every stored response, per model
        (what the run dir has cost so far; a cache hit costs nothing)."""
        out: dict[str, tuple[int, int]] = {}
        for req, resp in self._db.execute("SELECT request, response FROM responses"):
            model = str(orjson.loads(req).get("model") or "")
            data = orjson.loads(resp)
            p, c = out.get(model, (0, 0))
            out[model] = (p + int(data.get("prompt_tokens") or 0), c + int(data.get("completion_tokens") or 0))
        return out

    # ---------------------------------------------------------------- outcomes
    def is_done(self, fingerprint: str, row_key: str) -> bool:
        """A row is done when it has an outcome — unless that outcome is a reject a rerun asks again
        (``reasons.asked_again_on_rerun``: a transient failure after all retries, or a setup problem such
        as a wrong model or URL that the user may have fixed since). Content and input rejects stay."""
        return self._db.execute(
            "SELECT 1 FROM outcomes WHERE fingerprint = ? AND row_key = ? "
            "AND NOT (ok = 0 AND asked_again(reason)) LIMIT 1",
            (fingerprint, row_key)).fetchone() is not None

    def done_keys(self, fingerprint: str, row_keys: list[str]) -> set[str]:
        """The keys among ``row_keys`` that are done (``is_done``), in one query."""
        if not row_keys:
            return set()
        return {key for (key,) in self._db.execute(
            "SELECT DISTINCT row_key FROM outcomes WHERE fingerprint = ? AND row_key IN "
            "(SELECT value FROM json_each(?)) AND NOT (ok = 0 AND asked_again(reason))",
            (fingerprint, orjson.dumps(row_keys).decode()))}

    def has_outcomes(self, fingerprint: str) -> bool:
        """Whether any row of this configuration has an outcome (a resume; a fresh run has none)."""
        return self._has_outcomes(fingerprint)

    def commit_row(self, fingerprint: str, row_key: str, seq: int, samples: list[Sample]) -> None:
        """Record every sample of one input row in one transaction: all or nothing."""
        self.commit_rows(fingerprint, [(row_key, seq, samples)])

    def commit_rows(self, fingerprint: str, rows: list[RowOutcome],
                    reads: list[tuple[str, int, dict[str, Any]]] | None = None) -> None:
        """Record every sample of these input rows in one transaction: all or nothing. Only rows whose
        responses are already committed here belong in it (the rule in the module docstring).
        ``reads``: ``(row key, sample, {property: value})`` — what gates with memory read from a written
        sample's model object that its row does not hold (resume seeding; ``gate_reads``)."""
        values = [(fingerprint, key, i, seq, int(ok), reason, orjson.dumps(payload))
                  for key, seq, samples in rows for i, (ok, reason, payload) in enumerate(samples)]
        try:
            self._db.execute("BEGIN")
            # a retried row replaces its earlier failure completely (it may now have more or fewer samples)
            keys = [(fingerprint, key) for key, _, _ in rows]
            self._db.executemany("DELETE FROM outcomes WHERE fingerprint = ? AND row_key = ?", keys)
            self._db.executemany("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)", values)
            if reads:
                self._db.executemany("DELETE FROM gate_reads WHERE fingerprint = ? AND row_key = ?", keys)
                self._db.executemany("INSERT OR REPLACE INTO gate_reads VALUES (?, ?, ?, ?)",
                                     [(fingerprint, k, i, orjson.dumps(f)) for k, i, f in reads])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise _disk_error(exc, self.path) from None

    def iter_outcomes(self, fingerprint: str, ok: bool) -> Iterator[bytes]:
        for _, blob in self.iter_outcomes_with_keys(fingerprint, ok):
            yield blob

    def iter_written_with_reads(self, fingerprint: str) -> Iterator[tuple[bytes, bytes | None]]:
        """Written payloads in input order, each with what gates read beside it (``gate_reads``; None
        when nothing was stored — an older run dir, or no gate needed it)."""
        cur = self._db.execute(
            "SELECT o.payload, g.fields FROM outcomes o LEFT JOIN gate_reads g ON g.fingerprint = o.fingerprint "
            "AND g.row_key = o.row_key AND g.sample = o.sample WHERE o.fingerprint = ? AND o.ok = 1 "
            "ORDER BY o.seq, o.sample", (fingerprint,))
        yield from cur

    def iter_outcomes_with_keys(self, fingerprint: str, ok: bool) -> Iterator[tuple[str, bytes]]:
        """``(row_key#sample, payload)`` in input order."""
        cur = self._db.execute("SELECT row_key, sample, payload FROM outcomes WHERE fingerprint = ? AND ok = ? "
                               "ORDER BY seq, sample", (fingerprint, int(ok)))
        for key, sample, blob in cur:
            yield f"{key}#{sample}", blob

    def reject_examples(self, fingerprint: str, top: int = 3) -> list[tuple[str, int, str]]:
        """The ``top`` most frequent reject reasons of a fingerprint: ``(reason, count, example last_error)``."""
        rows = self._db.execute(
            "SELECT reason, COUNT(*) AS n, MIN(rowid) FROM outcomes WHERE fingerprint = ? AND ok = 0 "
            "GROUP BY reason ORDER BY n DESC, reason LIMIT ?", (fingerprint, top)).fetchall()
        out = []
        for reason, n, rowid in rows:
            (blob,) = self._db.execute("SELECT payload FROM outcomes WHERE rowid = ?", (rowid,)).fetchone()
            payload = orjson.loads(blob)
            example = str(payload.get("last_error") or "") if isinstance(payload, dict) else ""
            out.append((str(reason), int(n), example))
        return out

    def totals(self, fingerprint: str) -> tuple[int, dict[str, int]]:
        written = self._db.execute("SELECT COUNT(*) FROM outcomes WHERE fingerprint = ? AND ok = 1",
                                   (fingerprint,)).fetchone()[0]
        rejected = dict(self._db.execute(
            "SELECT reason, COUNT(*) FROM outcomes WHERE fingerprint = ? AND ok = 0 GROUP BY reason ORDER BY reason",
            (fingerprint,)).fetchall())
        return int(written), {str(k): int(v) for k, v in rejected.items()}

    def pending(self, fingerprint: str) -> int:
        """Rows of this configuration whose reject a rerun asks again (setup or transient reasons)."""
        return int(self._db.execute(
            "SELECT COUNT(DISTINCT row_key) FROM outcomes WHERE fingerprint = ? AND ok = 0 AND asked_again(reason)",
            (fingerprint,)).fetchone()[0])

    # ---------------------------------------------------------------- configurations
    def record_config(self, fingerprint: str, parts: dict[str, Any]) -> None:
        try:
            self._db.execute("INSERT INTO configs VALUES (?, ?, ?, NULL) ON CONFLICT (fingerprint) "
                             "DO UPDATE SET parts = excluded.parts, last_used = excluded.last_used",
                             (fingerprint, orjson.dumps(parts, option=orjson.OPT_SORT_KEYS), time.time()))
        except sqlite3.Error as exc:
            raise _disk_error(exc, self.path) from None

    def previous_config(self, fingerprint: str) -> tuple[str, dict[str, Any] | None] | None:
        """The configuration a run with ``fingerprint`` changes from: the most recently used other one
        that finished rows — or None when the last run used this one and got somewhere (a resume).
        Run dirs from before the ``configs`` table give the other fingerprint with most rows, parts None."""
        last = self._db.execute("SELECT fingerprint FROM configs ORDER BY last_used DESC LIMIT 1").fetchone()
        if last is not None and last[0] == fingerprint and self._has_outcomes(fingerprint):
            return None
        row = self._db.execute(
            "SELECT c.fingerprint, c.parts FROM configs c WHERE c.fingerprint != ? AND EXISTS "
            "(SELECT 1 FROM outcomes o WHERE o.fingerprint = c.fingerprint) ORDER BY c.last_used DESC LIMIT 1",
            (fingerprint,)).fetchone()
        if row is not None:
            return str(row[0]), orjson.loads(row[1])
        legacy = self._db.execute(
            "SELECT fingerprint FROM outcomes WHERE fingerprint != ? AND fingerprint NOT IN "
            "(SELECT fingerprint FROM configs) GROUP BY fingerprint ORDER BY COUNT(*) DESC LIMIT 1",
            (fingerprint,)).fetchone()
        return (str(legacy[0]), None) if legacy is not None else None

    def rows_to_redo(self, old: str, new: str) -> int:
        """Rows finished under configuration ``old`` that configuration ``new`` has not finished."""
        return int(self._db.execute(
            "SELECT COUNT(DISTINCT o.row_key) FROM outcomes o WHERE o.fingerprint = ? AND NOT EXISTS "
            "(SELECT 1 FROM outcomes n WHERE n.fingerprint = ? AND n.row_key = o.row_key "
            "AND NOT (n.ok = 0 AND asked_again(n.reason)))", (old, new)).fetchone()[0])

    def mark_exported(self, fingerprint: str) -> None:
        try:
            self._db.execute("UPDATE configs SET exported = ? WHERE fingerprint = ?", (time.time(), fingerprint))
        except sqlite3.Error as exc:
            raise _disk_error(exc, self.path) from None

    def last_exported(self) -> str | None:
        """The configuration the files in ``data/`` were last exported from (None: unknown)."""
        row = self._db.execute("SELECT fingerprint FROM configs WHERE exported IS NOT NULL "
                               "ORDER BY exported DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None

    def _has_outcomes(self, fingerprint: str) -> bool:
        return self._db.execute("SELECT 1 FROM outcomes WHERE fingerprint = ? LIMIT 1",
                                (fingerprint,)).fetchone() is not None
