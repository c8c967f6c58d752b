"""The run directory: layout, the lock that keeps two runs apart, and the final exports."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml
from filelock import FileLock, Timeout

from datafactory import constants as C
from datafactory.errors import DiskWriteError, RunLocked
from datafactory.io.atomic import atomic_open, atomic_write_bytes, atomic_write_text


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
        """Take the run-dir lock (an OS lock: released even if the holder is killed -9)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise DiskWriteError(f"cannot create run directory {self.path}: {exc.strerror}") from None
        lock = FileLock(str(self.path / C.LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLocked(f"another datafactory run is using {self.path} (lock {self.path / C.LOCK_FILE}); "
                            "wait for it to finish or choose another --output") from None
        self._lock = lock

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
