"""Grouped commits of finished rows: one SQLite transaction per batch instead of one per row.

``CommitBatcher.add`` queues one row's samples; the batch is written in one transaction
(``Cache.commit_rows``) when it holds ``max_rows`` rows, when its oldest row has waited ``max_wait_s``
(a timer on the event loop), and at ``close`` (the end of the run, after a signal or a halt).

Why this keeps the kill -9 guarantees (the rule is in ``engine/cache.py``): a row reaches the batcher
only after every response it used is committed in the cache, so a row lost from an unwritten batch has
no outcome and the resume redoes it from the cache — no request is sent again, and the row is counted
once, in the batch of the run that finishes it. A batch is all or nothing.

A write that fails in the timer (disk full) is kept and raised by the next ``add`` or by ``close``, so
it stops the run the way a failing per-row commit did.

``add_row`` takes a finished row as records (``engine/outcome.py``): it counts them in the run stats and,
for each written record, keeps what gates with memory read from the model's object that no output
column carries (``stored_props``) beside the outcome, so a resume seeds them from exactly that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from datafactory import constants as C
from datafactory.engine.cache import Cache, RowOutcome, Sample
from datafactory.engine.outcome import to_sample
from datafactory.engine.stats import Stats
from datafactory.record import Record


class CommitBatcher:
    def __init__(self, cache: Cache, fingerprint: str, stats: Stats | None = None, *,
                 max_rows: int = C.COMMIT_MAX_ROWS, max_wait_s: float = C.COMMIT_MAX_WAIT_S,
                 stored_props: tuple[str, ...] = ()) -> None:
        self.cache, self.fingerprint, self.stats = cache, fingerprint, stats
        self.max_rows, self.max_wait_s = max_rows, max_wait_s
        self.stored_props = stored_props
        self._pending: list[RowOutcome] = []
        self._reads: list[tuple[str, int, dict[str, Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self.commits = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add_row(self, row: Record, outcomes: list[Record]) -> None:
        """Queue one finished row given as its outcome records, and count it in the run stats."""
        samples = [to_sample(r) for r in outcomes]
        if self.stored_props:
            for i, rec in enumerate(outcomes):
                if samples[i][0]:
                    self._reads.append((row.id, i, {n: rec.fields.get(n) for n in self.stored_props}))
        if self.stats is not None:
            count_samples(self.stats, samples)
        self.add(row.id, row.meta["seq"], samples)

    def add(self, row_key: str, seq: int, samples: list[Sample]) -> None:
        """Queue one finished row; writes the batch when it is full."""
        self._raise_kept()
        self._pending.append((row_key, seq, samples))
        if len(self._pending) >= self.max_rows:
            self.flush()
        elif self._timer is None and self.max_wait_s > 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a synchronous caller): write now
                self.flush()
                return
            self._timer = loop.call_later(self.max_wait_s, self._on_timer)

    def flush(self) -> None:
        """Write every queued row in one transaction (nothing queued: nothing happens)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        reads, self._reads = self._reads, []
        self.cache.commit_rows(self.fingerprint, batch, reads)
        self.commits += 1

    def close(self) -> None:
        """The last write of the run; raises a write error kept from the timer."""
        try:
            self.flush()
        finally:
            self._raise_kept()

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 — kept and raised on the worker's next add / at close
            self._error = exc

    def _raise_kept(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err


def count_samples(stats: Stats, samples: list[Sample]) -> None:
    """Add one row's samples to the run counters (written, rejected per reason)."""
    stats.rows_done += 1
    for ok, reason, _ in samples:
        if ok:
            stats.written += 1
        else:
            stats.rejected[reason or "unknown"] += 1
