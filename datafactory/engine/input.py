"""The run's input, read once for everything the run needs from it.

Before the first request the run needs the input's first rows (does it open at all, are the mapped
columns there) and, with ``exact_dedup.against_input``, every input text (the dedup memory must hold
them all before the first gate decision); then the run itself reads every row — and batch mode reads
them again in each pass.

A local file is cheap to open again, so each of those passes opens it anew. A hub dataset is
streamed: its first rows come from the stream that the first full pass then goes on reading, and
that pass keeps a copy of every row in a spool file (JSON lines in a temporary directory) that later
passes replay, so the dataset is downloaded once per run. The spool counts as a copy only when the pass
that wrote it reached the end of the input; a pass cut short (a stop, a limit) leaves the next pass to
stream again. ``release`` (the end of the run) deletes the spool.

``input_for(pipe)`` gives the pipeline's one ``InputRows`` for this run: the check before the run
(``augment._prepare``) and the run (``_run``) share it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

import orjson

from datafactory.config.pipeline import InputConfig, Pipeline
from datafactory.io.readers import BadRow, detect_format, iter_rows

Row = tuple[int, "dict[str, Any] | BadRow"]


class InputRows:
    def __init__(self, inp: InputConfig) -> None:
        self.inp = inp
        self.local = (inp.format or detect_format(inp.path)) is not None or Path(inp.path).exists()
        self._stream: Iterator[Row] | None = None   # the open hub stream (its head already read)
        self._head: list[Row] = []
        self._dir: str | None = None
        self._spool: Path | None = None             # a complete copy of the hub rows
        self.streams = 0                            # how many times the input was opened (tests, stats)

    def _open(self) -> Iterator[Row]:
        self.streams += 1
        inp = self.inp
        return iter_rows(inp.path, fmt=inp.format, split=inp.split, subset=inp.subset)

    def head(self, n: int) -> list[Row]:
        """The first ``n`` rows (fewer when the input is shorter)."""
        if self.local:
            it = self._open()
            try:
                return [row for _, row in zip(range(n), it, strict=False)]
            finally:
                _close(it)
        if self._stream is None and self._spool is None:
            self._stream = self._open()
        if self._spool is not None:
            return [row for _, row in zip(range(n), self._replay(), strict=False)]
        assert self._stream is not None
        while len(self._head) < n:
            row = next(self._stream, None)
            if row is None:
                break
            self._head.append(row)
        return self._head[:n]

    def rows(self) -> Iterator[Row]:
        """Every row, in order (a generator: close it when stopping early)."""
        if self.local:
            it = self._open()
            try:
                yield from it
            finally:
                _close(it)
            return
        if self._spool is not None:
            yield from self._replay()
            return
        stream, head = self._stream, self._head
        self._stream, self._head = None, []
        source = chain(head, stream) if stream is not None else self._open()
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="datafactory-input-")
        part = Path(self._dir) / "rows.jsonl.part"
        complete = False
        try:
            with part.open("wb") as fh:
                for pos, row in source:
                    if isinstance(row, dict):  # a hub row is always a dict
                        fh.write(orjson.dumps([pos, row]))
                        fh.write(b"\n")
                    yield pos, row
                complete = True
        finally:
            _close(source)
            if stream is not None:
                _close(stream)
            if complete:
                final = part.with_suffix("")
                os.replace(part, final)
                self._spool = final
            else:
                with contextlib.suppress(OSError):
                    part.unlink()

    def _replay(self) -> Iterator[Row]:
        assert self._spool is not None
        with self._spool.open("rb") as fh:
            for line in fh:
                pos, row = orjson.loads(line)
                yield pos, row

    def close(self) -> None:
        if self._stream is not None:
            _close(self._stream)
            self._stream = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._spool = None, None


def _close(it: Any) -> None:
    with contextlib.suppress(Exception):
        it.close()


_OPEN: dict[int, tuple[Pipeline, InputRows]] = {}


def input_for(pipe: Pipeline) -> InputRows:
    """This run's ``InputRows`` of ``pipe`` (made on first use; ``release`` ends it)."""
    held = _OPEN.get(id(pipe))
    if held is not None and held[0] is pipe:
        return held[1]
    rows = InputRows(pipe.input)
    _OPEN[id(pipe)] = (pipe, rows)
    return rows


def release(pipe: Pipeline) -> None:
    """The run is over: close the input and delete its spool."""
    held = _OPEN.pop(id(pipe), None)
    if held is not None:
        held[1].close()
