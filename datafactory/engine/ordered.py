"""Gates with memory (dedup) decide in *input* order, whatever order the responses arrive in.

A dedup verdict depends on what came before: of two copies the first one is kept. Responses arrive in
the order the server answers, so deciding in arrival order would make the written rows depend on
latencies. Here each finished row waits in a reorder buffer keyed by its input position (``seq``) until
every earlier row that is still in flight has finished too; rows then pass, in input order, into
micro-batches (at most ``max_size`` records, at most ``max_wait_s`` old) that run every gate's
vectorised path once, and each row goes to ``sink`` (the commit) with its verdicts.

The worker that finished a row does not wait for this: it hands the row over and takes the next input
row, so a slow row (a long retry) does not stall the others — it only keeps later rows in the buffer.
That buffer is bounded: when more than ``max_held`` records wait, the oldest waiting rows pass anyway
and the slow row is decided when it finishes (arrival order for it; ``out_of_order`` counts such
rows, reported in ``stats.json`` under ``steps.ordered_gates.out_of_order``). A row in the buffer has
no outcome yet: after a kill it is redone from the cache, like any row not committed.

Rows are announced with ``enter(seq)`` when a worker takes them (in input order) and leave with
``submit`` (finished) or ``drop`` (no outcome this pass: a deferred batch request, a stopped run).

An exact dedup followed by a near dedup on the same field runs as one gate per batch (``dedup.fuse``:
one text extraction and tokenisation, the same verdicts), and with ``expected_rows`` (the run's row
count) the dedup memory is sized once at the start instead of rehashed as it fills.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Sequence

from datafactory.engine.flow import StepStats, now
from datafactory.engine.gate_batch import run_batch
from datafactory.engine.outcome import is_rejected, reject
from datafactory.quality.dedup import fuse
from datafactory.quality.gate import Gate
from datafactory.record import Record

Sink = Callable[[Record, list[Record]], None]
MAX_SIZE = 64
MAX_WAIT_S = 0.02
MAX_HELD = 4096  # records waiting behind a slow row before it is passed by (about 10 MB)


class OrderedGates:
    def __init__(self, gates: Sequence[Gate], sink: Sink, counts: StepStats | None = None, *,
                 max_size: int = MAX_SIZE, max_wait_s: float = MAX_WAIT_S, max_held: int = MAX_HELD,
                 expected_rows: int | None = None) -> None:
        self.gates, self.sink, self.counts = list(gates), sink, counts
        if expected_rows:  # the run's size is known: dedup memory sized once, not grown as it fills
            for gate in self.gates:
                reserve = getattr(gate, "reserve", None)
                if callable(reserve):
                    reserve(expected_rows)
        # exact then near dedup on the same field: one pass over one tokenisation (same verdicts)
        self._run: list[Gate] = fuse(self.gates)  # type: ignore[assignment]
        self.max_size, self.max_wait_s, self.max_held = max_size, max_wait_s, max_held
        self._open: list[int] = []           # heap of rows in flight (lazy deletion via _open_set)
        self._open_set: set[int] = set()
        self._held: dict[int, tuple[Record, list[Record]]] = {}
        self._held_heap: list[int] = []
        self._held_records = 0
        self._batch: list[tuple[Record, list[Record]]] = []
        self._batch_records = 0
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self.out_of_order = 0
        self.batches = 0

    def enter(self, seq: int) -> None:
        if self.gates:
            heapq.heappush(self._open, seq)
            self._open_set.add(seq)

    def drop(self, seq: int) -> None:
        if self.gates:
            self._open_set.discard(seq)
            self._release()

    def submit(self, row: Record, outcomes: list[Record]) -> None:
        """Row ``row`` finished with ``outcomes`` (rejected ones marked): its candidates wait their turn."""
        self._raise_kept()
        if not self.gates:
            self.sink(row, outcomes)
            return
        seq = row.meta["seq"]
        self._open_set.discard(seq)
        self._held[seq] = (row, outcomes)
        heapq.heappush(self._held_heap, seq)
        self._held_records += len(outcomes)
        self._release()

    def close(self) -> None:
        """Decide and hand over everything still waiting (the end of the run, or a stop)."""
        self._open.clear()
        self._open_set.clear()
        self._release()
        self.flush()
        self._raise_kept()

    # ------------------------------------------------------------------ internals
    def _head(self) -> int | None:
        while self._open and self._open[0] not in self._open_set:
            heapq.heappop(self._open)
        return self._open[0] if self._open else None

    def _release(self) -> None:
        head = self._head()
        while self._held_heap and (head is None or self._held_heap[0] < head
                                   or self._held_records > self.max_held):
            seq = heapq.heappop(self._held_heap)
            row, outcomes = self._held.pop(seq)
            self._held_records -= len(outcomes)
            if head is not None and seq > head:
                self.out_of_order += 1
            candidates = sum(1 for r in outcomes if not is_rejected(r))
            if not candidates:
                self.sink(row, outcomes)
                continue
            self._batch.append((row, outcomes))
            self._batch_records += candidates
            if self._batch_records >= self.max_size:
                self.flush()
        if self._batch and self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._on_timer)
            except RuntimeError:  # no event loop (a synchronous caller): decide now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch, self._batch_records = self._batch, [], 0
        if not batch:
            return
        self.batches += 1
        t0 = now()
        records = [r for _, outs in batch for r in outs if not is_rejected(r)]
        verdicts = run_batch(self._run, records)
        rejects = 0
        for rec, verdict in zip(records, verdicts, strict=True):
            if verdict is not None:
                reject(rec, "gate", verdict.reason, verdict.detail)
                rejects += 1
        if self.counts is not None:
            self.counts.add("ordered_gates", len(records), rejects, t0)
        for row, outcomes in batch:
            self.sink(row, outcomes)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 — kept and raised by the next submit / at close
            self._error = exc

    def _raise_kept(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
