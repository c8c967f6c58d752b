"""SIGINT / SIGTERM for a run: stop it cleanly, and never lose the final export or the summary.

``routed(callback)`` (used by ``augment``) sends both signals to ``callback`` for as long as the run,
its final export, stats.json and dataset_info.json take. It uses ``signal.signal`` rather than
``loop.add_signal_handler``: asyncio puts the *default* handler back when its handler is removed, so a
signal right after the scheduler ended used to kill the process in the middle of the export.

``hold()`` (used by the CLI) installs the same handler for the rest of the process: before a run it
behaves as usual (Ctrl-C → KeyboardInterrupt, SIGTERM → exit 143); once a run has ended, further
signals are ignored, so the summary and the resume hint are always printed and the exit code stays.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Relay:
    def __init__(self) -> None:
        self.installed = False
        self.callback: Callable[[int], object] | None = None
        self.after_run = False
        self.received: list[int] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.callback is not None:
            self.callback(signum)
            return
        if self.after_run:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def install(self) -> dict[int, Any]:
        previous: dict[int, Any] = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        self.installed = True
        return previous


_relay = _Relay()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def hold() -> None:
    """Route SIGINT/SIGTERM through datafactory until the process exits (the CLI, before a run)."""
    if _main_thread() and not _relay.installed:
        _relay.install()


@contextlib.contextmanager
def routed(callback: Callable[[int], object], *, enabled: bool = True) -> Iterator[None]:
    """During the block, SIGINT/SIGTERM call ``callback(signum)`` (from the main thread, between two
    bytecodes: the callback must only hand over, e.g. ``loop.call_soon_threadsafe``)."""
    if not enabled or not _main_thread():
        yield
        return
    owner = not _relay.installed
    previous = _relay.install() if owner else {}
    outer = _relay.callback
    _relay.callback = callback
    try:
        yield
    finally:
        _relay.callback = outer
        if owner:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _relay.installed = False
        else:
            # the run is over: from now to the process's exit (the summary, the resume hint, interpreter
            # shutdown, which puts the default handler back for Python-level ones) stop signals are ignored
            _relay.after_run = True
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
