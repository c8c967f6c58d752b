"""Progress display: a rich bar on a terminal, plain periodic lines otherwise (logs, CI).

The engine calls ``update(stats)`` a few times a second from one ticker task, never per row, so
the display costs nothing measurable at thousands of rows per second.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from datafactory import constants as C
from datafactory.engine.stats import Stats


class Progress(Protocol):
    def start(self, stats: Stats) -> None: ...
    def update(self, stats: Stats) -> None: ...
    def stop(self, stats: Stats) -> None: ...


class NoProgress:
    def start(self, stats: Stats) -> None:
        pass

    def update(self, stats: Stats) -> None:
        pass

    def stop(self, stats: Stats) -> None:
        pass


def _completed(s: Stats) -> int:
    # rows finished by an earlier invocation count too, so a resumed run's bar still ends at 100 %
    return s.rows_done + s.rows_skipped_done


def _line(s: Stats) -> str:
    total = f"/{s.rows_total}" if s.rows_total is not None else ""
    cost = f" cost≈${s.cost_usd:.4f}" if s.cost_usd is not None else ""
    return (f"{_completed(s)}{total} rows, {s.rows_per_s:.1f} rows/s, {s.requests_sent} requests, "
            f"{s.cache_hits} cached, {s.retries} retries, {s.rate_limited} 429s, "
            f"{s.written} written, {sum(s.rejected.values())} rejected{cost}{_batches(s)}")


def _batches(s: Stats) -> str:
    """Batch mode: the batches on the provider and their requests (engine/batch/driver.py's block)."""
    sec = s.sections.get("batch")
    if not sec:
        return ""
    running = sec.get("running") or []
    return (f", batches: {len(running)} running ({sum(r['requests'] for r in running)} requests, "
            f"{sum(r['completed'] for r in running)} answered), {sec['collected']} collected")


class PlainProgress:
    def __init__(self, stream: TextIO | None = None, interval: float = C.PLAIN_PROGRESS_INTERVAL_S) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0

    def start(self, stats: Stats) -> None:
        self._last = time.monotonic()

    def update(self, stats: Stats) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(f"[datafactory] {_line(stats)}", file=self.stream, flush=True)

    def stop(self, stats: Stats) -> None:
        print(f"[datafactory] done: {_line(stats)} in {stats.elapsed:.1f}s", file=self.stream, flush=True)


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RP

        self._rp = RP(TextColumn("[bold]augment"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False)
        self._task: Any = None

    def start(self, stats: Stats) -> None:
        self._rp.start()
        self._task = self._rp.add_task("augment", total=stats.rows_total, info="")

    def update(self, stats: Stats) -> None:
        cost = f" ${stats.cost_usd:.4f}" if stats.cost_usd is not None else ""
        info = (f"{stats.rows_per_s:.1f} rows/s · {stats.retries} retries · {stats.rate_limited}×429 · "
                f"{sum(stats.rejected.values())} rejected{cost}{_batches(stats)}")
        self._rp.update(self._task, completed=_completed(stats), info=info)

    def stop(self, stats: Stats) -> None:
        self.update(stats)
        self._rp.stop()


def auto_progress(quiet: bool = False) -> Progress:
    if quiet:
        return NoProgress()
    return RichProgress() if sys.stderr.isatty() else PlainProgress()
