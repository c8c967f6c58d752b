"""What the CLI does with a run dir's batches besides running: the notes printed after a run that left
batches on the provider, and ``--cancel-batches``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from datafactory import constants as C
from datafactory.config.pipeline import Pipeline
from datafactory.engine.batch.driver import batch_client
from datafactory.engine.batch.store import BatchStore
from datafactory.engine.batch.submit import Submitter
from datafactory.engine.ratelimit import PauseGate
from datafactory.engine.retry import with_retries
from datafactory.engine.stats import Stats
from datafactory.io.rundir import RunDir
from datafactory.providers.batch_base import BatchInfo


def notes(stats: Stats, command: str) -> list[str]:
    """What the CLI says about batches still on the provider after a run (empty when none)."""
    sec = stats.sections.get("batch") or {}
    running = sec.get("running") or []
    if not running:
        return []
    ids = ", ".join(str(r["id"] or "(being submitted)") for r in running[:10])
    more = f" and {len(running) - 10} more" if len(running) > 10 else ""
    n = sum(int(r["requests"]) for r in running)
    head = (f"{len(running)} batch{'es' if len(running) != 1 else ''} ({n} requests) keep running on the "
            f"provider: {ids}{more}")
    return [head, f"Collect what finished (and wait for the rest):  {command}",
            f"Only collect, without waiting:  {command} --no-wait",
            f"Cancel them:  {command} --cancel-batches"]


async def cancel_batches(pipe: Pipeline, api_key: str) -> list[BatchInfo]:
    """Cancel every batch of the run dir that may still run on the provider; returns what the provider said.
    Their finished lines are collected by the next run, the rest is asked again then."""
    run = RunDir(pipe.output.dir)
    run.acquire()
    store = BatchStore(run.path / C.BATCH_DB)
    client = batch_client(pipe, api_key)
    stats = Stats()
    try:
        gate = PauseGate()

        async def retry(call: Callable[[], Awaitable[Any]]) -> Any:
            return await with_retries(call, max_attempts=pipe.limits.max_attempts, gate=gate, stats=stats,
                                      rate_limit_wait_s=pipe.limits.rate_limit_wait_s)

        sub = Submitter(pipe, store, client, retry)
        out = []
        for row in store.batches("intent", "uploaded", "submitted"):
            info = await sub.cancel(row)
            if info is not None:
                out.append(info)
        return out
    finally:
        await client.aclose()
        store.close()
        run.release()
