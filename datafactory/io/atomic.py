"""Atomic file writes: temp file in the same directory, fsync, rename.

A crash (or kill -9) at any moment leaves either the old file or the new one, never a torn one —
plus, at worst, the temp file it was writing: ``.<name>.<8 random chars>.tmp`` (what ``mkstemp``
makes). ``remove_stale_temps`` deletes exactly those names; the run dir calls it once it holds the lock,
when no writer of ours can be using them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from datafactory.errors import DiskWriteError

# refusals the user fixes: disk full or quota, a file-size limit (EFBIG: ulimit -f), a read-only file
# system, permissions, a directory (or a file) where the file (or its folder) should be, a failing disk
_USER_FIXES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EIO})
TEMP_SUFFIX = ".tmp"
# ".<target name>." + mkstemp's 8 characters (lower-case letters, digits, "_") + ".tmp"
_OUR_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit fsync it and rename it over ``path``."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise DiskWriteError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        # mkstemp creates 0600; datasets are meant to be shared like any file the user writes
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.errno in _USER_FIXES:
            raise DiskWriteError(f"cannot write {target}: {exc.strerror}") from None
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    # the rename is only durable once the directory entry is on disk
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def is_our_temp(name: str) -> bool:
    """True for the name of a temp file ``atomic_open`` makes."""
    return _OUR_TEMP.fullmatch(name) is not None


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Delete the temp files a crashed ``atomic_open`` left in ``directory`` (not its subfolders);
    returns what was removed. Call it only while no writer can be using the directory."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(directory):
            if is_our_temp(entry.name) and entry.is_file(follow_symlinks=False):
                _remove_quietly(entry.path)
                removed.append(Path(entry.path))
    return removed
