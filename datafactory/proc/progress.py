"""A rich progress bar driven by a parser of a child's output lines.

The parsers (LLaMA-Factory's trainer steps in :mod:`datafactory.train.runner`, lm-eval's request bars
in :mod:`datafactory.evaluate.lm_eval_runner`) subclass :class:`LineProgress`; :func:`progress_display`
turns one into the ``on_line`` callback of :func:`datafactory.proc.child.run_streaming`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class LineProgress:
    """Progress read from output lines: ``completed`` of ``total`` (None while unknown) and a status."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.completed = 0
        self.status = ""

    def feed(self, line: str) -> bool:
        """Consume one output line; True when the progress or status changed."""
        return False


@contextmanager
def progress_display(description: str, parser: LineProgress, *,
                     enabled: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar driven by ``parser``; yields the ``on_line`` callback for ``run_streaming``."""
    if not enabled:

        def feed_only(line: str) -> None:
            parser.feed(line)

        yield feed_only
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=None, status="starting")

        def on_line(line: str) -> None:
            if parser.feed(line):
                progress.update(task, total=parser.total, completed=parser.completed, status=parser.status)

        yield on_line
