"""The asyncio scheduler: one producer streaming input rows into a bounded queue, ``concurrency``
workers taking rows from it, and a ticker feeding the progress display.

In-flight requests equal the concurrency (each worker holds one row at a time) and memory stays flat
whatever the input size: at most ``2 × concurrency`` rows wait in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from itertools import islice
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.process import RowProcessor, RowTask
from datafactory.engine.progress import Progress
from datafactory.engine.stats import Stats
from datafactory.io.readers import BadRow, iter_rows
from datafactory.record import content_hash

STOP_GRACE_S = 3.0      # after Ctrl-C, let requests already on the wire land (they are paid for)
BATCH = 256


def row_key(row: dict[str, Any] | BadRow) -> str:
    if isinstance(row, BadRow):
        return content_hash({"bad_row": row.raw, "line": row.line})
    return content_hash(row)


class Scheduler:
    def __init__(self, pipe: Pipeline, processor: RowProcessor, cache: Cache, stats: Stats,
                 progress: Progress, fingerprint: str, *, handle_signals: bool = True) -> None:
        self.pipe, self.processor, self.cache, self.stats = pipe, processor, cache, stats
        self.progress, self.fingerprint = progress, fingerprint
        self.stop_signal: int | None = None
        self._stopping = asyncio.Event()
        self._force = False
        self._handle_signals = handle_signals

    def request_stop(self, signum: int) -> None:
        if self.stop_signal is not None:
            # second Ctrl-C: stop waiting for in-flight requests
            self._force = True
        self.stop_signal = signum
        self._stopping.set()

    async def run(self) -> None:
        conc = self.pipe.limits.concurrency
        queue: asyncio.Queue[RowTask | None] = asyncio.Queue(maxsize=2 * conc)
        producer = asyncio.create_task(self._produce(queue, conc))
        workers = [asyncio.create_task(self._work(queue)) for _ in range(conc)]
        ticker = asyncio.create_task(self._tick())
        restore = self._install_signals()
        try:
            await self._supervise(producer, workers, queue)
        finally:
            ticker.cancel()
            restore()
            for task in [producer, *workers, ticker]:
                task.cancel()
            await asyncio.gather(producer, *workers, ticker, return_exceptions=True)

    async def _supervise(self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]],
                         queue: asyncio.Queue[RowTask | None]) -> None:
        stopping = asyncio.create_task(self._stopping.wait())
        pending: set[asyncio.Task[Any]] = {producer, *workers, stopping}
        try:
            while any(not w.done() for w in workers):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopping and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]  # 401, disk full: stop everything
                if stopping in done:
                    await self._drain(producer, workers, queue)
                    return
        finally:
            stopping.cancel()

    async def _drain(self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]],
                     queue: asyncio.Queue[RowTask | None]) -> None:
        self.stats.interrupted = True
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        while not queue.empty():  # rows not started: the next run does them
            queue.get_nowait()
        for _ in workers:
            queue.put_nowait(None)
        deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
        while any(not w.done() for w in workers) and not self._force:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)

    async def _produce(self, queue: asyncio.Queue[RowTask | None], conc: int) -> None:
        await self._feed(queue)
        # not in a ``finally``: after a cancel (401, disk full) no worker is left to take the end
        # markers, and put() on a full queue would block the shutdown forever
        if not self._stopping.is_set():
            for _ in range(conc):
                await queue.put(None)

    async def _feed(self, queue: asyncio.Queue[RowTask | None]) -> None:
        inp = self.pipe.input
        rows = iter_rows(inp.path, fmt=inp.format, split=inp.split, subset=inp.subset)
        seen: dict[int, int] = {}
        seq = 0
        try:
            while True:
                batch = await asyncio.to_thread(_take, rows, BATCH)
                if not batch:
                    break
                for pos, row in batch:
                    if inp.limit is not None and seq >= inp.limit:
                        return
                    seq += 1
                    key = row_key(row)
                    h = int(key, 16)
                    dup_of = None
                    if h in seen:  # same content twice in the input: one request, the copy is rejected
                        seen[h] += 1
                        dup_of, key = key, f"{key}~{seen[h]}"
                    else:
                        seen[h] = 0
                    if self.cache.is_done(self.fingerprint, key):
                        self.stats.rows_skipped_done += 1
                        continue
                    await queue.put(RowTask(seq, key, row, dup_of, f"{inp.path}:{pos}"))
        finally:
            with contextlib.suppress(Exception):
                rows.close()  # type: ignore[attr-defined]

    async def _work(self, queue: asyncio.Queue[RowTask | None]) -> None:
        while True:
            task = await queue.get()
            if task is None:
                return
            samples = await self.processor.process(task)
            self.cache.commit_row(self.fingerprint, task.key, task.seq, samples)
            s = self.stats
            s.rows_done += 1
            for ok, reason, _ in samples:
                if ok:
                    s.written += 1
                else:
                    s.rejected[reason or "unknown"] += 1

    async def _tick(self) -> None:
        while True:
            self.progress.update(self.stats)
            await asyncio.sleep(0.25)

    def _install_signals(self) -> Any:
        # only the owner of the process's main loop may take over SIGINT/SIGTERM
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        return restore


def _take(it: Iterator[Any], n: int) -> list[Any]:
    return list(islice(it, n))
