"""The run directory: layout, the lock that keeps two runs apart, and the final exports."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml
from filelock import FileLock, Timeout

from datafactory import constants as C
from datafactory.errors import DiskWriteError, RunLocked
from datafactory.io.atomic import atomic_open, atomic_write_bytes, atomic_write_text, remove_stale_temps


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: FileLock | None = None

    @property
    def cache(self) -> Path:
        return self.path / C.CACHE_DB

    @property
    def data_dir(self) -> Path:
        return self.path / C.DATA_DIR

    @property
    def rejects(self) -> Path:
        return self.path / C.REJECTS_FILE

    @property
    def stats(self) -> Path:
        return self.path / C.STATS_FILE

    def acquire(self) -> None:
        """Take the run-dir lock (an OS lock: released even if the holder is killed -9), then clear the
        temp files a crashed writer left (none of ours can be writing while we hold the lock)."""
        for folder in (self.path, self.data_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _not_writable(folder, exc) from None
            if not os.access(folder, os.W_OK | os.X_OK):
                raise DiskWriteError(f"run directory {folder} is not writable (read-only file system or "
                                     "permissions); choose another --output or make it writable")
        lock = FileLock(str(self.path / C.LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(f"another datafactory run is using {self.path} (lock {self.path / C.LOCK_FILE}); "
                            "wait for it to finish or choose another --output") from None
        except OSError as exc:
            raise _not_writable(self.path / C.LOCK_FILE, exc) from None
        self._lock = lock
        for folder in (self.path, self.data_dir):
            remove_stale_temps(folder)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def write_resolved_config(self, resolved: dict[str, Any]) -> None:
        atomic_write_text(self.path / C.RESOLVED_CONFIG,
                          yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))

    def write_stats(self, stats: dict[str, Any]) -> None:
        atomic_write_bytes(self.stats, orjson.dumps(stats, option=orjson.OPT_INDENT_2) + b"\n")

    def export_jsonl(self, path: Path, rows: Iterable[bytes]) -> int:
        """Write pre-serialised JSON rows, one per line, atomically; returns the count."""
        n = 0
        with atomic_open(path, "wb") as fh:
            for blob in rows:
                fh.write(blob)
                fh.write(b"\n")
                n += 1
        return n


def _not_writable(path: Path, exc: OSError) -> DiskWriteError:
    return DiskWriteError(f"cannot use {path} for the run directory: {exc.strerror or exc}; "
                          "choose another --output or fix the path")
