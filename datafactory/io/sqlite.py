"""The run dir's SQLite files (cache + commit log, batch record) opened one way: autocommit (transactions
are explicit), WAL with synchronous=NORMAL — a committed transaction survives kill -9 of the process; a
power loss may lose the last ones, which a rerun pays for again at most — and usable from the worker
threads that write reports or parse big replies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from datafactory.errors import DiskWriteError


def open_run_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (or create) ``path`` with ``schema``; ``what`` names the file in the error a user sees
    (a read-only run dir, a directory in its place, a file that is not a database)."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.Error as exc:
        raise DiskWriteError(f"cannot open the run's {what} {path}: {exc}") from None
    return db
