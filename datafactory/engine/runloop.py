"""How the asyncio engine runs: which event loop, and how often the garbage collector looks at the heap.

**The loop.** uvloop (libuv under asyncio's API) when it is installed — a core dependency on Linux
(``pip install uvloop`` elsewhere) — else asyncio's own. ``DATAFACTORY_LOOP`` chooses: ``auto`` (the
default), ``uvloop`` (an error when it is missing) or ``asyncio`` (the standard loop, e.g. to rule uvloop
out when debugging).
``augment`` runs on the caller's loop when it is awaited (``augment_async``): that one is not changed.

**The collector.** A run keeps a few hundred requests in flight; each holds ~10 coroutine frames and
their aiohttp objects for a round trip (200 ms), long enough to outlive the young generations, so at
CPython's default thresholds (700, 10, 10) a generation-1 pass walks ~14k live in-flight objects every
~100 rows, and the full passes walk the decontamination index and the dedup tables too: about one
eighth of the engine's CPU on this box. For the length of the request loop ``paced_gc`` moves what
setup built into the permanent generation (``gc.freeze``: it is alive for the whole run anyway) and
raises the first threshold to ``GEN0_THRESHOLD``, so young collections come a dozen times less often;
garbage cycles still go at the next pass. Both are restored when the loop ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from datafactory.errors import ConfigError

T = TypeVar("T")

LOOP_ENV = "DATAFACTORY_LOOP"
LOOPS = ("auto", "uvloop", "asyncio")
GEN0_THRESHOLD = 10_000


def loop_name(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """The event loop a run uses: ``uvloop`` or ``asyncio`` (from ``DATAFACTORY_LOOP``, see module doc)."""
    env = os.environ if env is None else env
    wanted = (env.get(LOOP_ENV) or "auto").strip().lower()
    if wanted not in LOOPS:
        raise ConfigError(f"unknown event loop {wanted!r}: choose one of {', '.join(LOOPS)}", key=LOOP_ENV)
    if wanted == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if wanted == "uvloop":
            raise ConfigError("uvloop is not installed (pip install uvloop), or set DATAFACTORY_LOOP=asyncio",
                              key=LOOP_ENV) from None
        return "asyncio"
    return "uvloop"


def run(coro: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """``asyncio.run(coro)`` on the chosen loop (``loop``: a :func:`loop_name` result; None: choose now)."""
    if (loop or loop_name()) == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def running_loop_name() -> str:
    """What the running loop is, for stats.json: ``uvloop``, ``asyncio`` or the loop's class name."""
    cls = type(asyncio.get_running_loop())
    if cls.__module__.startswith("uvloop"):
        return "uvloop"
    return "asyncio" if cls.__module__.startswith("asyncio") else f"{cls.__module__}.{cls.__qualname__}"


@contextlib.contextmanager
def paced_gc(threshold: int = GEN0_THRESHOLD) -> Iterator[None]:
    """Collect less often while the block runs (see the module docstring); the thresholds and the
    permanent generation are as they were afterwards. Nested or concurrent runs: only the outermost
    one freezes and sets the threshold."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= threshold or gc.get_freeze_count():
        yield  # the caller manages the collector itself, or an outer run already does
        return
    # the young garbage setup left goes now rather than frozen for the run; a full pass (gen 2) would walk
    # the whole heap, decontamination index included: 0.3 s of CPU on this box, for the little it finds
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
