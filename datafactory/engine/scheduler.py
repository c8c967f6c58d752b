"""The asyncio scheduler: one producer streaming input rows into a bounded queue, ``concurrency``
workers taking rows from it, and a ticker feeding the progress display.

In-flight requests equal the concurrency (each worker holds one row at a time) and memory stays flat
whatever the input size: at most ``2 × concurrency`` rows wait in the queue. A row whose response is
parsed and shaped and that only waits for its gates' micro-batch (up to ``gate_batch.MAX_WAIT_S``) is
handed to a small task, and its worker takes the next row at once: waiting for a batch to fill would
otherwise keep a share of the workers from sending (≈ 10 ms of a 200 ms round trip, 5 % fewer requests
in flight). Rows with async gates (which send requests themselves) keep their worker until the end.

Two kinds of stop end a run early: a signal (``request_stop``, wired by ``augment``) and a halt from
the run itself (``halt``: the breaker tripped, the budget is reached). Both stop feeding rows, let
requests already on the wire land, and leave rows not started without an outcome, so a rerun does
them. After a halt, ``run`` raises the halting error (a ``RunStopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from itertools import islice
from typing import Any

from datafactory.config.pipeline import Pipeline
from datafactory.engine.cache import Cache
from datafactory.engine.commit import CommitBatcher
from datafactory.engine.input import input_for
from datafactory.engine.input_keys import RowKeys, input_record
from datafactory.engine.ordered import OrderedGates
from datafactory.engine.process import RowProcessor, Staged
from datafactory.engine.progress import Progress
from datafactory.engine.stats import Stats
from datafactory.errors import RequestDeferred, RunStopped
from datafactory.io.readers import BadRow
from datafactory.record import Record

STOP_GRACE_S = 3.0      # after Ctrl-C, let requests already on the wire land (they are paid for)
BATCH = 256


class Scheduler:
    def __init__(self, pipe: Pipeline, processor: RowProcessor, cache: Cache, stats: Stats,
                 progress: Progress, fingerprint: str) -> None:
        self.pipe, self.processor, self.cache, self.stats = pipe, processor, cache, stats
        self.progress, self.fingerprint = progress, fingerprint
        self.stop_signal: int | None = None
        self.halted: RunStopped | None = None
        self._stopping = asyncio.Event()
        self._force = False
        self._grace = STOP_GRACE_S
        self._over = False
        # rows whose worker moved on while their gate batch decides (``_hand_over``)
        self._finishing: set[asyncio.Task[None]] = set()
        self._failed: BaseException | None = None
        # finished rows are committed in groups (one transaction per batch; see engine/commit.py)
        self.commits = CommitBatcher(cache, fingerprint, stats, stored_props=processor.steps.stored_props)
        # gates with memory decide in input order, after the worker has moved on (engine/ordered.py)
        self.ordered = OrderedGates(processor.steps.ordered, self.commits.add_row, processor.counts,
                                    expected_rows=stats.rows_total)  # dedup memory sized once

    def request_stop(self, signum: int) -> None:
        """A signal: stop feeding rows; a second one stops waiting for in-flight requests. Once the run
        is over (the export is being written) it changes nothing."""
        if self._over:
            return
        if self.stop_signal is not None:
            self._force = True
        self.stop_signal = signum
        self.stats.interrupted = True
        self._stopping.set()

    def halt(self, error: RunStopped, grace_s: float | None = None) -> None:
        """The run cannot go on (breaker, budget): stop feeding rows; ``run`` raises ``error`` at the end.
        ``grace_s``: how long requests already on the wire may take to land (they may be paid for)."""
        if self.halted is None:
            self.halted = error
            if grace_s is not None:
                self._grace = grace_s
        self._stopping.set()

    async def run(self) -> None:
        conc = self.pipe.limits.concurrency
        queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize=2 * conc)
        producer = asyncio.create_task(self._produce(queue, conc))
        workers = [asyncio.create_task(self._work(queue)) for _ in range(conc)]
        ticker = asyncio.create_task(self._tick())
        try:
            await self._supervise(producer, workers, queue)
            await self._settle()
        finally:
            ticker.cancel()
            for task in [producer, *workers, ticker, *self._finishing]:
                task.cancel()
            await asyncio.gather(producer, *workers, ticker, *self._finishing, return_exceptions=True)
            self._over = True
            try:
                self.ordered.close()
            finally:
                self.commits.close()
                steps = self.processor.publish_steps()
                if "ordered_gates" in steps:
                    steps["ordered_gates"]["out_of_order"] = self.ordered.out_of_order
        if self.halted is not None:
            raise self.halted

    async def _supervise(self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]],
                         queue: asyncio.Queue[Record | None]) -> None:
        stopping = asyncio.create_task(self._stopping.wait())
        pending: set[asyncio.Task[Any]] = {producer, *workers, stopping}
        try:
            while any(not w.done() for w in workers):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopping and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]  # 401, disk full: stop everything
                if self._failed is not None:  # the same from a row handed over to its gate batch
                    raise self._failed
                if stopping in done:
                    await self._drain(producer, workers, queue)
                    return
        finally:
            stopping.cancel()

    async def _drain(self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]],
                     queue: asyncio.Queue[Record | None]) -> None:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        while not queue.empty():  # rows not started: the next run does them
            queue.get_nowait()
        for _ in workers:
            queue.put_nowait(None)
        deadline = asyncio.get_running_loop().time() + self._grace
        while any(not w.done() for w in workers) and not self._force:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)

    async def _produce(self, queue: asyncio.Queue[Record | None], conc: int) -> None:
        await self._feed(queue)
        # not in a ``finally``: after a cancel (401, disk full) no worker is left to take the end
        # markers, and put() on a full queue would block the shutdown forever
        if not self._stopping.is_set():
            for _ in range(conc):
                await queue.put(None)

    async def _feed(self, queue: asyncio.Queue[Record | None]) -> None:
        inp = self.pipe.input
        rows = input_for(self.pipe).rows()  # one stream per run for a hub dataset (engine/input.py)
        keys = RowKeys()
        seq = 0
        resume = self.cache.has_outcomes(self.fingerprint)  # a fresh run has no row to skip: no lookups
        try:
            while True:
                batch = await asyncio.to_thread(_take, rows, BATCH)
                if not batch:
                    break
                keyed: list[tuple[int, dict[str, Any] | BadRow, str, str | None]] = []
                for pos, row in batch:
                    if inp.limit is not None and seq + len(keyed) >= inp.limit:
                        break
                    key, dup_of = keys.key(row)
                    keyed.append((pos, row, key, dup_of))
                done = self.cache.done_keys(self.fingerprint, [k for _, _, k, _ in keyed]) if resume else set()
                todo: list[Record] = []
                for pos, row, key, dup_of in keyed:
                    seq += 1
                    if key in done:
                        self.stats.rows_skipped_done += 1
                        continue
                    todo.append(input_record(key, seq, f"{inp.path}:{pos}", row, dup_of))
                self.processor.input_batch(todo)  # the input step (source gates) once over the batch
                for rec in todo:
                    await queue.put(rec)
                if inp.limit is not None and seq >= inp.limit:
                    return
        finally:
            with contextlib.suppress(Exception):
                rows.close()  # type: ignore[attr-defined]

    async def _work(self, queue: asyncio.Queue[Record | None]) -> None:
        while True:
            row = await queue.get()
            if row is None:
                return
            seq = row.meta["seq"]
            self.ordered.enter(seq)  # right after the get: rows enter in input order
            try:
                staged = await self.processor.stage(row)
                if isinstance(staged, list):
                    outcomes = staged
                elif self.processor.finish_sends:  # async gates send requests: the worker's slot holds them
                    outcomes = await self.processor.finish(staged)
                else:  # only the gate batch is left: it decides while this worker sends the next request
                    self._hand_over(staged)
                    continue
            except RunStopped as exc:  # the breaker or the budget: this row gets no outcome (rerun does it)
                self.ordered.drop(seq)
                self.halt(exc)
                return
            except RequestDeferred:  # batch mode: its request waits in a provider batch; a later pass does it
                self.ordered.drop(seq)
                self.stats.rows_deferred += 1
                continue
            except BaseException:
                self.ordered.drop(seq)
                raise
            self.ordered.submit(row, outcomes)  # committed once the gates with memory decided

    def _hand_over(self, staged: Staged) -> None:
        task = asyncio.get_running_loop().create_task(self._finish(staged))
        self._finishing.add(task)
        task.add_done_callback(self._finished)

    async def _finish(self, staged: Staged) -> None:
        row = staged.row
        try:
            outcomes = await self.processor.finish(staged)
        except BaseException:
            self.ordered.drop(row.meta["seq"])
            raise
        self.ordered.submit(row, outcomes)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._finishing.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failed is None:
            self._failed = task.exception()  # a gate bug, disk full: stops the run like a worker's error
            self._stopping.set()

    async def _settle(self) -> None:
        """Wait for the rows whose gate batch is still deciding (at most a batch's age)."""
        while self._finishing:
            await asyncio.wait(set(self._finishing))
        if self._failed is not None:
            raise self._failed

    async def _tick(self) -> None:
        while True:
            self.progress.update(self.stats)
            await asyncio.sleep(0.25)


def _take(it: Iterator[Any], n: int) -> list[Any]:
    return list(islice(it, n))
